"""The gateway's seams for load control and observation.

The gateway asks an `Admission` whether to reroute and for a permit before each engine call, and
tells a `Recorder` what happened. The null versions here admit everything and record nothing;
`appliance.load.admission` and `appliance.monitor` provide the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from appliance.load.priority import Priority as Priority  # the one load-control type it needs


@dataclass(frozen=True, slots=True)
class Decision:
    reroute: bool = False
    reason: str = ""


ADMIT = Decision()


class Permit(Protocol):
    def release(self) -> None: ...


class Admission(Protocol):
    def assess(self, engine_id: str, priority: Priority, *, has_fallback: bool) -> Decision:
        """Reroute to the next model in the chain? Called after the gateway's own breaker
        check, before the breaker admits a call."""
        ...

    def rerouted(self, engine_id: str, priority: Priority, reason: str) -> None:
        """The gateway rerouted around the engine for its own reason (an open breaker)."""
        ...

    async def acquire(self, engine_id: str, priority: Priority) -> Permit:
        """Wait for room on the engine, or raise `Overloaded` to shed."""
        ...

    def saturation(self, engine_id: str, priority: Priority) -> float:
        """The engine's saturation score for this class (0 idle, 1 full): weighs replicas."""
        ...


class Recorder(Protocol):
    def engine_failure(self, engine_id: str, reason: str) -> None: ...

    def request_done(
        self,
        *,
        agent: str | None,
        model: str,
        outcome: str,
        ttft_s: float | None,
        e2e_s: float,
        tokens: int | None = None,
    ) -> None: ...


class _NullPermit:
    def release(self) -> None:
        return None


_NULL_PERMIT = _NullPermit()


class NullAdmission:
    def assess(self, engine_id: str, priority: Priority, *, has_fallback: bool) -> Decision:
        return ADMIT

    def rerouted(self, engine_id: str, priority: Priority, reason: str) -> None:
        return None

    async def acquire(self, engine_id: str, priority: Priority) -> Permit:
        return _NULL_PERMIT

    def saturation(self, engine_id: str, priority: Priority) -> float:
        return 0.0


class NullRecorder:
    def engine_failure(self, engine_id: str, reason: str) -> None:
        return None

    def request_done(
        self,
        *,
        agent: str | None,
        model: str,
        outcome: str,
        ttft_s: float | None,
        e2e_s: float,
        tokens: int | None = None,
    ) -> None:
        return None
