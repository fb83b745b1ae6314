"""Load control: runs the monitors in the background and feeds the admission its signals.

It owns the admission (one gate per engine) and the recorder that the gateway is built with.
Nothing here runs on the request path. Background tasks scrape the engines' `/metrics`, read the
GPUs and the host, and every `refresh_interval_s` turn the latest readings and the latency windows
into each engine's `Signal` for its admission gate.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from appliance.config.schema import AGENTS, Config
from appliance.gateway.client import EngineClient
from appliance.gateway.hooks import Admission, NullAdmission
from appliance.lifecycle import Background
from appliance.load.admission import AdmissionController, guardrail_slots, objective_s
from appliance.load.priority import Priority
from appliance.load.recorder import MetricsRecorder
from appliance.load.saturation import engine_signal, latency_term
from appliance.monitor.engine_metrics import EngineMetricsScraper
from appliance.monitor.gpu import GpuMonitor
from appliance.monitor.host import HostMonitor
from appliance.monitor.latency import LatencyWindows, Percentiles
from appliance.monitor.nvml import NvmlBackend, RealNvml
from appliance.monitor.periodic import Periodic

HOST_INTERVAL_S = 5.0
RATE_TAU_S = 5.0
# A median is steady after a few samples; the deadlines use it that early.
SERVICE_MIN_SAMPLES = 5


class RateMeter:
    """The rate of a growing count, smoothed over about `tau_s` seconds."""

    def __init__(self, tau_s: float = RATE_TAU_S) -> None:
        self.tau_s = tau_s
        self.rate = 0.0
        self._count = 0
        self._at: float | None = None

    def update(self, count: int, now: float) -> float:
        if self._at is None:
            self._count, self._at = count, now
            return self.rate
        elapsed = now - self._at
        if elapsed <= 0:
            return self.rate
        instant = (count - self._count) / elapsed
        self.rate += (instant - self.rate) * (1 - math.exp(-elapsed / self.tau_s))
        self._count, self._at = count, now
        return self.rate


class LoadControl(Background):
    def __init__(
        self,
        config: Config,
        clients: dict[str, EngineClient],
        *,
        nvml: Callable[[], NvmlBackend] = RealNvml,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings = config.admission
        self.config = config
        self.clock = clock
        self.latency = LatencyWindows(settings.latency_window_s, clock=clock)
        self.recorder = MetricsRecorder(self.latency, light=self._lightly_loaded)
        self.scraper = EngineMetricsScraper(clients, clock=clock)
        self.gpu = GpuMonitor(nvml)
        self.host = HostMonitor()
        self.admission: AdmissionController | None = (
            AdmissionController(config, list(clients)) if settings.enabled else None
        )
        self._engines = {engine.id: engine for engine in config.engines}
        self._gates_of_model: dict[str, list[Any]] = {}
        if self.admission is not None:
            for engine in config.engines:
                if engine.id in self.admission.gates:
                    for name in engine.names:
                        gates = self._gates_of_model.setdefault(name, [])
                        gates.append(self.admission.gates[engine.id])
        self._series = self._latency_series()
        self._guardrail_rates: dict[str, RateMeter] = {}
        self._tasks = [
            Periodic("engine-metrics", settings.scrape_interval_s, self.scraper.scrape_all),
            Periodic("load-refresh", settings.refresh_interval_s, self._refresh_tick),
            Periodic("gpu-monitor", settings.gpu_interval_s, self._gpu_tick),
            Periodic("host-monitor", HOST_INTERVAL_S, self._host_tick),
        ]

    @property
    def gateway_admission(self) -> Admission:
        """What the gateway asks before each engine call: the gates, or admit-all when off."""
        return self.admission if self.admission is not None else NullAdmission()

    async def start(self) -> None:
        for task in self._tasks:
            await task.start()

    async def stop(self) -> None:
        for task in self._tasks:
            await task.stop()
        await asyncio.to_thread(self.gpu.close)

    # -- the refresh -------------------------------------------------------------------------------

    def _latency_series(self) -> dict[str, list[tuple[str, str, float]]]:
        """Per engine: (agent, model, objective) for every agent whose chain reaches it."""
        series: dict[str, list[tuple[str, str, float]]] = {e.id: [] for e in self.config.engines}
        for agent in AGENTS:
            settings = self.config.agents[agent]
            for model in (settings.model, *settings.fallbacks):
                for engine in self.config.engines_for(model):
                    if engine.id in series:
                        series[engine.id].append(
                            (agent, model, objective_s(self.config, agent, engine))
                        )
        return series

    def _lightly_loaded(self, model: str) -> bool:
        """At most a quarter of the slots of each of its engines busy (or one): load does not
        slow it."""
        gates = self._gates_of_model.get(model, [])
        return bool(gates) and all(g.in_flight <= max(1, g.capacity // 4) for g in gates)

    def refresh(self) -> None:
        """Recompute every engine's signal and its classes' deadlines from the latest readings."""
        if self.admission is None:
            return
        settings = self.config.admission
        now = self.clock()
        for engine_id in self.admission.gates:
            windows: list[tuple[Percentiles | None, Percentiles | None, float]] = []
            service: list[float | None] = [None] * len(Priority)
            for agent, model, objective in self._series.get(engine_id, []):
                recent = self.latency.e2e(agent, model)
                windows.append((recent, self.latency.baseline(agent, model), objective))
                if recent is not None and recent.count >= SERVICE_MIN_SAMPLES:
                    cls = Priority.for_agent(agent)
                    service[cls] = max(service[cls] or 0.0, recent.p50)
            signal = engine_signal(
                self.scraper.loads[engine_id],
                now=now,
                max_age_s=settings.metrics_max_age_s,
                max_num_seqs=self._engines[engine_id].max_num_seqs,
                latency=latency_term(windows, min_samples=settings.latency_min_samples),
            )
            self.admission.update(engine_id, signal, service)
            self._size_reserve(engine_id, now, service[Priority.GUARDRAIL])

    def _size_reserve(self, engine_id: str, now: float, service_s: float | None) -> None:
        """Grow the guardrail's reserve with its traffic (never below the configured share)."""
        assert self.admission is not None
        gate = self.admission.gates[engine_id]
        if not gate.settings.reserve:
            return
        meter = self._guardrail_rates.setdefault(engine_id, RateMeter())
        rate = meter.update(gate.arrivals[Priority.GUARDRAIL], now)
        if service_s is not None:
            gate.set_reserve(guardrail_slots(rate, service_s))

    async def _refresh_tick(self) -> None:
        self.refresh()

    async def _gpu_tick(self) -> None:
        await asyncio.to_thread(self.gpu.poll)

    async def _host_tick(self) -> None:
        self.host.poll()

    # -- views -------------------------------------------------------------------------------------

    def live_in_flight(self) -> int:
        """Non-benchmark requests in the engines now (0 with admission control off: uncounted)."""
        return self.admission.live_in_flight() if self.admission is not None else 0

    def load_section(self) -> dict[str, Any]:
        """`/health/detailed`'s "load": admission per engine and the engines' own metrics."""
        now = self.clock()
        settings = self.config.admission
        engines = {
            engine_id: load.as_dict(now) | {"fresh": load.fresh(now, settings.metrics_max_age_s)}
            for engine_id, load in self.scraper.loads.items()
        }
        return {
            "admission": "on" if self.admission is not None else "off",
            "unknown_metrics": settings.unknown_metrics,
            "engine_metrics": engines,
            "gates": self.admission.snapshot() if self.admission is not None else {},
        }

    def detailed(self) -> dict[str, Any]:
        """`/health/detailed`'s load, latency, GPU and host sections (and `/admin/load`)."""
        return {
            "load": self.load_section(),
            "latency": self.latency.report(),
            "gpus": self.gpu.snapshot(),
            "host": self.host.snapshot(),
        }
