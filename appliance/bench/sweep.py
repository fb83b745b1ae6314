"""Capacity: the highest load that keeps every objective, found by doubling concurrency.

An objective holds at a load level when P95 end-to-end latency is within the agent's expected band
top (`agents.*.expected.p95_s[1]`) and the shares of failed requests and of answers from a fallback
model (through the appliance) are each within the error budget.
For the mix, each agent in it must keep its own P95 objective.

A box whose P95 misses the objective even unloaded would end its sweep at concurrency 1 and say
nothing about load. So a sweep also tracks the knee: the highest level at which every P95 stays
within `degradation` (e.g. +50 %) of its value at concurrency 1. It goes on while either holds
and stops when both break, or when errors exceed the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import msgspec

from appliance.bench.records import MIX, PhaseResult

# In the mix, an agent with fewer answers than this at a level is not judged there: the analyses
# come one per ten turns or so, and the P95 of two requests says nothing.
MIN_JUDGED = 5


class Check(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    reason: str = ""


class Level(msgspec.Struct, frozen=True, kw_only=True):
    """One level of a sweep: its results and how they fared."""

    concurrency: int
    results: list[PhaseResult]
    objective: Check
    knee: Check

    @property
    def errors_broke(self) -> bool:
        """Failures or fallback answers beyond the budget: the figures no longer describe the
        agent's own model, so the sweep stops."""
        return not self.objective.ok and self.objective.reason.startswith(("errors", "fallback"))

    @property
    def knee_kept(self) -> Check:
        """The knee's verdict; errors beyond the budget break it too."""
        return self.objective if self.errors_broke else self.knee

    @property
    def go_on(self) -> bool:
        return not self.errors_broke and (self.objective.ok or self.knee.ok)


class Capacity(msgspec.Struct, frozen=True, kw_only=True):
    scope: str
    max_concurrency: int | None  # None: not even concurrency 1 kept the objectives
    request_rate: float | None  # req/s achieved at that concurrency
    output_throughput: float | None  # tok/s achieved at that concurrency
    limited_by: str
    knee_concurrency: int | None  # highest level within `degradation` of the unloaded P95
    knee_request_rate: float | None
    knee_limited_by: str
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
                    f"errors: {who} {100 * m['error_rate']:.1f}% of requests failed "
                    f"(budget {100 * error_budget:g}%)"
                ),
            )
        moved = m.get("fallback_rate", 0.0)
        if m["completed"] and moved > error_budget:
            return Check(
                ok=False,
                reason=(
                    f"fallback: {who} {100 * moved:.0f}% of answers from a fallback model "
                    f"(budget {100 * error_budget:g}%)"
                ),
            )
        limit = objectives.get(r.agent or "")
        if r.agent is not None and limit is not None and _judged(r):
            p95 = m["p95_e2el_ms"] / 1000.0
            if p95 > limit:
                return Check(ok=False, reason=f"{who} P95 {p95:.2f} s > objective {limit:g} s")
    return Check(ok=True)


def knee(
    results: Sequence[PhaseResult], baseline: Sequence[PhaseResult], degradation: float
) -> Check:
    """Whether every agent's P95 is within `degradation` of its P95 at the sweep's first level."""
    base = {
        r.agent: r.metrics["p95_e2el_ms"] for r in baseline if r.agent and r.metrics["completed"]
    }
    for r in results:
        if r.agent is None or r.agent not in base or not _judged(r):
            continue
        limit = base[r.agent] * (1.0 + degradation)
        p95 = r.metrics["p95_e2el_ms"]
        if p95 > limit:
            return Check(
                ok=False,
                reason=(
                    f"{r.agent} P95 {p95 / 1000:.2f} s > {1 + degradation:g}x its unloaded "
                    f"{base[r.agent] / 1000:.2f} s"
                ),
            )
    return Check(ok=True)


def _judged(r: PhaseResult) -> bool:
    done = r.metrics["completed"]
    return bool(done) and (r.scope != MIX or done >= MIN_JUDGED)


def capacity(scope: str, swept: Sequence[Level], ceiling: int) -> Capacity:
    """The last level (counting up from 1, without a gap) that kept the objectives, and the knee."""
    held, held_by = _last_kept(scope, swept, ceiling, lambda lv: lv.objective)
    kneed, knee_by = _last_kept(scope, swept, ceiling, lambda lv: lv.knee_kept)
    return Capacity(
        scope=scope,
        max_concurrency=held[0] if held else None,
        request_rate=held[1].metrics["request_throughput"] if held else None,
        output_throughput=held[1].metrics["output_throughput"] if held else None,
        limited_by=held_by,
        knee_concurrency=kneed[0] if kneed else None,
        knee_request_rate=kneed[1].metrics["request_throughput"] if kneed else None,
        knee_limited_by=knee_by,
        levels=tuple(lv.concurrency for lv in swept),
    )


def _last_kept(
    scope: str, swept: Sequence[Level], ceiling: int, verdict_of: Callable[[Level], Check]
) -> tuple[tuple[int, PhaseResult] | None, str]:
    held: tuple[int, PhaseResult] | None = None
    last = swept[-1].concurrency if swept else 0
    reason = (
        f"reached the sweep's ceiling of {ceiling} concurrent requests"
        if last >= ceiling
        else f"the sweep stopped at concurrency {last}"
    )
    for lv in swept:
        verdict = verdict_of(lv)
        if not verdict.ok:
            reason = f"at concurrency {lv.concurrency}: {verdict.reason}"
            break
        whole = next((r for r in lv.results if (r.agent or MIX) == scope), None)
        if whole is not None:
            held = (lv.concurrency, whole)
    return held, reason
