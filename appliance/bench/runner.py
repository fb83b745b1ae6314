"""Drive load at one level: closed-loop concurrency or Poisson arrivals, seeded.

Closed loop keeps N requests in flight, each worker sending its next request when the last one
ends (`--max-concurrency` in vLLM's terms). Rate mode sends requests at exponentially distributed
gaps whose sum is rescaled to exactly `n / rate`, as vLLM does, so throughput does not wander with
the seed. Every finished request goes to `on_sample` at once, so the caller can persist it while
the run goes on.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from appliance.bench.client import Clock, StreamClient, Target
from appliance.bench.records import MIX, Phase, Sample
from appliance.bench.workloads import BenchRequest, Workload


@dataclass(frozen=True, slots=True)
class Progress:
    phase: Phase
    done: int  # requests finished in this phase
    total: int
    failed: int


ProgressFn = Callable[[Progress], None]
SampleFn = Callable[[Sample], Awaitable[None]]
GateFn = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PhaseOutcome:
    phase: Phase
    samples: list[Sample]
    started_s: float  # since the run started, in modelled seconds
    duration_s: float  # in modelled seconds (divided by the time scale)


class Runner:
    """Runs phases of one benchmark run against fixed targets with one client."""

    def __init__(
        self,
        client: StreamClient,
        targets: Mapping[str, Target],
        workload: Workload,
        *,
        seed: int = 0,
        clock: Clock = time.perf_counter,
        on_sample: SampleFn | None = None,
        on_progress: ProgressFn | None = None,
        gate: GateFn | None = None,
        stopped: Callable[[], bool] | None = None,
    ) -> None:
        self.client = client
        self.targets = dict(targets)
        self.workload = workload
        self.seed = seed
        self._clock = clock
        self._on_sample = on_sample
        self._on_progress = on_progress
        self._gate = gate
        self._stopped = stopped or (lambda: False)
        self.t0 = clock()
        self._seq = 0
        self._offsets: dict[str, int] = {}

    def requests_for(self, phase: Phase) -> list[BenchRequest]:
        """Fresh requests for each phase: a later phase does not repeat an earlier one's."""
        start = self._offsets.get(phase.scope, 0)
        self._offsets[phase.scope] = start + phase.num_requests
        if phase.scope == MIX:
            return self.workload.mix_requests(phase.num_requests, start)
        return self.workload.agent_requests(phase.scope, phase.num_requests, start)

    def time_scale(self, requests: Sequence[BenchRequest]) -> float:
        """Pacing follows the fastest target in play; times are normalized per target."""
        return min(self.targets[a].time_scale for a in {r.agent for r in requests})

    async def run_phase(self, phase: Phase) -> PhaseOutcome:
        requests = self.requests_for(phase)
        missing = {r.agent for r in requests} - self.targets.keys()
        if missing:
            raise ValueError(f"no target for agent(s) {sorted(missing)}")
        scale = self.time_scale(requests)
        state = _PhaseState(phase, len(requests), self._on_progress)
        start = self._clock()
        try:
            if phase.mode == "concurrency":
                await self._closed_loop(phase, requests, state)
            else:
                await self._poisson(phase, requests, state, scale)
        except ExceptionGroup as group:  # a worker's own error, not a group of them
            raise group.exceptions[0] from None
        end = self._clock()
        return PhaseOutcome(
            phase=phase,
            samples=state.samples,
            started_s=(start - self.t0) / scale,
            duration_s=(end - start) / scale,
        )

    def _stopping(self) -> bool:
        """Asked to stop, or this task was cancelled: no further request.

        Checked before every request because a cancellation can be lost on its way through the
        HTTP stack (a connection closed while the cancellation lands turns it into a transport
        error, which is a sample); a worker that went on would send the rest of the phase.
        """
        task = asyncio.current_task()
        return self._stopped() or (task is not None and task.cancelling() > 0)

    async def _send(self, phase: Phase, req: BenchRequest, state: _PhaseState) -> None:
        if self._gate is not None:
            await self._gate()
        seq = self._seq
        self._seq += 1
        sample = await self.client.send(
            self.targets[req.agent], req, phase=phase.index, seq=seq, t0=self.t0
        )
        state.add(sample)
        if self._on_sample is not None:
            await self._on_sample(sample)

    async def _closed_loop(
        self, phase: Phase, requests: list[BenchRequest], state: _PhaseState
    ) -> None:
        queue = iter(requests)

        async def worker() -> None:
            for req in queue:
                if self._stopping():
                    return
                await self._send(phase, req, state)

        workers = max(1, min(phase.concurrency or 1, len(requests)))
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())

    async def _poisson(
        self, phase: Phase, requests: list[BenchRequest], state: _PhaseState, scale: float
    ) -> None:
        rate = phase.rate or 0.0
        if rate <= 0:
            raise ValueError("rate mode needs a positive request rate")
        offsets = arrival_offsets(len(requests), rate, self.seed + phase.index)
        begin = self._clock()
        async with asyncio.TaskGroup() as group:
            for offset, req in zip(offsets, requests, strict=True):
                wait = begin + offset * scale - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self._stopping():
                    return
                group.create_task(self._send(phase, req, state))


def arrival_offsets(count: int, rate: float, seed: int) -> list[float]:
    """Start offsets (seconds) of a Poisson process of `rate`, rescaled to end at count/rate."""
    rng = random.Random(seed)
    total = 0.0
    offsets: list[float] = []
    for _ in range(count):
        total += rng.expovariate(rate)
        offsets.append(total)
    if not offsets or total == 0:
        return offsets
    factor = (count / rate) / total
    return [o * factor for o in offsets]


class _PhaseState:
    __slots__ = ("done", "failed", "on_progress", "phase", "samples", "total")

    def __init__(self, phase: Phase, total: int, on_progress: ProgressFn | None) -> None:
        self.phase = phase
        self.total = total
        self.on_progress = on_progress
        self.samples: list[Sample] = []
        self.done = 0
        self.failed = 0

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)
        self.done += 1
        self.failed += 0 if sample.ok else 1
        if self.on_progress is not None:
            self.on_progress(Progress(self.phase, self.done, self.total, self.failed))
