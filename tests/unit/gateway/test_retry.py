"""The one retry layer: the guide's 1-2-4 backoff (scaled down here), Retry-After, what is retried."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
from stamina.instrumentation import RetryDetails, get_on_retry_hooks, set_on_retry_hooks

from appliance.config.schema import LLMSettings
from appliance.errors import RetryableStatus
from appliance.gateway.retry import MAX_RETRY_AFTER_S, _backoff_hook, with_retries

DELAY = 0.01  # LLM_RETRY_DELAY, scaled down: the waits must read 0.01, 0.02, 0.04


@pytest.fixture
def waits() -> Iterator[list[float]]:
    """The waits stamina schedules, in order."""
    seen: list[float] = []
    previous = get_on_retry_hooks()

    def hook(details: RetryDetails) -> None:
        seen.append(details.wait_for)

    set_on_retry_hooks([hook])
    try:
        yield seen
    finally:
        set_on_retry_hooks(previous)


def llm(retries: int = 3) -> LLMSettings:
    return LLMSettings(max_retries=retries, retry_delay=DELAY)


class Failing:
    """Fails `times` times with `error`, then answers."""

    def __init__(self, times: int, error: Exception) -> None:
        self.times = times
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return "answer"


async def test_backoff_doubles_from_the_retry_delay(waits: list[float]) -> None:
    call = Failing(3, RetryableStatus(503))
    assert await with_retries(call, llm()) == "answer"
    assert call.calls == 4
    assert waits == pytest.approx([DELAY, 2 * DELAY, 4 * DELAY])


async def test_the_gateways_first_try_counts_and_the_first_retry_still_waits(
    waits: list[float],
) -> None:
    call = Failing(2, httpx2.ConnectError("refused"))
    result = await with_retries(call, llm(), first_error=httpx2.ConnectError("refused"))
    assert result == "answer"
    assert call.calls == 3  # plus the first try the caller made: 4 in all
    assert waits == pytest.approx([DELAY, 2 * DELAY, 4 * DELAY])


async def test_gives_up_after_max_retries_with_the_last_error(waits: list[float]) -> None:
    call = Failing(10, RetryableStatus(502))
    with pytest.raises(RetryableStatus):
        await with_retries(call, llm(retries=2))
    assert call.calls == 3
    assert len(waits) == 2


async def test_retry_after_replaces_the_computed_wait(waits: list[float]) -> None:
    call = Failing(1, RetryableStatus(429, retry_after=0.05))
    assert await with_retries(call, llm()) == "answer"
    assert waits == pytest.approx([0.05])


def test_retry_after_is_capped() -> None:
    assert _backoff_hook(RetryableStatus(503, retry_after=3600)) == MAX_RETRY_AFTER_S
    assert _backoff_hook(RetryableStatus(503, retry_after=-1)) == 0.0
    assert _backoff_hook(RetryableStatus(503)) is True


async def test_what_cannot_succeed_twice_is_not_retried(waits: list[float]) -> None:
    call = Failing(1, ValueError("bad request"))
    with pytest.raises(ValueError):
        await with_retries(call, llm())
    assert call.calls == 1 and waits == []
    with pytest.raises(ValueError):
        await with_retries(Failing(0, ValueError()), llm(), first_error=ValueError("bad"))
    assert waits == []


async def test_no_retries_configured_means_one_attempt(waits: list[float]) -> None:
    call = Failing(1, RetryableStatus(503))
    with pytest.raises(RetryableStatus):
        await with_retries(call, llm(retries=0))
    with pytest.raises(RetryableStatus):
        await with_retries(call, llm(retries=0), first_error=RetryableStatus(503))
    assert call.calls == 1 and waits == []
