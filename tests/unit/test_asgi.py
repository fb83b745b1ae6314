"""The raw-ASGI response helpers: the messages they send, and what a client sees over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from appliance.asgi import (
    content_length,
    response_body,
    response_start,
    send_bytes,
    send_complete,
)

EXTRA = (b"x-extra", b"1")


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: Any) -> None:
        self.messages.append(dict(message))

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return list(self.messages[0]["headers"])


def test_a_start_carries_the_headers_as_given_and_no_length() -> None:
    headers = [(b"content-type", b"text/event-stream")]
    assert response_start(200, headers) == {
        "type": "http.response.start",
        "status": 200,
        "headers": headers,
    }


def test_a_body_part_says_whether_more_follows() -> None:
    assert response_body(b"x") == {"type": "http.response.body", "body": b"x", "more_body": False}
    assert response_body(b"x", more=True)["more_body"] is True


def test_the_length_counts_bytes_not_characters() -> None:
    assert content_length(len("é€".encode())) == (b"content-length", b"5")


async def test_send_bytes_sends_type_length_then_the_extra_headers() -> None:
    send = Recorder()
    await send_bytes(send, 201, b'{"a":1}', extra_headers=(EXTRA,))
    assert send.messages[0]["status"] == 201
    assert send.headers == [
        (b"content-type", b"application/json"),
        (b"content-length", b"7"),
        EXTRA,
    ]
    assert send.messages[1] == {
        "type": "http.response.body",
        "body": b'{"a":1}',
        "more_body": False,
    }
    assert len(send.messages) == 2


async def test_send_bytes_without_a_content_type_still_sends_the_length() -> None:
    send = Recorder()
    await send_bytes(send, 200, b"", None, (EXTRA,))
    assert send.headers == [(b"content-length", b"0"), EXTRA]


async def test_send_complete_appends_the_length_to_the_callers_headers() -> None:
    send = Recorder()
    headers = [(b"content-type", b"text/plain"), EXTRA]
    await send_complete(send, 503, headers, "é".encode())
    assert send.messages[0]["status"] == 503
    assert send.headers == [(b"content-type", b"text/plain"), EXTRA, (b"content-length", b"2")]
    assert send.messages[1]["body"] == "é".encode() and send.messages[1]["more_body"] is False


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Each helper behind a path, served by a real server."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/bytes":
        await send_bytes(send, 200, b'{"ok":true}', extra_headers=(EXTRA,))
    elif scope["path"] == "/complete":
        await send_complete(send, 429, [(b"content-type", b"application/json")], b"{}")
    else:
        await send(response_start(200, [(b"content-type", b"text/event-stream")]))
        await send(response_body(b"data: 1\n\n", more=True))
        await send(response_body(b"data: [DONE]\n\n"))


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1000):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started, "the test server did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def test_a_client_sees_the_length_of_complete_bodies_and_a_chunked_stream(
    base_url: str,
) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        whole = await client.get("/bytes")
        refused = await client.get("/complete")
        stream = await client.get("/stream")
    assert whole.status_code == 200 and whole.json() == {"ok": True}
    assert whole.headers["content-length"] == "11" and whole.headers["x-extra"] == "1"
    assert "transfer-encoding" not in whole.headers
    assert refused.status_code == 429 and refused.headers["content-length"] == "2"
    assert stream.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in stream.headers
    assert stream.content == b"data: 1\n\ndata: [DONE]\n\n"
