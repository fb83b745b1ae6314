"""The simulator's raw ASGI plumbing: reading a request body, and the answers every route shares.

Every response carries `x-appliance-synthetic: true`; error bodies take vLLM's shapes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import msgspec

from appliance.asgi import JSON, response_body, send_bytes
from appliance.simulator.protocol import ErrorBody, ErrorInfo

Scope = MutableMapping[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 32 * 1024 * 1024
SYNTHETIC = (b"x-appliance-synthetic", b"true")
MARK = (SYNTHETIC,)  # the extra headers of every complete answer
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    SYNTHETIC,
]
DONE = b"data: [DONE]\n\n"
encode = msgspec.json.Encoder().encode


class Aborted(Exception):
    """The client went away while its body was being read."""


async def read_body(receive: Receive, send: Send) -> bytes | None:
    """The whole request body; None (after answering 413) when it is too large."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Aborted
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            await send_error(send, 413, "Request body too large.", "BadRequestError")
            return None
        parts.append(chunk)
    return b"".join(parts)


async def send_json(send: Send, status: int, body: bytes) -> None:
    await send_bytes(send, status, body, JSON, MARK)


async def more(send: Send, body: bytes) -> None:
    await send(response_body(body, more=True))


async def unauthorized(send: Send) -> None:
    """vLLM's own 401 body, which is not OpenAI-shaped."""
    await send_bytes(send, 401, b'{"error":"Unauthorized"}', JSON, MARK)


async def send_error(
    send: Send, status: int, message: str, kind: str, *, param: str | None = None
) -> None:
    body = ErrorBody(error=ErrorInfo(message=message, type=kind, param=param, code=status))
    await send_bytes(send, status, encode(body), JSON, MARK)


def decode_problem(exc: msgspec.DecodeError) -> str:
    """A body that did not decode, in the words vLLM uses."""
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        return text.replace("`", "")
    return f"Invalid JSON body: {text}"


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
