"""A lean HTTP/1.1 keep-alive client for the passthrough hot path.

General-purpose clients spend most of a request's CPU on abstraction layers (measured: ~0.8 ms per
proxied request with httpx). Engines speak plain HTTP/1.1 on loopback, so this pool writes a
prepared request in one call and parses the answer with httptools' C parser, handing body chunks to
the relay as they arrive. TLS works for external engines through asyncio's own SSL support.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

from appliance.errors import EngineConnectionError, EngineReadTimeout
from appliance.gateway import tls
from appliance.gateway.transport import retry_after

IDLE_EXPIRY_S = 4.0  # below uvicorn's (and so vLLM's) default 5 s keep-alive timeout
_MAX_BUFFER = 1 << 20


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._head: asyncio.Future[None] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._buffered = 0
        self._complete = False
        self._got_bytes = False
        self._error: Exception | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timeout = 0.0
        self._deadline: float | None = None  # when the engine's silence becomes a timeout
        self._keep_alive = False
        self.status = 0

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        self._arm_timer()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(EngineConnectionError(f"malformed answer from the engine ({exc})"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self._complete:
            self._fail(EngineConnectionError("the engine closed the connection"))

    # -- httptools callbacks
    def on_status(self, status: bytes) -> None:
        self.status = self._parser.get_status_code()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _MAX_BUFFER and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._complete = True
        self._cancel_timer()
        self._wake()

    # -- request side
    async def request(self, payload: bytes, timeout: float) -> None:
        self._reset(timeout)
        self._head = self._loop.create_future()
        assert self.transport is not None
        self.transport.write(payload)
        self._arm_timer()
        await self._head

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: whatever is buffered, as one piece. An engine's stream often
        lands several events in one read; relayed as one write, not one write per event."""
        while True:
            while self._chunks:
                if len(self._chunks) == 1:
                    chunk = self._chunks.popleft()
                else:
                    chunk = b"".join(self._chunks)
                    self._chunks.clear()
                self._buffered -= len(chunk)
                if self._buffered < _MAX_BUFFER // 2 and self.transport is not None:
                    self.transport.resume_reading()
                yield chunk
            if self._complete:
                return
            if self._error is not None:
                raise self._error
            self._waiter = self._loop.create_future()
            await self._waiter

    async def body(self) -> bytes:
        """The whole body of a complete (not streamed) answer: a wait per read, no generator."""
        parts: list[bytes] = []
        while True:
            if self._chunks:
                parts.extend(self._chunks)
                self._chunks.clear()
                self._buffered = 0
                if self.transport is not None:
                    self.transport.resume_reading()
            if self._complete:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            if self._error is not None:
                raise self._error
            self._waiter = self._loop.create_future()
            await self._waiter

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return self._headers

    @property
    def reusable(self) -> bool:
        return self._complete and not self.closed and self._keep_alive

    @property
    def answered(self) -> bool:
        return self._got_bytes

    def close(self) -> None:
        self._cancel_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- internals
    def _reset(self, timeout: float) -> None:
        self._headers = []
        self._chunks.clear()
        self._buffered = 0
        self._complete = False
        self._got_bytes = False
        self._error = None
        self._timeout = timeout
        self.status = 0

    def _arm_timer(self) -> None:
        """The engine has `timeout` seconds from now to say something. One timer per connection,
        moved only when a deadline comes sooner: a request costs a clock read, not a timer."""
        if not self._timeout:
            return
        deadline = self._deadline = self._loop.time() + self._timeout
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        """Nothing is awaited from the engine; a pending timer will find nothing to do."""
        self._deadline = None

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if self._loop.time() < deadline:  # the engine spoke since: wait out the rest
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        self._fail(EngineReadTimeout(f"the engine sent nothing for {self._timeout:g} s"))
        self.close()

    def _fail(self, exc: Exception) -> None:
        self._cancel_timer()
        if self._error is None:
            self._error = exc
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._waiter = None


