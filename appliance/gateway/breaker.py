"""A circuit breaker per engine: stop sending work to an engine that keeps failing.

closed -> (threshold consecutive failures) -> open -> (timeout elapsed) -> half-open, where one
trial request decides: success closes it, failure opens it again. Settings are the service guide's
LLM_CIRCUIT_BREAKER_THRESHOLD and LLM_CIRCUIT_BREAKER_TIMEOUT.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum

log = logging.getLogger("appliance.breaker")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        threshold: int,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.timeout_s = timeout_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_in_flight = False
        self.times_opened = 0

    @property
    def state(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._clock() - (self.opened_at or 0) >= self.timeout_s
        ):
            self._set(BreakerState.HALF_OPEN)
        return self._state

    def allow(self) -> bool:
        """May a request go to this engine now? In half-open, only one trial at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the breaker lets a trial through."""
        if self._state is not BreakerState.OPEN or self.opened_at is None:
            return 1.0
        return max(1.0, self.timeout_s - (self._clock() - self.opened_at))

    def record_success(self) -> None:
        self._trial_in_flight = False
        self.failures = 0
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._trial_in_flight = False
        self.failures += 1
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED and self.failures >= self.threshold
        ):
            self.opened_at = self._clock()
            self.times_opened += 1
            self._set(BreakerState.OPEN)

    def abandon(self) -> None:
        """A request let through ended with no verdict on the engine (shed, cancelled, refused):
        a half-open breaker lets the next trial through instead of waiting for this one."""
        self._trial_in_flight = False

    def reset(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_in_flight = False
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def snapshot(self) -> dict[str, object]:
        return {
            "state": str(self.state),
            "failures": self.failures,
            "times_opened": self.times_opened,
            "retry_after_s": round(self.retry_after(), 1)
            if self._state is BreakerState.OPEN
            else 0,
        }

    def _set(self, state: BreakerState) -> None:
        level = logging.ERROR if state is BreakerState.OPEN else logging.INFO
        log.log(level, "circuit breaker %s: %s -> %s", self.name, self._state, state)
        self._state = state
