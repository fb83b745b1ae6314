"""A lean HTTP/1.1 load generator for the benchmarks: raw asyncio streams, keep-alive.

On a 2-core machine the client competes with the server for CPU; a full-featured client would be
the bottleneck and hide the difference being measured, so this one does the bare minimum: send a
prepared request, read headers, then a content-length body or a chunked body.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from appliance.quantiles import percentile

__all__ = ["Result", "build_request", "percentile", "run_load"]


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # seconds
    ttfb: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


def build_request(host: str, port: int, path: str, body: bytes, api_key: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {api_key}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, float]:
    """Read one response; returns (status, time of the first body byte)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length, chunked = None, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    first = time.perf_counter()
    if length is not None:
        await reader.readexactly(length)
    elif chunked:
        first_seen = False
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if not first_seen:
                first, first_seen = time.perf_counter(), True
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, first


async def run_load(
    host: str,
    port: int,
    request: bytes,
    *,
    concurrency: int,
    total: int,
) -> Result:
    """`total` requests over `concurrency` keep-alive connections, each one request at a time."""
    result = Result()
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                writer.write(request)
                try:
                    status, first = await _read_response(reader)
                except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                    result.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                done = time.perf_counter()
                if status != 200:
                    result.errors += 1
                    continue
                result.latencies.append(done - started)
                result.ttfb.append(first - started)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result
