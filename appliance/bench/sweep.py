"""Capacity: the highest load that keeps every objective, found by doubling concurrency.

An objective holds at a load level when P95 end-to-end latency is within the agent's expected band
top (`agents.*.expected.p95_s[1]`) and the share of failed requests is within the error budget.
For the mix, each agent in it must keep its own P95 objective.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import msgspec

from appliance.bench.records import MIX, PhaseResult


class Check(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    reason: str = ""


class Capacity(msgspec.Struct, frozen=True, kw_only=True):
    scope: str
    max_concurrency: int | None  # None: not even concurrency 1 kept the objectives
    request_rate: float | None  # req/s achieved at that concurrency
    output_throughput: float | None  # tok/s achieved at that concurrency
    limited_by: str
    levels: tuple[int, ...]


def levels(max_concurrency: int) -> Iterator[int]:
    """1, 2, 4, ... up to and including `max_concurrency` (which ends the list if not a power)."""
    level = 1
    while level < max_concurrency:
        yield level
        level *= 2
    yield max_concurrency


def check(
    results: Sequence[PhaseResult], objectives: Mapping[str, float], error_budget: float
) -> Check:
    """Whether one level (all results of one phase) keeps the objectives; the first miss if not."""
    for r in results:
        m = r.metrics
        who = r.agent or MIX
        total = m["completed"] + m["failed"]
        if total and m["error_rate"] > error_budget:
            return Check(
                ok=False,
                reason=(
                    f"{who}: {100 * m['error_rate']:.1f}% of requests failed "
                    f"(budget {100 * error_budget:g}%)"
                ),
            )
        limit = objectives.get(r.agent or "")
        if r.agent is not None and limit is not None and m["completed"]:
            p95 = m["p95_e2el_ms"] / 1000.0
            if p95 > limit:
                return Check(ok=False, reason=f"{who}: P95 {p95:.2f} s > objective {limit:g} s")
    return Check(ok=True)


def capacity(
    scope: str, per_level: Sequence[tuple[int, Sequence[PhaseResult], Check]], ceiling: int
) -> Capacity:
    """The last level that held, from the levels a sweep ran (in order)."""
    held: tuple[int, PhaseResult] | None = None
    limited_by = f"reached the sweep's ceiling of {ceiling} concurrent requests"
    for level, results, verdict in per_level:
        if not verdict.ok:
            limited_by = f"at concurrency {level}: {verdict.reason}"
            break
        whole = next((r for r in results if r.scope == scope and (r.agent or MIX) == scope), None)
        if whole is not None:
            held = (level, whole)
    return Capacity(
        scope=scope,
        max_concurrency=held[0] if held else None,
        request_rate=held[1].metrics["request_throughput"] if held else None,
        output_throughput=held[1].metrics["output_throughput"] if held else None,
        limited_by=limited_by,
        levels=tuple(level for level, _, _ in per_level),
    )
