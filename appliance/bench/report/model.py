"""What a report says about one run, gathered from the store once and rendered three ways.

Figures are compared with the expected table stored with the run (so a later edit of
`models.toml` does not rewrite history), and with the median of the last comparable runs: same
profile, scope, agent, model and load level, completed. An interrupted run still reports: phases
that never got their summary are summarized from the samples that reached the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from appliance.bench.records import MIX, Phase, PhaseResult
from appliance.bench.results import phase_results
from appliance.bench.stats import median
from appliance.bench.verdict import Verdict, judge_latency, judge_speed
from appliance.store.bench import BenchStore
from appliance.store.bench_rows import PhaseRow, RunRow, SummaryRow, TrendPoint

MIN_HISTORY = 3  # comparable past runs needed before a regression can be flagged


class Row(msgspec.Struct, frozen=True, kw_only=True):
    """One summary line: a scope at a load level, with its verdicts when the agent has a band."""

    phase: int
    scope: str
    agent: str | None
    model: str
    mode: str
    concurrency: int | None
    rate: float | None
    metrics: dict[str, Any]
    p95: Verdict | None = None
    tokens_per_s: Verdict | None = None

    @property
    def p95_s(self) -> float:
        return float(self.metrics["p95_e2el_ms"]) / 1000.0


class Regression(msgspec.Struct, frozen=True, kw_only=True):
    p95_s: float
    baseline_s: float  # median P95 of the comparable runs
    change_pct: float
    runs: int  # how many comparable runs the baseline is the median of


class Headline(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's line in the summary table: its own phase at the lowest load of the run."""

    agent: str
    row: Row
    expected: dict[str, Any]
    capacity: dict[str, Any] | None
    trend: list[TrendPoint]
    regression: Regression | None


class Report(msgspec.Struct, frozen=True, kw_only=True):
    run: RunRow
    rows: list[Row]
    headlines: list[Headline]
    capacity: dict[str, Any]
    notes: list[str]


async def build_report(
    store: BenchStore, run: RunRow, *, window: int = 7, threshold: float = 0.15
) -> Report:
    expected: dict[str, Any] = run.params.get("expected", {})
    summaries = await store.summaries(run.id)
    rows = [_row(s, expected) for s in summaries]
    notes: list[str] = []
    missing = await _summarize_missing(store, run, summaries, expected)
    if missing:
        rows.extend(missing)
        notes.append(
            f"{len({r.phase for r in missing})} phase(s) did not finish; their figures come "
            "from the requests that did."
        )
    rows.sort(key=lambda r: (r.phase, r.agent is not None, r.agent or ""))
    capacity = (run.result or {}).get("capacity", {})
    headlines = []
    for agent in expected:
        row = _headline_row(rows, agent)
        if row is None:
            continue
        summary = SummaryRow(
            run_id=run.id,
            phase=row.phase,
            scope=row.scope,
            agent=row.agent,
            model=row.model,
            mode=row.mode,
            concurrency=row.concurrency,
            rate=row.rate,
            metrics=row.metrics,
        )
        trend = await store.comparable(
            summary, profile=run.profile, before_run=run.id, limit=max(window, 30)
        )
        headlines.append(
            Headline(
                agent=agent,
                row=row,
                expected=expected[agent],
                capacity=capacity.get(agent),
                trend=trend,
                regression=regression(row.p95_s, trend[-window:], threshold),
            )
        )
    scale = {t.get("time_scale", 1.0) for t in run.params.get("targets", {}).values()}
    if any(s != 1.0 for s in scale):
        notes.append(
            "Targets ran at simulator time scale "
            + ", ".join(f"{s:g}" for s in sorted(scale))
            + "; times are divided by it and read as the modelled hardware's. A simulator at a "
            "small time scale sends several tokens per stream chunk, so ITL (per chunk) reads "
            "longer than TPOT."
        )
    if run.status != "completed":
        notes.insert(0, f"Run {run.status}" + (f": {run.reason}" if run.reason else "."))
    return Report(run=run, rows=rows, headlines=headlines, capacity=capacity, notes=notes)


def regression(p95_s: float, history: Sequence[TrendPoint], threshold: float) -> Regression | None:
    """Flag a P95 worse than the median of the comparable runs by more than `threshold`."""
    if len(history) < MIN_HISTORY:
        return None
    baseline = median([p.p95_e2el_ms / 1000.0 for p in history])
    if baseline <= 0 or p95_s <= baseline * (1.0 + threshold):
        return None
    return Regression(
        p95_s=p95_s,
        baseline_s=baseline,
        change_pct=100.0 * (p95_s - baseline) / baseline,
        runs=len(history),
    )


