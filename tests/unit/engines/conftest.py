"""Fakes for the supervisor's seams: a spawner whose processes the test ends, a probe it steers."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvloop

from appliance.engines.base import LaunchSpec


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Real processes are spawned on both loops; everything else here needs only asyncio's."""
    if item.path.name == "test_process.py":
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


class FakeProcess:
    """A pretend engine process: it ends when the test says so, or on the signals it obeys."""

    def __init__(self, spec: LaunchSpec, pid: int, *, obey_term: bool = True) -> None:
        self.spec = spec
        self._pid = pid
        self.obey_term = obey_term
        self.exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.signals: list[tuple[int, float]] = []  # (signal, loop time), signal 0 left out
        self.closed = False
        self._output: asyncio.Queue[str | None] = asyncio.Queue()

    @property
    def pid(self) -> int:
        return self._pid

    async def wait(self) -> int:
        return await asyncio.shield(self.exit)

    def signal_group(self, sig: int) -> bool:
        if self.exit.done():
            return False
        if sig == 0:
            return True
        self.signals.append((sig, asyncio.get_running_loop().time()))
        if sig == signal.SIGKILL or (sig == signal.SIGTERM and self.obey_term):
            self.finish(-sig)
        return True

    def sent(self) -> list[int]:
        return [sig for sig, _ in self.signals]

    def finish(self, code: int) -> None:
        if not self.exit.done():
            self.exit.set_result(code)
            self._output.put_nowait(None)

    def say(self, line: str) -> None:
        self._output.put_nowait(line)

    async def lines(self) -> AsyncIterator[str]:
        while (line := await self._output.get()) is not None:
            yield line

    def close(self) -> None:
        self.closed = True


class FakeSpawner:
    """Hands out FakeProcesses; `on_spawn[engine_id]` lets a test script each new one."""

    def __init__(self) -> None:
        self.processes: list[FakeProcess] = []
        self.on_spawn: dict[str, Callable[[FakeProcess], None]] = {}
        self.obey_term = True
        self.error: OSError | None = None
        self.log: list[tuple[str, str]] = []  # shared with on_change recorders: ("spawn", id)

    async def spawn(self, spec: LaunchSpec) -> FakeProcess:
        if self.error is not None:
            raise self.error
        proc = FakeProcess(spec, 1000 + len(self.processes), obey_term=self.obey_term)
        self.processes.append(proc)
        self.log.append(("spawn", spec.engine_id))
        hook = self.on_spawn.get(spec.engine_id)
        if hook is not None:
            hook(proc)
        return proc

    def of(self, engine_id: str) -> list[FakeProcess]:
        return [p for p in self.processes if p.spec.engine_id == engine_id]

    def last(self, engine_id: str) -> FakeProcess:
        return self.of(engine_id)[-1]


class FakeProbe:
    """Healthy URLs are the ones the test put in `healthy`."""

    def __init__(self) -> None:
        self.healthy: set[str] = set()
        self.checks: list[str] = []

    async def check(self, url: str) -> bool:
        self.checks.append(url)
        return url in self.healthy

    def count(self, url: str) -> int:
        return self.checks.count(url)


def spec(engine_id: str, *, startup_timeout_s: float = 5.0) -> LaunchSpec:
    return LaunchSpec(
        engine_id=engine_id,
        argv=("engine", engine_id),
        env={},
        health_url=f"http://127.0.0.1/{engine_id}/health",
        startup_timeout_s=startup_timeout_s,
    )


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for `predicate` to hold; generous, because other work shares this machine."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


@pytest.fixture
def spawner() -> FakeSpawner:
    return FakeSpawner()


@pytest.fixture
def probe() -> FakeProbe:
    return FakeProbe()


@pytest.fixture
def make_spec() -> Callable[..., LaunchSpec]:
    return spec


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[None]]:
    return until
