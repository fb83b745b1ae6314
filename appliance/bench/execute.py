"""One benchmark run from start to end: phases in order, samples persisted as they come.

The run is inserted as `running` before the first request; samples reach the database in batches
every half second; each phase's summaries are written when it ends. A cancelled run (appliance
shutdown) flushes what it has and is marked `interrupted`; a crash leaves it `running` for the next
start to mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from appliance.bench.client import Clock, StreamClient, Target
from appliance.bench.records import MIX, Kind, Mode, Phase, PhaseResult, Sample
from appliance.bench.results import phase_results
from appliance.bench.runner import GateFn, ProgressFn, Runner
from appliance.bench.sweep import Capacity, Level, capacity, check, knee, levels
from appliance.bench.workloads import Workload
from appliance.config.schema import AGENTS, Config
from appliance.store.bench import BenchStore
from appliance.store.bench_rows import RunMeta

# A sweep level sends at least this many requests per concurrent slot, so that the closed loop
# reaches a steady state instead of measuring one burst.
ROUNDS = 4


class RunParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What to run; unset numbers come from `[bench]`."""

    kind: Kind = "run"
    agents: tuple[str, ...] = AGENTS
    mix: bool | None = None  # the realistic mix too; default: yes, except for probes
    mode: Mode = "concurrency"
    concurrency: Annotated[int, Meta(ge=1, le=4096)] = 1
    rate: Annotated[float, Meta(gt=0)] | None = None
    requests: Annotated[int, Meta(ge=1, le=100_000)] | None = None
    max_concurrency: Annotated[int, Meta(ge=1, le=4096)] | None = None
    error_budget: Annotated[float, Meta(ge=0, le=1)] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        unknown = [a for a in self.agents if a not in AGENTS]
        if unknown:
            raise ValueError(f"unknown agent(s) {unknown}; expected some of {list(AGENTS)}")
        if not self.agents and not self.mix:
            raise ValueError("nothing to run: no agents and no mix")
        if self.mode == "rate" and self.rate is None:
            raise ValueError("mode 'rate' needs a rate (requests per second)")
        if self.kind == "sweep" and self.mode == "rate":
            raise ValueError("a sweep doubles concurrency; use mode 'concurrency'")


class BenchRun:
    """Runs `params` against `targets`, writing everything to `store`."""

    def __init__(
        self,
        store: BenchStore,
        config: Config,
        targets: Mapping[str, Target],
        params: RunParams,
        *,
        meta: RunMeta,
        on_progress: ProgressFn | None = None,
        gate: GateFn | None = None,
        clock: Clock = time.perf_counter,
        client: StreamClient | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.targets = dict(targets)
        self.params = params
        self.meta = meta
        self.on_progress = on_progress
        self.gate = gate
        self.clock = clock
        self._client = client
        bench = config.bench
        probe = params.kind == "probe"
        self.requests = params.requests or (bench.probe_requests if probe else bench.requests)
        self.max_concurrency = params.max_concurrency or bench.max_concurrency
        self.error_budget = (
            params.error_budget if params.error_budget is not None else bench.error_budget
        )
        self.seed = params.seed if params.seed is not None else bench.seed
        self.degradation = bench.degradation
        self.mix = params.mix if params.mix is not None else not probe
        self.run_id: int | None = None
        self.capacities: dict[str, Capacity] = {}
        self._next_phase = 0
        self._stopping = False
        self._task: asyncio.Task[Any] | None = None

    def stop(self) -> None:
        """Stop the run (a signal, a shutdown): no request after this one, stored `interrupted`.

        Sets a flag the workers check before each request, and cancels the running task; the
        flag holds even where a library swallows the cancellation, so the run never goes on, and
        never ends as `completed` with the requests the stop made fail.
        """
        if self._stopping:
            return
        self._stopping = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def objectives(self) -> dict[str, float]:
        return {a: c.expected.p95_s[1] for a, c in self.config.agents.items()}

    def snapshot(self) -> dict[str, Any]:
        """The resolved parameters, the expected table and the targets (no keys), as stored."""
        agents = self.config.agents
        return {
            **msgspec.to_builtins(self.params),
            "requests": self.requests,
            "max_concurrency": self.max_concurrency,
            "error_budget": self.error_budget,
            "degradation": self.degradation,
            "seed": self.seed,
            "mix": self.mix,
            "expected": {a: msgspec.to_builtins(agents[a].expected) for a in agents},
            "targets": {
                a: {"base_url": t.base_url, "model": t.model_name, "time_scale": t.time_scale}
                for a, t in self.targets.items()
            },
        }

    async def create(self, trigger: str) -> int:
        self.run_id = await self.store.create_run(
            self.params.kind, trigger, self.snapshot(), self.meta
        )
        return self.run_id

    async def execute(self) -> None:
        """Run every phase and finish the run row; cancellation marks it interrupted."""
        assert self.run_id is not None, "create() first"
        run_id = self.run_id
        self._task = asyncio.current_task()
        buffer = SampleBuffer(self.store, run_id)
        client = self._client or StreamClient(
            timeout_s=self.config.bench.request_timeout_s, clock=self.clock
        )
        counts: Counter[str] = Counter()
        try:
            if self._stopping:  # stopped between create() and here
                raise asyncio.CancelledError
            async with buffer:
                runner = Runner(
                    client,
                    self.targets,
                    Workload(self.seed, {a: c.max_tokens for a, c in self.config.agents.items()}),
                    seed=self.seed,
                    clock=self.clock,
                    on_sample=buffer.add,
                    on_progress=self.on_progress,
                    gate=self.gate,
                    stopped=lambda: self._stopping,
                )
                await self._phases(runner, buffer, counts)
        except asyncio.CancelledError:
            await _quietly(
                self.store.finish_run(
                    run_id,
                    "interrupted",
                    reason="stopped before it finished",
                    result=self._result(counts),
                )
            )
            raise
        except Exception as exc:
            await self.store.finish_run(
                run_id, "failed", reason=f"{type(exc).__name__}: {exc}", result=self._result(counts)
            )
            raise
        finally:
            if self._client is None:
                await _quietly(client.aclose())
        if self._stopping:
            await self.store.finish_run(
                run_id,
                "interrupted",
                reason="stopped before it finished",
                result=self._result(counts),
            )
        elif counts["requests"] and counts["failed"] == counts["requests"]:
            common = counts.most_common()
            error = next((k[4:] for k, _ in common if k.startswith("err:")), "error")
            await self.store.finish_run(
                run_id,
                "failed",
                reason=f"every request failed ({error})",
                result=self._result(counts),
            )
        else:
            await self.store.finish_run(run_id, "completed", result=self._result(counts))

    async def _phases(self, runner: Runner, buffer: SampleBuffer, counts: Counter[str]) -> None:
        scopes = [*self.params.agents, *([MIX] if self.mix else [])]
        objectives = self.objectives()
        for scope in scopes:
            if self._stopping:
                return
            if self.params.kind != "sweep":
                await self._phase(runner, buffer, counts, self._fixed_phase(scope))
                continue
            swept: list[Level] = []
            for phase in self._sweep_phases(scope):
                results = await self._phase(runner, buffer, counts, phase)
                level = Level(
                    concurrency=phase.concurrency or 1,
                    results=results,
                    objective=check(results, objectives, self.error_budget),
                    knee=knee(results, swept[0].results if swept else results, self.degradation),
                )
                swept.append(level)
                if not level.go_on:
                    break
            self.capacities[scope] = capacity(scope, swept, self.max_concurrency)

    def _fixed_phase(self, scope: str) -> Phase:
        probe = self.params.kind == "probe"
        return self._new_phase(
            scope,
            mode="concurrency" if probe else self.params.mode,
            concurrency=1 if probe else self.params.concurrency,
            rate=None if probe else self.params.rate,
            num_requests=self.requests * (2 if scope == MIX else 1),
        )

    def _sweep_phases(self, scope: str) -> Iterator[Phase]:
        for level in levels(self.max_concurrency):
            base = self.requests * (2 if scope == MIX else 1)
            yield self._new_phase(
                scope,
                mode="concurrency",
                concurrency=level,
                rate=None,
                num_requests=max(base, ROUNDS * level),
            )

    def _new_phase(
        self,
        scope: str,
        *,
        mode: Mode,
        concurrency: int | None,
        rate: float | None,
        num_requests: int,
    ) -> Phase:
        index = self._next_phase
        self._next_phase += 1
        if mode == "rate":
            concurrency = None
        return Phase(
            index=index,
            scope=scope,
            mode=mode,
            concurrency=concurrency,
            rate=rate,
            num_requests=num_requests,
        )

    async def _phase(
        self, runner: Runner, buffer: SampleBuffer, counts: Counter[str], phase: Phase
    ) -> list[PhaseResult]:
        assert self.run_id is not None
        await self.store.add_phase(self.run_id, phase, (self.clock() - runner.t0))
        outcome = await runner.run_phase(phase)
        await buffer.flush()
        await self.store.end_phase(self.run_id, phase.index, outcome.duration_s)
        models = {a: t.model_name for a, t in self.targets.items()}
        results = phase_results(
            phase, outcome.samples, outcome.duration_s, self.objectives(), models
        )
        await self.store.add_summaries(self.run_id, results)
        for s in outcome.samples:
            counts["requests"] += 1
            if not s.ok:
                counts["failed"] += 1
                counts[f"err:{s.error}"] += 1
        return results

    def _result(self, counts: Counter[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": counts["requests"],
            "failed": counts["failed"],
            "phases": self._next_phase,
        }
        if self.params.kind == "sweep":
            out["capacity"] = {k: msgspec.to_builtins(v) for k, v in self.capacities.items()}
        return out


class SampleBuffer:
    """Collects samples and writes them in batches from a background task."""

    def __init__(self, store: BenchStore, run_id: int, *, interval_s: float = 0.5) -> None:
        self.store = store
        self.run_id = run_id
        self.interval_s = interval_s
        self._pending: list[Sample] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def add(self, sample: Sample) -> None:
        self._pending.append(sample)

    async def flush(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            await self.store.add_samples(self.run_id, batch)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.flush()

    async def __aenter__(self) -> SampleBuffer:
        self._task = asyncio.create_task(self._loop(), name=f"bench-flush-{self.run_id}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()


async def _quietly(awaitable: Any) -> None:
    with contextlib.suppress(Exception):
        await awaitable
