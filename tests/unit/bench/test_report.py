"""Reports from stored runs: verdicts, regressions, and three renderings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest

from appliance.bench.records import Phase, PhaseResult, Sample
from appliance.bench.report import build_report, render
from appliance.bench.report.model import Report
from appliance.bench.report.svg import nice_ticks
from appliance.bench.stats import summarize
from appliance.config import load_config
from appliance.store.bench import BenchStore
from appliance.store.bench_rows import RunMeta
from tests.support.running import SHIPPED

META = RunMeta(profile="sim", gpu="none (simulated engines)", version="0.1.0")
MODELS = {
    "kai": "llama-3.1-70b-instruct",
    "guardrail": "llama-3.1-8b-instruct",
    "genetic": "qwen-2.5-32b-instruct",
    "wellness": "llama-3.1-70b-instruct",
}


def params(kind: str = "run") -> dict:
    config = load_config(SHIPPED, env={})
    return {
        "kind": kind,
        "mode": "concurrency",
        "concurrency": 1,
        "requests": 5,
        "seed": 0,
        "error_budget": 0.01,
        "degradation": 0.5,
        "max_concurrency": 4,
        "expected": {a: msgspec.to_builtins(c.expected) for a, c in config.agents.items()},
        "targets": {
            a: {"base_url": "http://127.0.0.1:8000/v1", "model": m, "time_scale": 0.1}
            for a, m in MODELS.items()
        },
    }


def samples(agent: str, e2el: float, phase: int = 0, n: int = 5, tokens: int = 50) -> list[Sample]:
    return [
        Sample(
            phase=phase,
            seq=phase * 100 + i,
            agent=agent,
            model=MODELS[agent],
            start_s=i,
            ttft_s=0.5,
            e2el_s=e2el,
            itl_s=((e2el - 0.5) / (tokens - 1),) * (tokens - 1),
            prompt_tokens=300,
            completion_tokens=tokens,
        )
        for i in range(n)
    ]


def result(agent: str, e2el: float, phase: int = 0, concurrency: int = 1) -> PhaseResult:
    return PhaseResult(
        phase=phase,
        scope=agent,
        agent=agent,
        model=MODELS[agent],
        mode="concurrency",
        concurrency=concurrency,
        rate=None,
        metrics=summarize(samples(agent, e2el, phase), 10.0),
    )


async def stored_run(
    store: BenchStore, p95: dict[str, float], *, kind: str = "run", status: str = "completed"
) -> int:
    run_id = await store.create_run(kind, "schedule", params(kind), META)
    await store.add_summaries(
        run_id, [result(a, v, phase=i) for i, (a, v) in enumerate(p95.items())]
    )
    await store.finish_run(run_id, status)
    return run_id


async def report_for(store: BenchStore, run_id: int) -> Report:
    run = await store.get_run(run_id)
    assert run is not None
    return await build_report(store, run, window=7, threshold=0.15)


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = await BenchStore.open(tmp_path / "bench.sqlite3")
    yield s
    await s.close()


async def test_summary_verdicts_against_the_stored_expected_table(store: BenchStore) -> None:
    run_id = await stored_run(store, {"kai": 9.0, "guardrail": 1.5, "genetic": 2.5})
    report = await report_for(store, run_id)
    verdicts = {h.agent: h.row.p95.verdict for h in report.headlines if h.row.p95}
    assert verdicts == {"kai": "worse", "guardrail": "within", "genetic": "better"}
    kai = next(h for h in report.headlines if h.agent == "kai")
    assert kai.row.p95 is not None and kai.row.p95.margin == pytest.approx(1.0)
    assert kai.regression is None  # no history yet
    assert any("time scale 0.1" in n for n in report.notes)


async def test_a_regression_is_flagged_against_the_median_of_comparable_runs(
    store: BenchStore,
) -> None:
    for value in (6.0, 6.2, 5.8):
        await stored_run(store, {"kai": value})
    await stored_run(store, {"kai": 100.0}, status="failed")  # not comparable
    slow = await stored_run(store, {"kai": 9.0})
    kai = (await report_for(store, slow)).headlines[0]
    assert kai.regression is not None
    assert kai.regression.baseline_s == pytest.approx(6.0)
    assert kai.regression.change_pct == pytest.approx(50.0)
    assert [p.p95_e2el_ms for p in kai.trend] == [6000.0, 6200.0, 5800.0]

    fine = await stored_run(store, {"kai": 6.5})  # 8 % over the median: within the threshold
    assert (await report_for(store, fine)).headlines[0].regression is None


async def test_html_is_self_contained_and_holds_the_table_and_charts(store: BenchStore) -> None:
    for value in (6.0, 6.2, 5.8):
        await stored_run(store, {"kai": value, "guardrail": 1.2})
    run_id = await stored_run(store, {"kai": 9.0, "guardrail": 1.1})
    html = render(await report_for(store, run_id), "html")
    assert html.startswith("<!DOCTYPE html>")
    for external in ("http://", "https://", "src=", "<link", "url(", "@import", "<script"):
        assert external not in html, external
    assert "<table" in html and "P95 verdict" in html and "llama-3.1-70b-instruct" in html
    assert html.count("<svg") == 2  # a P95 trend per agent in the run
    assert "Regression" in html and 'class="v worse"' in html


async def test_markdown_and_json_renderings(store: BenchStore) -> None:
    run_id = await stored_run(store, {"kai": 9.0, "guardrail": 1.5})
    report = await report_for(store, run_id)
    md = render(report, "md")
    assert "| Agent | Model | Load | P95 (s) |" in md
    assert re.search(
        r"\| kai \| llama-3.1-70b-instruct \| c=1 \| 9.00 \| 5\u20138 s \| worse by", md
    )
    data = json.loads(render(report, "json"))
    row = data["results"][0]
    for key in (
        "completed",
        "failed",
        "total_input_tokens",
        "total_output_tokens",
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "mean_ttft_ms",
        "median_tpot_ms",
        "p99_itl_ms",
        "p95_e2el_ms",
        "std_e2el_ms",
    ):
        assert key in row, key
    for key in (
        "agent",
        "model",
        "gpu",
        "profile",
        "appliance_version",
        "mode",
        "max_concurrency",
        "request_rate",
    ):
        assert key in row, key
    assert data["summary"][0]["p95_verdict"]["verdict"] == "worse"
    assert "targets" not in data["run"]["params"] and "expected" in data
    with pytest.raises(ValueError):
        render(report, "pdf")  # type: ignore[arg-type]


async def test_an_agent_without_answers_still_has_its_line_saying_why(store: BenchStore) -> None:
    run_id = await store.create_run("run", "api", params(), META)
    shed = [
        msgspec.structs.replace(s, ok=False, error="http_503 overloaded_error", completion_tokens=0)
        for s in samples("wellness", 0.01)
    ]
    failed = PhaseResult(
        phase=0,
        scope="wellness",
        agent="wellness",
        model=MODELS["wellness"],
        mode="concurrency",
        concurrency=1,
        rate=None,
        metrics=summarize(shed, 1.0),
    )
    await store.add_summaries(run_id, [failed, result("kai", 6.0, phase=1)])
    await store.finish_run(run_id, "completed")
    md = render(await report_for(store, run_id), "md")
    assert "| wellness | llama-3.1-70b-instruct | c=1 | \u2013 |" in md
    assert "no answer: 5 failed, mostly http_503 overloaded_error" in md
    later = await stored_run(store, {"wellness": 6.0})
    wellness = (await report_for(store, later)).headlines[0]
    assert wellness.trend == []  # a level with no answers is no history


async def test_an_interrupted_run_reports_the_phase_it_was_in(store: BenchStore) -> None:
    run_id = await store.create_run("run", "api", params(), META)
    await store.add_phase(
        run_id, Phase(index=0, scope="kai", mode="concurrency", concurrency=1, num_requests=10), 0.0
    )
    await store.add_samples(run_id, samples("kai", 7.0, n=4))
    await store.finish_run(run_id, "interrupted", reason="stopped before it finished")
    report = await report_for(store, run_id)
    assert report.rows and report.rows[0].metrics["completed"] == 4
    assert report.headlines[0].row.p95 is not None
    assert report.notes[0] == "Run interrupted: stopped before it finished"
    assert any("did not finish" in n for n in report.notes)


async def test_a_sweep_draws_load_charts_and_the_capacity_table(store: BenchStore) -> None:
    run_id = await store.create_run("sweep", "manual", params("sweep"), META)
    await store.add_summaries(
        run_id, [result("kai", 6.0 + c, phase=i, concurrency=c) for i, c in enumerate((1, 2, 4))]
    )
    capacity = {
        "kai": {
            "scope": "kai",
            "max_concurrency": 1,
            "request_rate": 0.1,
            "output_throughput": 10.0,
            "limited_by": "at concurrency 4: kai P95",
            "knee_concurrency": 4,
            "knee_request_rate": 0.3,
            "knee_limited_by": "reached the ceiling",
            "levels": [1, 2, 4],
        }
    }
    await store.finish_run(run_id, "completed", result={"capacity": capacity})
    report = await report_for(store, run_id)
    html = render(report, "html")
    assert "P95 and tokens/s against concurrency" in html
    assert html.count("<svg") == 2  # P95 and tokens/s against concurrency
    assert "No earlier comparable run yet." in html  # the trend needs history
    assert "c=1, 0.10 req/s" in html and "Knee" in html
    assert "| kai | 1 | 0.10 req/s |" in render(report, "md")


def test_chart_ticks_are_round_numbers() -> None:
    assert nice_ticks(7.3) == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert nice_ticks(0.9) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0) == [0.0, 1.0]
