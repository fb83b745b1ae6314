"""Fault knobs that break the simulator on purpose, for tests and drills.

Rates are rolled per chat request on a seeded RNG (rolled only when non-zero, so a quiet engine's
draws stay reproducible); the one-shot counters `error_next`, `stall_next`, `malformed_next` give
the next N requests that fault and win over the rates. `crash_after` counts chat requests as they
arrive: the Nth one ends the process at once (set at run time, it counts from that moment).
"""

from __future__ import annotations

import random
from typing import NamedTuple

import msgspec

from appliance.simulator.protocol import FaultPatch


class Draw(NamedTuple):
    error: bool
    stall: bool
    malformed: bool


NO_FAULT = Draw(False, False, False)


class Faults:
    def __init__(
        self,
        *,
        seed: int = 0,
        error_rate: float = 0.0,
        stall_rate: float = 0.0,
        stall_s: float = 30.0,
        malformed_rate: float = 0.0,
        crash_after: int | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.error_rate = error_rate
        self.stall_rate = stall_rate
        self.stall_s = stall_s
        self.malformed_rate = malformed_rate
        self.crash_after = crash_after
        self.error_next = 0
        self.stall_next = 0
        self.malformed_next = 0
        self.arrivals = 0
        self._crash_at = crash_after

    def arrive(self) -> bool:
        """Count one chat request; True when it is the one that must crash the process."""
        self.arrivals += 1
        return self._crash_at is not None and self.arrivals >= self._crash_at

    def draw(self) -> Draw:
        if not (
            self.error_rate
            or self.stall_rate
            or self.malformed_rate
            or self.error_next
            or self.stall_next
            or self.malformed_next
        ):
            return NO_FAULT
        return Draw(
            self._take("error_next", self.error_rate),
            self._take("stall_next", self.stall_rate),
            self._take("malformed_next", self.malformed_rate),
        )

    def update(self, patch: FaultPatch) -> None:
        for field in patch.__struct_fields__:
            value = getattr(patch, field)
            if value is msgspec.UNSET:
                continue
            setattr(self, field, value)
            if field == "crash_after":
                self._crash_at = None if value is None else self.arrivals + value

    def snapshot(self) -> dict[str, object]:
        return {
            "error_rate": self.error_rate,
            "stall_rate": self.stall_rate,
            "stall_s": self.stall_s,
            "malformed_rate": self.malformed_rate,
            "crash_after": self.crash_after,
            "error_next": self.error_next,
            "stall_next": self.stall_next,
            "malformed_next": self.malformed_next,
            "arrivals": self.arrivals,
        }

    def _take(self, counter: str, rate: float) -> bool:
        left = getattr(self, counter)
        if left > 0:
            setattr(self, counter, left - 1)
            return True
        return rate > 0 and self.rng.random() < rate
