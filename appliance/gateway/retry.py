"""The appliance's one retry layer, built on stamina.

Exponential backoff from LLM_RETRY_DELAY (1 s, 2 s, 4 s with the guide's defaults), at most
LLM_MAX_RETRIES retries, only for what can succeed on a second try (transport errors, 408/429/5xx),
and an engine's `Retry-After` takes the place of the computed delay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import stamina

from appliance.config.schema import LLMSettings
from appliance.gateway.client import RETRYABLE_STATUS, TRANSPORT_ERRORS

T = TypeVar("T")
MAX_RETRY_AFTER_S = 30.0


class RetryableStatus(Exception):
    """An engine answered with a status worth retrying; carries its Retry-After."""

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"engine answered {status}")
        self.status = status
        self.retry_after = retry_after


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS


def _backoff_hook(exc: Exception) -> bool | float:
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
    attempts: int | None = None,
    deadline_s: float | None = None,
) -> T:
    """Run `call`, retrying what is retryable with the guide's backoff; the last error propagates."""
    total = (llm.max_retries + 1) if attempts is None else attempts
    if total <= 1:
        return await call()
    async for attempt in stamina.retry_context(
        on=_backoff_hook,
        attempts=total,
        timeout=deadline_s,
        wait_initial=llm.retry_delay,
        wait_exp_base=2.0,
        wait_max=max(llm.retry_delay * 2 ** max(total - 2, 0), llm.retry_delay),
        wait_jitter=0.0,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover
