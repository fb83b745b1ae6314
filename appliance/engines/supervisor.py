"""Starts, health-gates, restarts and stops the engines the appliance launches.

Engines start one after another: vLLM sizes its KV cache from the GPU memory free when it starts,
so two engines loading at once on a shared GPU would both count the same memory. An engine is
RUNNING once its health URL answers; one that dies or turns unhealthy is restarted with exponential
backoff, and one that keeps failing fast ends FATAL instead of looping for ever. Stopping signals
each engine's whole process group, so vLLM's worker processes go too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from appliance.engines.base import LaunchSpec
from appliance.engines.health import HealthProbe, HttpHealthProbe
from appliance.engines.process import ProcessHandle, Spawner, SubprocessSpawner, describe_exit
from appliance.engines.states import EngineState, EngineStatus
from appliance.errors import EngineUnavailable, NotFound

log = logging.getLogger("appliance.engines.supervisor")

StatusCallback = Callable[[EngineStatus], None]
# After SIGKILL the kernel ends a process at once; this only bounds a wait that should be short.
_KILL_WAIT_S = 5.0
_GROUP_POLL_S = 0.05
# Time the output reader gets to read an ended engine's last lines (usually why it ended).
_DRAIN_S = 0.5


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How patient the supervisor is with an engine."""

    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    # An engine that dies or fails its health checks before it has been RUNNING this long (or
    # before it ever got there) fails "fast"; a longer healthy run clears the count.
    startsecs: float = 10.0
    max_fast_failures: int = 3
    health_interval_s: float = 5.0
    # Failed health checks in a row, while RUNNING, after which the engine is restarted.
    unhealthy_after: int = 3
    # Between SIGTERM and SIGKILL to the engine's process group.
    stop_grace_s: float = 10.0
    # How often the health URL is tried while an engine starts.
    start_poll_s: float = 0.5
    probe_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_fast_failures", "unhealthy_after"):
            if getattr(self, name) < 1:
                raise ValueError(f"RestartPolicy.{name} must be at least 1")
        for name in ("health_interval_s", "start_poll_s", "probe_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RestartPolicy.{name} must be positive")
        for name in ("backoff_initial_s", "backoff_max_s", "startsecs", "stop_grace_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"RestartPolicy.{name} must not be negative")

    def backoff(self, failures: int) -> float:
        """Delay before the next start after `failures` fast failures in a row (at least 1)."""
        doubling: int = 2 ** max(failures - 1, 0)
        return min(self.backoff_initial_s * doubling, self.backoff_max_s)


@dataclass(eq=False)
class _Engine:
    """The supervisor's mutable record of one engine."""

    spec: LaunchSpec
    state: EngineState = EngineState.STOPPED
    since: float = field(default_factory=time.time)
    restarts: int = 0
    spawned: int = 0
    last_exit_code: int | None = None
    last_error: str | None = None
    progress: str | None = None
    healthy: bool = False
    fast_failures: int = 0
    running_since: float = 0.0  # loop time
    handle: ProcessHandle | None = None
    exit: asyncio.Future[int] | None = None
    reader: asyncio.Task[None] | None = None
    spawning: asyncio.Future[ProcessHandle] | None = None
    life: asyncio.Task[None] | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    # Held by start() and restart() while they launch this engine.
    control: asyncio.Lock = field(default_factory=asyncio.Lock)

    def status(self) -> EngineStatus:
        return EngineStatus(
            engine_id=self.spec.engine_id,
            state=self.state,
            pid=self.handle.pid if self.handle is not None else None,
            restarts=self.restarts,
            since=self.since,
            last_exit_code=self.last_exit_code,
            last_error=self.last_error,
            progress=self.progress,
            healthy=self.healthy,
        )


class Supervisor:
    """Runs the launched engines: in order, health-gated, restarted with backoff, stopped."""

    def __init__(
        self,
        specs: Sequence[LaunchSpec],
        *,
        spawner: Spawner | None = None,
        probe: HealthProbe | None = None,
        policy: RestartPolicy | None = None,
    ) -> None:
        self._engines: dict[str, _Engine] = {}
        for spec in specs:
            if spec.engine_id in self._engines:
                raise ValueError(f"two launch specs for engine {spec.engine_id!r}")
            self._engines[spec.engine_id] = _Engine(spec)
        self._spawner: Spawner = spawner or SubprocessSpawner()
        self._probe: HealthProbe = probe or HttpHealthProbe()
        self._policy = policy or RestartPolicy()
        self._callbacks: list[StatusCallback] = []
        self._start_lock = asyncio.Lock()
        self._closed = False

    # -- public API -------------------------------------------------------------------------------

    @property
    def policy(self) -> RestartPolicy:
        return self._policy

    def on_change(self, callback: StatusCallback) -> Callable[[], None]:
        """Call `callback` with the new status on every state change and health flip.

        Callbacks run on the event loop and must not block. Returns a function that unsubscribes.
        """
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    async def start(self) -> None:
        """Start every engine, one after another; returns when each is RUNNING or FATAL."""
        self._closed = False
        for eng in self._engines.values():
            if self._closed:  # stop() was called while starting
                return
            async with eng.control:
                if eng.life is None or eng.life.done():
                    await self._launch(eng)

    async def stop(self) -> None:
        """Stop every engine: SIGTERM to its group, SIGKILL after the grace. Never hangs.

        Also closes the health probe, which belongs to the supervisor once handed to it.
        """
        self._closed = True
        await asyncio.gather(*(self._halt(eng) for eng in self._engines.values()))
        await asyncio.gather(*(self._stop_engine(eng) for eng in self._engines.values()))
        aclose = getattr(self._probe, "aclose", None)  # the probe is the supervisor's alone
        if aclose is not None:
            await aclose()

    async def restart(self, engine_id: str) -> EngineStatus:
        """Stop one engine and start it again, also out of FATAL; returns once RUNNING or FATAL."""
        eng = self._engines.get(engine_id)
        if eng is None:
            raise NotFound(f"no launched engine {engine_id!r}")
        if self._closed:
            raise EngineUnavailable(
                f"engine {engine_id!r} cannot restart: the appliance is stopping"
            )
        async with eng.control:  # one restart at a time, or two processes could share one engine
            await self._halt(eng)
            await self._stop_engine(eng)
            eng.fast_failures = 0
            await self._launch(eng)
        return eng.status()

    def status(self) -> dict[str, EngineStatus]:
        return {engine_id: eng.status() for engine_id, eng in self._engines.items()}

    def all_running(self) -> bool:
        """Every launched engine is RUNNING (true when there are none)."""
        return all(eng.state is EngineState.RUNNING for eng in self._engines.values())

    def any_running(self) -> bool:
        return any(eng.state is EngineState.RUNNING for eng in self._engines.values())

    # -- one engine's life ------------------------------------------------------------------------

    async def _launch(self, eng: _Engine) -> None:
        """Begin `eng`'s life and wait until it is RUNNING or FATAL."""
        if self._closed:
            return
        eng.settled.clear()
        eng.life = asyncio.create_task(self._life(eng), name=f"engine {eng.spec.engine_id}")
        settled = asyncio.create_task(eng.settled.wait())
        try:
            await asyncio.wait({eng.life, settled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            settled.cancel()

    async def _life(self, eng: _Engine) -> None:
        """Start, watch, back off, start again; until FATAL or cancelled."""
        try:
            while True:
                fast = True
                if await self._start_once(eng):
                    eng.settled.set()
                    fast = await self._watch(eng)
                eng.fast_failures = eng.fast_failures + 1 if fast else 0
                if eng.fast_failures >= self._policy.max_fast_failures:
                    self._set(eng, EngineState.FATAL)
                    eng.settled.set()
                    return
                self._set(eng, EngineState.BACKOFF)
                await asyncio.sleep(self._policy.backoff(eng.fast_failures))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave the engine in limbo
            log.exception("engine %s: supervisor error", eng.spec.engine_id)
            await self._terminate(eng)
            self._set(eng, EngineState.FATAL, last_error=f"supervisor error: {exc}")
            eng.settled.set()

    async def _start_once(self, eng: _Engine) -> bool:
        """Spawn the engine and wait for its health URL; False on exit or a missed deadline."""
        policy, spec = self._policy, eng.spec
        async with self._start_lock:
            if eng.spawned:
                eng.restarts += 1
            eng.spawned += 1
            self._set(eng, EngineState.STARTING, progress=None, healthy=False)
            if not await self._spawn(eng):
                return False
            assert eng.exit is not None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + spec.startup_timeout_s
            while True:
                if eng.exit.done():
                    code = eng.exit.result()
                    await self._terminate(eng)
                    eng.last_exit_code = code
                    eng.last_error = f"{describe_exit(code)} during start"
                    return False
                if await self._check(spec.health_url):
                    eng.running_since = loop.time()
                    self._set(eng, EngineState.RUNNING, healthy=True, progress=None)
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    eng.last_exit_code = await self._terminate(eng)
                    eng.last_error = f"did not become healthy within {spec.startup_timeout_s:g} s"
                    return False
                await asyncio.wait({eng.exit}, timeout=min(policy.start_poll_s, remaining))

    async def _spawn(self, eng: _Engine) -> bool:
        """Start the process; shielded, so a cancelled start still leaves a handle to stop."""
        eng.spawning = asyncio.ensure_future(self._spawner.spawn(eng.spec))
        eng.spawning.add_done_callback(lambda done: self._attach(eng, done))
        try:
            await asyncio.shield(eng.spawning)
        except OSError as exc:
            eng.last_error = f"could not start {eng.spec.argv[0]}: {exc.strerror or exc}"
            return False
        return True

    def _attach(self, eng: _Engine, spawning: asyncio.Future[ProcessHandle]) -> None:
        if spawning.cancelled() or spawning.exception() is not None:
            return
        handle = spawning.result()
        eng.handle = handle
        eng.exit = asyncio.ensure_future(handle.wait())
        eng.reader = asyncio.create_task(self._read(eng, handle))

    async def _read(self, eng: _Engine, handle: ProcessHandle) -> None:
        """Keep the engine's last output line as its progress while it starts."""
        try:
            async for line in handle.lines():
                if line and eng.state is EngineState.STARTING and eng.handle is handle:
                    eng.progress = line
        except Exception:  # the output is for information; losing it must not stop the engine
            log.debug("engine %s: output reader failed", eng.spec.engine_id, exc_info=True)

    async def _watch(self, eng: _Engine) -> bool:
        """Watch a RUNNING engine until it ends or turns unhealthy; True if that was fast."""
        policy, spec = self._policy, eng.spec
        assert eng.exit is not None
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            await asyncio.wait({eng.exit}, timeout=policy.health_interval_s)
            ran = loop.time() - eng.running_since
            if eng.exit.done():
                code = eng.exit.result()
                self._set(
                    eng,
                    EngineState.EXITED,
                    healthy=False,
                    last_exit_code=code,
                    last_error=describe_exit(code),
                )
                await self._terminate(eng)  # the rest of its group, if any is left
                return ran < policy.startsecs
            if await self._check(spec.health_url):
                failures = 0
                if ran >= policy.startsecs:
                    eng.fast_failures = 0
                if not eng.healthy:
                    self._set(eng, EngineState.RUNNING, healthy=True)
                continue
            failures += 1
            if eng.healthy:
                self._set(eng, EngineState.RUNNING, healthy=False)
            if failures >= policy.unhealthy_after:
                reason = f"failed {failures} health checks in a row"
                self._set(eng, EngineState.STOPPING, last_error=reason)
                ended = await self._terminate(eng)
                self._set(eng, EngineState.EXITED, last_exit_code=ended, last_error=reason)
                return ran < policy.startsecs

    async def _check(self, url: str) -> bool:
        try:
            async with asyncio.timeout(self._policy.probe_timeout_s):
                return await self._probe.check(url)
        except TimeoutError:
            return False
        except Exception:
            log.debug("health probe of %s failed", url, exc_info=True)
            return False

    # -- stopping ---------------------------------------------------------------------------------

    async def _halt(self, eng: _Engine) -> None:
        """End the engine's life task, and wait for a spawn in flight to hand over its process."""
        if eng.life is not None and not eng.life.done():
            eng.life.cancel()
            await asyncio.gather(eng.life, return_exceptions=True)
        if eng.spawning is not None and not eng.spawning.done():
            await asyncio.wait({eng.spawning}, timeout=_KILL_WAIT_S)

    async def _stop_engine(self, eng: _Engine) -> None:
        if eng.handle is not None:
            self._set(eng, EngineState.STOPPING, healthy=False)
            code = await self._terminate(eng)
            if code is not None:
                eng.last_exit_code = code
        self._set(eng, EngineState.STOPPED, healthy=False)

    async def _terminate(self, eng: _Engine) -> int | None:
        """SIGTERM the engine's group, SIGKILL what is left after the grace; the exit status."""
        handle, exited = eng.handle, eng.exit
        if handle is None or exited is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._policy.stop_grace_s
        handle.signal_group(signal.SIGTERM)
        await asyncio.wait({exited}, timeout=self._policy.stop_grace_s)
        if exited.done():  # the leader is gone; its workers get the rest of the grace to follow
            await _group_gone(handle, deadline)
        if not exited.done() or handle.signal_group(0):
            log.warning(
                "engine %s: still running after %g s, killing its process group",
                eng.spec.engine_id,
                self._policy.stop_grace_s,
            )
            handle.signal_group(signal.SIGKILL)
            await asyncio.wait({exited}, timeout=_KILL_WAIT_S)
        await self._release(eng)
        return exited.result() if exited.done() else None

    async def _release(self, eng: _Engine) -> None:
        reader, handle = eng.reader, eng.handle
        eng.handle = eng.exit = eng.reader = eng.spawning = None
        try:
            if reader is not None:
                await asyncio.wait({reader}, timeout=_DRAIN_S)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        finally:
            if handle is not None:
                handle.close()

    # -- transitions ------------------------------------------------------------------------------

    def _set(self, eng: _Engine, state: EngineState, **changes: object) -> None:
        """Move `eng` to `state`, log it, tell the callbacks."""
        previous, was_healthy = eng.state, eng.healthy
        for name, value in changes.items():
            setattr(eng, name, value)
        if state is previous and eng.healthy is was_healthy:
            return
        if state is not previous:
            eng.state = state
            eng.since = time.time()
        self._log(eng, previous)
        snapshot = eng.status()
        for callback in list(self._callbacks):
            try:
                callback(snapshot)
            except Exception:
                log.exception("engine status callback %r failed", callback)

    def _log(self, eng: _Engine, previous: EngineState) -> None:
        state = eng.state
        warn = state in (EngineState.EXITED, EngineState.FATAL)
        if state is EngineState.RUNNING and not eng.healthy:
            warn = True
        level = logging.WARNING if warn else logging.INFO
        detail = []
        if eng.handle is not None and state is not EngineState.STOPPED:
            detail.append(f"pid {eng.handle.pid}")
        if state is EngineState.RUNNING:
            detail.append("healthy" if eng.healthy else "unhealthy")
        if state in (EngineState.EXITED, EngineState.BACKOFF, EngineState.FATAL) and eng.last_error:
            detail.append(eng.last_error)
        if state is EngineState.BACKOFF:
            detail.append(f"retry in {self._policy.backoff(eng.fast_failures):g} s")
        if state is EngineState.FATAL:
            detail.append(f"gave up after {eng.fast_failures} fast failures")
        if eng.restarts and state is EngineState.STARTING:
            detail.append(f"restart {eng.restarts}")
        suffix = f" ({'; '.join(detail)})" if detail else ""
        log.log(level, "engine %s: %s -> %s%s", eng.spec.engine_id, previous, state, suffix)


async def _group_gone(handle: ProcessHandle, until: float) -> None:
    """Wait until no process of the group is left, or `until` (loop time).

    Polls: the kernel gives no event when the last process of a group ends.
    """
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        if not handle.signal_group(0):
            return
        await asyncio.sleep(_GROUP_POLL_S)
