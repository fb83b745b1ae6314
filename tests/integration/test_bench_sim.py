"""The benchmark runner against a real simulator process with known latency settings.

The simulator is told its decode rate, prefill rate and batch slowdown; a run must read them back
within the tolerances stated in each test. Times are divided by the time scale (0.2), so every
millisecond of client overhead counts five times: tolerances allow for a busy test machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.bench.client import StreamClient, Target
from appliance.bench.execute import BenchRun, RunParams
from appliance.bench.records import Phase
from appliance.bench.report import build_report, render
from appliance.bench.runner import PhaseOutcome, Runner
from appliance.bench.stats import median, summarize
from appliance.bench.targets import run_meta
from appliance.bench.workloads import Workload
from appliance.config import load_config
from appliance.store.bench import BenchStore
from tests.support.bench_sims import KEY, SimEngine, running_sim
from tests.support.running import SHIPPED

pytestmark = pytest.mark.integration

SCALE = 0.2
DECODE = 20.0  # tokens/s: a 50 ms step, 10 ms real at this scale (one token per stream chunk)
PREFILL = 2000.0
TOKENS = 40  # every answer exactly this long (ignore_eos)
BASE_S = 0.02  # the simulator's fixed overhead before prefill


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimEngine]:
    logs = tmp_path_factory.mktemp("sim")
    with running_sim(
        "llama-3.1-70b-instruct",
        logs,
        "--decode-tokens-per-s",
        str(DECODE),
        "--prefill-tokens-per-s",
        str(PREFILL),
        "--batch-slowdown",
        "0.1",
        "--time-scale",
        str(SCALE),
    ) as engine:
        yield engine


def target(sim: SimEngine, agent: str = "genetic") -> Target:
    return Target(
        agent=agent, base_url=sim.base_url, model=sim.model, api_key=KEY, time_scale=SCALE
    )


async def run_phase(sim: SimEngine, phase: Phase) -> PhaseOutcome:
    async with StreamClient(timeout_s=30) as client:
        runner = Runner(client, {"genetic": target(sim)}, Workload(7, {"genetic": TOKENS}))
        return await runner.run_phase(phase)


async def test_one_at_a_time_recovers_decode_and_prefill_rates(sim: SimEngine) -> None:
    out = await run_phase(
        sim, Phase(index=0, scope="genetic", mode="concurrency", concurrency=1, num_requests=6)
    )
    samples = out.samples
    m = summarize(samples, out.duration_s)
    assert m["completed"] == 6, [s.error for s in samples]
    # Output length is exact, and counted from the usage chunk.
    assert {s.completion_tokens for s in samples} == {TOKENS}
    assert all(s.prompt_tokens > 100 for s in samples)
    # Decode: 20 tokens/s within 10 %; TPOT and ITL within 10 % / 15 % of 50 ms.
    assert m["tokens_per_s"] == pytest.approx(DECODE, rel=0.10)
    assert m["median_tpot_ms"] == pytest.approx(1000 / DECODE, rel=0.10)
    assert m["median_itl_ms"] == pytest.approx(1000 / DECODE, rel=0.15)
    assert all(len(s.itl_s) == TOKENS - 1 for s in samples)
    # Prefill: TTFT = 20 ms + prompt / 2000 tokens/s. The median is within 150 ms (of modelled
    # time; a scheduling hiccup is magnified by 1/SCALE, so single samples may run late), and no
    # answer ever comes sooner than the model allows.
    residuals = [s.ttft_s - (BASE_S + s.prompt_tokens / PREFILL) for s in samples]
    assert median(residuals) == pytest.approx(0.0, abs=0.15)
    assert min(residuals) > -0.05
    # End to end = TTFT + 39 steps.
    e2e = [s.e2el_s - s.ttft_s for s in samples]
    assert median(e2e) == pytest.approx((TOKENS - 1) / DECODE, rel=0.10)


async def test_concurrency_shows_the_batch_slowdown(sim: SimEngine) -> None:
    samples = (
        await run_phase(
            sim,
            Phase(index=1, scope="genetic", mode="concurrency", concurrency=4, num_requests=8),
        )
    ).samples
    m = summarize(samples, 1.0)
    assert m["completed"] == 8
    # Four sequences in the batch: each step 1 + 0.1 x 3 = 1.3 times longer (65 ms), within 15 %.
    assert m["median_tpot_ms"] == pytest.approx(1.3 * 1000 / DECODE, rel=0.15)
    starts = sorted(s.start_s for s in samples)
    assert starts[3] - starts[0] < 0.5  # the first four went out together


async def test_rate_mode_spreads_arrivals_over_n_over_rate(sim: SimEngine) -> None:
    out = await run_phase(
        sim, Phase(index=2, scope="genetic", mode="rate", rate=4.0, num_requests=8)
    )
    assert len(out.samples) == 8 and all(s.ok for s in out.samples)
    starts = sorted(s.start_s - out.started_s for s in out.samples)
    # Poisson gaps rescaled so the last request starts at 8 / 4 = 2 s (modelled), within 0.3 s.
    assert starts[-1] == pytest.approx(2.0, abs=0.3)
    assert len(set(starts)) == 8  # no two at once
    assert out.duration_s >= starts[-1]


async def test_errors_keep_the_status_and_type_only(tmp_path: Path) -> None:
    with running_sim(
        "llama-3.1-8b-instruct", tmp_path, "--error-rate", "1.0", "--time-scale", "0.01"
    ) as broken:
        async with StreamClient(timeout_s=30) as client:
            runner = Runner(client, {"guardrail": target(broken, "guardrail")}, Workload(1))
            out = await runner.run_phase(
                Phase(index=0, scope="guardrail", mode="concurrency", concurrency=2, num_requests=4)
            )
    assert [s.ok for s in out.samples] == [False] * 4
    for s in out.samples:
        assert s.error is not None and s.error.startswith("http_5")
        assert len(s.error.split()) <= 2  # "http_503 some_type": no message text


async def test_a_stored_sweep_finds_capacity_and_reports(sim: SimEngine, tmp_path: Path) -> None:
    config = load_config(SHIPPED, env={})
    targets = {a: target(sim, a) for a in ("guardrail", "kai")}
    store = await BenchStore.open(tmp_path / "bench.sqlite3")
    try:
        params = RunParams(
            kind="sweep", agents=("guardrail",), mix=False, requests=4, max_concurrency=4
        )
        bench_run = BenchRun(store, config, targets, params, meta=run_meta(config, gpu="test"))
        run_id = await bench_run.create("manual")
        await bench_run.execute()
        run = await store.get_run(run_id)
        assert run is not None and run.status == "completed", run
        phases = await store.phases(run_id)
        assert [p.concurrency for p in phases] == [1, 2, 4]
        assert len(await store.samples(run_id)) == 4 + 8 + 16  # at least 4 per slot
        capacity = run.result["capacity"]["guardrail"]  # type: ignore[index]
        # A 96-token guardrail answer at 20 tokens/s takes about 5 s: past its 2 s objective.
        assert capacity["max_concurrency"] is None
        assert "objective 2 s" in capacity["limited_by"]
        assert capacity["knee_concurrency"] in (1, 2, 4)
        html = render(await build_report(store, run), "html")
        assert "guardrail" in html and "<svg" in html
    finally:
        await store.close()