class _ConnectOpener(asyncio.Protocol):
    """Reads a proxy's answer to CONNECT: its status line once the head has arrived."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answered: asyncio.Future[bytes] = loop.create_future()
        self._head = b""

    def data_received(self, data: bytes) -> None:
        self._head += data
        if b"\r\n\r\n" in self._head and not self.answered.done():
            self.answered.set_result(self._head.split(b"\r\n", 1)[0])

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_exception(OSError("the proxy closed the connection"))


class Response:
    """An engine's answer: status and headers now, body as it arrives (`transport.Upstream`)."""

    __slots__ = ("_conn", "_pool", "headers", "status")

    def __init__(self, pool: Pool, conn: _Connection) -> None:
        self._pool = pool
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def content_type(self) -> bytes:
        return self.header(b"content-type") or b"application/json"

    def retry_after(self) -> float | None:
        return retry_after(self.header(b"retry-after"))

    async def read(self) -> bytes:
        try:
            return await self._conn.body()
        finally:
            self.release()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._conn.chunks():
                yield chunk
        finally:
            self.release()

    def release(self) -> None:
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is not None:
            self._pool.put_back(conn)

    async def aclose(self) -> None:
        """Let the connection go without reading on (the pool keeps it only if it is complete)."""
        self.release()


class Pool:
    """Keep-alive connections to one engine, at most `max_connections` at once.

    HTTPS takes `ssl_context` (gateway/tls.py builds the one every engine call shares); with
    `proxy` the connection is a CONNECT tunnel through it, as curl makes for HTTPS.
    """

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 256,
        connect_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | None = None,
        engine_id: str = "",
    ):
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.engine_id = engine_id or self.host
        self._url = base_url
        self._ssl = (
            (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        )
        self._proxy = urlsplit(proxy) if proxy else None
        self._host_header = f"{self.host}:{self.port}".encode()
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    def prepare(self, path: str, headers: dict[str, str]) -> bytes:
        """The fixed part of a POST to `path`: request line and headers up to content-length."""
        lines = [f"POST {self.base_path}{path} HTTP/1.1".encode(), b"host: " + self._host_header]
        lines += [f"{k}: {v}".encode("latin-1") for k, v in headers.items()]
        return b"\r\n".join(lines) + b"\r\ncontent-length: "

    async def post(self, head: bytes, body: bytes, *, timeout: float) -> Response:
        payload = b"%s%d\r\n\r\n%s" % (head, len(body), body)
        conn, reused = await self._acquire()
        try:
            await conn.request(payload, timeout)
        except EngineConnectionError:
            self._discard(conn)
            if not (reused and not conn.answered):
                raise
            # A kept-alive connection the engine had already closed: one fresh try.
            conn, _ = await self._acquire(fresh=True)
            try:
                await conn.request(payload, timeout)
            except BaseException:
                self._discard(conn)
                raise
        except BaseException:
            self._discard(conn)
            raise
        return Response(self, conn)

    async def _acquire(self, *, fresh: bool = False) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle and not fresh:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_EXPIRY_S:
                return conn, True
            self._discard(conn)
        while self._open >= self.max_connections:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
            if self._idle and not fresh:
                return await self._acquire()
        self._open += 1
        try:
            conn = await self._connect()
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise
        return conn, False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            if self._proxy is not None:
                return await asyncio.wait_for(self._tunnel(), self.connect_timeout)
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            if tls.report(self.engine_id, self._url, exc):
                raise EngineConnectionError(
                    f"TLS certificate of {self.host} not trusted "
                    f"({getattr(exc, 'verify_message', '') or exc})"
                ) from None
            raise EngineConnectionError(
                f"cannot connect to {self.host}:{self.port} ({type(exc).__name__})"
            ) from None
        return conn

    async def _tunnel(self) -> _Connection:
        """A CONNECT tunnel through the proxy to the engine, then TLS inside it."""
        assert self._proxy is not None
        loop = asyncio.get_running_loop()
        target = f"{self.host}:{self.port}"
        transport, opener = await loop.create_connection(
            lambda: _ConnectOpener(loop),
            self._proxy.hostname or "127.0.0.1",
            self._proxy.port or 80,
        )
        transport.write(f"CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n\r\n".encode())
        try:
            status_line = await opener.answered
        except BaseException:
            transport.close()
            raise
        if status_line.split(b" ", 2)[1:2] != [b"200"]:
            transport.close()
            raise OSError(f"the proxy refused CONNECT {target}: {status_line!r}")
        conn = _Connection(self)
        if self._ssl is not None:
            tunnelled = await loop.start_tls(transport, conn, self._ssl, server_hostname=self.host)
            if tunnelled is None:
                raise OSError("TLS inside the proxy tunnel could not start")
            conn.connection_made(tunnelled)
        else:
            transport.set_protocol(conn)
            conn.connection_made(transport)
        return conn

    def put_back(self, conn: _Connection) -> None:
        if conn.reusable and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
            self._wake_one()
        else:
            self._discard(conn)

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()
