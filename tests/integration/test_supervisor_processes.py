"""The supervisor with real processes: the simulator engine, and a stand-in that misbehaves on cue."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import openai
import psutil
import pytest

from appliance.config.load import load_config
from appliance.engines.base import LaunchSpec
from appliance.engines.health import HttpHealthProbe
from appliance.engines.process import ProcessHandle, SubprocessSpawner
from appliance.engines.registry import build_engines, new_internal_api_key
from appliance.engines.states import EngineState as S
from appliance.engines.supervisor import RestartPolicy, Supervisor
from tests.support.changes import without_repeats
from tests.support.running import free_port, pid_alive

pytestmark = pytest.mark.integration

SUPPORT = Path(__file__).resolve().parents[1] / "support"
STAND_IN = SUPPORT / "stand_in_engine.py"
PARENT = SUPPORT / "supervised_parent.py"
MODELS_TOML = Path(__file__).resolve().parents[2] / "models.toml"
POLICY = RestartPolicy(
    backoff_initial_s=0.1,
    backoff_max_s=0.5,
    startsecs=30.0,
    max_fast_failures=3,
    health_interval_s=0.2,
    unhealthy_after=3,
    stop_grace_s=2.0,
    start_poll_s=0.05,
    probe_timeout_s=2.0,
)


class RecordingSpawner(SubprocessSpawner):
    """The real spawner, noting every pid it started."""

    def __init__(self) -> None:
        super().__init__()
        self.pids: list[int] = []

    async def spawn(self, spec: LaunchSpec) -> ProcessHandle:
        handle = await super().spawn(spec)
        self.pids.append(handle.pid)
        return handle


def stand_in(port: int, *flags: str, startup_timeout_s: float = 30.0) -> LaunchSpec:
    return LaunchSpec(
        engine_id="stand-in",
        argv=(sys.executable, str(STAND_IN), "--port", str(port), *flags),
        env={},
        health_url=f"http://127.0.0.1:{port}/health",
        startup_timeout_s=startup_timeout_s,
    )


def simulator(port: int, api_key: str) -> LaunchSpec:
    argv = (sys.executable, "-m", "appliance.simulator", "--model", "sim-model")
    argv += ("--host", "127.0.0.1", "--port", str(port), "--api-key", api_key)
    argv += ("--served-model-name", "sim-model", "--time-scale", "0")
    return LaunchSpec(
        engine_id="sim",
        argv=argv,
        env={},
        health_url=f"http://127.0.0.1:{port}/health",
        startup_timeout_s=60.0,
    )


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.fixture
async def supervise() -> AsyncIterator[Callable[..., Supervisor]]:
    """Build supervisors that are stopped at the end, whatever the test did."""
    made: list[Supervisor] = []

    def make(*specs: LaunchSpec, spawner: SubprocessSpawner | None = None, **changes) -> Supervisor:
        sup = Supervisor(
            specs,
            spawner=spawner or SubprocessSpawner(),
            probe=HttpHealthProbe(),
            policy=dataclasses.replace(POLICY, **changes),
        )
        made.append(sup)
        return sup

    yield make
    for sup in made:
        await asyncio.wait_for(sup.stop(), 30)


async def test_killed_simulator_comes_back_with_a_new_pid(supervise):
    port, key = free_port(), "integration-key"
    sup = supervise(simulator(port, key))
    await asyncio.wait_for(sup.start(), 60)
    first = sup.status()["sim"]
    assert first.state is S.RUNNING and first.healthy and first.pid is not None

    os.kill(first.pid, signal.SIGKILL)
    await until(lambda: sup.status()["sim"].state is S.RUNNING and sup.status()["sim"].restarts)

    again = sup.status()["sim"]
    assert again.restarts == 1 and again.pid != first.pid
    assert again.last_exit_code == -signal.SIGKILL and again.last_error == "killed by SIGKILL"
    assert not pid_alive(first.pid)
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key)
    async with client:
        models = await client.models.list()
    assert [m.id for m in models.data] == ["sim-model"]


async def test_configured_sim_engines_start_in_order_behind_the_internal_key(supervise):
    config = load_config(MODELS_TOML, profile="sim", env={})
    engines = tuple(
        msgspec.structs.replace(
            e, port=free_port(), sim=msgspec.structs.replace(e.sim, time_scale=0.0)
        )
        for e in config.engines
    )
    config = msgspec.structs.replace(config, engines=engines)
    key = new_internal_api_key()
    endpoints, specs = build_engines(config, key)
    sup = supervise(*specs)
    seen: list[tuple[str, str]] = []
    sup.on_change(lambda s: seen.append((s.engine_id, str(s.state))))

    await asyncio.wait_for(sup.start(), 120)

    assert sup.all_running()
    order = [e.id for e in engines]
    # A slow health check on a running engine while the next one boots reports RUNNING again.
    assert without_repeats(seen) == [
        (engine, state) for engine in order for state in ("STARTING", "RUNNING")
    ]
    pids = [status.pid for status in sup.status().values()]
    for endpoint in endpoints:
        async with openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=key) as client:
            models = await client.models.list()
        assert [m.id for m in models.data] == list(endpoint.names)
        async with openai.AsyncOpenAI(
            base_url=endpoint.base_url, api_key="wrong", max_retries=0
        ) as stranger:
            with pytest.raises(openai.AuthenticationError):
                await stranger.models.list()
    await asyncio.wait_for(sup.stop(), 30)
    assert all(pid is not None and not pid_alive(pid) for pid in pids)


async def test_a_killed_engines_orphaned_worker_is_ended_before_the_restart(supervise):
    spawner = RecordingSpawner()
    sup = supervise(stand_in(free_port(), "--grandchild"), spawner=spawner)
    await asyncio.wait_for(sup.start(), 60)
    engine = sup.status()["stand-in"].pid
    assert engine is not None
    worker = _worker_of(engine)

    os.kill(engine, signal.SIGKILL)
    await until(lambda: len(spawner.pids) == 2 and sup.status()["stand-in"].state is S.RUNNING)
    assert not pid_alive(worker)
    assert sup.status()["stand-in"].restarts == 1


async def test_never_healthy_engine_ends_fatal_in_bounded_time(supervise):
    spawner = RecordingSpawner()
    port = free_port()
    sup = supervise(
        # 2 s: the stand-in's Python must start and say it listens before the deadline, even
        # on a loaded host.
        stand_in(port, "--mode", "never-healthy", startup_timeout_s=2.0),
        spawner=spawner,
        max_fast_failures=2,
    )
    began = time.monotonic()
    await asyncio.wait_for(sup.start(), 30)
    took = time.monotonic() - began

    status = sup.status()["stand-in"]
    assert status.state is S.FATAL and status.pid is None and not status.healthy
    assert status.last_error == "did not become healthy within 2 s"
    assert status.progress == f"listening on {port}"
    assert status.restarts == 1 and len(spawner.pids) == 2
    assert all(not pid_alive(pid) for pid in spawner.pids)
    assert took >= 4.0  # two full deadlines: it really waited for the engine


async def test_engine_that_exits_during_start_says_how(supervise):
    sup = supervise(stand_in(free_port(), "--mode", "exit", "--exit-code", "3"))
    await asyncio.wait_for(sup.start(), 30)
    status = sup.status()["stand-in"]
    assert status.state is S.FATAL
    assert status.last_error == "exited with status 3 during start"
    assert status.last_exit_code == 3
    assert status.progress == "giving up"


async def test_stop_ends_the_whole_group_even_when_it_ignores_sigterm(supervise):
    sup = supervise(stand_in(free_port(), "--grandchild", "--ignore-term"), stop_grace_s=1.0)
    await asyncio.wait_for(sup.start(), 60)
    engine = sup.status()["stand-in"].pid
    assert engine is not None
    worker = _worker_of(engine)
    assert pid_alive(worker)

    began = time.monotonic()
    await asyncio.wait_for(sup.stop(), 30)
    took = time.monotonic() - began

    assert not pid_alive(engine) and not pid_alive(worker)
    assert sup.status()["stand-in"].state is S.STOPPED
    assert sup.status()["stand-in"].last_exit_code == -signal.SIGKILL
    assert took >= 1.0  # SIGTERM was ignored, so SIGKILL came after the grace


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_no_engine_outlives_a_killed_appliance(loop: str):
    port = free_port()
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PARENT),
        loop,
        str(port),
        sys.executable,
        str(STAND_IN),
        "--port",
        str(port),
        "--grandchild",
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    engine = None
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), 60)
        assert line.startswith(b"running ")
        engine = int(line.split()[1])
        worker = _worker_of(engine)  # a vLLM worker's stand-in: the parent-death signal misses it
        assert pid_alive(engine) and pid_alive(worker)

        parent.kill()  # SIGKILL: the appliance gets no chance to stop anything
        await parent.wait()
        await until(lambda: not pid_alive(engine) and not pid_alive(worker), timeout=10)
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        if engine is not None and pid_alive(engine):
            os.killpg(engine, signal.SIGKILL)


def _worker_of(engine: int) -> int:
    """The stand-in's grandchild: its one child process."""
    children = psutil.Process(engine).children()
    assert len(children) == 1
    return children[0].pid
