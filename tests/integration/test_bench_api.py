"""`/benchmarks` over HTTP: start a run, refuse a second, read it back, fetch its reports."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from appliance.api.benchmarks import BenchmarksPlugin
from appliance.api.errors import EXCEPTION_HANDLERS
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


def app_with(service: BenchService | None) -> Litestar:
    return Litestar(
        plugins=[BenchmarksPlugin(service)],
        exception_handlers=dict(EXCEPTION_HANDLERS),  # type: ignore[arg-type]
    )


async def finished(client: AsyncTestClient[Any], run_id: int) -> dict[str, Any]:
    for _ in range(600):
        body = (await client.get(f"/benchmarks/{run_id}")).json()
        if body["status"] != "running":
            return body  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError("the run did not finish")


async def test_the_benchmarks_routes(sim: SimEngine, tmp_path: Path) -> None:
    config = load_config(SHIPPED, env={})
    server = msgspec.structs.replace(config.server, data_dir=str(tmp_path / "var"))
    config = msgspec.structs.replace(config, server=server)
    targets = {
        a: Target(agent=a, base_url=sim.base_url, model=sim.model, api_key=KEY, time_scale=0.02)
        for a in AGENTS
    }
    svc = BenchService(
        config, tmp_path / "bench.sqlite3", sim.base_url, KEY, lambda: 0, targets=targets
    )
    await svc.start(schedule=False)
    try:
        async with AsyncTestClient(app=app_with(svc)) as client:
            started = await client.post(
                "/benchmarks",
                json={"kind": "run", "agents": ["guardrail"], "mix": False, "requests": 30},
            )
            assert started.status_code == 202, started.text
            run_id = started.json()["id"]
            again = await client.post("/benchmarks", json={})
            assert again.status_code == 409
            assert again.json()["error"]["code"] == "benchmark_running"

            run = await finished(client, run_id)
            assert run["status"] == "completed"
            assert run["summaries"][0]["agent"] == "guardrail"
            assert run["summaries"][0]["completed"] == 30

            listed = (await client.get("/benchmarks?limit=5")).json()
            assert [r["id"] for r in listed["data"]] == [run_id]

            html = await client.get(f"/benchmarks/{run_id}/report?format=html")
            assert html.headers["content-type"].startswith("text/html")
            assert "P95 verdict" in html.text and "https://" not in html.text
            md = await client.get(f"/benchmarks/{run_id}/report", params={"format": "md"})
            assert md.text.startswith(f"# Benchmark run #{run_id}")
            as_json = (await client.get(f"/benchmarks/{run_id}/report")).json()
            assert as_json["results"][0]["completed"] == 30

            assert (await client.get("/benchmarks/999")).status_code == 404
            bad = await client.get(f"/benchmarks/{run_id}/report?format=pdf")
            assert bad.status_code == 400
            invalid = await client.post("/benchmarks", json={"agents": ["bob"]})
            assert invalid.status_code == 400
            assert invalid.json()["error"]["type"] == "invalid_request_error"
    finally:
        await svc.stop()


async def test_without_a_service_the_routes_say_so() -> None:
    async with AsyncTestClient(app=app_with(None)) as client:
        response = await client.get("/benchmarks")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "benchmarks_unavailable"
