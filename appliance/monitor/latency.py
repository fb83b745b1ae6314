"""Sliding latency windows: P50/P95/P99 of time to first token and end-to-end, per agent and model.

Adding a sample is an append to a bounded deque (the request path pays nothing more); percentiles
are computed when asked, by the background monitor and by `/health/detailed`. A window keeps the
samples of the last `horizon_s` seconds, and at most `max_samples` of them. Percentiles interpolate
linearly between closest ranks, as `appliance.bench.stats` and numpy do, so the figures compare.

Beside each end-to-end window, a baseline keeps the latest samples taken while the engine was
lightly loaded, however old: what the engine does for this agent when load is not the problem.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from appliance.quantiles import quantile_sorted

NO_AGENT = "-"  # requests for a served model name or `default`, not an agent


@dataclass(frozen=True, slots=True)
class Percentiles:
    count: int
    p50: float
    p95: float
    p99: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "p50_s": round(self.p50, 4),
            "p95_s": round(self.p95, 4),
            "p99_s": round(self.p99, 4),
        }


def summarize(values: Sequence[float]) -> Percentiles | None:
    if not values:
        return None
    ordered = sorted(values)
    return Percentiles(
        len(ordered),
        quantile_sorted(ordered, 0.50),
        quantile_sorted(ordered, 0.95),
        quantile_sorted(ordered, 0.99),
    )


class Window:
    """Samples of one series over the last `horizon_s` seconds."""

    __slots__ = ("_samples", "horizon_s")

    def __init__(self, horizon_s: float, max_samples: int = 2048) -> None:
        self.horizon_s = horizon_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def add(self, now: float, value: float) -> None:
        self._samples.append((now, value))

    def values(self, now: float) -> list[float]:
        """The samples still inside the horizon (older ones are dropped on the way)."""
        cutoff = now - self.horizon_s
        samples = self._samples
        while samples and samples[0][0] < cutoff:
            samples.popleft()
        return [value for _, value in samples]

    def summary(self, now: float) -> Percentiles | None:
        return summarize(self.values(now))


class LatencyWindows:
    """One TTFT window, one end-to-end window and one end-to-end baseline per (agent, model)."""

    def __init__(
        self,
        horizon_s: float = 60.0,
        *,
        max_samples: int = 2048,
        baseline_samples: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.horizon_s = horizon_s
        self.max_samples = max_samples
        self.baseline_samples = baseline_samples
        self.clock = clock
        self._e2e: dict[tuple[str, str], Window] = {}
        self._ttft: dict[tuple[str, str], Window] = {}
        self._baseline: dict[tuple[str, str], Window] = {}

    def add(
        self,
        agent: str | None,
        model: str,
        e2e_s: float,
        ttft_s: float | None,
        *,
        light: bool = False,
    ) -> None:
        """One served request; `light`: the engine was lightly loaded when it finished."""
        key = (agent or NO_AGENT, model)
        now = self.clock()
        window = self._e2e.get(key)
        if window is None:
            window = self._e2e[key] = Window(self.horizon_s, self.max_samples)
            self._ttft[key] = Window(self.horizon_s, self.max_samples)
            self._baseline[key] = Window(math.inf, self.baseline_samples)
        window.add(now, e2e_s)
        if ttft_s is not None:
            self._ttft[key].add(now, ttft_s)
        if light:
            self._baseline[key].add(now, e2e_s)

    def baseline(self, agent: str | None, model: str) -> Percentiles | None:
        window = self._baseline.get((agent or NO_AGENT, model))
        return window.summary(self.clock()) if window is not None else None

    def e2e(self, agent: str | None, model: str) -> Percentiles | None:
        window = self._e2e.get((agent or NO_AGENT, model))
        return window.summary(self.clock()) if window is not None else None

    def ttft(self, agent: str | None, model: str) -> Percentiles | None:
        window = self._ttft.get((agent or NO_AGENT, model))
        return window.summary(self.clock()) if window is not None else None

    def agent_e2e(self, agent: str) -> Percentiles | None:
        """End-to-end percentiles of one agent over every model that served it."""
        now = self.clock()
        values = [
            value
            for (name, _), window in self._e2e.items()
            if name == agent
            for value in window.values(now)
        ]
        return summarize(values)

    def report(self) -> dict[str, dict[str, dict[str, object]]]:
        """{agent: {model: {"e2e": {...}, "ttft": {...}}}} for the series with recent samples."""
        now = self.clock()
        out: dict[str, dict[str, dict[str, object]]] = {}
        for (agent, model), window in self._e2e.items():
            e2e = window.summary(now)
            if e2e is None:
                continue
            ttft = self._ttft[(agent, model)].summary(now)
            out.setdefault(agent, {})[model] = {
                "e2e": e2e.as_dict(),
                "ttft": ttft.as_dict() if ttft is not None else None,
            }
        return out
