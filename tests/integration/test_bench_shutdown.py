"""SIGTERM with a benchmark running inside the appliance: the run is stored `interrupted`, its
requests were never refused by the appliance's own closing listener, and a run left `running` by
a killed appliance is `interrupted` after the restart."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from tests.support.running import Appliance, sim_config, wait_for

pytestmark = pytest.mark.integration

# Schedules that do not fire during a test (29 February, 03:00).
QUIET = {
    'nightly_cron = "0 3 * * *"': 'nightly_cron = "0 3 29 2 *"',
    'probe_cron = "*/15 * * * *"': 'probe_cron = "0 3 29 2 *"',
}
# Admission off for the run that SIGTERM meets: on a busy host the gate may shed a benchmark
# request (503 overloaded_error), which is the gate's answer, not the closing listener's.
ADMISSION_OFF = {"enabled = true\nqueue_size = 64": "enabled = false\nqueue_size = 64"}
LONG_RUN = {
    "kind": "run",
    "agents": ["guardrail"],
    "mix": False,
    "requests": 5000,
    "concurrency": 4,
}


def _db(config: Path) -> Path:
    return config.parent / "var" / "bench.sqlite3"


def _samples(db: Path) -> list[tuple[int, str | None]]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=10) as conn:
        try:
            return [(int(r[0]), r[1]) for r in conn.execute("SELECT ok, error FROM samples")]
        except sqlite3.OperationalError:
            return []


def _run_row(db: Path, run_id: int) -> tuple[str, str | None]:
    with sqlite3.connect(db, timeout=10) as conn:
        status, reason = conn.execute(
            "SELECT status, reason FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
    return status, reason


def _start_run(appliance: Appliance) -> int:
    started = appliance.post("/benchmarks", json=LONG_RUN)
    assert started.status_code == 202, started.text
    return int(started.json()["id"])


def test_sigterm_interrupts_the_run_before_the_listener_closes(tmp_path: Path) -> None:
    config, port = sim_config(tmp_path, benchmarks=True, replace=QUIET | ADMISSION_OFF)
    db = _db(config)
    appliance = Appliance(config, port).start(timeout=60)
    try:
        run_id = _start_run(appliance)
        wait_for(lambda: len(_samples(db)) >= 8, timeout=60)
    finally:
        code = appliance.stop(signal.SIGTERM, timeout=60)
    # uvicorn re-raises the signal it handled once it has shut down: a clean stop either way.
    assert code in (0, -signal.SIGTERM), appliance.log()
    status, reason = _run_row(db, run_id)
    assert (status, reason) == ("interrupted", "stopped before it finished")
    samples = _samples(db)
    assert len(samples) >= 8
    # Stopped before the listener: no request of the run met a closed door.
    assert [error for ok, error in samples if not ok] == []


def test_a_run_left_running_by_a_killed_appliance_is_interrupted_after_restart(
    tmp_path: Path,
) -> None:
    config, port = sim_config(tmp_path, benchmarks=True, replace=QUIET)
    db = _db(config)
    appliance = Appliance(config, port).start(timeout=60)
    try:
        run_id = _start_run(appliance)
        wait_for(lambda: len(_samples(db)) >= 4, timeout=60)
    finally:
        appliance.stop(signal.SIGKILL, timeout=30)
    assert _run_row(db, run_id)[0] == "running"
    with Appliance(config, port) as again:
        run = again.get(f"/benchmarks/{run_id}").json()
        assert run["status"] == "interrupted"
        assert run["reason"] == "the process running it stopped before it finished"
        listed = again.get("/benchmarks").json()["data"]
        assert [r["status"] for r in listed if r["id"] == run_id] == ["interrupted"]
