"""The spawner seam: how the supervisor starts an engine process and talks to its process group.

`SubprocessSpawner` is the real one. Each engine runs in its own session (its own process group), so
a stop signal reaches vLLM's worker processes too. No engine outlives the appliance, however it
ends: the engine is told by the kernel to die with SIGKILL when the appliance goes away, and a
group guard (`group_guard.py`) then SIGKILLs the rest of its group (vLLM's EngineCore and workers).
Given a run directory, the spawner records each engine's group there and, before starting an
engine, ends a group left by an appliance that could not run its guard (both killed at once).
Tests pass a fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol, cast

import psutil

from appliance.engines.base import LaunchSpec
from appliance.engines.group_guard import members

# Output lines longer than this are cut into pieces rather than buffered without end.
LINE_LIMIT = 64 * 1024
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SECRET_FLAG = re.compile(r"^--?[\w-]*(key|token|secret|password)[\w-]*", re.I)
_PR_SET_PDEATHSIG = 1
log = logging.getLogger("appliance.engines.process")


class ProcessHandle(Protocol):
    """A started engine process, the leader of its own process group."""

    @property
    def pid(self) -> int: ...

    async def wait(self) -> int:
        """The exit status once the process has ended; negative: killed by that signal."""
        ...

    def signal_group(self, sig: int) -> bool:
        """Send `sig` to every process of the group; False when none is left (0 only asks)."""
        ...

    def lines(self) -> AsyncIterator[str]:
        """The merged stdout and stderr, one line at a time, until the output closes.

        Read by one consumer, which keeps reading so that the engine never blocks on a full pipe.
        """
        ...

    def close(self) -> None:
        """Release the pipes once the supervisor is done with the process."""
        ...


class Spawner(Protocol):
    async def spawn(self, spec: LaunchSpec) -> ProcessHandle:
        """Start the process `spec` describes; raises OSError when it cannot be started."""
        ...


def child_env(spec: LaunchSpec, base: dict[str, str] | None = None) -> dict[str, str]:
    """The appliance's environment, plus the spec's variables, minus the ones it removes."""
    env = dict(os.environ if base is None else base)
    env.update(spec.env)
    for name in spec.env_remove:
        env.pop(name, None)
    return env


def clean_line(raw: bytes) -> str:
    """One output line as text: undecodable bytes replaced, colours and progress-bar redraws gone.

    Progress bars (tqdm, as vLLM uses while loading weights) redraw with carriage returns; only the
    last drawing is worth keeping.
    """
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    text = _ANSI.sub("", text)
    parts = [part for part in text.split("\r") if part.strip()]
    return parts[-1].rstrip() if parts else ""


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` asking the kernel for SIGKILL when the appliance dies (Linux only).

    The request is bound to the thread that forks, the event loop's; the appliance runs its loop
    for as long as it lives, so that is the appliance's lifetime.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the appliance died before the request took hold
            os._exit(1)

    return preexec


class _OutputProtocol(asyncio.SubprocessProtocol):
    """Feeds the merged output to a reader and notes the exit as soon as the process ends.

    asyncio's own `Process.wait()` also waits for the output pipe to close, which never happens
    while a grandchild (a vLLM worker) still holds it; the supervisor must learn of the exit
    at once, so this protocol resolves `exited` from `process_exited`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.reader = asyncio.StreamReader(limit=LINE_LIMIT, loop=loop)
        self.exited: asyncio.Future[int] = loop.create_future()
        self.transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transport has the methods but not the class: no isinstance check here.
        self.transport = cast(asyncio.SubprocessTransport, transport)

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self.reader.feed_data(data.encode() if isinstance(data, str) else data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.reader.feed_eof()

    def process_exited(self) -> None:
        code = self.transport.get_returncode() if self.transport else None
        if not self.exited.done():
            self.exited.set_result(-1 if code is None else code)


class SubprocessHandle:
    """A real engine process started by `SubprocessSpawner`."""

    def __init__(
        self,
        engine_id: str,
        pid: int,
        protocol: _OutputProtocol,
        guard: asyncio.BaseTransport | None = None,
        record: Path | None = None,
    ) -> None:
        self.engine_id = engine_id
        self._pid = pid
        self._protocol = protocol
        self._guard = guard
        self._record = record
        self._log = logging.getLogger(f"appliance.engine.{engine_id}")

    @property
    def pid(self) -> int:
        return self._pid

    async def wait(self) -> int:
        return await asyncio.shield(self._protocol.exited)

    def signal_group(self, sig: int) -> bool:
        try:
            os.killpg(self._pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return sig != 0 or _has_live_member(self._pid)

    async def lines(self) -> AsyncIterator[str]:
        reader = self._protocol.reader
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as end:
                raw = end.partial
                if raw:
                    yield self._logged(raw)
                return
            except asyncio.LimitOverrunError as over:
                raw = await reader.read(max(over.consumed, 1))
            yield self._logged(raw)

    def _logged(self, raw: bytes) -> str:
        line = clean_line(raw)
        if line:
            self._log.info("%s", line)
        return line

    def close(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()
        if self._guard is not None and not _has_live_member(self._pid):
            self._guard.close()
            if self._record is not None:
                self._record.unlink(missing_ok=True)


class SubprocessSpawner:
    """Starts engines as real child processes, each the leader of its own process group.

    `run_dir`, when given, holds one record per engine (`ENGINE.pgid`) for the stale-engine
    cleanup at the next start.
    """

    def __init__(self, run_dir: Path | None = None) -> None:
        self._run_dir = run_dir

    async def spawn(self, spec: LaunchSpec) -> ProcessHandle:
        loop = asyncio.get_running_loop()
        record = None
        if self._run_dir is not None:
            record = self._run_dir / f"{spec.engine_id}.pgid"
            end_stale_group(record)
        transport, protocol = await loop.subprocess_exec(
            lambda: _OutputProtocol(loop),
            *spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env(spec),
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        pid = transport.get_pid()
        logging.getLogger(f"appliance.engine.{spec.engine_id}").info(
            "started pid %d: %s", pid, " ".join(redact(spec.argv))
        )
        if record is not None:
            _write_record(record, pid)
        guard = await _start_guard(loop, pid)
        return SubprocessHandle(spec.engine_id, pid, protocol, guard, record)


async def _start_guard(loop: asyncio.AbstractEventLoop, pgid: int) -> asyncio.BaseTransport | None:
    """The group guard for `pgid` (Linux: it needs /proc and the parent-death signal)."""
    if not sys.platform.startswith("linux"):
        return None
    argv = [sys.executable, "-m", "appliance.engines.group_guard", str(pgid), str(os.getpid())]
    try:
        transport, _ = await loop.subprocess_exec(
            asyncio.SubprocessProtocol,
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        log.warning("could not start the group guard for pid %d", pgid, exc_info=True)
        return None
    return transport


def _write_record(record: Path, pid: int) -> None:
    try:
        created = psutil.Process(pid).create_time()
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(f"{pid} {created:.3f}\n", encoding="ascii")
    except (OSError, psutil.Error):
        log.warning("could not record engine group %d in %s", pid, record, exc_info=True)


def end_stale_group(record: Path) -> list[int]:
    """SIGKILL what is left of the engine group `record` names; the pids ended.

    Only processes that are really that engine's: the group's leader, if alive, must have the
    recorded start time (else the pid was reused), and every member must have started since.
    """
    try:
        pgid_text, created_text = record.read_text(encoding="ascii").split()
        pgid, created = int(pgid_text), float(created_text)
    except (OSError, ValueError):
        return []
    ended: list[int] = []
    try:
        leader = psutil.Process(pgid)
        if abs(leader.create_time() - created) > 1.0:
            record.unlink(missing_ok=True)
            return []
    except psutil.NoSuchProcess:
        pass
    except psutil.Error:
        return []
    for pid in members(pgid):
        try:
            proc = psutil.Process(pid)
            if proc.create_time() >= created - 1.0:
                proc.kill()
                ended.append(pid)
        except psutil.Error:
            continue
    if ended:
        log.warning(
            "ended %d process(es) of engine group %d left by an earlier run: %s",
            len(ended),
            pgid,
            " ".join(map(str, ended)),
        )
        psutil.wait_procs([psutil.Process(p) for p in ended if psutil.pid_exists(p)], timeout=10)
    record.unlink(missing_ok=True)
    return ended


def _has_live_member(pgid: int) -> bool:
    """Whether a process of group `pgid` is alive, not merely a zombie its new parent has yet to
    reap (a container's init may take a while; meanwhile the group only looks alive)."""
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError):
            continue
    return False


def redact(argv: tuple[str, ...]) -> list[str]:
    """The command line with the values of key and token options hidden, fit for a log."""
    shown: list[str] = []
    hide_next = False
    for arg in argv:
        secret = _SECRET_FLAG.match(arg)
        if hide_next:
            shown.append("***")
        elif secret and "=" in arg:
            shown.append(arg.split("=", 1)[0] + "=***")
        else:
            shown.append(arg)
        hide_next = bool(secret) and "=" not in arg and not hide_next
    return shown


def describe_exit(code: int) -> str:
    """`exited with status 1` or `killed by SIGKILL`."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with status {code}"
