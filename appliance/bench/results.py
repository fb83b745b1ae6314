"""Turn a phase's samples into summaries: per agent, and for the mix as a whole."""

from __future__ import annotations

from collections.abc import Mapping

from appliance.bench.records import MIX, Phase, PhaseResult, Sample
from appliance.bench.stats import Slo, summarize

# agent -> its P95 objective in seconds (the top of the expected band)
Objectives = Mapping[str, float]


def slo_for(agent: str, objectives: Objectives) -> Slo:
    """Goodput counts requests that end within the agent's P95 objective."""
    limit = objectives.get(agent)
    return Slo(e2el_s=limit) if limit is not None else Slo()


def phase_results(
    phase: Phase,
    samples: list[Sample],
    duration_s: float,
    objectives: Objectives,
    models: Mapping[str, str],
) -> list[PhaseResult]:
    """One result for an agent's own phase; for a mix, the whole and then each agent in it."""
    if phase.scope != MIX:
        return [
            _result(
                phase,
                phase.scope,
                models.get(phase.scope, ""),
                samples,
                duration_s,
                slo_for(phase.scope, objectives),
            )
        ]
    whole = _mix_result(phase, samples, duration_s, objectives)
    per_agent = [
        _result(
            phase,
            agent,
            models.get(agent, ""),
            [s for s in samples if s.agent == agent],
            duration_s,
            slo_for(agent, objectives),
        )
        for agent in sorted({s.agent for s in samples})
    ]
    return [whole, *per_agent]


def _result(
    phase: Phase, agent: str, model: str, samples: list[Sample], duration_s: float, slo: Slo
) -> PhaseResult:
    return PhaseResult(
        phase=phase.index,
        scope=phase.scope,
        agent=agent,
        model=model,
        mode=phase.mode,
        concurrency=phase.concurrency,
        rate=phase.rate,
        metrics=summarize(samples, duration_s, slo),
    )


def _mix_result(
    phase: Phase, samples: list[Sample], duration_s: float, objectives: Objectives
) -> PhaseResult:
    metrics = summarize(samples, duration_s)
    # Goodput of the mix: each request judged by its own agent's objective.
    if duration_s > 0:
        good = sum(1 for s in samples if s.ok and slo_for(s.agent, objectives).met_by(s))
        metrics["request_goodput"] = good / duration_s
    return PhaseResult(
        phase=phase.index,
        scope=MIX,
        agent=None,
        model=MIX,
        mode=phase.mode,
        concurrency=phase.concurrency,
        rate=phase.rate,
        metrics=metrics,
    )
