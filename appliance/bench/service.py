"""`BenchService`: benchmarks inside the running appliance: API-started and scheduled runs.

One run at a time: a lock covers this process and the store's list of live `running` runs covers
the CLI beside it. Scheduled runs are skipped (and recorded as skipped, with the reason) when live
traffic is above `bench.busy_inflight` or another run is going; any run made here pauses between
requests while live traffic is that high, so benchmarks never push real users out. Benchmark
requests carry the benchmark priority header, so the appliance sheds them first anyway.

`live_inflight` must count the appliance's in-flight requests that are not benchmark requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from appliance.bench.client import Target
from appliance.bench.execute import BenchRun, RunParams
from appliance.bench.report import Format, build_report, render
from appliance.bench.scheduler import BenchScheduler, crontab_trigger
from appliance.bench.targets import appliance_targets, run_meta
from appliance.config.schema import Config
from appliance.errors import (
    ApplianceError,
    BadRequest,
    BenchmarkNotFound,
    BenchmarkRunning,
    BenchmarksStopped,
    TrafficTooHigh,
)
from appliance.lifecycle import Background
from appliance.store.bench import BenchStore
from appliance.store.bench_rows import RunRow, SummaryRow

log = logging.getLogger("appliance.bench")

SCHEDULED_KIND = {"nightly": "sweep", "probe": "probe"}


def db_path(config: Config) -> Path:
    path = Path(config.bench.db_file)
    return path if path.is_absolute() else Path(config.server.data_dir) / path


class BenchService(Background):
    def __init__(
        self,
        config: Config,
        store_path: str | os.PathLike[str],
        base_url: str,
        api_key: str,
        live_inflight: Callable[[], int],
        *,
        targets: Mapping[str, Target] | None = None,
        max_pause_s: float = 600.0,
        poll_s: float = 0.5,
    ) -> None:
        self.config = config
        self.store_path = Path(store_path)
        self.targets = dict(targets or appliance_targets(config, base_url, api_key))
        self.live_inflight = live_inflight
        self.max_pause_s = max_pause_s
        self.poll_s = poll_s
        self.scheduler = BenchScheduler(self._scheduled)
        self._store: BenchStore | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._bench_run: BenchRun | None = None
        self._current: int | None = None
        self._meta = run_meta(config)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, *, schedule: bool | None = None) -> None:
        """Open the store, mark runs of dead processes interrupted, start the schedule."""
        self._store = await BenchStore.open(self.store_path)
        stale = await self._store.mark_stale_interrupted()
        if stale:
            log.warning("benchmark run(s) %s were interrupted by a stop; marked so", stale)
        cut = await self._store.mark_cut_short()
        if cut:
            log.warning("benchmark run(s) %s were cut short by a stop; marked interrupted", cut)
        if self.config.bench.enabled if schedule is None else schedule:
            bench, source = self.config.bench, self.config.source
            self.scheduler.add(
                "nightly",
                crontab_trigger(bench.nightly_cron, source=source, key="bench.nightly_cron"),
            )
            self.scheduler.add(
                "probe", crontab_trigger(bench.probe_cron, source=source, key="bench.probe_cron")
            )
            self.scheduler.start()

    async def stop(self) -> None:
        """Stop the schedule; a run in progress is cancelled and stored as interrupted."""
        self.scheduler.stop()
        task = self._task
        if task is not None and not task.done():
            if self._bench_run is not None:
                self._bench_run.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._store is not None and self._current is not None:
            # A run cancelled before its first step never reached its own handler.
            row = await self._store.get_run(self._current)
            if row is not None and row.status == "running":
                await self._store.finish_run(
                    row.id, "interrupted", reason="stopped before it finished"
                )
        if self._store is not None:
            await self._store.close()
            self._store = None

    @property
    def store(self) -> BenchStore:
        if self._store is None:
            raise BenchmarksStopped(
                "Benchmarks are not running: the appliance is starting or stopping.", retry_after=5
            )
        return self._store

    @property
    def current_run(self) -> int | None:
        return self._current if self._task is not None and not self._task.done() else None

    # -- runs -------------------------------------------------------------------------------

    async def run(
        self,
        kind: str = "run",
        params: RunParams | Mapping[str, Any] | None = None,
        *,
        trigger: str = "api",
    ) -> int:
        """Start a run in the background and return its id; `BenchmarkRunning` if one is going."""
        resolved = _params(kind, params)
        async with self._lock:
            await self._refuse_if_busy()
            bench_run = BenchRun(
                self.store,
                self.config,
                self.targets,
                resolved,
                meta=self._meta,
                gate=self._wait_for_quiet,
            )
            run_id = await bench_run.create(trigger)
            self._current = run_id
            self._bench_run = bench_run
            self._task = asyncio.create_task(self._execute(bench_run), name=f"bench-run-{run_id}")
        log.info("benchmark run %d started (%s, %s)", run_id, resolved.kind, trigger)
        return run_id

    async def wait(self) -> None:
        """Until the run in progress (if any) ends."""
        task = self._task
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(task)

    async def _execute(self, bench_run: BenchRun) -> None:
        try:
            await bench_run.execute()
        except asyncio.CancelledError:
            log.warning("benchmark run %s interrupted", bench_run.run_id)
            raise
        except Exception as exc:
            log.error("benchmark run %s failed: %s: %s", bench_run.run_id, type(exc).__name__, exc)
        else:
            log.info("benchmark run %s finished", bench_run.run_id)
        if bench_run.run_id is not None:
            try:
                await self.write_reports(bench_run.run_id)
            except (OSError, ApplianceError) as exc:
                log.warning("benchmark run %s: reports not written: %s", bench_run.run_id, exc)

    def reports_dir(self) -> Path:
        path = Path(self.config.bench.reports_dir)
        return path if path.is_absolute() else Path(self.config.server.data_dir) / path

    async def write_reports(self, run_id: int) -> list[Path]:
        """The run's HTML and JSON reports into `[bench].reports_dir`, for whoever plans capacity."""
        run = await self._run(run_id)
        files = []
        for fmt in ("html", "json"):
            path = self.reports_dir() / f"run-{run_id:05d}-{run.kind}.{fmt}"
            await asyncio.to_thread(_write, path, await self.report(run_id, fmt))
            files.append(path)
        return files

    async def _refuse_if_busy(self) -> None:
        if self.current_run is not None:
            raise BenchmarkRunning(f"Benchmark run {self.current_run} is still in progress.")
        others = await self.store.active_runs()
        if others:
            raise BenchmarkRunning(
                f"Benchmark run {others[0].id} is in progress in another process."
            )

    async def _scheduled(self, name: str) -> None:
        kind = SCHEDULED_KIND[name]
        live = self.live_inflight()
        reason = None
        if live > self.config.bench.busy_inflight:
            reason = (
                f"live traffic: {live} requests in flight, above bench.busy_inflight "
                f"{self.config.bench.busy_inflight}"
            )
        else:
            try:
                await self.run(kind, trigger="schedule")
            except BenchmarkRunning as exc:
                reason = exc.message
        if reason is not None:
            run_id = await self.store.create_run(
                kind, "schedule", {"kind": kind}, self._meta, status="skipped", reason=reason
            )
            log.info("scheduled %s benchmark skipped (run %d): %s", name, run_id, reason)
            return
        await self.wait()

    async def _wait_for_quiet(self) -> None:
        """Hold the next benchmark request while live traffic is above the threshold."""
        limit = self.config.bench.busy_inflight
        if self.live_inflight() <= limit:
            return
        started = time.monotonic()
        while self.live_inflight() > limit:
            if time.monotonic() - started > self.max_pause_s:
                raise TrafficTooHigh(
                    f"live traffic stayed above bench.busy_inflight {limit} for "
                    f"{self.max_pause_s:.0f} s"
                )
            await asyncio.sleep(self.poll_s)

    # -- reading ----------------------------------------------------------------------------

    async def list(self, *, limit: int = 50, kind: str | None = None) -> list[RunRow]:
        return await self.store.list_runs(limit=limit, kind=kind)

    async def get(self, run_id: int) -> dict[str, Any]:
        run = await self._run(run_id)
        summaries = await self.store.summaries(run_id)
        return {
            **msgspec.to_builtins(run),
            "summaries": [_summary(s) for s in summaries],
        }

    async def report(self, run_id: int, fmt: Format = "json") -> str:
        if fmt not in ("json", "md", "html"):
            raise BadRequest(f"Unknown report format {fmt!r}; use json, md or html.")
        run = await self._run(run_id)
        bench = self.config.bench
        report = await build_report(
            self.store, run, window=bench.regression_window, threshold=bench.regression_threshold
        )
        return render(report, fmt)

    async def _run(self, run_id: int) -> RunRow:
        run = await self.store.get_run(run_id)
        if run is None:
            raise BenchmarkNotFound(f"No benchmark run {run_id}.")
        return run


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _params(kind: str, params: RunParams | Mapping[str, Any] | None) -> RunParams:
    if isinstance(params, RunParams):
        return params if params.kind == kind else msgspec.structs.replace(params, kind=kind)
    try:
        return msgspec.convert({**(params or {}), "kind": kind}, RunParams)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"Invalid benchmark parameters: {exc}") from None


def _summary(s: SummaryRow) -> dict[str, Any]:
    return {
        "phase": s.phase,
        "scope": s.scope,
        "agent": s.agent,
        "model": s.model,
        "mode": s.mode,
        "max_concurrency": s.concurrency,
        "request_rate": s.rate,
        **s.metrics,
    }
