"""Benchmark rows: runs, phases, samples, summaries, stale runs and comparable history."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from appliance.bench.records import Phase, PhaseResult, Sample
from appliance.bench.stats import summarize
from appliance.store.bench import BenchStore
from appliance.store.bench_rows import RunMeta

META = RunMeta(profile="sim", gpu="none", version="0.1.0", config_source="models.toml")


def samples(phase: int, n: int, e2el: float = 1.0) -> list[Sample]:
    return [
        Sample(
            phase=phase,
            seq=phase * 1000 + i,
            agent="kai",
            model="llama",
            start_s=i * 0.1,
            ttft_s=0.1,
            e2el_s=e2el,
            itl_s=(0.05, 0.06),
            prompt_tokens=100,
            completion_tokens=3,
        )
        for i in range(n)
    ]


def result(phase: int, e2el: float) -> PhaseResult:
    return PhaseResult(
        phase=phase,
        scope="kai",
        agent="kai",
        model="llama",
        mode="concurrency",
        concurrency=1,
        rate=None,
        metrics=summarize(samples(phase, 5, e2el), 1.0),
    )


async def test_run_lifecycle_and_round_trip(tmp_path: Path) -> None:
    store = await BenchStore.open(tmp_path / "b.sqlite3")
    try:
        run_id = await store.create_run("run", "manual", {"concurrency": 1}, META)
        row = await store.get_run(run_id)
        assert row is not None and row.status == "running" and row.finished_at is None
        assert [r.id for r in await store.active_runs()] == [run_id]

        phase = Phase(index=0, scope="kai", mode="concurrency", concurrency=1, num_requests=3)
        await store.add_phase(run_id, phase, 0.0)
        await store.add_samples(run_id, samples(0, 3))
        await store.end_phase(run_id, 0, 2.5)
        await store.add_summaries(run_id, [result(0, 1.0)])
        await store.finish_run(run_id, "completed", result={"requests": 3})

        row = await store.get_run(run_id)
        assert row is not None and row.status == "completed" and row.result == {"requests": 3}
        assert row.params == {"concurrency": 1} and row.profile == "sim"
        assert (await store.phases(run_id))[0].duration_s == 2.5
        got = await store.samples(run_id)
        assert got == samples(0, 3)
        summary = (await store.summaries(run_id))[0]
        assert summary.metrics["completed"] == 5
        assert await store.active_runs() == []
    finally:
        await store.close()


async def test_runs_of_a_dead_process_are_marked_interrupted_at_open(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    store = await BenchStore.open(path)
    mine = await store.create_run("run", "manual", {}, META)
    theirs = await store.create_run("sweep", "schedule", {}, META)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    await store._conn.execute(
        "UPDATE runs SET owner_pid = ? WHERE id = ?", (int(dead.stdout), theirs)
    )
    await store.close()

    again = await BenchStore.open(path)
    try:
        assert await again.mark_stale_interrupted() == [theirs]  # this process still lives
        row = await again.get_run(theirs)
        assert row is not None and row.status == "interrupted" and row.reason
        assert (await again.get_run(mine)).status == "running"  # type: ignore[union-attr]
    finally:
        await again.close()


async def test_list_and_comparable_history(tmp_path: Path) -> None:
    store = await BenchStore.open(tmp_path / "b.sqlite3")
    try:
        ids = []
        for i, e2el in enumerate((1.0, 1.1, 1.2, 5.0)):
            run_id = await store.create_run("probe", "schedule", {}, META)
            await store.add_summaries(run_id, [result(0, e2el)])
            await store.finish_run(run_id, "completed" if i != 2 else "failed")
            ids.append(run_id)
        other = await store.create_run("probe", "schedule", {}, RunMeta(profile="budget"))
        await store.add_summaries(other, [result(0, 9.0)])
        await store.finish_run(other, "completed")

        assert [r.id for r in await store.list_runs(limit=2)] == [other, ids[3]]
        assert len(await store.list_runs(kind="sweep")) == 0
        latest = (await store.summaries(ids[3]))[0]
        history = await store.comparable(latest, profile="sim", before_run=ids[3])
        # the failed run and the other profile's run are not comparable
        assert [p.run_id for p in history] == [ids[0], ids[1]]
        assert history[0].p95_e2el_ms == 1000.0
    finally:
        await store.close()


async def test_interrupted_runs_are_not_in_the_trend(tmp_path: Path) -> None:
    store = await BenchStore.open(tmp_path / "b.sqlite3")
    try:
        ids = []
        for status, e2el in (("completed", 1.0), ("interrupted", 9.0), ("completed", 1.1)):
            run_id = await store.create_run("probe", "schedule", {}, META)
            await store.add_summaries(run_id, [result(0, e2el)])
            await store.finish_run(run_id, status)
            ids.append(run_id)
        latest = (await store.summaries(ids[2]))[0]
        history = await store.comparable(latest, profile="sim", before_run=ids[2])
        assert [p.run_id for p in history] == [ids[0]]
    finally:
        await store.close()


async def test_ids_beyond_sqlite_integers_are_no_run(tmp_path: Path) -> None:
    store = await BenchStore.open(tmp_path / "b.sqlite3")
    try:
        assert await store.get_run(99999999999999999999) is None
        assert await store.get_run(-1) is None
    finally:
        await store.close()


async def test_many_samples_are_written_in_chunks(tmp_path: Path) -> None:
    store = await BenchStore.open(tmp_path / "b.sqlite3")
    try:
        run_id = await store.create_run("run", "manual", {}, META)
        await store.add_samples(run_id, samples(0, 300))
        assert len(await store.samples(run_id)) == 300
    finally:
        await store.close()


def with_errors(flags: list[str | None]) -> list[Sample]:
    """Samples in order sent; None = ok, else the error."""
    out = []
    for i, (sample, error) in enumerate(zip(samples(0, len(flags)), flags, strict=True)):
        out.append(
            Sample(
                **{
                    **{f: getattr(sample, f) for f in sample.__struct_fields__},
                    "seq": i,
                    "ok": error is None,
                    "error": error,
                }
            )
        )
    return out


async def test_a_completed_run_cut_short_by_a_stop_is_interrupted_at_start(tmp_path: Path) -> None:
    store = await BenchStore.open(tmp_path / "b.sqlite3")
    try:
        shapes = {
            "cut short": [None] * 5 + ["read_error", "connect_error", "connect_error"],
            "outage in the middle": [None, "connect_error", None, None],
            "nothing worked": ["connect_error"] * 3,
            "errors at the end, none refused": [None, None, "http_500", "http_500"],
        }
        ids = {}
        for name, flags in shapes.items():
            run_id = await store.create_run("run", "api", {}, META)
            await store.add_samples(run_id, with_errors(flags))
            failed = sum(1 for f in flags if f)
            await store.finish_run(
                run_id, "completed", result={"requests": len(flags), "failed": failed}
            )
            ids[name] = run_id
        assert await store.mark_cut_short() == [ids["cut short"]]
        row = await store.get_run(ids["cut short"])
        assert row is not None and row.status == "interrupted"
        for name in ("outage in the middle", "nothing worked", "errors at the end, none refused"):
            other = await store.get_run(ids[name])
            assert other is not None and other.status == "completed", name
        assert await store.mark_cut_short() == []
    finally:
        await store.close()
