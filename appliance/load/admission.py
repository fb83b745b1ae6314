"""Admission control per engine: a concurrency budget, a priority queue with deadlines, shedding.

Each engine has a gate with `capacity` slots (`[admission].max_concurrency`, by default the engine's
`max_num_seqs`, so the engine itself never queues the appliance's work).

Classes (`Priority`): on engines that serve the guardrail, a reserve of slots is the guardrail's
alone, so a safety check never waits behind Kai's long generations; every other class may fill the
rest. The reserve is `guardrail_reserve` of the slots, or more when the guardrail's own traffic
needs more (the monitor sizes it from the guardrail's arrival rate and answer time: see
`guardrail_slots`). Waiting requests are served most important first, then first come (below the
guardrail, newest first while the queue is standing: see `EngineGate._next`).

Outcomes, for a request of class c on engine e (score: `appliance.load.saturation`):

1. reroute: `assess` sends the request to the next model of its chain, if the chain has one,
   when e's breaker is open or its score for c reaches `reroute_at`; the guardrail only when it
   could not start at once (its reserve and its priority make waiting briefly on its own, fast
   engine better than moving to a slower one);
2. admit: a free slot for c and nobody of c's class or higher waiting: no wait at all;
3. shed, 503 `Overloaded` with Retry-After: analysis and benchmark requests at once when the score
   reaches `shed_at` (lower classes are shed first); any class when the queue is full and nobody
   less important waits (else the least important, newest waiter is shed to make room); and any
   request still waiting at its deadline;
4. otherwise wait in the queue until its deadline: for Kai and the analyses, min(`queue_timeout_s`,
   the class's P95 objective) less the time the class's requests now take on the engine (their
   median, from the latency windows), but never less than a quarter of that bound. A request that
   has waited so long it cannot meet its objective any more is lost anyway; shed, it at least hears
   so early, with Retry-After, and the waiters behind it get their turn while they can still make
   it. The guardrail waits up to `queue_timeout_s`: a late safety check beats none.

Everything here runs on the event loop: no locks, and the path without waiting never suspends.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from appliance.config.schema import AdmissionConfig, Config, EngineConfig
from appliance.errors import Overloaded
from appliance.gateway.hooks import ADMIT, Decision
from appliance.load import saturation
from appliance.load.priority import Priority
from appliance.load.saturation import UNKNOWN, Signal

CLASSES: tuple[Priority, ...] = tuple(Priority)
# Scores past full (a class with no slots is infinite) count as this much when weighing replicas.
MAX_SCORE = 4.0
REROUTE_SATURATED = Decision(reroute=True, reason="engine saturated")
MIN_DEADLINE_SHARE = 0.25
# The agents whose objective bounds each class's wait (the most patient one for analysis).
_CLASS_AGENTS: dict[Priority, tuple[str, ...]] = {
    Priority.INTERACTIVE: ("kai",),
    Priority.ANALYSIS: ("genetic", "wellness"),
    Priority.BENCHMARK: (),
}


class Permit:
    """One slot of one engine for one class; `release()` exactly once."""

    __slots__ = ("_gate", "_priority")

    def __init__(self, gate: EngineGate, priority: int) -> None:
        self._gate = gate
        self._priority = priority

    def release(self) -> None:
        self._gate.release(self._priority)


class _Waiter:
    __slots__ = ("future", "gone", "granted", "priority", "since")

    def __init__(self, priority: int, future: asyncio.Future[None], since: float) -> None:
        self.priority = priority
        self.future = future
        self.since = since  # loop time it started waiting
        self.granted = False
        self.gone = False  # left the queue: granted, displaced, timed out or cancelled


@dataclass(frozen=True, slots=True)
class GateSettings:
    capacity: int
    reserve: int
    queue_size: int
    # Per class: the queue timeout for the guardrail, min(queue timeout, objective) for the others.
    deadlines_s: tuple[float, ...]
    shed_at: float
    retry_after_s: float
    conservative: bool


class EngineGate:
    """The slots, queue and counters of one engine."""

    def __init__(self, engine_id: str, settings: GateSettings) -> None:
        self.engine_id = engine_id
        self.settings = settings
        self.capacity = settings.capacity
        self.reserve = 0
        self.ceilings: tuple[int, ...] = ()
        self.set_reserve(settings.reserve)
        self.arrivals = [0] * len(CLASSES)
        self._permits = tuple(Permit(self, p) for p in CLASSES)
        self.deadlines = list(settings.deadlines_s)
        self.in_flight = 0
        self.in_flight_by_class = [0] * len(CLASSES)
        self.waiting = 0
        self.waiting_by_class = [0] * len(CLASSES)
        self._queues: tuple[deque[_Waiter], ...] = tuple(deque() for _ in CLASSES)
        self.signal: Signal = UNKNOWN
        self._floor = 0.0
        self._known = False
        self.admitted = [0] * len(CLASSES)
        self.queued = [0] * len(CLASSES)
        self.rerouted: dict[tuple[int, str], int] = {}
        self.shed: dict[tuple[int, str], int] = {}

    # -- the score ---------------------------------------------------------------------------------

    def update(self, signal: Signal) -> None:
        """The monitor's latest view of the engine (from the background refresh)."""
        self.signal = signal
        self._floor = signal.floor
        self._known = signal.known

    def plan_deadlines(self, service_s: list[float | None]) -> None:
        """Each class's deadline from its bound and its current service time (None: unknown).
        The guardrail keeps its bound: a late safety check beats none."""
        for p, (bound, service) in enumerate(
            zip(self.settings.deadlines_s, service_s, strict=True)
        ):
            if service is None or math.isinf(bound) or p == Priority.GUARDRAIL:
                self.deadlines[p] = bound
            else:
                self.deadlines[p] = max(bound * MIN_DEADLINE_SHARE, bound - service)

    def score(self, priority: int) -> float:
        queued = self.waiting > 0 and self._waiting_at_or_above(priority)
        return saturation.combine(
            self._floor,
            self.in_flight / self.ceilings[priority] if self.ceilings[priority] else math.inf,
            known=self._known,
            conservative=self.settings.conservative,
            queued=queued,
        )

    def _waiting_at_or_above(self, priority: int) -> bool:
        by_class = self.waiting_by_class
        return any(by_class[p] for p in range(priority + 1))

    # -- slots -----------------------------------------------------------------------------------

    def can_start(self, priority: int) -> bool:
        """A slot for this class now, with nobody of its class or above waiting for one."""
        return self.in_flight < self.ceilings[priority] and not (
            self.waiting and self._waiting_at_or_above(priority)
        )

    def set_reserve(self, reserve: int) -> None:
        """Slots only the guardrail may use: at least the configured share, at most all but one
        (an engine outside the guardrail's chain keeps none)."""
        if self.settings.reserve:
            self.reserve = max(self.settings.reserve, min(reserve, self.capacity - 1))
        # Slots each class may hold: the guardrail all of them, the others all but the reserve.
        self.ceilings = tuple(
            self.capacity if p is Priority.GUARDRAIL else self.capacity - self.reserve
            for p in CLASSES
        )

    async def acquire(self, priority: int) -> Permit:
        self.arrivals[priority] += 1
        if priority >= Priority.ANALYSIS and self.score(priority) >= self.settings.shed_at:
            raise self._shed(priority, "saturated")
        if self.can_start(priority):
            self.in_flight += 1
            self.in_flight_by_class[priority] += 1
            self.admitted[priority] += 1
            return self._permits[priority]
        if self.waiting >= self.settings.queue_size:
            self._make_room(priority)
        return await self._wait(priority)

    def release(self, priority: int) -> None:
        self.in_flight -= 1
        self.in_flight_by_class[priority] -= 1
        if self.waiting:
            self._wake()

    async def _wait(self, priority: int) -> Permit:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(priority, loop.create_future(), loop.time())
        self._queues[priority].append(waiter)
        self.waiting += 1
        self.waiting_by_class[priority] += 1
        self.queued[priority] += 1
        try:
            async with asyncio.timeout(self.deadlines[priority]):
                await waiter.future
        except TimeoutError:
            if waiter.granted:  # the slot came just as the deadline passed: keep it
                self.admitted[priority] += 1
                return self._permits[priority]
            if not waiter.gone:
                self._leave(waiter)
            raise self._shed(priority, "deadline") from None
        except asyncio.CancelledError:
            if waiter.granted:
                self.release(priority)
            elif not waiter.gone:
                self._leave(waiter)
            raise
        self.admitted[priority] += 1
        return self._permits[priority]

    def _wake(self) -> None:
        """Hand free slots to waiters, most important class first (see `_next`)."""
        for priority, queue in enumerate(self._queues):
            while queue:
                if self.in_flight >= self.ceilings[priority]:
                    return  # this class cannot go; the classes below it may hold even fewer
                waiter = self._next(priority, queue)
                self._leave(waiter)
                waiter.granted = True
                self.in_flight += 1
                self.in_flight_by_class[priority] += 1
                waiter.future.set_result(None)

    def _next(self, priority: int, queue: deque[_Waiter]) -> _Waiter:
        """First come, first served; but below the guardrail, once the oldest waiter has used half
        its deadline the queue is standing, and the newest goes first (adaptive LIFO): under
        overload the old ones would miss their objective anyway, the new ones can still meet it."""
        oldest = queue[0]
        if priority == Priority.GUARDRAIL:
            return oldest  # safety checks keep their order: each one is a message on hold
        now = oldest.future.get_loop().time()
        if now - oldest.since > self.deadlines[priority] / 2:
            return queue[-1]
        return oldest

    def _leave(self, waiter: _Waiter) -> None:
        waiter.gone = True
        self._queues[waiter.priority].remove(waiter)
        self.waiting -= 1
        self.waiting_by_class[waiter.priority] -= 1

    def _make_room(self, priority: int) -> None:
        """The queue is full: shed the least important, newest waiter if it ranks below us."""
        worst_priority = max((p for p, queue in enumerate(self._queues) if queue), default=-1)
        if worst_priority <= priority:  # nobody less important waits (or no queue at all)
            raise self._shed(priority, "queue full")
        worst = self._queues[worst_priority][-1]
        self._leave(worst)
        worst.future.set_exception(self._shed(worst_priority, "displaced"))

    def _shed(self, priority: int, reason: str) -> Overloaded:
        key = (priority, reason)
        self.shed[key] = self.shed.get(key, 0) + 1
        return Overloaded(
            f"The appliance is at capacity for {Priority(priority).name.lower()} requests "
            f"({reason}); retry after {math.ceil(self.settings.retry_after_s)} s.",
            retry_after=self.settings.retry_after_s,
        )

    def count_reroute(self, priority: int, reason: str) -> None:
        key = (priority, reason)
        self.rerouted[key] = self.rerouted.get(key, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "guardrail_reserve": self.reserve,
            "in_flight": self.in_flight,
            "deadlines_s": {
                Priority(p).name.lower(): round(d, 3) for p, d in enumerate(self.deadlines)
            },
            "waiting": {Priority(p).name.lower(): n for p, n in enumerate(self.waiting_by_class)},
            "metrics_known": self._known,
            "score": {Priority(p).name.lower(): round(self.score(p), 3) for p in CLASSES},
            "signal": {
                "engine": round(self.signal.engine, 3),
                "kv_cache": round(self.signal.kv, 3),
                "latency": round(self.signal.latency, 3),
            },
            "admitted": {Priority(p).name.lower(): n for p, n in enumerate(self.admitted)},
            "rerouted": _by_class(self.rerouted),
            "shed": _by_class(self.shed),
        }


