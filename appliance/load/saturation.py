"""How saturated an engine is, as one score: 0 idle, 1 full, above 1 over capacity.

The score is the largest of these terms:

- engine:  (running + waiting) / max_num_seqs, from the engine's `/metrics`;
- kv:      the engine's KV-cache use (0..1), from the same scrape;
- latency: for each agent whose chain includes the engine, that agent's recent P95 end-to-end time
           on the engine's model over its objective: the upper P95 of `expected.p95_s` (times the
           simulator's time scale), or the P95 the engine shows for the agent when lightly loaded
           (its baseline) if that is longer. So an objective the answers' length makes unreachable
           even on an idle engine does not mark the engine saturated for ever: the term then
           measures how much load has slowed the engine down. Counted once the window holds
           `latency_min_samples` samples (and the baseline too, to be used);
- own:     the appliance's own in-flight requests on the engine over the slots the request's
           class may use (see `appliance.load.admission`);
- queued:  1 when requests of the same or a higher class already wait for the engine.

Unknown metrics. A scrape older than `metrics_max_age_s` (or none yet, or an engine without
`/metrics`) is unknown: the engine and kv terms drop out, and `unknown_metrics` decides the rest:

- "conservative" (the default): the appliance trusts only its own counters and assumes the engine
  is also half busy with work it cannot see, so the own term becomes 0.5 + 0.5 x own. An idle
  engine scores 0.5; with the default thresholds the fallback takes over at 70 % of the slots
  instead of 85 %, and the lowest classes are shed at 90 % instead of 95 %;
- "admit": the own term stays as it is, as if the engine carried nothing but the appliance's work.

The latency term is the appliance's own measurement, so it counts in both cases.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.monitor.engine_metrics import EngineLoad
from appliance.monitor.latency import Percentiles


@dataclass(frozen=True, slots=True)
class Signal:
    """The background part of an engine's score, refreshed by the monitor."""

    known: bool
    engine: float = 0.0
    kv: float = 0.0
    latency: float = 0.0

    @property
    def floor(self) -> float:
        """The largest background term: the score can only be higher."""
        return max(self.engine, self.kv, self.latency)


UNKNOWN = Signal(known=False)


def engine_signal(
    load: EngineLoad,
    *,
    now: float,
    max_age_s: float,
    max_num_seqs: int,
    latency: float = 0.0,
) -> Signal:
    if not load.fresh(now, max_age_s):
        return Signal(known=False, latency=latency)
    queue = (load.running or 0.0) + (load.waiting or 0.0)
    return Signal(
        known=True,
        engine=queue / max_num_seqs,
        kv=load.kv_usage or 0.0,
        latency=latency,
    )


def latency_term(
    series: list[tuple[Percentiles | None, Percentiles | None, float]], *, min_samples: int
) -> float:
    """The worst P95 / bound over (recent, baseline, objective) triples with enough samples."""
    worst = 0.0
    for recent, baseline, objective_s in series:
        if recent is None or recent.count < min_samples or objective_s <= 0:
            continue
        bound = objective_s
        if baseline is not None and baseline.count >= min_samples:
            bound = max(bound, baseline.p95)
        worst = max(worst, recent.p95 / bound)
    return worst


def own_term(own: float, *, known: bool, conservative: bool) -> float:
    """The own in-flight term under the unknown-metrics rule."""
    if known or not conservative:
        return own
    return 0.5 + 0.5 * own


def combine(floor: float, own: float, *, known: bool, conservative: bool, queued: bool) -> float:
    """The score of one engine for one class."""
    score = max(floor, own_term(own, known=known, conservative=conservative))
    return max(score, 1.0) if queued else score
