"""The real spawner with small Python children: environment, sessions, output, exit, death signal.

Each async test runs twice, on asyncio's loop and on uvloop (the appliance's server runs on uvloop);
see `pytest_asyncio_loop_factories` in conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from appliance.engines.base import LaunchSpec
from appliance.engines.process import (
    LINE_LIMIT,
    SubprocessSpawner,
    child_env,
    clean_line,
    describe_exit,
    end_stale_group,
    redact,
)


def python(code: str, *, env: dict[str, str] | None = None, remove: tuple[str, ...] = ()):
    return LaunchSpec(
        engine_id="tiny",
        argv=(sys.executable, "-c", textwrap.dedent(code)),
        env=env or {},
        health_url="http://127.0.0.1:9/health",
        startup_timeout_s=5.0,
        env_remove=remove,
    )


async def run(spec: LaunchSpec) -> tuple[list[str], int]:
    """Start `spec`, read all of its output, return it with the exit status."""
    handle = await SubprocessSpawner().spawn(spec)
    try:
        async with asyncio.timeout(20):
            lines = [line async for line in handle.lines()]
            return lines, await handle.wait()
    finally:
        handle.close()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_child_env_adds_and_removes():
    spec = python("", env={"A": "1"}, remove=("B",))
    assert child_env(spec, {"B": "x", "C": "y"}) == {"A": "1", "C": "y"}


def test_clean_line_keeps_the_last_progress_bar_drawing_and_drops_colours():
    assert clean_line(b"Loading 10%\rLoading 50%\rLoading 100%\r\n") == "Loading 100%"
    assert clean_line(b"\x1b[32mINFO\x1b[0m ready\n") == "INFO ready"
    assert clean_line(b"bad \xff\xfe bytes\n") == "bad \ufffd\ufffd bytes"
    assert clean_line(b"\r\n") == ""


def test_redact_hides_keys_and_tokens():
    argv = ("vllm", "serve", "m", "--api-key", "s3cret", "--hf-token=abc", "--port", "1")
    assert redact(argv) == [
        "vllm", "serve", "m", "--api-key", "***", "--hf-token=***", "--port", "1"
    ]  # fmt: skip


def test_describe_exit():
    assert describe_exit(0) == "exited with status 0"
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"


async def test_output_is_merged_logged_and_never_breaks_on_bad_bytes(caplog):
    spec = python(
        """
        import sys
        print("to stdout", flush=True)
        sys.stderr.write("to stderr\\n"); sys.stderr.flush()
        sys.stdout.buffer.write(b"bad \\xff bytes\\n"); sys.stdout.flush()
        sys.exit(3)
        """
    )
    with caplog.at_level(logging.INFO, logger="appliance.engine.tiny"):
        lines, code = await run(spec)
    assert lines == ["to stdout", "to stderr", "bad \ufffd bytes"]
    assert code == 3
    logged = [r.getMessage() for r in caplog.records if r.name == "appliance.engine.tiny"]
    assert logged[-3:] == lines


async def test_environment_stdin_and_own_session():
    spec = python(
        """
        import os, sys
        print(os.environ.get("ADDED"), os.environ.get("REMOVED"))
        print(repr(sys.stdin.read()))
        print(os.getpgid(0) == os.getpid(), os.getsid(0) == os.getpid())
        """,
        env={"ADDED": "yes"},
        remove=("REMOVED",),
    )
    os.environ["REMOVED"] = "present"
    try:
        lines, code = await run(spec)
    finally:
        del os.environ["REMOVED"]
    assert lines == ["yes None", "''", "True True"]
    assert code == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
async def test_child_is_told_to_die_with_the_appliance():
    spec = python(
        """
        import ctypes, signal
        value = ctypes.c_int()
        ctypes.CDLL(None).prctl(2, ctypes.byref(value), 0, 0, 0)  # PR_GET_PDEATHSIG
        print(value.value == signal.SIGKILL)
        """
    )
    lines, _ = await run(spec)
    assert lines == ["True"]


async def test_exit_is_seen_while_a_grandchild_still_holds_the_output():
    spec = python(
        """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print(child.pid, flush=True)
        """
    )
    handle = await SubprocessSpawner().spawn(spec)
    lines = handle.lines()
    grandchild = int(await anext(lines))
    try:
        assert await asyncio.wait_for(handle.wait(), 20) == 0
        assert not gone(grandchild)
        assert handle.signal_group(0)  # the group lives on in the grandchild
    finally:
        handle.signal_group(signal.SIGKILL)
        handle.close()
    async with asyncio.timeout(10):
        while not gone(grandchild):
            await asyncio.sleep(0.02)
    assert gone(grandchild)


async def test_long_lines_are_cut_not_fatal():
    spec = python(f"print('x' * {LINE_LIMIT * 3}); print('after')")
    lines, code = await run(spec)
    assert code == 0
    assert "".join(lines[:-1]) == "x" * (LINE_LIMIT * 3)
    assert lines[-1] == "after"


async def test_missing_program_raises_oserror():
    spec = LaunchSpec(
        engine_id="none",
        argv=("/nonexistent/engine-binary",),
        env={},
        health_url="http://127.0.0.1:9/health",
        startup_timeout_s=1.0,
    )
    with pytest.raises(OSError):
        await SubprocessSpawner().spawn(spec)


def _group_with_a_worker() -> tuple[psutil.Popen, int]:
    """A session leader with a child, like an engine and its worker; (leader, worker pid)."""
    code = "import subprocess, sys, time; "
    code += "w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
    code += "print(w.pid, flush=True); time.sleep(120)"
    leader = psutil.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    assert leader.stdout is not None
    return leader, int(leader.stdout.readline())


def test_a_stale_engine_group_left_by_an_earlier_run_is_ended(tmp_path):
    leader, worker = _group_with_a_worker()
    record = tmp_path / "engine.pgid"
    record.write_text(f"{leader.pid} {leader.create_time():.3f}\n")
    try:
        ended = end_stale_group(record)
        assert sorted(ended) == sorted([leader.pid, worker])
        leader.wait(10)
        assert gone(worker) and not record.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
        leader.wait(10)


def test_a_record_whose_pid_now_belongs_to_another_process_ends_nothing(tmp_path):
    leader, worker = _group_with_a_worker()
    record = tmp_path / "engine.pgid"
    record.write_text(f"{leader.pid} {leader.create_time() - 3600:.3f}\n")  # an older start
    try:
        assert end_stale_group(record) == []
        assert leader.is_running() and not gone(worker)
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait(10)


async def test_the_spawner_records_each_engine_group_and_forgets_it_once_ended(tmp_path):
    spawner = SubprocessSpawner(tmp_path)
    handle = await spawner.spawn(python("import time; time.sleep(120)"))
    record = tmp_path / "tiny.pgid"
    try:
        pid, created = record.read_text().split()
        assert int(pid) == handle.pid
        assert abs(float(created) - psutil.Process(handle.pid).create_time()) < 0.01
    finally:
        handle.signal_group(signal.SIGKILL)
        await asyncio.wait_for(handle.wait(), 20)
        async with asyncio.timeout(20):
            while handle.signal_group(0):
                await asyncio.sleep(0.05)
        handle.close()
    assert not record.exists()
