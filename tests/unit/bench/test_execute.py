"""A whole run against a fake client and a real SQLite file: what is stored, when, and how."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from appliance.bench.execute import BenchRun, RunParams
from appliance.config import load_config
from appliance.config.schema import Config
from appliance.store.bench import BenchStore
from appliance.store.bench_rows import RunMeta
from tests.support.running import SHIPPED
from tests.unit.bench.fakes import FakeClient, targets

AGENTS = ("kai", "guardrail", "genetic", "wellness")


@pytest.fixture
def config() -> Config:
    return load_config(SHIPPED, env={})


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = await BenchStore.open(tmp_path / "bench.sqlite3")
    yield s
    await s.close()


def bench_run(store: BenchStore, config: Config, params: RunParams, client: FakeClient) -> BenchRun:
    return BenchRun(
        store, config, targets(*AGENTS), params, meta=RunMeta(profile="sim"), client=client
    )  # type: ignore[arg-type]


async def test_a_run_stores_phases_samples_summaries_and_completes(
    store: BenchStore, config: Config
) -> None:
    run = bench_run(
        store, config, RunParams(agents=("kai", "guardrail"), requests=4, seed=3), FakeClient()
    )
    run_id = await run.create("manual")
    assert (await store.get_run(run_id)).status == "running"  # type: ignore[union-attr]
    await run.execute()
    row = await store.get_run(run_id)
    assert row is not None and row.status == "completed"
    assert row.result == {"requests": 4 + 4 + 8, "failed": 0, "phases": 3}
    assert row.params["seed"] == 3 and row.params["expected"]["kai"]["p95_s"] == [5.0, 8.0]
    assert "api_key" not in str(row.params)
    assert [p.scope for p in await store.phases(run_id)] == ["kai", "guardrail", "mix"]
    assert len(await store.samples(run_id)) == 16
    scopes = [(s.scope, s.agent) for s in await store.summaries(run_id)]
    assert ("kai", "kai") in scopes and ("mix", None) in scopes and ("mix", "guardrail") in scopes


async def test_a_sweep_stops_when_objective_and_knee_are_both_broken(
    store: BenchStore, config: Config
) -> None:
    # Guardrail objective 2 s; phases 0, 1, 2 run at concurrency 1, 2, 4: 0.6, 1.2, 2.4 s.
    client = FakeClient(latency=lambda phase: 0.6 * 2**phase)
    params = RunParams(
        kind="sweep", agents=("guardrail",), mix=False, requests=4, max_concurrency=64
    )
    run = bench_run(store, config, params, client)
    run_id = await run.create("manual")
    await run.execute()
    row = await store.get_run(run_id)
    assert row is not None and row.status == "completed"
    cap = row.result["capacity"]["guardrail"]  # type: ignore[index]
    assert cap["max_concurrency"] == 2
    assert cap["knee_concurrency"] == 1  # 1.2 s > 1.5 x 0.6 s
    assert cap["levels"] == [1, 2, 4]  # at 4 both broke: 2.4 s > 2 s
    assert cap["request_rate"] > 0


async def test_a_run_where_every_request_failed_is_failed_with_the_error(
    store: BenchStore, config: Config
) -> None:
    client = FakeClient(error="http_503 overloaded_error")
    run = bench_run(store, config, RunParams(agents=("kai",), mix=False, requests=3), client)
    run_id = await run.create("api")
    await run.execute()
    row = await store.get_run(run_id)
    assert row is not None and row.status == "failed"
    assert row.reason == "every request failed (http_503 overloaded_error)"


async def test_cancelling_a_run_keeps_its_samples_and_marks_it_interrupted(
    store: BenchStore, config: Config
) -> None:
    client = FakeClient(pause_s=0.01)
    run = bench_run(store, config, RunParams(agents=("kai",), mix=False, requests=10_000), client)
    run_id = await run.create("api")
    task = asyncio.create_task(run.execute())
    while len(client.sent) < 30:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    row = await store.get_run(run_id)
    assert row is not None and row.status == "interrupted" and row.finished_at
    kept = await store.samples(run_id)
    assert len(kept) >= 25  # everything that finished reached the database


def test_params_are_checked() -> None:
    import msgspec

    with pytest.raises(msgspec.ValidationError, match="unknown agent"):
        msgspec.convert({"agents": ["bob"]}, RunParams)
    with pytest.raises(msgspec.ValidationError, match="needs a rate"):
        msgspec.convert({"mode": "rate"}, RunParams)
    with pytest.raises(msgspec.ValidationError, match="doubles concurrency"):
        msgspec.convert({"kind": "sweep", "mode": "rate", "rate": 2}, RunParams)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"concurrency": 0}, RunParams)


class SwallowingClient(FakeClient):
    """Turns a cancellation into a failed sample, as an HTTP stack can when the cancellation lands
    while it closes a connection."""

    async def send(self, target, req, *, phase, seq, t0):  # type: ignore[no-untyped-def]
        try:
            return await super().send(target, req, phase=phase, seq=seq, t0=t0)
        except asyncio.CancelledError:
            self.error = "read_error"
            sample = await super().send(target, req, phase=phase, seq=seq, t0=t0)
            self.error = None
            return sample


async def test_a_stop_holds_even_where_the_cancellation_is_swallowed(
    store: BenchStore, config: Config
) -> None:
    client = SwallowingClient(pause_s=0.01)
    params = RunParams(agents=("kai",), mix=False, requests=10_000, concurrency=2)
    run = bench_run(store, config, params, client)
    run_id = await run.create("manual")
    task = asyncio.create_task(run.execute())
    while len(client.sent) < 20:
        await asyncio.sleep(0.01)
    run.stop()
    # Without the stop flag the workers would go on through all 10,000 requests.
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), timeout=30)
    assert len(client.sent) < 100
    row = await store.get_run(run_id)
    assert row is not None and row.status == "interrupted"
    assert row.reason == "stopped before it finished"


async def test_a_run_stopped_before_it_starts_is_interrupted(
    store: BenchStore, config: Config
) -> None:
    client = FakeClient()
    run = bench_run(store, config, RunParams(agents=("kai",), mix=False, requests=5), client)
    run_id = await run.create("manual")
    run.stop()
    with pytest.raises(asyncio.CancelledError):
        await run.execute()
    row = await store.get_run(run_id)
    assert row is not None and row.status == "interrupted"
    assert client.sent == []
