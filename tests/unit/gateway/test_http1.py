"""The lean HTTP/1.1 pool against a real asyncio server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from appliance.errors import EngineConnectionError, EngineReadTimeout
from appliance.gateway.http1 import Pool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


def ok(body: bytes, *, close: bool = False) -> bytes:
    extra = b"connection: close\r\n" if close else b""
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n%s"
        % (
            extra,
            len(body),
            body,
        )
    )


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[str, list[int]]]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> tuple[str, list[int]]:
        connections: list[int] = []

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(1)
            try:
                await handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1", connections

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_keep_alive_reuses_one_connection(serve) -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(ok(b'{"n": %d}' % len(seen)))

    url, connections = await serve(handler)
    pool = Pool(url)
    head = pool.prepare("/chat/completions", {"authorization": "Bearer k"})
    for n in range(1, 4):
        response = await pool.post(head, b'{"x": 1}', timeout=5)
        assert response.status == 200
        assert response.header(b"content-type") == b"application/json"
        assert await response.read() == b'{"n": %d}' % n
    assert len(connections) == 1
    assert seen[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"authorization: Bearer k\r\n" in seen[0]
    assert seen[0].endswith(b'\r\n\r\n{"x": 1}')
    await pool.aclose()


async def test_chunked_body_streams_piece_by_piece(serve) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        writer.write(b"7\r\ndata: 1\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"7\r\ndata: 2\r\n0\r\n\r\n")

    url, _ = await serve(handler)
    pool = Pool(url)
    response = await pool.post(pool.prepare("/chat/completions", {}), b"{}", timeout=5)
    chunks = response.iter_bytes()
    assert await chunks.__anext__() == b"data: 1"  # arrives before the rest exists
    release.set()
    assert [c async for c in chunks] == [b"data: 2"]
    await pool.aclose()


async def test_a_connection_the_engine_closed_is_replaced_transparently(serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"{}"))  # keep-alive promised, then the server goes away
        await writer.drain()

    url, connections = await serve(handler)
    pool = Pool(url)
    head = pool.prepare("/chat/completions", {})
    assert await (await pool.post(head, b"{}", timeout=5)).read() == b"{}"
    await asyncio.sleep(0.05)
    assert await (await pool.post(head, b"{}", timeout=5)).read() == b"{}"
    assert len(connections) == 2
    await pool.aclose()


async def test_connection_close_is_honoured(serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"{}", close=True))

    url, connections = await serve(handler)
    pool = Pool(url)
    head = pool.prepare("/chat/completions", {})
    for _ in range(2):
        assert await (await pool.post(head, b"{}", timeout=5)).read() == b"{}"
    assert len(connections) == 2
    await pool.aclose()


async def test_malformed_answer_is_an_engine_error(serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"this is not http\r\n\r\n")

    url, _ = await serve(handler)
    pool = Pool(url)
    with pytest.raises(EngineConnectionError, match="malformed"):
        await pool.post(pool.prepare("/chat/completions", {}), b"{}", timeout=5)


async def test_silence_past_the_timeout_is_a_read_timeout(serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    url, _ = await serve(handler)
    pool = Pool(url)
    with pytest.raises(EngineReadTimeout):
        await pool.post(pool.prepare("/chat/completions", {}), b"{}", timeout=0.2)


async def test_stall_mid_stream_is_a_read_timeout(serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await asyncio.sleep(5)

    url, _ = await serve(handler)
    pool = Pool(url)
    response = await pool.post(pool.prepare("/chat/completions", {}), b"{}", timeout=0.2)
    with pytest.raises(EngineReadTimeout):
        async for _ in response.iter_bytes():
            pass


async def test_refused_connection_is_an_engine_error() -> None:
    pool = Pool("http://127.0.0.1:9/v1", connect_timeout=1)
    with pytest.raises(EngineConnectionError, match="cannot connect"):
        await pool.post(pool.prepare("/chat/completions", {}), b"{}", timeout=1)


async def test_pool_never_opens_more_than_its_limit(serve) -> None:
    active = 0
    peak = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active, peak
        while True:
            await read_request(reader)
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1
            writer.write(ok(b"{}"))

    url, connections = await serve(handler)
    pool = Pool(url, max_connections=3)
    head = pool.prepare("/chat/completions", {})

    async def call() -> bytes:
        return await (await pool.post(head, b"{}", timeout=5)).read()

    assert await asyncio.gather(*(call() for _ in range(12))) == [b"{}"] * 12
    assert len(connections) == 3
    assert peak == 3
    await pool.aclose()


async def test_a_body_larger_than_the_read_buffer_is_read_whole(serve) -> None:
    body = bytes(range(256)) * (3 * 4096 + 7)  # about 3 MB: reading pauses and resumes

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(ok(body))
            await writer.drain()

    url, connections = await serve(handler)
    pool = Pool(url)
    head = pool.prepare("/chat/completions", {})
    for _ in range(2):
        response = await pool.post(head, b"{}", timeout=5)
        assert await response.read() == body
    assert len(connections) == 1  # read to its end, the connection was kept
    await pool.aclose()


async def test_pieces_that_arrive_together_are_relayed_as_one(serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked"
            b"\r\n\r\n7\r\ndata: 1\r\n7\r\ndata: 2\r\n7\r\ndata: 3\r\n0\r\n\r\n"
        )

    url, _ = await serve(handler)
    pool = Pool(url)
    response = await pool.post(pool.prepare("/chat/completions", {}), b"{}", timeout=5)
    assert [c async for c in response.iter_bytes()] == [b"data: 1data: 2data: 3"]
    await pool.aclose()


async def test_a_short_timeout_after_a_long_one_holds_on_the_same_connection(serve) -> None:
    answered: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            if not answered:  # the first request is answered, every later one met by silence
                answered.append(1)
                writer.write(ok(b"{}"))

    url, _ = await serve(handler)
    pool = Pool(url)
    head = pool.prepare("/chat/completions", {})
    first = await pool.post(head, b"{}", timeout=30)
    assert await first.read() == b"{}"
    started = asyncio.get_running_loop().time()
    with pytest.raises(EngineReadTimeout):
        await asyncio.wait_for(pool.post(head, b"{}", timeout=0.2), 10)
    assert asyncio.get_running_loop().time() - started < 5  # not the first request's 30 s
    await pool.aclose()


async def test_an_engine_that_keeps_talking_is_never_timed_out(serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(12):  # 1.2 s in all, longer than the timeout, never 1 s of silence
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.write(b"0\r\n\r\n")

    url, _ = await serve(handler)
    pool = Pool(url)
    response = await pool.post(pool.prepare("/chat/completions", {}), b"{}", timeout=1.0)
    assert b"".join([c async for c in response.iter_bytes()]) == b"x" * 12
    await pool.aclose()


async def test_an_idle_kept_connection_outlives_its_last_timeout(serve) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(ok(b"{}"))

    url, connections = await serve(handler)
    pool = Pool(url)
    head = pool.prepare("/chat/completions", {})
    # Timeouts that must not fire are 1 s, so that a pause of the host cannot fire them.
    assert await (await pool.post(head, b"{}", timeout=1.0)).read() == b"{}"
    await asyncio.sleep(1.3)  # the timer of the answered request fires and finds nothing to do
    assert await (await pool.post(head, b"{}", timeout=1.0)).read() == b"{}"
    assert len(connections) == 1
    await pool.aclose()
