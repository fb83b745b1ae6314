"""`appliance bench run` against `appliance serve` on simulated engines: the whole path."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.store.bench import BenchStore
from tests.support.running import Appliance, sim_config

pytestmark = pytest.mark.integration
SCALE = 0.05


async def stored(db: Path) -> tuple[str, list[tuple[str | None, str, int]], set[float]]:
    store = await BenchStore.open(db)
    try:
        run = await store.get_run(1)
        assert run is not None
        summaries = [(s.agent, s.model, s.metrics["completed"]) for s in await store.summaries(1)]
        scales = {t["time_scale"] for t in run.params["targets"].values()}
        return run.status, summaries, scales
    finally:
        await store.close()


def test_a_run_through_the_appliance_is_filed_under_the_agents_models(tmp_path: Path) -> None:
    config, port = sim_config(tmp_path, time_scale=SCALE)
    db = tmp_path / "bench.sqlite3"
    with Appliance(config, port):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "appliance.cli",
                "bench",
                "run",
                "--config",
                str(config),
                "--db",
                str(db),
                "--base-url",
                f"http://127.0.0.1:{port}/v1",
                "--agents",
                "guardrail,kai",
                "--no-mix",
                "--requests",
                "3",
                "--concurrency",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert (
        "| Agent | Model |" in done.stdout
        and "| guardrail | llama-3.1-8b-instruct |" in done.stdout
    )
    status, summaries, scales = asyncio.run(stored(db))
    assert status == "completed"
    assert ("guardrail", "llama-3.1-8b-instruct", 3) in summaries
    assert ("kai", "llama-3.1-70b-instruct", 3) in summaries
    assert scales == {SCALE}  # taken from the simulated engines' settings
