"""A second `appliance serve` over the same data directory refuses to start, and leaves the
running appliance and its engines alone (it used to end them as leftovers of a crash)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.running import Appliance, free_port, pid_alive, sim_config

pytestmark = pytest.mark.integration


def serve_again(config: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "appliance.cli", "serve", "--config", str(config)]
    return subprocess.run(
        [*command, "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_second_appliance_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    config, port = sim_config(tmp_path)
    with Appliance(config, port) as first:
        assert first.proc is not None
        before = {engine: view["pid"] for engine, view in first.engines().items()}
        second = serve_again(config)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr
        assert "server.data_dir" in lines[0]
        assert f"held by the appliance with pid {first.proc.pid}" in lines[0]
        assert all(pid_alive(pid) for pid in before.values())
        after = {engine: view["pid"] for engine, view in first.engines().items()}
        assert after == before  # no engine was ended and restarted
        assert first.get("/health").status_code == 200
    # The lock goes with the process: the next appliance starts.
    with Appliance(config, port) as next_one:
        assert next_one.get("/health").status_code == 200
