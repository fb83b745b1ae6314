"""`appliance check` and `appliance bench run` against the appliance over the real engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.vllm.conftest import VllmAppliance


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_appliance_check_passes(appliance: VllmAppliance):
    done = run("check", "--base-url", f"{appliance.base_url}/v1", "--samples", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed, 0 failed" in done.stdout


def test_a_benchmark_run_stores_and_reports(appliance: VllmAppliance, tmp_path: Path):
    report = tmp_path / "report.md"
    done = run(
        "bench", "run",
        "--config", str(appliance.config),
        "--profile", "cpu",
        "--base-url", f"{appliance.base_url}/v1",
        "--db", str(tmp_path / "bench.sqlite3"),
        "--agents", "guardrail,wellness",
        "--no-mix",
        "--requests", "4",
        "--concurrency", "2",
        "--report", str(report),
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: slower than the table
    text = report.read_text()
    assert "guardrail" in text and "wellness" in text
    assert (tmp_path / "bench.sqlite3").stat().st_size > 0