def _by_class(counts: dict[tuple[int, str], int]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (priority, reason), n in sorted(counts.items()):
        out.setdefault(Priority(priority).name.lower(), {})[reason] = n
    return out


class AdmissionController:
    """The gateway's `Admission`: one gate per engine. (Breakers are the gateway's: it reroutes
    around an open one and tells `rerouted`, which counts it here.)"""

    def __init__(self, config: Config, engine_ids: list[str]) -> None:
        self.settings = config.admission
        engines = {engine.id: engine for engine in config.engines}
        guarded = guardrail_engines(config)
        self.gates: dict[str, EngineGate] = {
            engine_id: EngineGate(
                engine_id,
                gate_settings(config, engines[engine_id], guarded=engine_id in guarded),
            )
            for engine_id in engine_ids
        }
        self._reroute_at = config.admission.reroute_at

    def assess(self, engine_id: str, priority: Priority, *, has_fallback: bool) -> Decision:
        if not has_fallback:
            return ADMIT
        gate = self.gates[engine_id]
        if priority == Priority.GUARDRAIL:
            saturated = not gate.can_start(priority)
        else:
            saturated = gate.score(priority) >= self._reroute_at
        if saturated:
            gate.count_reroute(priority, "saturated")
            return REROUTE_SATURATED
        return ADMIT

    def rerouted(self, engine_id: str, priority: Priority, reason: str) -> None:
        self.gates[engine_id].count_reroute(priority, reason)

    async def acquire(self, engine_id: str, priority: Priority) -> Permit:
        return await self.gates[engine_id].acquire(priority)

    def saturation(self, engine_id: str, priority: Priority) -> float:
        return min(self.gates[engine_id].score(priority), MAX_SCORE)

    def live_in_flight(self) -> int:
        """Requests in the engines now that are not benchmark requests (scheduled benchmarks wait
        while live traffic is high)."""
        return sum(
            gate.in_flight - gate.in_flight_by_class[Priority.BENCHMARK]
            for gate in self.gates.values()
        )

    def update(
        self, engine_id: str, signal: Signal, service_s: list[float | None] | None = None
    ) -> None:
        """The monitor's refresh: the engine's signal and each class's current service time."""
        gate = self.gates.get(engine_id)
        if gate is not None:
            gate.update(signal)
            if service_s is not None:
                gate.plan_deadlines(service_s)

    def snapshot(self) -> dict[str, Any]:
        return {engine_id: gate.snapshot() for engine_id, gate in self.gates.items()}


def guardrail_slots(rate_per_s: float, service_s: float) -> int:
    """Slots the guardrail's traffic needs: its mean concurrency (Little's law, rate x time) plus
    two standard deviations of a Poisson count, so a burst of checks still finds a slot."""
    mean = rate_per_s * service_s
    return math.ceil(mean + 2 * math.sqrt(mean)) if mean > 0 else 0


def guardrail_engines(config: Config) -> set[str]:
    """Engines in the guardrail's chain: the ones that keep slots for it."""
    guardrail = config.agents["guardrail"]
    out: set[str] = set()
    for model in (guardrail.model, *guardrail.fallbacks):
        out.update(engine.id for engine in config.engines_for(model))
    return out


def time_scale(engine: EngineConfig) -> float:
    """How much faster than real time an engine answers (the simulator's time scale; else 1)."""
    return engine.sim.time_scale if engine.kind == "sim" else 1.0


def objective_s(config: Config, agent: str, engine: EngineConfig) -> float:
    """The agent's P95 objective on this engine: the guide's upper figure, time-scaled."""
    return config.agents[agent].expected.p95_s[1] * time_scale(engine)


def gate_settings(config: Config, engine: EngineConfig, *, guarded: bool) -> GateSettings:
    admission: AdmissionConfig = config.admission
    capacity = admission.max_concurrency or engine.max_num_seqs
    reserve = min(math.ceil(capacity * admission.guardrail_reserve), capacity - 1) if guarded else 0
    deadlines = [admission.queue_timeout_s]  # the guardrail: a late check beats none
    for p in CLASSES[1:]:
        objectives = [objective_s(config, agent, engine) for agent in _CLASS_AGENTS[p]]
        bound = max(objectives) if objectives and min(objectives) > 0 else math.inf
        deadlines.append(min(admission.queue_timeout_s, bound))
    return GateSettings(
        capacity=capacity,
        reserve=max(reserve, 0),
        queue_size=admission.queue_size,
        deadlines_s=tuple(deadlines),
        shed_at=admission.shed_at,
        retry_after_s=float(admission.retry_after_s),
        conservative=admission.unknown_metrics == "conservative",
    )
