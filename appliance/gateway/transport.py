"""The one way to an engine's chat completions, and the one reading of what an engine answered.

`EngineTransport` is what the gateway needs of an engine: POST a JSON body to its chat completions
and get the answer back as an `Upstream`, its body not yet read. `client.EngineClient` implements it
once, over `http1.Pool`, for the byte passthrough and the agents alike. What an answer means is
decided here for both: a status worth retrying becomes `RetryableStatus` carrying the engine's
Retry-After, another error status an `EngineRefused` (agent calls; the passthrough relays it).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Protocol

import msgspec

from appliance.errors import EngineRefused, RetryableStatus

log = logging.getLogger("appliance.gateway")


class Upstream(Protocol):
    """An engine's answer: status and headers now, the body as it arrives."""

    status: int

    @property
    def content_type(self) -> bytes: ...

    def header(self, name: bytes) -> bytes | None: ...

    def retry_after(self) -> float | None: ...

    async def read(self) -> bytes: ...

    def iter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class EngineTransport(Protocol):
    """One engine's chat completions endpoint."""

    @property
    def engine_id(self) -> str: ...

    async def post_chat(self, body: bytes, *, timeout: float | None = None) -> Upstream:
        """POST JSON bytes; `timeout` bounds each wait for the answer (LLM_TIMEOUT by default)."""
        ...


def retry_after(value: bytes | str | None) -> float | None:
    """A Retry-After header in seconds; None when absent or not a number (an HTTP date)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def retryable(response: Upstream) -> RetryableStatus:
    """The error for an answer whose status is worth retrying; the connection is let go."""
    await response.aclose()
    return RetryableStatus(response.status, response.retry_after())


async def refusal(engine_id: str, response: Upstream) -> EngineRefused:
    """The error for an answer with a status not worth retrying, its message logged.

    vLLM's message names limits and parameters, never the request's text, which is not logged.
    """
    body = await response.read()
    try:
        parsed: object = msgspec.json.decode(body)
    except msgspec.DecodeError:
        parsed = body.decode(errors="replace").strip()
    message = engine_message(parsed)
    log.warning("engine %s refused a request: %d %s", engine_id, response.status, message)
    return EngineRefused(response.status, message)


def engine_message(body: object, limit: int = 500) -> str:
    """The message of an engine's error body (OpenAI's or vLLM's shape), on one short line."""
    message: object = body
    if isinstance(body, dict):
        inner = body.get("error")
        message = body.get("message") or (
            inner.get("message") if isinstance(inner, dict) else inner
        )
    text = " ".join(str(message or "no message").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
