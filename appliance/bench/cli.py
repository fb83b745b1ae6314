"""`appliance bench run|sweep|list|show|report`: benchmarks from the command line.

`run` and `sweep` drive an appliance (or, with `--direct`, its engines) and store the run in the
same SQLite file the service uses; a progress bar goes to stderr. `list`, `show` and `report`
read that file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from appliance.bench.execute import BenchRun, RunParams
from appliance.bench.records import MIX
from appliance.bench.report import build_report, render, summary_table
from appliance.bench.report.markdown import table
from appliance.bench.report.model import Report
from appliance.bench.report.text import CAPACITY_HEADER, capacity_rows
from appliance.bench.runner import Progress
from appliance.bench.service import db_path
from appliance.bench.targets import appliance_targets, engine_targets, run_meta
from appliance.config.schema import AGENTS, Config
from appliance.errors import ApplianceError, BadRequest
from appliance.store.bench import BenchStore

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    bench: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="benchmark the appliance against the P95 table"
    )
    sub = bench.add_subparsers(dest="bench_command", metavar="ACTION", required=True)

    run = sub.add_parser("run", help="one load level per agent and for the realistic mix")
    _load_args(run)
    load = run.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=int, default=1, help="closed loop: requests in flight")
    load.add_argument("--rate", type=float, help="Poisson arrivals: requests per second")

    sweep = sub.add_parser("sweep", help="double concurrency until an objective breaks")
    _load_args(sweep)
    sweep.add_argument("--max-concurrency", type=int, help="ceiling (default: [bench])")
    sweep.add_argument("--error-budget", type=float, help="share of failures allowed (0.01 = 1%%)")

    lst = sub.add_parser("list", help="stored runs, newest first")
    _store_args(lst)
    lst.add_argument("--limit", type=int, default=20)
    lst.add_argument("--kind", choices=["run", "sweep", "probe"])

    show = sub.add_parser("show", help="one run: facts and its summary table")
    _store_args(show)
    show.add_argument("id", type=int)

    report = sub.add_parser("report", help="write a run's report as JSON, Markdown or HTML")
    _store_args(report)
    report.add_argument("id", type=int)
    report.add_argument("--format", choices=["json", "md", "html"], default="md")
    report.add_argument("--out", help="file to write (default: stdout)")

    bench.set_defaults(handler=run_bench)
    for p in (run, sweep, lst, show, report):
        p.set_defaults(handler=run_bench)
    return bench


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", help="models.toml path (default: $APPLIANCE_CONFIG or ./models.toml)"
    )
    p.add_argument("--profile", help="profile in models.toml (default: its `profile`)")
    p.add_argument("--db", help="SQLite file (default: [server].data_dir / [bench].db_file)")


def _load_args(p: argparse.ArgumentParser) -> None:
    _store_args(p)
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help="the appliance's /v1 URL")
    p.add_argument(
        "--api-key",
        default=os.environ.get("APPLIANCE_API_KEY", ""),
        help="bearer key (default: $APPLIANCE_API_KEY)",
    )
    p.add_argument(
        "--direct",
        action="store_true",
        help="bypass the appliance: send to each agent's engine from the config",
    )
    p.add_argument("--agents", default=",".join(AGENTS), help="comma-separated (default: all)")
    p.add_argument("--no-mix", action="store_true", help="skip the realistic mix")
    p.add_argument("--requests", type=int, help="requests per agent per level (default: [bench])")
    p.add_argument("--seed", type=int, help="workload seed (default: [bench].seed)")
    p.add_argument(
        "--time-scale",
        type=float,
        help="simulator time scale to divide times by (default: from the config)",
    )
    p.add_argument("--report", help="also write the report here (.html, .md or .json)")


def run_bench(args: argparse.Namespace) -> int:
    command = getattr(args, "bench_command", None)
    if command in ("run", "sweep"):
        return asyncio.run(_run(args, command))
    if command == "list":
        return asyncio.run(_list(args))
    if command == "show":
        return asyncio.run(_show(args))
    if command == "report":
        return asyncio.run(_report(args))
    print("appliance bench: choose run, sweep, list, show or report", file=sys.stderr)
    return 2


def _config(args: argparse.Namespace) -> Config:
    from appliance.config import load_config

    return load_config(args.config, profile=args.profile)


async def _open(args: argparse.Namespace, config: Config) -> BenchStore:
    store = await BenchStore.open(Path(args.db) if args.db else db_path(config))
    await store.mark_stale_interrupted()
    return store


def _params(args: argparse.Namespace, command: str) -> RunParams:
    import msgspec

    agents = tuple(a.strip() for a in args.agents.split(",") if a.strip())
    raw: dict[str, Any] = {"kind": command, "agents": agents, "mix": not args.no_mix}
    if command == "run":
        if args.rate is not None:
            raw |= {"mode": "rate", "rate": args.rate}
        else:
            raw["concurrency"] = args.concurrency
    else:
        for key in ("max_concurrency", "error_budget"):
            if getattr(args, key) is not None:
                raw[key] = getattr(args, key)
    for key in ("requests", "seed"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    try:
        return msgspec.convert(raw, RunParams)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"bad benchmark options: {exc}") from None


async def _run(args: argparse.Namespace, command: str) -> int:
    config = _config(args)
    params = _params(args, command)
    agents = set(params.agents) | (set(AGENTS) if params.mix else set())
    if args.direct:
        targets = engine_targets(
            config, api_key=args.api_key or None, agents=agents, time_scale=args.time_scale
        )
    else:
        targets = appliance_targets(
            config, args.base_url, args.api_key, agents=agents, time_scale=args.time_scale
        )
    store = await _open(args, config)
    try:
        busy = await store.active_runs()
        if busy:
            raise ApplianceError(f"benchmark run {busy[0].id} is in progress; try again later")
        bar = ProgressBar(sys.stderr)
        bench_run = BenchRun(
            store, config, targets, params, meta=run_meta(config), on_progress=bar.update
        )
        # Ctrl-C and SIGTERM stop the run through the loop (its wakeup fd: the loop sees the
        # signal whichever thread the kernel gave it to), installed before the run exists, so
        # a signal can never land between the row's insert and the handler.
        received: list[int] = []
        with _stop_on_signals(bench_run, received):
            run_id = await bench_run.create("manual")
            # The readiness line: from here a signal stops this run and stores it `interrupted`.
            print(f"benchmark run {run_id} started ({command})", file=sys.stderr, flush=True)
            try:
                await bench_run.execute()
            except asyncio.CancelledError:
                if not received:
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # the stop is handled: what follows (the report) may await
            finally:
                bar.close()
        run = await store.get_run(run_id)
        assert run is not None
        report = await build_report(
            store,
            run,
            window=config.bench.regression_window,
            threshold=config.bench.regression_threshold,
        )
        print(f"\nRun {run_id}: {run.status}" + (f" ({run.reason})" if run.reason else ""))
        print()
        print(summary_table(report))
        if report.capacity:
            print()
            print(table(CAPACITY_HEADER, capacity_rows(report)))
        if args.report:
            fmt = _format_of(args.report)
            await asyncio.to_thread(_write, args.report, render(report, fmt))
            print(f"\nreport written to {args.report}")
        if received:
            return 128 + received[0]
        return 0 if run.status == "completed" else 1
    finally:
        await store.close()


@contextlib.contextmanager
def _stop_on_signals(bench_run: BenchRun, received: list[int]) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        if received:  # a second signal: quit now; the next open marks the run interrupted
            os._exit(128 + signum)
        received.append(signum)
        print("stopping the run (again to quit at once)", file=sys.stderr, flush=True)
        bench_run.stop()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop, signum)
            installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _write(path: str, text: str) -> None:
    Path(path).write_text(text, encoding="utf-8")


def _format_of(path: str) -> Any:
    suffix = Path(path).suffix.lower().lstrip(".")
    fmt = {"htm": "html", "markdown": "md"}.get(suffix, suffix)
    if fmt not in ("json", "md", "html"):
        raise BadRequest(f"--report {path}: use a .html, .md or .json file name")
    return fmt


async def _list(args: argparse.Namespace) -> int:
    store = await _open(args, _config(args))
    try:
        runs = await store.list_runs(limit=args.limit, kind=args.kind)
    finally:
        await store.close()
    rows = [
        [
            str(r.id),
            r.kind,
            r.trigger,
            r.status,
            r.started_at,
            r.finished_at or "",
            r.profile,
            (r.reason or "")[:60],
        ]
        for r in runs
    ]
    header = ("ID", "Kind", "Trigger", "Status", "Started", "Finished", "Profile", "Note")
    print(table(header, rows) if rows else "no benchmark runs stored yet")
    return 0


async def _show(args: argparse.Namespace) -> int:
    report = await _load_report(args)
    if report is None:
        return 1
    print(render(report, "md"))
    return 0


async def _load_report(args: argparse.Namespace) -> Report | None:
    """The report of run `args.id`, or None (said on stderr) when there is no such run."""
    config = _config(args)
    store = await _open(args, config)
    try:
        run = await store.get_run(args.id)
        if run is None:
            print(f"appliance bench: no run {args.id}", file=sys.stderr)
            return None
        return await build_report(
            store,
            run,
            window=config.bench.regression_window,
            threshold=config.bench.regression_threshold,
        )
    finally:
        await store.close()


async def _report(args: argparse.Namespace) -> int:
    report = await _load_report(args)
    if report is None:
        return 1
    text = render(report, args.format)
    if args.out:
        await asyncio.to_thread(_write, args.out, text)
        print(f"report written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


class ProgressBar:
    """A one-line text bar on a terminal; on anything else, one line per finished phase."""

    WIDTH = 28

    def __init__(self, stream: TextIO, *, min_interval_s: float = 0.1) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._phases = 0
        self._drawn = False

    def update(self, p: Progress) -> None:
        finished = p.done >= p.total
        if finished:
            self._phases += 1
        if not self.tty:
            if finished:
                self.stream.write(self._line(p) + "\n")
                self.stream.flush()
            return
        now = time.monotonic()
        if not finished and now - self._last < self.min_interval_s:
            return
        self._last = now
        self.stream.write("\r" + self._line(p).ljust(78))
        self._drawn = True
        if finished:
            self.stream.write("\n")
            self._drawn = False
        self.stream.flush()

    def _line(self, p: Progress) -> str:
        filled = int(self.WIDTH * p.done / max(1, p.total))
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        scope = "mix" if p.phase.scope == MIX else p.phase.scope
        load = (
            f"c={p.phase.concurrency}" if p.phase.mode == "concurrency" else f"{p.phase.rate:g}/s"
        )
        failed = f"  failed {p.failed}" if p.failed else ""
        return f"{scope:>9} {load:>7} [{bar}] {p.done}/{p.total}{failed}"

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
