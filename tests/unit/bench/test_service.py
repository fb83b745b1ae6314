"""BenchService: one run at a time, skips when busy, interrupted on stop, errors by class.

The targets are a local TCP server that accepts and never answers (a run stays in progress as
long as the test wants) or a closed port (every request fails at once).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from appliance.bench.client import Target
from appliance.bench.service import BenchService
from appliance.config import load_config
from appliance.config.schema import Config
from appliance.errors import BadRequest, BenchmarkNotFound, BenchmarkRunning
from tests.support.running import SHIPPED, free_port

AGENTS = ("kai", "guardrail", "genetic", "wellness")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = load_config(SHIPPED, env={})
    server = msgspec.structs.replace(config.server, data_dir=str(tmp_path / "var"))
    return msgspec.structs.replace(config, server=server)


class Silent:
    """A server that takes connections and says nothing."""

    def __init__(self) -> None:
        self.held: list[asyncio.StreamWriter] = []
        self.connected = asyncio.Event()
        self.url = ""

    async def hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.held.append(writer)
        self.connected.set()


@pytest.fixture
async def silent() -> AsyncIterator[Silent]:
    quiet = Silent()
    server = await asyncio.start_server(quiet.hold, "127.0.0.1", 0)
    quiet.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    yield quiet
    for w in quiet.held:
        w.close()
    server.close()


def service(config: Config, tmp_path: Path, url: str, live: list[int]) -> BenchService:
    targets = {a: Target(agent=a, base_url=url, model=a) for a in AGENTS}
    return BenchService(
        config, tmp_path / "bench.sqlite3", url, "", lambda: live[0], targets=targets, poll_s=0.01
    )


@pytest.mark.parametrize("sending", [True, False])
async def test_one_run_at_a_time_and_stop_marks_it_interrupted(
    config: Config, tmp_path: Path, silent: Silent, sending: bool
) -> None:
    svc = service(config, tmp_path, silent.url, [0])
    await svc.start(schedule=False)
    run_id = await svc.run("run", {"agents": ["kai"], "mix": False, "requests": 2})
    assert svc.current_run == run_id
    with pytest.raises(BenchmarkRunning) as refused:
        await svc.run("sweep")
    assert refused.value.status_code == 409
    if sending:  # stopped while a request is out; else before the run's first step
        await asyncio.wait_for(silent.connected.wait(), 10)
    await svc.stop()
    await svc.start(schedule=False)
    try:
        run = await svc.get(run_id)
        assert run["status"] == "interrupted" and run["trigger"] == "api"
    finally:
        await svc.stop()


async def test_a_run_against_nothing_fails_with_the_reason(config: Config, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    svc = service(config, tmp_path, closed, [0])
    await svc.start(schedule=False)
    try:
        run_id = await svc.run("probe", None)
        await svc.wait()
        run = await svc.get(run_id)
        assert run["status"] == "failed"
        assert run["reason"] == "every request failed (connect_error)"
        assert run["params"]["requests"] == config.bench.probe_requests
        assert len(run["summaries"]) == 4  # one per agent, no mix in a probe
        listed = await svc.list()
        assert [r.id for r in listed] == [run_id]
        reports = sorted(p.name for p in svc.reports_dir().iterdir())
        assert reports == [f"run-{run_id:05d}-probe.html", f"run-{run_id:05d}-probe.json"]
    finally:
        await svc.stop()


async def test_scheduled_runs_are_skipped_and_recorded_when_live_traffic_is_high(
    config: Config, tmp_path: Path, silent: Silent
) -> None:
    live = [config.bench.busy_inflight + 1]
    svc = service(config, tmp_path, silent.url, live)
    await svc.start(schedule=False)
    try:
        await svc._scheduled("probe")
        skipped = (await svc.list())[0]
        assert skipped.status == "skipped" and skipped.trigger == "schedule"
        assert skipped.reason is not None and "live traffic" in skipped.reason

        live[0] = 0
        run_id = await svc.run("run", {"agents": ["kai"], "mix": False})
        await svc._scheduled("nightly")  # a run is going: skipped, not queued
        newest = (await svc.list())[0]
        assert newest.id != run_id and newest.status == "skipped" and newest.kind == "sweep"
        assert newest.reason == f"Benchmark run {run_id} is still in progress."
    finally:
        await svc.stop()


async def test_a_run_waits_while_live_traffic_is_high(config: Config, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    live = [config.bench.busy_inflight + 5]
    svc = service(config, tmp_path, closed, live)
    svc.max_pause_s = 2.0  # long enough that the check below comes well before it
    await svc.start(schedule=False)
    try:
        run_id = await svc.run("run", {"agents": ["kai"], "mix": False, "requests": 1})
        await asyncio.sleep(0.1)
        assert svc.current_run == run_id  # held back, not sending
        await svc.wait()
        run = await svc.get(run_id)
        assert run["status"] == "failed"
        assert "live traffic stayed above bench.busy_inflight" in run["reason"]
    finally:
        await svc.stop()


async def test_unknown_runs_and_formats_are_clear_errors(config: Config, tmp_path: Path) -> None:
    svc = service(config, tmp_path, "http://127.0.0.1:9/v1", [0])
    await svc.start(schedule=False)
    try:
        with pytest.raises(BenchmarkNotFound) as missing:
            await svc.get(42)
        assert missing.value.status_code == 404 and missing.value.code == "benchmark_not_found"
        with pytest.raises(BadRequest):
            await svc.report(1, "pdf")  # type: ignore[arg-type]
        with pytest.raises(BadRequest, match="unknown agent"):
            await svc.run("run", {"agents": ["bob"]})
    finally:
        await svc.stop()


async def test_start_schedules_the_nightly_and_the_probe(config: Config, tmp_path: Path) -> None:
    svc = service(config, tmp_path, "http://127.0.0.1:9/v1", [0])
    await svc.start()
    try:
        assert set(svc.scheduler.next_runs()) == {"nightly", "probe"}
    finally:
        await svc.stop()
