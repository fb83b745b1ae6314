"""The circuit breaker: closed -> open after the threshold, half-open after the timeout, one trial."""

from __future__ import annotations

from appliance.gateway.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, threshold: int = 3, timeout_s: float = 60.0) -> CircuitBreaker:
    return CircuitBreaker("e", threshold=threshold, timeout_s=timeout_s, clock=clock)


def test_opens_after_threshold_consecutive_failures_only() -> None:
    clock = Clock()
    b = breaker(clock)
    b.record_failure()
    b.record_failure()
    b.record_success()  # not consecutive: the count starts again
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN and not b.allow()
    assert b.times_opened == 1
    assert b.retry_after() == 60.0


def test_half_open_after_timeout_lets_one_trial_through() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1, timeout_s=30.0)
    b.record_failure()
    clock.now += 20
    assert not b.allow() and b.retry_after() == 10.0
    clock.now += 10
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow()
    assert not b.allow()  # one trial at a time
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.failures == 0


def test_failed_trial_opens_again_for_a_full_timeout() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1, timeout_s=30.0)
    b.record_failure()
    clock.now += 30
    assert b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN and b.times_opened == 2
    clock.now += 29
    assert not b.allow()


def test_an_abandoned_trial_frees_the_next_one() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1, timeout_s=5.0)
    b.record_failure()
    clock.now += 5
    assert b.allow()
    b.abandon()  # the trial was shed or cancelled: no verdict on the engine
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow()


def test_reset_closes_from_any_state() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1)
    b.record_failure()
    b.reset()
    assert b.state is BreakerState.CLOSED and b.allow()
    assert b.snapshot() == {"state": "closed", "failures": 0, "times_opened": 1, "retry_after_s": 0}
