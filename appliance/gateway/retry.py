"""The appliance's one retry layer, built on stamina.

Exponential backoff from LLM_RETRY_DELAY (1 s, 2 s, 4 s with the guide's defaults), at most
LLM_MAX_RETRIES retries, only for what can succeed on a second try (transport errors, 408/429/5xx),
and an engine's `Retry-After` takes the place of the computed delay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx2
import stamina

from appliance.config.schema import LLMSettings
from appliance.errors import EngineConnectionError, RetryableStatus

T = TypeVar("T")
MAX_RETRY_AFTER_S = 30.0
# Errors that mean "the engine could not be reached or did not answer in time".
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx2.TransportError, EngineConnectionError)
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS


def _backoff_hook(exc: BaseException) -> bool | float:
    """stamina's `on`: False = give up, True = computed backoff, float = wait exactly that."""
    if isinstance(exc, RetryableStatus):
        if exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), MAX_RETRY_AFTER_S)
        return True
    return isinstance(exc, TRANSPORT_ERRORS)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    llm: LLMSettings,
    *,
    retries: int | None = None,
    first_error: BaseException | None = None,
    deadline_s: float | None = None,
) -> T:
    """Run `call`, retrying what is retryable with the guide's backoff; the last error propagates.

    At most `retries` (default LLM_MAX_RETRIES) retries after the first attempt, waiting
    LLM_RETRY_DELAY x 1, 2, 4, ... between attempts, or the engine's Retry-After instead. With
    `first_error` the caller has already made the first attempt (the gateway's fast path tries once
    without this machinery) and that is how it failed: the first wait follows from it.
    """
    retries = llm.max_retries if retries is None else retries
    pending = [first_error] if first_error is not None else []
    if retries <= 0:
        if pending:
            raise pending[0]
        return await call()
    async for attempt in stamina.retry_context(
        on=_backoff_hook,
        attempts=retries + 1,
        timeout=deadline_s,
        wait_initial=llm.retry_delay,
        wait_exp_base=2.0,
        wait_max=llm.retry_delay * 2 ** (retries - 1),
        wait_jitter=0.0,
    ):
        with attempt:
            if pending:
                raise pending.pop()
            return await call()
    raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover
