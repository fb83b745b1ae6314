"""`GET /metrics`: the appliance in Prometheus text format.

One collector reads the live state when scraped (the recorder's counters and histograms, the
admission gates, the scraped engine metrics, the breakers, the supervisor and the GPUs), so serving
requests costs nothing here. Label values are configured names only (agents, served model names,
engine ids, classes, outcome codes), never request content.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from litestar import Response, get
from litestar.di import NamedDependency
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from appliance.config.schema import AGENTS
from appliance.core import Appliance
from appliance.gateway.breaker import BreakerState
from appliance.histogram import Histogram
from appliance.load.priority import Priority

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ApplianceCollector(Collector):
    def __init__(
        self, services: Appliance, sources: Iterable[Callable[[], Iterable[Metric]]] = ()
    ) -> None:
        self.services = services
        # Metric families of the features (the benchmark digest), given by the composition root.
        self.sources = tuple(sources)

    def collect(self) -> Iterator[Metric]:
        yield from self._readiness()
        yield from self._requests()
        yield from self._agents()
        yield from self._admission()
        yield from self._engines()
        yield from self._breakers()
        yield from self._gpus()
        yield from self._host()
        for source in self.sources:
            yield from source()

    def _readiness(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily(
            "appliance_ready", "1 when the appliance takes traffic (what /health/ready says)."
        )
        ready.add_metric([], 1 if self.services.ready.is_set() else 0)
        yield ready

    def _agents(self) -> Iterator[Metric]:
        """Each agent's live P95 beside the service guide's expected band, and crisis replies."""
        config, latency = self.services.config, self.services.load.latency
        live = GaugeMetricFamily(
            "appliance_agent_latency_p95_seconds",
            "End-to-end P95 over the latency window, per agent (absent without traffic).",
            labels=["agent"],
        )
        low = GaugeMetricFamily(
            "appliance_agent_expected_p95_low_seconds",
            "Lower bound of the agent's expected P95 band.",
            labels=["agent"],
        )
        high = GaugeMetricFamily(
            "appliance_agent_expected_p95_high_seconds",
            "Upper bound of the agent's expected P95 band: above it the agent is too slow.",
            labels=["agent"],
        )
        for agent in AGENTS:
            band = config.agents[agent].expected.p95_s
            low.add_metric([agent], band[0])
            high.add_metric([agent], band[1])
            window = latency.agent_e2e(agent)
            if window is not None:
                live.add_metric([agent], window.p95)
        tokens = CounterMetricFamily(
            "appliance_completion_tokens",
            "Completion tokens engines reported, by agent and model.",
            labels=["agent", "model"],
        )
        recorder = self.services.load.recorder
        for (agent, model), count in sorted(recorder.tokens.items()):
            tokens.add_metric([agent, model], count)
        crisis = CounterMetricFamily(
            "appliance_crisis_replies",
            "Crisis-protocol replies given, by what found the crisis (counts only).",
            labels=["source"],
        )
        for source, count in sorted(self.services.agents.crisis_replies.items()):
            crisis.add_metric([source], count)
        yield from (live, low, high, tokens, crisis)

    def _requests(self) -> Iterator[Metric]:
        recorder = self.services.load.recorder
        requests = CounterMetricFamily(
            "appliance_requests",
            "Requests the gateway answered, by agent, model and outcome.",
            labels=["agent", "model", "outcome"],
        )
        for (agent, model, outcome), count in sorted(recorder.requests.items()):
            requests.add_metric([agent, model, outcome], count)
        yield requests
        for name, doc, series in (
            ("appliance_request_duration_seconds", "End-to-end time in the engine.", recorder.e2e),
            ("appliance_time_to_first_token_seconds", "Time to the first streamed chunk.",
             recorder.ttft),
        ):  # fmt: skip
            family = HistogramMetricFamily(name, doc, labels=["agent", "model"])
            for (agent, model), histogram in sorted(series.items()):
                if histogram.count:
                    family.add_metric([agent, model], *_buckets(histogram))
            yield family
        failures = CounterMetricFamily(
            "appliance_engine_failures",
            "Engine calls that failed after their retries, by error type.",
            labels=["engine", "reason"],
        )
        for (engine, reason), count in sorted(recorder.engine_failures.items()):
            failures.add_metric([engine, reason], count)
        yield failures

    def _admission(self) -> Iterator[Metric]:
        admission = self.services.load.admission
        enabled = GaugeMetricFamily(
            "appliance_admission_enabled", "1 when admission control is on."
        )
        enabled.add_metric([], 1 if admission is not None else 0)
        yield enabled
        if admission is None:
            return
        labels = ["engine", "class"]
        capacity = GaugeMetricFamily(
            "appliance_admission_capacity",
            "Concurrent requests the engine takes.",
            labels=["engine"],
        )
        in_flight = GaugeMetricFamily(
            "appliance_admission_in_flight", "Requests in the engine now.", labels=["engine"]
        )
        queue = GaugeMetricFamily(
            "appliance_admission_queue_depth", "Requests waiting for a slot.", labels=labels
        )
        score = GaugeMetricFamily(
            "appliance_engine_saturation", "Saturation score per class (1 = full).", labels=labels
        )
        admitted = CounterMetricFamily(
            "appliance_admitted", "Requests given a slot.", labels=labels
        )
        rerouted = CounterMetricFamily(
            "appliance_rerouted",
            "Requests sent on to the next model of their chain.",
            labels=[*labels, "reason"],
        )
        shed = CounterMetricFamily(
            "appliance_shed",
            "Requests refused with 503 and Retry-After.",
            labels=[*labels, "reason"],
        )
        for engine, gate in admission.gates.items():
            capacity.add_metric([engine], gate.capacity)
            in_flight.add_metric([engine], gate.in_flight)
            for p in Priority:
                name = p.name.lower()
                queue.add_metric([engine, name], gate.waiting_by_class[p])
                score.add_metric([engine, name], gate.score(p))
                admitted.add_metric([engine, name], gate.admitted[p])
            for (cls, reason), count in sorted(gate.rerouted.items()):
                rerouted.add_metric([engine, Priority(cls).name.lower(), reason], count)
            for (cls, reason), count in sorted(gate.shed.items()):
                shed.add_metric([engine, Priority(cls).name.lower(), reason], count)
        yield from (capacity, in_flight, queue, score, admitted, rerouted, shed)

    def _engines(self) -> Iterator[Metric]:
        monitor = self.services.load
        now = monitor.clock()
        running = GaugeMetricFamily(
            "appliance_engine_requests_running", "The engine's running requests.", labels=["engine"]
        )
        waiting = GaugeMetricFamily(
            "appliance_engine_requests_waiting", "The engine's own queue.", labels=["engine"]
        )
        kv = GaugeMetricFamily(
            "appliance_engine_kv_cache_usage",
            "The engine's KV-cache use (0..1).",
            labels=["engine"],
        )
        age = GaugeMetricFamily(
            "appliance_engine_metrics_age_seconds",
            "Age of the last good scrape of the engine's /metrics.",
            labels=["engine"],
        )
        balancer = self.services.gateway.balancer
        served = CounterMetricFamily(
            "appliance_engine_requests",
            "Requests each engine (each replica of a model) answered.",
            labels=["engine", "model"],
        )
        replica_in_flight = GaugeMetricFamily(
            "appliance_engine_in_flight",
            "Requests the gateway has in the engine now (what spreads load over replicas).",
            labels=["engine", "model"],
        )
        for endpoint in self.services.endpoints:
            labels = [endpoint.engine_id, endpoint.names[0]]
            served.add_metric(labels, balancer.served[endpoint.engine_id])
            replica_in_flight.add_metric(labels, balancer.in_flight[endpoint.engine_id])
        yield from (served, replica_in_flight)
        for engine, load in monitor.scraper.loads.items():
            if load.running is not None:
                running.add_metric([engine], load.running)
                waiting.add_metric([engine], load.waiting or 0.0)
            if load.kv_usage is not None:
                kv.add_metric([engine], load.kv_usage)
            if load.scraped_at:
                age.add_metric([engine], now - load.scraped_at)
        yield from (running, waiting, kv, age)
        supervisor = self.services.supervisor
        if supervisor is None:
            return
        restarts = CounterMetricFamily(
            "appliance_engine_restarts",
            "Engine processes started after the first.",
            labels=["engine"],
        )
        up = GaugeMetricFamily(
            "appliance_engine_up",
            "1 when the engine process is RUNNING and healthy.",
            labels=["engine"],
        )
        for engine, status in supervisor.status().items():
            restarts.add_metric([engine], status.restarts)
            up.add_metric([engine], 1 if str(status.state) == "RUNNING" and status.healthy else 0)
        yield from (restarts, up)

    def _breakers(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "appliance_circuit_breaker_state",
            "1 for the breaker's current state.",
            labels=["engine", "state"],
        )
        failures = GaugeMetricFamily(
            "appliance_circuit_breaker_failures", "Consecutive failures.", labels=["engine"]
        )
        opened = CounterMetricFamily(
            "appliance_circuit_breaker_opened", "Times the breaker opened.", labels=["engine"]
        )
        for engine, breaker in self.services.gateway.breakers.items():
            current = breaker.state
            for candidate in BreakerState:
                state.add_metric([engine, str(candidate)], 1 if candidate is current else 0)
            failures.add_metric([engine], breaker.failures)
            opened.add_metric([engine], breaker.times_opened)
        yield from (state, failures, opened)

    def _gpus(self) -> Iterator[Metric]:
        gpu = self.services.load.gpu
        up = GaugeMetricFamily("appliance_gpu_monitor_up", "1 when NVML answers.")
        up.add_metric([], 1 if gpu.available else 0)
        yield up
        labels = ["gpu", "name"]
        used = GaugeMetricFamily(
            "appliance_gpu_memory_used_bytes", "GPU memory used.", labels=labels
        )
        total = GaugeMetricFamily("appliance_gpu_memory_total_bytes", "GPU memory.", labels=labels)
        util = GaugeMetricFamily(
            "appliance_gpu_utilization_percent", "Share of time a kernel ran.", labels=labels
        )
        temp = GaugeMetricFamily(
            "appliance_gpu_temperature_celsius", "GPU core temperature.", labels=labels
        )
        for device in gpu.gpus:
            key = [str(device.index), device.name]
            used.add_metric(key, device.memory_used)
            total.add_metric(key, device.memory_total)
            if device.utilization_gpu is not None:
                util.add_metric(key, device.utilization_gpu)
            if device.temperature_c is not None:
                temp.add_metric(key, device.temperature_c)
        yield from (used, total, util, temp)

    def _host(self) -> Iterator[Metric]:
        reading = self.services.load.host.reading
        if reading is None:
            return
        cpu = GaugeMetricFamily("appliance_host_cpu_percent", "Host CPU use.")
        cpu.add_metric([], reading.cpu_percent)
        memory = GaugeMetricFamily(
            "appliance_host_memory_available_bytes", "Host memory available."
        )
        memory.add_metric([], reading.memory_available)
        yield from (cpu, memory)


def _buckets(histogram: Histogram) -> tuple[list[tuple[str, float]], float]:
    return [(le, float(n)) for le, n in histogram.cumulative()], histogram.sum


def registry_for(
    services: Appliance, sources: Iterable[Callable[[], Iterable[Metric]]] = ()
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ApplianceCollector(services, sources))
    return registry


@get("/metrics", summary="Prometheus metrics", tags=["metrics"], include_in_schema=True)
async def metrics(registry: NamedDependency[CollectorRegistry]) -> Response[bytes]:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)
