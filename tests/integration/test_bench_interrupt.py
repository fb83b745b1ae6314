"""`appliance bench run` as a real process, stopped mid-run: nothing measured is lost.

A kill leaves the run `running` in the database; the next open marks it `interrupted` because its
process is gone. Ctrl-C lets the process mark it itself. Either way the samples flushed before the
stop are there and the report summarizes them.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.bench.report import build_report, render
from appliance.store.bench import BenchStore
from tests.support.bench_sims import KEY, SimEngine, running_sim
from tests.support.running import SHIPPED, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimEngine]:
    # Answers to every agent name, as the appliance does; slow enough that a run lasts.
    with running_sim(
        "llama-3.1-8b-instruct",
        tmp_path_factory.mktemp("sim"),
        "--served-model-name",
        "kai",
        "guardrail",
        "genetic",
        "wellness",
        "--time-scale",
        "0.2",
    ) as engine:
        yield engine


def start_cli(sim: SimEngine, db: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance.cli",
            "bench",
            "run",
            "--config",
            str(SHIPPED),
            "--db",
            str(db),
            "--base-url",
            sim.base_url,
            "--api-key",
            KEY,
            "--agents",
            "guardrail",
            "--no-mix",
            "--requests",
            "500",
            "--concurrency",
            "2",
            "--time-scale",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def stored_samples(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=10) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM samples").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


async def reopen(db: Path) -> tuple[str, str | None, int, str]:
    store = await BenchStore.open(db)
    try:
        marked = await store.mark_stale_interrupted()
        run = await store.get_run(1)
        assert run is not None
        report = render(await build_report(store, run), "md")
        return run.status, run.reason, len(await store.samples(1)), report + str(marked)
    finally:
        await store.close()


def test_a_killed_run_is_interrupted_at_the_next_open(sim: SimEngine, tmp_path: Path) -> None:
    db = tmp_path / "bench.sqlite3"
    proc = start_cli(sim, db)
    try:
        wait_for(lambda: stored_samples(db) >= 6, timeout=60)
    finally:
        proc.kill()
        proc.wait(10)
    status, reason, kept, report = asyncio.run(reopen(db))
    assert status == "interrupted"
    assert reason == "the process running it stopped before it finished"
    assert kept >= 6
    assert "Run interrupted" in report and "| guardrail |" in report


def wait_for_started(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> bytes:
    """The CLI's readiness line on stderr: printed once its signal handlers are in place."""
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        if b"benchmark run 1 started" in line:
            return seen
    raise AssertionError(f"no readiness line from the CLI: {seen.decode(errors='replace')}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_marks_the_run_interrupted_itself(
    sim: SimEngine, tmp_path: Path, sig: signal.Signals
) -> None:
    db = tmp_path / "bench.sqlite3"
    proc = start_cli(sim, db)
    head = wait_for_started(proc)
    wait_for(lambda: stored_samples(db) >= 4, timeout=60)
    proc.send_signal(sig)
    _, rest = proc.communicate(timeout=60)
    err = head + rest
    assert proc.returncode == 128 + sig, err.decode(errors="replace")
    assert b"Traceback" not in err
    with sqlite3.connect(db) as conn:
        status, reason = conn.execute("SELECT status, reason FROM runs WHERE id = 1").fetchone()
    assert (status, reason) == ("interrupted", "stopped before it finished")
    assert stored_samples(db) >= 4