def _row(s: SummaryRow | PhaseResult, expected: dict[str, Any]) -> Row:
    band = expected.get(s.agent or "") if s.agent else None
    return Row(
        phase=s.phase,
        scope=s.scope,
        agent=s.agent,
        model=s.model,
        mode=s.mode,
        concurrency=s.concurrency,
        rate=s.rate,
        metrics=s.metrics,
        p95=judge_latency(s.metrics["p95_e2el_ms"] / 1000.0, tuple(band["p95_s"]))
        if band and s.metrics["completed"]
        else None,
        tokens_per_s=judge_speed(s.metrics["tokens_per_s"], tuple(band["tokens_per_s"]))
        if band and s.metrics["completed"]
        else None,
    )


def _headline_row(rows: Sequence[Row], agent: str) -> Row | None:
    """The agent alone at its lowest load; else the agent within the mix at its lowest load;
    a line with no answer at all only when nothing better exists (it says why)."""
    own = [r for r in rows if r.scope == agent and r.agent == agent]
    mixed = [r for r in rows if r.scope == MIX and r.agent == agent]
    answered = [r for r in own if r.metrics["completed"]] or [
        r for r in mixed if r.metrics["completed"]
    ]
    pool = answered or own or mixed
    return min(pool, key=lambda r: (r.concurrency or 0, r.rate or 0.0, r.phase)) if pool else None


async def _summarize_missing(
    store: BenchStore, run: RunRow, summaries: Sequence[SummaryRow], expected: dict[str, Any]
) -> list[Row]:
    done = {s.phase for s in summaries}
    phases: list[PhaseRow] = [p for p in await store.phases(run.id) if p.idx not in done]
    if not phases:
        return []
    objectives = {a: float(e["p95_s"][1]) for a, e in expected.items()}
    models = {a: t["model"] for a, t in run.params.get("targets", {}).items()}
    rows: list[Row] = []
    for p in phases:
        samples = await store.samples(run.id, p.idx)
        if not samples:
            continue
        duration = p.duration_s or (
            max(s.start_s + s.e2el_s for s in samples) - min(s.start_s for s in samples)
        )
        phase = Phase(
            index=p.idx,
            scope=p.scope,
            mode=p.mode,  # type: ignore[arg-type]
            concurrency=p.concurrency,
            rate=p.rate,
            num_requests=p.num_requests,
        )
        rows.extend(
            _row(r, expected) for r in phase_results(phase, samples, duration, objectives, models)
        )
    return rows


def report_json(report: Report) -> dict[str, Any]:
    """The JSON report: run facts, then per-row vLLM result keys with our own fields beside."""
    run = report.run
    params = {k: v for k, v in run.params.items() if k not in ("expected", "targets")}
    ours = {"profile": run.profile, "gpu": run.gpu, "appliance_version": run.version}
    return {
        "run": {
            "id": run.id,
            "kind": run.kind,
            "trigger": run.trigger,
            "status": run.status,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "reason": run.reason,
            "config_source": run.config_source,
            **ours,
            "params": params,
            "targets": run.params.get("targets", {}),
        },
        "expected": run.params.get("expected", {}),
        "summary": [
            {
                "agent": h.agent,
                "model": h.row.model,
                "scope": h.row.scope,
                "max_concurrency": h.row.concurrency,
                "request_rate": h.row.rate,
                "p95_e2el_s": h.row.p95_s,
                "tokens_per_s": h.row.metrics["tokens_per_s"],
                "fallback_rate": h.row.metrics.get("fallback_rate", 0.0),
                "p95_verdict": msgspec.to_builtins(h.row.p95),
                "tokens_per_s_verdict": msgspec.to_builtins(h.row.tokens_per_s),
                "capacity": h.capacity,
                "regression": msgspec.to_builtins(h.regression),
                "trend": msgspec.to_builtins(h.trend),
            }
            for h in report.headlines
        ],
        "capacity": report.capacity,
        "results": [
            {
                "phase": r.phase,
                "scope": r.scope,
                "agent": r.agent,
                "model": r.model,
                **ours,
                "mode": r.mode,
                "max_concurrency": r.concurrency,
                "request_rate": r.rate,
                **r.metrics,
                "p95_verdict": msgspec.to_builtins(r.p95),
                "tokens_per_s_verdict": msgspec.to_builtins(r.tokens_per_s),
            }
            for r in report.rows
        ],
        "notes": report.notes,
    }
