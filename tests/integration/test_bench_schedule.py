"""The scheduler fires a benchmark and the run lands in the database, against a real simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from apscheduler.triggers.date import DateTrigger

from appliance.bench.client import Target
from appliance.bench.service import BenchService
from appliance.config import load_config
from tests.support.bench_sims import KEY, SimEngine, running_sim
from tests.support.running import SHIPPED

pytestmark = pytest.mark.integration
AGENTS = ("kai", "guardrail", "genetic", "wellness")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimEngine]:
    with running_sim(
        "llama-3.1-8b-instruct", tmp_path_factory.mktemp("sim"), "--time-scale", "0.02"
    ) as engine:
        yield engine


def bench_service(sim: SimEngine, db: Path, live: list[int]) -> BenchService:
    config = load_config(SHIPPED, env={})
    server = msgspec.structs.replace(config.server, data_dir=str(db.parent))
    config = msgspec.structs.replace(config, server=server)
    targets = {
        a: Target(agent=a, base_url=sim.base_url, model=sim.model, api_key=KEY, time_scale=0.02)
        for a in AGENTS
    }
    return BenchService(config, db, sim.base_url, KEY, lambda: live[0], targets=targets)


def soon(seconds: float = 0.3) -> DateTrigger:
    return DateTrigger(run_date=datetime.now().astimezone() + timedelta(seconds=seconds))


async def wait_for_run(svc: BenchService, status: str, timeout: float = 60.0) -> int:
    async def poll() -> int:
        while True:
            runs = await svc.list()
            done = [r for r in runs if r.status == status]
            if done:
                return done[0].id
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), timeout)


async def test_a_scheduled_probe_fires_and_is_stored(sim: SimEngine, tmp_path: Path) -> None:
    svc = bench_service(sim, tmp_path / "bench.sqlite3", [0])
    await svc.start(schedule=False)
    try:
        svc.scheduler.add("probe", soon())
        svc.scheduler.start()
        run_id = await wait_for_run(svc, "completed")
        run = await svc.get(run_id)
        assert (run["kind"], run["trigger"]) == ("probe", "schedule")
        assert {s["agent"] for s in run["summaries"]} == set(AGENTS)
        assert all(s["completed"] == svc.config.bench.probe_requests for s in run["summaries"])
        samples = await svc.store.samples(run_id)
        assert len(samples) == 4 * svc.config.bench.probe_requests
        # The reports are written after the run row is finished: wait for the run's task.
        await svc.wait()
        html = svc.reports_dir() / f"run-{run_id:05d}-probe.html"
        assert (await asyncio.to_thread(html.read_text)).startswith("<!DOCTYPE html>")
    finally:
        await svc.stop()


async def test_a_scheduled_run_is_skipped_under_live_traffic(
    sim: SimEngine, tmp_path: Path
) -> None:
    svc = bench_service(sim, tmp_path / "bench.sqlite3", [100])
    await svc.start(schedule=False)
    try:
        svc.scheduler.add("nightly", soon())
        svc.scheduler.start()
        run_id = await wait_for_run(svc, "skipped")
        run = await svc.get(run_id)
        assert run["kind"] == "sweep" and "100 requests in flight" in run["reason"]
        assert await svc.store.samples(run_id) == []
    finally:
        await svc.stop()
