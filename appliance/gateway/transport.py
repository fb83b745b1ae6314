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
    message = one_line(engine_error(await response.read()).reason)
    log.warning("engine %s refused a request: %d %s", engine_id, response.status, message)
    return EngineRefused(response.status, message)


class _ErrorDetail(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    param: str | None = None
    code: str | int | None = None


class EngineError(msgspec.Struct):
    """An engine's error body in any of the shapes engines use: OpenAI's `{"error": {...}}`,
    vLLM's `{"object": "error", "message": ..., "code": 400}`, `{"error": "..."}`, plain text."""

    error: _ErrorDetail | str | None = None
    message: str | None = None
    type: str | None = None
    param: str | None = None
    code: str | int | None = None

    @property
    def detail(self) -> _ErrorDetail | None:
        return self.error if isinstance(self.error, _ErrorDetail) else None

    @property
    def reason(self) -> str | None:
        """What the engine said was wrong, wherever it put it."""
        detail = self.detail
        if detail is not None and detail.message:
            return detail.message
        return self.error if isinstance(self.error, str) else self.message


_decode_error = msgspec.json.Decoder(EngineError).decode


def engine_error(data: bytes) -> EngineError:
    """An engine's error body read once, for the passthrough and the agents alike; a body that
    is not JSON of that shape is its text."""
    try:
        return _decode_error(data)
    except msgspec.MsgspecError:
        return EngineError(message=data.decode(errors="replace").strip()[:500] or None)


def one_line(message: str | None, limit: int = 500) -> str:
    """An engine's message on one short line, for the log."""
    text = " ".join((message or "no message").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
