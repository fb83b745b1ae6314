"""Everything the API needs at run time, built from the config and owned by the app's lifespan.

Start order: engines are launched in the background (the HTTP server answers `/health` with
"starting" meanwhile), the liveness prober runs, and systemd hears READY once every launched engine
is healthy. Stop order is the reverse; no engine process outlives `stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from appliance.agents.orchestrator import Orchestrator
from appliance.config.schema import Config
from appliance.engines.base import Endpoint, LaunchSpec
from appliance.gateway.gateway import Gateway
from appliance.gateway.liveness import LivenessProber
from appliance.monitor.load import LoadMonitor
from appliance.notify import Notifier

log = logging.getLogger("appliance.services")


class Services:
    def __init__(
        self,
        config: Config,
        endpoints: list[Endpoint],
        *,
        supervisor: Any | None = None,
        notifier: Notifier | None = None,
        liveness_interval_s: float = 5.0,
    ) -> None:
        self.config = config
        self.endpoints = endpoints
        self.supervisor = supervisor
        self.notifier = notifier or Notifier()
        self.gateway = Gateway(config, endpoints)
        self.liveness = LivenessProber(self.gateway.clients, interval_s=liveness_interval_s)
        self.gateway.known_down = self.liveness.known_down
        # The four agents over the gateway; refuses a locale without crisis resources.
        self.agents = Orchestrator(config, self.gateway)
        self.started_at = time.time()
        self.ready = asyncio.Event()
        # Set on SIGTERM: /health/ready answers 503 while requests are still served.
        self.draining = False
        self.engines_started = asyncio.Event()
        # Extra sections for /health/detailed, added by the concerns that own them.
        self.health_sections: dict[
            str, Callable[[], Awaitable[dict[str, Any]] | dict[str, Any]]
        ] = {}
        # Extra Prometheus metric families for /metrics, added by the concerns that own them.
        self.metric_sources: list[Callable[[], Iterable[Any]]] = []
        # Background services (benchmarks, monitors) started after the engines and stopped first.
        self.on_start: list[Callable[[], Awaitable[None]]] = []
        self.on_stop: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self.health_sections["agents"] = self.agents.snapshot
        # Monitors, admission and the request recorder, installed on the gateway.
        self.load = LoadMonitor(config, self.gateway)
        self.load.install(self)

    @classmethod
    def from_config(cls, config: Config, *, notifier: Notifier | None = None) -> Services:
        """Build real engines, supervisor and gateway; refuse an infeasible GPU plan."""
        from appliance.engines.registry import build_engines, new_internal_api_key

        plan = None
        if any(engine.kind == "vllm" for engine in config.engines):
            from appliance.placement import check_plan

            plan = check_plan(config)
        endpoints, specs = build_engines(config, new_internal_api_key(), plan)
        return cls(
            config,
            endpoints,
            supervisor=_supervisor(
                specs, config.server.shutdown_grace_s, Path(config.server.data_dir) / "engines"
            ),
            notifier=notifier,
        )

    async def start(self) -> None:
        self.liveness.start()
        self._tasks.append(asyncio.create_task(self._start_engines(), name="engines-start"))
        if self.notifier.watchdog_interval is not None:
            self._tasks.append(asyncio.create_task(self.notifier.watchdog_loop(), name="watchdog"))

    async def _start_engines(self) -> None:
        if self.supervisor is not None:
            self.supervisor.on_change(self._engine_changed)
            await self.supervisor.start()
        await self.liveness.probe_all()
        self.engines_started.set()
        for start in self.on_start:
            try:
                await start()
            except Exception as exc:  # said once, loudly; the appliance still serves and is READY
                log.error(
                    "a background service did not start (%s): %s",
                    getattr(start, "__qualname__", start),
                    getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}",
                )
        if self.supervisor is None or self.supervisor.all_running():
            self.ready.set()
            self.notifier.ready(f"serving {len(self.endpoints)} engine(s)")
            log.info(
                "appliance ready: profile %s, %d engine(s)",
                self.config.profile,
                len(self.endpoints),
            )
        else:
            self.notifier.status("some engines failed to start; serving with fallbacks")
            log.error("appliance started, but not every engine is running: see /health/detailed")
            self.ready.set()
            self.notifier.ready("degraded: not every engine is running")

    def _engine_changed(self, status: Any) -> None:
        self.notifier.status(f"engine {status.engine_id}: {status.state}")
        if str(status.state) == "RUNNING" and status.healthy:
            self.liveness.saw_healthy(status.engine_id)
            breaker = self.gateway.breakers.get(status.engine_id)
            if breaker is not None:
                breaker.reset()

    async def stop_background(self) -> None:
        """Stop the background services (benchmarks first) while the listener and the engines
        still serve: a benchmark cut short is stored `interrupted`, not `completed` with the
        requests that the closing listener refused. Runs once; `stop()` calls it too."""
        stops, self.on_stop = list(self.on_stop), []
        for stop in reversed(stops):
            with contextlib.suppress(Exception):
                await stop()

    async def stop(self) -> None:
        self.notifier.stopping("stopping engines")
        await self.stop_background()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.liveness.stop()
        if self.supervisor is not None:
            await self.supervisor.stop()
        await self.gateway.aclose()


def _supervisor(specs: list[LaunchSpec], grace_s: float, run_dir: Path) -> Any | None:
    if not specs:
        return None
    from appliance.engines.health import HttpHealthProbe
    from appliance.engines.process import SubprocessSpawner
    from appliance.engines.supervisor import RestartPolicy, Supervisor

    return Supervisor(
        specs,
        spawner=SubprocessSpawner(run_dir),
        probe=HttpHealthProbe(),
        policy=RestartPolicy(stop_grace_s=grace_s),
    )
