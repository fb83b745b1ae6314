"""Periodic round trips to each engine: the guide's `llm.latency_ms` and `models_available`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from appliance.gateway.client import EngineClient
from appliance.lifecycle import Background

log = logging.getLogger("appliance.liveness")


@dataclass(frozen=True, slots=True)
class Liveness:
    ok: bool
    latency_ms: float | None
    checked_at: float  # monotonic
    error: str | None = None


UNKNOWN = Liveness(ok=False, latency_ms=None, checked_at=0.0, error="not checked yet")
# Probe failures that say "down" for certain: nothing listens. A slow answer (a timeout on a
# loaded engine) does not count: that engine may well be serving.
_DOWN_ERRORS = frozenset({"ConnectError"})


class LivenessProber(Background):
    def __init__(self, clients: dict[str, EngineClient], *, interval_s: float = 5.0) -> None:
        self._clients = clients
        self.interval_s = interval_s
        self.results: dict[str, Liveness] = {engine: UNKNOWN for engine in clients}
        self._task: asyncio.Task[None] | None = None

    async def probe(self, engine_id: str) -> Liveness:
        client = self._clients[engine_id]
        # Launched engines answer vLLM's /health; external servers may lack it, so ask /v1/models.
        path = "/health" if client.endpoint.launched else "/v1/models"
        started = time.perf_counter()
        try:
            response = await client.get(path, timeout=min(5.0, self.interval_s))
            ok, error = response.status_code == 200, None
            if not ok:
                error = f"HTTP {response.status_code}"
        except Exception as exc:
            ok, error = False, type(exc).__name__
        result = Liveness(
            ok, round((time.perf_counter() - started) * 1000, 2), time.monotonic(), error
        )
        self.results[engine_id] = result
        return result

    def saw_healthy(self, engine_id: str) -> None:
        """The supervisor's own health check passed (a restart finished): a refused probe from
        before it no longer says the engine is down."""
        if engine_id in self.results:
            self.results[engine_id] = Liveness(True, None, time.monotonic(), None)

    def known_down(self, engine_id: str) -> str | None:
        """Why the engine is down, when its last probe was refused; else None."""
        result = self.results.get(engine_id)
        if result is None or result.checked_at == 0.0 or result.error not in _DOWN_ERRORS:
            return None
        return f"engine down (health probe: {result.error})"

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(engine) for engine in self._clients))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="liveness-prober")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await self.probe_all()
            await asyncio.sleep(self.interval_s)
