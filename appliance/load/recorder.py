"""The gateway's `Recorder`: what each finished request adds to the latency windows and `/metrics`.

Plain counters and bucket arrays keyed by (agent, model[, outcome]) rather than prometheus_client
label children: a request costs a few dict look-ups and one bisect, and the `/metrics` route turns
them into Prometheus families when scraped. Keys hold configured names only (agents, served model
names, outcome codes, engine ids and exception type names), never request content.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.histogram import Histogram
from appliance.monitor.latency import NO_AGENT, LatencyWindows

# Seconds; spans a guardrail check on a fast engine to a long analysis on a slow one.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0, 60.0, 120.0,
)  # fmt: skip


class MetricsRecorder:
    def __init__(
        self, latency: LatencyWindows, *, light: Callable[[str], bool] | None = None
    ) -> None:
        self.latency = latency
        # model -> is its engine lightly loaded now? (feeds the latency baselines)
        self.light = light
        self.requests: dict[tuple[str, str, str], int] = {}
        self.e2e: dict[tuple[str, str], Histogram] = {}
        self.ttft: dict[tuple[str, str], Histogram] = {}
        self.engine_failures: dict[tuple[str, str], int] = {}
        # Completion tokens, and the seconds of the requests that reported them (tokens/s).
        self.tokens: dict[tuple[str, str], int] = {}
        self.token_seconds: dict[tuple[str, str], float] = {}

    def request_done(
        self,
        *,
        agent: str | None,
        model: str,
        outcome: str,
        ttft_s: float | None,
        e2e_s: float,
        tokens: int | None = None,
    ) -> None:
        agent = agent or NO_AGENT
        key = (agent, model, outcome)
        self.requests[key] = self.requests.get(key, 0) + 1
        series = (agent, model)
        histogram = self.e2e.get(series)
        if histogram is None:
            histogram = self.e2e[series] = Histogram(LATENCY_BUCKETS)
            self.ttft[series] = Histogram(LATENCY_BUCKETS)
        histogram.observe(e2e_s)
        if ttft_s is not None:
            self.ttft[series].observe(ttft_s)
        if tokens is not None and outcome == "ok":
            self.tokens[series] = self.tokens.get(series, 0) + tokens
            self.token_seconds[series] = self.token_seconds.get(series, 0.0) + e2e_s
        if outcome == "ok":  # the windows judge served requests; failures have their counters
            light = self.light is not None and self.light(model)
            self.latency.add(agent, model, e2e_s, ttft_s, light=light)

    def engine_failure(self, engine_id: str, reason: str) -> None:
        key = (engine_id, reason)
        self.engine_failures[key] = self.engine_failures.get(key, 0) + 1
