"""The composition root: the object graph is built here, once, and nowhere else.

`build(config)` plans the GPUs, makes the engines' launch specs, assembles the core over them
(`appliance.core`: clients, prober, load control, gateway, agents) and wires the features on it
(benchmarks, operations page, agent-check, metrics), each part through its constructor.

`Wiring` holds the core, the features and the order their background parts run in. `Lifecycle`
runs them (see `appliance.lifecycle`): engines start in the background while `/health` answers
"starting", then the background parts are entered in order and systemd hears READY; on the way
down they are exited in reverse (benchmarks first, while the listener still serves), then the
prober, the engines and the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from prometheus_client import CollectorRegistry

from appliance.bench.service import BenchService, db_path
from appliance.config.schema import Config
from appliance.core import Appliance, assemble
from appliance.engines.base import LaunchSpec
from appliance.engines.states import EngineStatus
from appliance.engines.supervisor import Supervisor
from appliance.lifecycle import Background
from appliance.loadbalancer.agent_check import AgentCheckServer
from appliance.notify import Notifier
from appliance.ui.page import OpsPage

log = logging.getLogger("appliance.root")


@dataclass(frozen=True, slots=True)
class Wiring:
    """The core plus the features built on it, and what runs in the background, in order."""

    appliance: Appliance
    ops: OpsPage
    registry: CollectorRegistry
    bench: BenchService | None = None
    agent_check: AgentCheckServer | None = None

    @property
    def background(self) -> tuple[Background, ...]:
        """Started in this order once the engines are up; stopped in reverse."""
        parts: list[Background | None] = [
            self.appliance.load,
            self.agent_check,
            self.bench,
            self.ops.sampler,
        ]
        return tuple(part for part in parts if part is not None)


def wire(appliance: Appliance) -> Wiring:
    """The features over a core: benchmarks (when enabled), the operations page, the
    agent-check (when `lb_agent_port` is set) and the Prometheus registry."""
    from appliance.api.metrics import registry_for

    config = appliance.config
    bench = _bench(appliance) if config.bench.enabled else None
    ops = OpsPage(appliance, bench)
    port = config.server.lb_agent_port
    check = AgentCheckServer(appliance, config.server.host, port) if port else None
    registry = registry_for(appliance, sources=(ops.digest.metrics,))
    return Wiring(appliance, ops, registry, bench, check)


def build(config: Config, *, notifier: Notifier | None = None) -> Wiring:
    """Real engines, supervisor and gateway; refuses an infeasible GPU plan."""
    from appliance.engines.registry import build_engines, new_internal_api_key

    plan = None
    if any(engine.kind == "vllm" for engine in config.engines):
        from appliance.placement import check_plan

        plan = check_plan(config)
    endpoints, specs = build_engines(config, new_internal_api_key(), plan)
    run_dir = Path(config.server.data_dir) / "engines"
    supervisor = _supervisor(specs, config.server.shutdown_grace_s, run_dir)
    return wire(assemble(config, endpoints, supervisor=supervisor, notifier=notifier))


def _bench(appliance: Appliance) -> BenchService:
    """Benchmarks go through the appliance's own API, as a client would, and count only live
    (non-benchmark) requests when deciding whether traffic is too high to run."""
    from appliance.api.auth import api_keys

    config = appliance.config
    host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
    keys = api_keys(config)
    return BenchService(
        config,
        db_path(config),
        f"http://{host}:{config.server.port}/v1",
        keys[0] if keys else "",
        appliance.load.live_in_flight,
    )


def _supervisor(specs: list[LaunchSpec], grace_s: float, run_dir: Path) -> Supervisor | None:
    if not specs:
        return None
    from appliance.engines.health import HttpHealthProbe
    from appliance.engines.process import SubprocessSpawner
    from appliance.engines.supervisor import RestartPolicy

    return Supervisor(
        specs,
        spawner=SubprocessSpawner(run_dir),
        probe=HttpHealthProbe(),
        policy=RestartPolicy(stop_grace_s=grace_s),
    )


class Lifecycle:
    """Runs the wired parts: `async with Lifecycle(...)` in the app's lifespan."""

    def __init__(self, appliance: Appliance, background: Iterable[Background]) -> None:
        self.appliance = appliance
        self._parts = tuple(background)
        self._core = AsyncExitStack()
        self._background = AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        app, stack = self.appliance, self._core
        stack.push_async_callback(app.gateway.aclose)
        if app.supervisor is not None:
            stack.push_async_callback(app.supervisor.stop)
        await stack.enter_async_context(app.liveness)
        stack.push_async_callback(self._cancel_tasks)
        stack.push_async_callback(self.stop_background)
        self._tasks.append(asyncio.create_task(self._start_engines(), name="engines-start"))
        if app.notifier.watchdog_interval is not None:
            self._tasks.append(asyncio.create_task(app.notifier.watchdog_loop(), name="watchdog"))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.appliance.notifier.stopping("stopping engines")
        await self._core.aclose()

    async def _start_engines(self) -> None:
        app = self.appliance
        if app.supervisor is not None:
            app.supervisor.on_change(self._engine_changed)
            await app.supervisor.start()
        await app.liveness.probe_all()
        app.engines_started.set()
        for part in self._parts:
            try:
                await self._background.enter_async_context(part)
            except Exception as exc:  # said once, loudly; the appliance still serves and is READY
                log.error(
                    "a background service did not start (%s): %s",
                    type(part).__qualname__,
                    getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}",
                )
        self._say_ready()

    def _say_ready(self) -> None:
        app = self.appliance
        if app.supervisor is None or app.supervisor.all_running():
            app.ready.set()
            app.notifier.ready(f"serving {len(app.endpoints)} engine(s)")
            log.info(
                "appliance ready: profile %s, %d engine(s)", app.config.profile, len(app.endpoints)
            )
            return
        app.notifier.status("some engines failed to start; serving with fallbacks")
        log.error("appliance started, but not every engine is running: see /health/detailed")
        app.ready.set()
        app.notifier.ready("degraded: not every engine is running")

    def _engine_changed(self, status: EngineStatus) -> None:
        app = self.appliance
        app.notifier.status(f"engine {status.engine_id}: {status.state}")
        if str(status.state) == "RUNNING" and status.healthy:
            app.liveness.saw_healthy(status.engine_id)
            breaker = app.gateway.breakers.get(status.engine_id)
            if breaker is not None:
                breaker.reset()

    async def stop_background(self) -> None:
        """Stop the background parts (benchmarks first) while the listener and the engines
        still serve: a benchmark cut short is stored `interrupted`, not `completed` with the
        requests that the closing listener refused. Runs once; leaving the lifecycle calls it
        too."""
        try:
            await self._background.aclose()
        except Exception as exc:  # the others were still stopped; the shutdown goes on
            log.warning("a background service did not stop cleanly: %s", exc)

    async def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
