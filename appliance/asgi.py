"""Raw-ASGI responses, written once: the two messages, and complete bodies that always carry
their content-length.

The routes that bypass the framework for speed (the chat passthrough, the crisis answer, the auth
middleware, the simulator) answer through these. Only the standard library is imported, so the
simulator's process stays light; the event types match Litestar's structurally, so its `Send`
takes them. Constant header tuples are built once by the callers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Literal, TypedDict

Header = tuple[bytes, bytes]
JSON = b"application/json"
CONTENT_TYPE = b"content-type"
CONTENT_LENGTH = b"content-length"


class StartEvent(TypedDict):
    """ASGI `http.response.start`."""

    type: Literal["http.response.start"]
    status: int
    headers: Iterable[Header]


class BodyEvent(TypedDict):
    """ASGI `http.response.body`."""

    type: Literal["http.response.body"]
    body: bytes
    more_body: bool


Send = Callable[[StartEvent | BodyEvent], Awaitable[None]]


def response_start(status: int, headers: Iterable[Header]) -> StartEvent:
    """The start of a response, headers as given: with no content-length the server frames the
    body itself (chunked), which is what a stream of server-sent events needs."""
    return {"type": "http.response.start", "status": status, "headers": headers}


def response_body(data: bytes, *, more: bool = False) -> BodyEvent:
    """A part of the body (`more`), or its last part."""
    return {"type": "http.response.body", "body": data, "more_body": more}


def content_length(size: int) -> Header:
    return (CONTENT_LENGTH, str(size).encode())


async def send_bytes(
    send: Send,
    status: int,
    data: bytes,
    content_type: bytes | None = JSON,
    extra_headers: Sequence[Header] = (),
) -> None:
    """A complete response: content-type (unless None), content-length, then `extra_headers`."""
    length = (CONTENT_LENGTH, str(len(data)).encode())
    headers = (
        [length, *extra_headers]
        if content_type is None
        else [(CONTENT_TYPE, content_type), length, *extra_headers]
    )
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


async def send_complete(send: Send, status: int, headers: list[Header], data: bytes) -> None:
    """A complete response under headers the caller built (content-type among them): its
    content-length is appended to `headers`, a fresh list this call takes over."""
    headers.append((CONTENT_LENGTH, str(len(data)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})
