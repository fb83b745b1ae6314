"""The supervisor's state machine, driven through a fake spawner and a fake health probe."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import signal
from typing import Any

import pytest

from appliance.engines.states import EngineState as S
from appliance.engines.states import EngineStatus
from appliance.engines.supervisor import RestartPolicy, Supervisor
from appliance.errors import EngineUnavailable, NotFound
from tests.support.changes import without_repeats

FAST = RestartPolicy(
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    startsecs=30.0,
    max_fast_failures=3,
    health_interval_s=0.01,
    unhealthy_after=3,
    stop_grace_s=0.2,
    start_poll_s=0.005,
    probe_timeout_s=1.0,
)


def policy(**changes: Any) -> RestartPolicy:
    return dataclasses.replace(FAST, **changes)


def recorder(sup: Supervisor, engine_id: str | None = None) -> list[EngineStatus]:
    seen: list[EngineStatus] = []
    sup.on_change(lambda s: seen.append(s) if engine_id in (None, s.engine_id) else None)
    return seen


def states(seen: list[EngineStatus]) -> list[str]:
    """The state changes, health flips left out."""
    return without_repeats(str(status.state) for status in seen)


async def test_engines_start_one_after_another(spawner, probe, make_spec, wait_until):
    a, b = make_spec("a"), make_spec("b")
    sup = Supervisor([a, b], spawner=spawner, probe=probe, policy=FAST)
    sup.on_change(lambda s: spawner.log.append((str(s.state), s.engine_id)))
    starting = asyncio.create_task(sup.start())

    await wait_until(lambda: probe.count(a.health_url) >= 5)
    assert spawner.of("b") == []  # a is still loading: b must wait
    probe.healthy |= {a.health_url, b.health_url}
    await asyncio.wait_for(starting, 10)

    log = spawner.log
    assert log.index(("spawn", "a")) < log.index(("RUNNING", "a")) < log.index(("spawn", "b"))
    assert sup.all_running()
    await sup.stop()


async def test_next_engine_starts_once_the_previous_is_fatal(spawner, probe, make_spec):
    a, b = make_spec("a"), make_spec("b")
    spawner.on_spawn["a"] = lambda proc: proc.finish(1)
    probe.healthy.add(b.health_url)
    sup = Supervisor([a, b], spawner=spawner, probe=probe, policy=FAST)
    sup.on_change(lambda s: spawner.log.append((str(s.state), s.engine_id)))

    await asyncio.wait_for(sup.start(), 10)

    assert spawner.log.index(("FATAL", "a")) < spawner.log.index(("spawn", "b"))
    status = sup.status()
    assert status["a"].state is S.FATAL
    assert status["a"].last_error == "exited with status 1 during start"
    assert status["a"].last_exit_code == 1
    assert status["b"].state is S.RUNNING
    assert not sup.all_running() and sup.any_running()
    await sup.stop()


async def test_missed_health_deadline_ends_fatal_without_hanging(spawner, probe, make_spec):
    a = make_spec("a", startup_timeout_s=0.05)
    sup = Supervisor([a], spawner=spawner, probe=probe, policy=FAST)
    seen = recorder(sup)

    await asyncio.wait_for(sup.start(), 10)

    status = sup.status()["a"]
    assert status.state is S.FATAL
    assert status.last_error == "did not become healthy within 0.05 s"
    assert status.restarts == 2 and status.pid is None
    assert len(spawner.of("a")) == FAST.max_fast_failures
    assert all(p.sent() == [signal.SIGTERM] for p in spawner.of("a"))
    assert states(seen) == ["STARTING", "BACKOFF"] * 2 + ["STARTING", "FATAL"]
    await asyncio.wait_for(sup.stop(), 5)


async def test_engine_that_cannot_be_spawned_ends_fatal(spawner, probe, make_spec):
    spawner.error = FileNotFoundError(2, "No such file or directory")
    sup = Supervisor([make_spec("a")], spawner=spawner, probe=probe, policy=FAST)
    await asyncio.wait_for(sup.start(), 10)
    status = sup.status()["a"]
    assert status.state is S.FATAL
    assert status.last_error == "could not start engine: No such file or directory"


async def test_exit_while_running_restarts_with_growing_backoff(
    spawner, probe, make_spec, wait_until
):
    a = make_spec("a")
    probe.healthy.add(a.health_url)
    pol = policy(backoff_initial_s=0.1, backoff_max_s=1.0, max_fast_failures=5)
    sup = Supervisor([a], spawner=spawner, probe=probe, policy=pol)
    seen = recorder(sup)
    loop = asyncio.get_running_loop()
    await sup.start()
    first = sup.status()["a"].pid

    spawner.last("a").finish(-signal.SIGKILL)
    t0 = loop.time()
    await wait_until(lambda: sup.status()["a"].state is S.RUNNING and len(spawner.processes) == 2)
    first_gap = loop.time() - t0
    status = sup.status()["a"]
    assert status.restarts == 1 and status.pid != first
    assert status.last_exit_code == -signal.SIGKILL
    assert status.last_error == "killed by SIGKILL"
    assert states(seen) == ["STARTING", "RUNNING", "EXITED", "BACKOFF", "STARTING", "RUNNING"]

    spawner.last("a").finish(1)
    t1 = loop.time()
    await wait_until(lambda: sup.status()["a"].state is S.RUNNING and len(spawner.processes) == 3)
    second_gap = loop.time() - t1
    assert sup.status()["a"].restarts == 2
    assert first_gap >= 0.1 and second_gap >= 0.2  # exponential: initial, then twice that
    await sup.stop()


async def test_fast_failures_in_a_row_end_fatal(spawner, probe, make_spec, wait_until):
    a = make_spec("a")
    probe.healthy.add(a.health_url)
    sup = Supervisor([a], spawner=spawner, probe=probe, policy=policy(max_fast_failures=2))
    await sup.start()
    spawner.last("a").finish(1)
    await wait_until(lambda: len(spawner.processes) == 2 and sup.status()["a"].state is S.RUNNING)
    spawner.last("a").finish(1)
    await wait_until(lambda: sup.status()["a"].state is S.FATAL)
    assert sup.status()["a"].last_error == "exited with status 1"
    await sup.stop()


async def test_long_healthy_run_resets_the_fast_failure_count(
    spawner, probe, make_spec, wait_until
):
    a = make_spec("a")
    probe.healthy.add(a.health_url)
    spawner.on_spawn["a"] = lambda proc: proc.finish(1) if len(spawner.processes) == 1 else None
    sup = Supervisor(
        [a], spawner=spawner, probe=probe, policy=policy(startsecs=0.05, max_fast_failures=2)
    )
    await sup.start()  # one fast failure (exit during start), then RUNNING
    assert sup.status()["a"].state is S.RUNNING
    await asyncio.sleep(0.3)  # a healthy run well past startsecs

    spawner.last("a").finish(1)  # would be the second fast failure without the reset
    await wait_until(lambda: len(spawner.processes) == 3 and sup.status()["a"].state is S.RUNNING)
    assert sup.status()["a"].restarts == 2
    await sup.stop()


async def test_unhealthy_engine_is_restarted(spawner, probe, make_spec, wait_until):
    a = make_spec("a")
    probe.healthy.add(a.health_url)
    sup = Supervisor([a], spawner=spawner, probe=probe, policy=FAST)
    seen = recorder(sup)
    await sup.start()
    first = spawner.last("a")

    probe.healthy.clear()
    await wait_until(lambda: sup.status()["a"].state is S.STARTING)
    assert first.sent() == [signal.SIGTERM]
    probe.healthy.add(a.health_url)
    await wait_until(lambda: sup.status()["a"].state is S.RUNNING)

    assert states(seen) == [
        "STARTING", "RUNNING", "STOPPING", "EXITED", "BACKOFF", "STARTING", "RUNNING"
    ]  # fmt: skip
    exited = next(s for s in seen if s.state is S.EXITED)
    assert exited.last_error == "failed 3 health checks in a row"
    assert [s.healthy for s in seen[:3]] == [False, True, False]  # the flip is reported too
    await sup.stop()


async def test_stop_sends_term_then_kill_after_the_grace(spawner, probe, make_spec):
    a = make_spec("a")
    probe.healthy.add(a.health_url)
    spawner.obey_term = False
    sup = Supervisor([a], spawner=spawner, probe=probe, policy=FAST)
    seen = recorder(sup)
    await sup.start()

    await asyncio.wait_for(sup.stop(), 5)

    proc = spawner.last("a")
    assert proc.sent() == [signal.SIGTERM, signal.SIGKILL]
    (_, term_at), (_, kill_at) = proc.signals
    assert kill_at - term_at >= FAST.stop_grace_s
    assert proc.closed
    status = sup.status()["a"]
    assert status.state is S.STOPPED and status.pid is None
    assert status.last_exit_code == -signal.SIGKILL
    assert states(seen)[-2:] == ["STOPPING", "STOPPED"]


async def test_stop_of_an_obedient_engine_sends_term_only(spawner, probe, make_spec):
    a = make_spec("a")
    probe.healthy.add(a.health_url)
    sup = Supervisor([a], spawner=spawner, probe=probe, policy=policy(stop_grace_s=30.0))
    await sup.start()
    await asyncio.wait_for(sup.stop(), 5)  # far less than the grace
    assert spawner.last("a").sent() == [signal.SIGTERM]


async def test_stop_while_starting_returns_and_ends_the_process(
    spawner, probe, make_spec, wait_until
):
    sup = Supervisor(
        [make_spec("a", startup_timeout_s=300), make_spec("b")],
        spawner=spawner,
        probe=probe,
        policy=FAST,
    )
    starting = asyncio.create_task(sup.start())
    await wait_until(lambda: sup.status()["a"].state is S.STARTING and spawner.processes)

    await asyncio.wait_for(sup.stop(), 5)
    await asyncio.wait_for(starting, 5)

    assert spawner.last("a").exit.done()
    assert spawner.of("b") == []
    assert {s.state for s in sup.status().values()} == {S.STOPPED}


async def test_on_change_sees_every_transition_in_order(spawner, probe, make_spec, wait_until):
    a = make_spec("a")
    probe.healthy.add(a.health_url)
    sup = Supervisor([a], spawner=spawner, probe=probe, policy=FAST)
    seen = recorder(sup)
    await sup.start()
    spawner.last("a").finish(-signal.SIGKILL)
    await wait_until(lambda: len(spawner.processes) == 2 and sup.status()["a"].state is S.RUNNING)
    await sup.stop()

    assert [str(s.state) for s in seen] == [
        "STARTING", "RUNNING", "EXITED", "BACKOFF", "STARTING", "RUNNING", "STOPPING", "STOPPED"
    ]  # fmt: skip
    assert [s.restarts for s in seen] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert seen[1].pid == 1000 and seen[5].pid == 1001
    assert all(a.since <= b.since for a, b in itertools.pairwise(seen))


async def test_progress_is_the_last_output_line_while_starting(
    spawner, probe, make_spec, wait_until
):
    a = make_spec("a")
    sup = Supervisor([a], spawner=spawner, probe=probe, policy=FAST)
    starting = asyncio.create_task(sup.start())
    await wait_until(lambda: bool(spawner.processes))
    proc = spawner.last("a")
    proc.say("Loading safetensors checkpoint shards: 1/4")
    proc.say("Loading safetensors checkpoint shards: 4/4")
    await wait_until(
        lambda: sup.status()["a"].progress == "Loading safetensors checkpoint shards: 4/4"
    )

    probe.healthy.add(a.health_url)
    await asyncio.wait_for(starting, 10)
    proc.say("INFO: 200 OK")
    await asyncio.sleep(0.02)
    assert sup.status()["a"].progress is None
    await sup.stop()


async def test_progress_is_kept_when_the_start_fails(spawner, probe, make_spec):
    def crash(proc: Any) -> None:
        proc.say("torch.OutOfMemoryError: CUDA out of memory")
        asyncio.get_running_loop().call_later(0.05, proc.finish, 1)

    spawner.on_spawn["a"] = crash
    sup = Supervisor([make_spec("a")], spawner=spawner, probe=probe, policy=FAST)
    await asyncio.wait_for(sup.start(), 10)
    status = sup.status()["a"]
    assert status.state is S.FATAL
    assert status.progress == "torch.OutOfMemoryError: CUDA out of memory"


async def test_restart_brings_a_fatal_engine_back(spawner, probe, make_spec):
    a = make_spec("a", startup_timeout_s=0.02)
    sup = Supervisor([a], spawner=spawner, probe=probe, policy=FAST)
    await sup.start()
    assert sup.status()["a"].state is S.FATAL

    probe.healthy.add(a.health_url)
    status = await asyncio.wait_for(sup.restart("a"), 10)
    assert status.state is S.RUNNING
    assert status.restarts == FAST.max_fast_failures
    await sup.stop()


async def test_restart_of_a_running_engine_replaces_its_process(spawner, probe, make_spec):
    a = make_spec("a")
    probe.healthy.add(a.health_url)
    sup = Supervisor([a], spawner=spawner, probe=probe, policy=FAST)
    await sup.start()
    old = spawner.last("a")
    status = await asyncio.wait_for(sup.restart("a"), 10)
    assert old.sent() == [signal.SIGTERM]
    assert status.state is S.RUNNING and status.pid != old.pid and status.restarts == 1
    await sup.stop()


async def test_concurrent_restarts_leave_one_process(spawner, probe, make_spec):
    a = make_spec("a")
    probe.healthy.add(a.health_url)
    sup = Supervisor([a], spawner=spawner, probe=probe, policy=FAST)
    await sup.start()
    await asyncio.wait_for(asyncio.gather(sup.restart("a"), sup.restart("a")), 10)
    alive = [p for p in spawner.of("a") if not p.exit.done()]
    assert len(alive) == 1 and sup.status()["a"].pid == alive[0].pid
    assert sup.status()["a"].restarts == 2
    await sup.stop()
    assert all(p.exit.done() for p in spawner.processes)


async def test_restart_of_an_unknown_engine_is_not_found(spawner, probe, make_spec):
    sup = Supervisor([make_spec("a")], spawner=spawner, probe=probe, policy=FAST)
    with pytest.raises(NotFound):
        await sup.restart("nope")


async def test_restart_after_stop_is_refused(spawner, probe, make_spec):
    sup = Supervisor([make_spec("a")], spawner=spawner, probe=probe, policy=FAST)
    await sup.stop()
    with pytest.raises(EngineUnavailable):
        await sup.restart("a")
    assert spawner.processes == []


async def test_a_failing_callback_does_not_stop_the_supervisor(spawner, probe, make_spec):
    a = make_spec("a")
    probe.healthy.add(a.health_url)
    sup = Supervisor([a], spawner=spawner, probe=probe, policy=FAST)

    def broken(status: EngineStatus) -> None:
        raise RuntimeError("boom")

    sup.on_change(broken)
    unsubscribe = sup.on_change(lambda s: None)
    unsubscribe()
    await sup.start()
    assert sup.all_running()
    await sup.stop()


async def test_a_hanging_probe_counts_as_unhealthy(spawner, make_spec):
    class Hanging:
        async def check(self, url: str) -> bool:
            await asyncio.sleep(3600)
            return True

    sup = Supervisor(
        [make_spec("a", startup_timeout_s=0.05)],
        spawner=spawner,
        probe=Hanging(),
        policy=policy(probe_timeout_s=0.02, max_fast_failures=1),
    )
    await asyncio.wait_for(sup.start(), 10)
    assert sup.status()["a"].state is S.FATAL


def test_duplicate_engine_ids_are_refused(make_spec):
    with pytest.raises(ValueError, match="two launch specs"):
        Supervisor([make_spec("a"), make_spec("a")])


@pytest.mark.parametrize(
    "changes", [{"max_fast_failures": 0}, {"health_interval_s": 0}, {"stop_grace_s": -1}]
)
def test_nonsense_policies_are_refused(changes):
    with pytest.raises(ValueError, match="RestartPolicy"):
        RestartPolicy(**changes)


def test_backoff_doubles_up_to_the_maximum():
    pol = RestartPolicy(backoff_initial_s=1.0, backoff_max_s=30.0)
    assert [pol.backoff(n) for n in (0, 1, 2, 3, 5, 10)] == [1.0, 1.0, 2.0, 4.0, 16.0, 30.0]


async def test_no_engines_means_all_running_and_none_running():
    sup = Supervisor([])
    await sup.start()
    assert sup.all_running() and not sup.any_running()
    await sup.stop()
