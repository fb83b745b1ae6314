"""The last hour of what the operations page draws: per-agent P95 samples and counter snapshots.

A background task takes one sample every `server.history_interval_s` (30 s by default) into a
bounded deque, so the history costs a few kilobytes and nothing on the request path. Each sample
holds every agent's P95 over the latency window and the cumulative counters the page turns into
rates (fallbacks, sheds, tokens/s) by comparing now with a sample about a minute old.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.config.schema import AGENTS, Config
from appliance.load.priority import Priority
from appliance.load.recorder import MetricsRecorder
from appliance.monitor.latency import LatencyWindows

HORIZON_S = 3600.0
RATE_WINDOW_S = 60.0  # rates on the page compare now with a sample at least this old


@dataclass(frozen=True, slots=True)
class Counts:
    """Cumulative counters at one moment; rates are differences between two of these."""

    requests: dict[str, int] = field(default_factory=dict)  # per agent, every outcome
    served: dict[str, int] = field(default_factory=dict)  # per agent, answered ("ok")
    fallbacks: dict[str, int] = field(default_factory=dict)  # per agent, by a fallback model
    tokens: dict[str, int] = field(default_factory=dict)  # per agent
    token_seconds: dict[str, float] = field(default_factory=dict)  # per agent
    admitted: dict[str, int] = field(default_factory=dict)  # per class
    rerouted: dict[str, int] = field(default_factory=dict)  # per class
    shed: dict[str, int] = field(default_factory=dict)  # per class


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # wall-clock seconds
    p95_s: dict[str, float | None]
    counts: Counts


class CountSource:
    """Reads the cumulative counters from the recorder and the admission gates."""

    def __init__(self, config: Config, recorder: MetricsRecorder, gates: Callable[[], Any]) -> None:
        self.primary = {agent: config.agents[agent].model for agent in AGENTS}
        self.recorder = recorder
        self.gates = gates

    def read(self) -> Counts:
        counts = Counts()
        for (agent, model, outcome), n in list(self.recorder.requests.items()):
            _add(counts.requests, agent, n)
            if outcome == "ok":
                _add(counts.served, agent, n)
                if agent in self.primary and model != self.primary[agent]:
                    _add(counts.fallbacks, agent, n)
        for (agent, _), n in list(self.recorder.tokens.items()):
            _add(counts.tokens, agent, n)
        for (agent, _), s in list(self.recorder.token_seconds.items()):
            _add(counts.token_seconds, agent, s)
        for gate in self.gates():
            for p in Priority:
                _add(counts.admitted, p.name.lower(), gate.admitted[p])
            for (cls, _), n in list(gate.rerouted.items()):
                _add(counts.rerouted, Priority(cls).name.lower(), n)
            for (cls, _), n in list(gate.shed.items()):
                _add(counts.shed, Priority(cls).name.lower(), n)
        return counts


class History:
    def __init__(
        self,
        latency: LatencyWindows,
        counts: CountSource,
        *,
        interval_s: float = 30.0,
        horizon_s: float = HORIZON_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.latency = latency
        self.counts = counts
        self.interval_s = interval_s
        self.horizon_s = horizon_s
        self.clock = clock
        self.samples: deque[Sample] = deque(maxlen=math.ceil(horizon_s / interval_s) + 1)

    def sample(self) -> Sample:
        """Take one sample now and keep it."""
        p95: dict[str, float | None] = {}
        for agent in AGENTS:
            window = self.latency.agent_e2e(agent)
            p95[agent] = round(window.p95, 4) if window is not None else None
        taken = Sample(self.clock(), p95, self.counts.read())
        self.samples.append(taken)
        return taken

    def series(self) -> dict[str, list[tuple[float, float | None]]]:
        """Per agent: (time, P95) of every kept sample inside the horizon, oldest first."""
        cutoff = self.clock() - self.horizon_s
        kept = [s for s in self.samples if s.at >= cutoff]
        return {agent: [(s.at, s.p95_s.get(agent)) for s in kept] for agent in AGENTS}

    def rates(self) -> tuple[Counts, Counts, float]:
        """(now, then, seconds between): `then` is the newest sample at least a minute old, or
        the oldest one kept; with no sample yet, `then` is all zeros."""
        now_at, now = self.clock(), self.counts.read()
        then: Sample | None = None
        for s in self.samples:
            if now_at - s.at >= RATE_WINDOW_S or then is None:
                then = s
        if then is None:
            return now, Counts(), 0.0
        return now, then.counts, max(now_at - then.at, 0.0)


def _add(into: dict[str, Any], key: str, value: float) -> None:
    into[key] = into.get(key, 0) + value


def delta(now: dict[str, Any], then: dict[str, Any], key: str) -> float:
    return float(now.get(key, 0) - then.get(key, 0))


def share(part: float, whole: float) -> float | None:
    """part / whole, or None when nothing happened (a rate of nothing is not 0 %)."""
    return round(part / whole, 4) if whole > 0 else None
