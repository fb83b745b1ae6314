from __future__ import annotations

from appliance.bench.records import PhaseResult
from appliance.bench.sweep import Check, Level, capacity, check, knee, levels


def result(
    agent: str | None,
    p95_s: float,
    *,
    error_rate: float = 0.0,
    rps: float = 1.0,
    scope: str | None = None,
) -> PhaseResult:
    completed = 100
    return PhaseResult(
        phase=0,
        scope=scope or agent or "mix",
        agent=agent,
        model="m",
        mode="concurrency",
        concurrency=1,
        rate=None,
        metrics={
            "completed": completed,
            "failed": int(error_rate * completed),
            "error_rate": error_rate,
            "p95_e2el_ms": p95_s * 1000,
            "request_throughput": rps,
            "output_throughput": rps * 100,
        },
    )


def test_levels_double_up_to_the_ceiling() -> None:
    assert list(levels(64)) == [1, 2, 4, 8, 16, 32, 64]
    assert list(levels(12)) == [1, 2, 4, 8, 12]
    assert list(levels(1)) == [1]


def test_check_reports_the_first_broken_objective() -> None:
    objectives = {"kai": 8.0, "guardrail": 2.0}
    assert check([result("kai", 7.9)], objectives, 0.01).ok
    slow = check([result("kai", 8.5)], objectives, 0.01)
    assert not slow.ok and slow.reason == "kai P95 8.50 s > objective 8 s"
    errors = check([result("kai", 1.0, error_rate=0.02)], objectives, 0.01)
    assert not errors.ok and errors.reason.startswith("errors: kai 2.0%")
    mix = [result(None, 9.0, scope="mix"), result("guardrail", 2.5, scope="mix")]
    assert check(mix, objectives, 0.01).reason == "guardrail P95 2.50 s > objective 2 s"


def test_answers_from_a_fallback_model_beyond_the_budget_break_the_objective() -> None:
    moved = result("kai", 3.0)
    moved.metrics["fallback_rate"] = 0.5
    verdict = check([moved], {"kai": 8.0}, 0.01)
    assert not verdict.ok
    assert verdict.reason == "fallback: kai 50% of answers from a fallback model (budget 1%)"
    lv = Level(concurrency=2, results=[moved], objective=verdict, knee=Check(ok=True))
    assert lv.errors_broke and not lv.go_on


def test_in_the_mix_an_agent_with_few_answers_is_not_judged() -> None:
    few = result("genetic", 9.0, scope="mix")
    few.metrics["completed"] = 2
    assert check([few], {"genetic": 5.0}, 0.01).ok
    few.metrics["completed"] = 5
    assert not check([few], {"genetic": 5.0}, 0.01).ok
    alone = result("genetic", 9.0)
    alone.metrics["completed"] = 2
    assert not check([alone], {"genetic": 5.0}, 0.01).ok  # alone, every answer counts


def test_knee_compares_with_the_first_level() -> None:
    base = [result("kai", 10.0)]
    assert knee([result("kai", 14.9)], base, 0.5).ok
    broken = knee([result("kai", 15.1)], base, 0.5)
    assert not broken.ok and "1.5x its unloaded 10.00 s" in broken.reason


def level(
    c: int,
    p95: float,
    *,
    objective: bool,
    knee_ok: bool = True,
    errors: bool = False,
    rps: float = 1.0,
) -> Level:
    reason = "errors: too many" if errors else "" if objective else "P95 too slow"
    return Level(
        concurrency=c,
        results=[result("kai", p95, rps=rps)],
        objective=Check(ok=objective, reason=reason),
        knee=Check(ok=knee_ok, reason="" if knee_ok else "knee passed"),
    )


def test_capacity_is_the_last_level_that_held_and_says_what_broke() -> None:
    swept = [
        level(1, 5, objective=True, rps=0.2),
        level(2, 6, objective=True, rps=0.4),
        level(4, 9, objective=False, rps=0.7),
        level(8, 20, objective=False, knee_ok=False),
    ]
    cap = capacity("kai", swept, 64)
    assert cap.max_concurrency == 2 and cap.request_rate == 0.4
    assert cap.limited_by == "at concurrency 4: P95 too slow"
    assert cap.knee_concurrency == 4 and cap.knee_request_rate == 0.7
    assert cap.knee_limited_by == "at concurrency 8: knee passed"
    assert cap.levels == (1, 2, 4, 8)


def test_no_capacity_when_unloaded_already_misses_and_errors_end_the_knee() -> None:
    swept = [level(1, 9, objective=False), level(2, 9.5, objective=False, errors=True)]
    cap = capacity("kai", swept, 64)
    assert cap.max_concurrency is None and cap.request_rate is None
    assert cap.knee_concurrency == 1
    assert cap.knee_limited_by == "at concurrency 2: errors: too many"
    assert not swept[1].go_on and swept[0].go_on


def test_a_sweep_that_never_broke_says_it_reached_the_ceiling() -> None:
    cap = capacity("kai", [level(1, 1, objective=True), level(2, 1, objective=True)], 2)
    assert cap.max_concurrency == 2
    assert cap.limited_by == "reached the sweep's ceiling of 2 concurrent requests"
