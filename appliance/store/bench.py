"""Benchmark runs in SQLite: a run is written as `running` when it starts and its samples are
flushed in batches while it goes, so a stop mid-run loses at most one batch and leaves a run that
the next start marks `interrupted`.

Runs carry their owner (host, pid, process start time): a run still `running` whose owner is gone
is stale, while one owned by a live process (the CLI beside the service) is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite
import msgspec

from appliance.bench.records import Phase, PhaseResult, Sample
from appliance.store.bench_rows import (
    PhaseRow,
    RunMeta,
    RunRow,
    SummaryRow,
    TrendPoint,
    now_iso,
    run_row,
)
from appliance.store.db import open_db
from appliance.store.owner import owner_alive, this_process

_json = msgspec.json.Encoder()


_SELECT_RUNS = (
    "SELECT id, kind, trigger, status, started_at, finished_at, profile, gpu, version, "
    "config_source, params, result, reason, owner_host, owner_pid, owner_started FROM runs "
)
_RUN_BY_ID = _SELECT_RUNS + "WHERE id = ?"
_RUNS_RUNNING = _SELECT_RUNS + "WHERE status = 'running' ORDER BY id"
_RUNS_LATEST = _SELECT_RUNS + "ORDER BY id DESC LIMIT ?"
_RUNS_LATEST_OF_KIND = _SELECT_RUNS + "WHERE kind = ? ORDER BY id DESC LIMIT ?"
_SELECT_SAMPLES = (
    "SELECT phase, seq, agent, model, start_s, ttft_s, e2el_s, itl_s, prompt_tokens, "
    "completion_tokens, ok, error, fallback FROM samples WHERE run_id = ? "
)
_SAMPLES_OF_RUN = _SELECT_SAMPLES + "ORDER BY seq"
_SAMPLES_OF_PHASE = _SELECT_SAMPLES + "AND phase = ? ORDER BY seq"


SQLITE_MAX_INT = 2**63 - 1
_INSERT_SAMPLES = (
    "INSERT OR REPLACE INTO samples (run_id, seq, phase, agent, model, start_s, ttft_s, e2el_s, "
    "itl_s, prompt_tokens, completion_tokens, ok, error, fallback) VALUES "
)
_SAMPLE_PLACEHOLDERS = "(" + ", ".join(["?"] * 14) + ")"
# 14 values a row: 64 rows stay under SQLite's oldest limit of 999 bound values per statement.
_SAMPLE_ROWS_PER_INSERT = 64


class BenchStore:
    """Reads and writes benchmark runs; one instance per process, over one connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._owner = this_process()

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> BenchStore:
        return cls(await open_db(path))

    async def close(self) -> None:
        await self._conn.close()

    # -- runs -------------------------------------------------------------------------------

    async def create_run(
        self,
        kind: str,
        trigger: str,
        params: dict[str, Any],
        meta: RunMeta,
        *,
        status: str = "running",
        reason: str | None = None,
    ) -> int:
        host, pid, started = self._owner
        finished = None if status == "running" else now_iso()
        cur = await self._conn.execute(
            "INSERT INTO runs (kind, trigger, status, started_at, finished_at, profile, gpu, "
            "version, config_source, params, reason, owner_host, owner_pid, owner_started) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                trigger,
                status,
                now_iso(),
                finished,
                meta.profile,
                meta.gpu,
                meta.version,
                meta.config_source,
                _dumps(params),
                reason,
                host,
                pid,
                started,
            ),
        )
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    async def finish_run(
        self,
        run_id: int,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> None:
        await self._conn.execute(
            "UPDATE runs SET status = ?, finished_at = ?, result = COALESCE(?, result), "
            "reason = COALESCE(?, reason) WHERE id = ?",
            (status, now_iso(), _dumps(result) if result is not None else None, reason, run_id),
        )

    async def mark_stale_interrupted(self) -> list[int]:
        """Runs left `running` by a process that is gone become `interrupted`."""
        async with self._conn.execute(
            "SELECT id, owner_host, owner_pid, owner_started FROM runs WHERE status = 'running'"
        ) as cur:
            rows = list(await cur.fetchall())
        stale = [int(r[0]) for r in rows if not owner_alive(r[1], r[2], r[3])]
        for run_id in stale:
            await self.finish_run(
                run_id, "interrupted", reason="the process running it stopped before it finished"
            )
        return stale

    async def mark_cut_short(self) -> list[int]:
        """Runs stored `completed` although a stop cut them short become `interrupted`.

        An appliance before this one closed its listener under a running benchmark and stored the
        run as completed, its last requests failed. The sign: from the first failed request on
        (by order sent) none succeeded, and some could not connect at all. Such a run's figures
        measure the shutdown, so it leaves the trend like any interrupted run.
        """
        async with self._conn.execute(
            "SELECT id FROM runs WHERE status = 'completed' AND result IS NOT NULL "
            "AND json_extract(result, '$.failed') > 0"
        ) as cur:
            candidates = [int(r[0]) for r in await cur.fetchall()]
        cut: list[int] = []
        for run_id in candidates:
            async with self._conn.execute(
                "SELECT ok, error FROM samples WHERE run_id = ? ORDER BY seq", (run_id,)
            ) as cur:
                rows = list(await cur.fetchall())
            first = next((i for i, row in enumerate(rows) if not row[0]), None)
            if first is None or first == 0:
                continue  # no failure stored, or nothing ever worked: not a run cut short
            tail = rows[first:]
            if all(not ok for ok, _ in tail) and any(err == "connect_error" for _, err in tail):
                cut.append(run_id)
        for run_id in cut:  # finished_at stays: when it was cut short
            await self._conn.execute(
                "UPDATE runs SET status = 'interrupted', reason = ? WHERE id = ?",
                ("cut short by a stop: its last requests could not connect", run_id),
            )
        return cut

    async def active_runs(self) -> list[RunRow]:
        """Runs `running` in some live process (this one included)."""
        async with self._conn.execute(_RUNS_RUNNING) as cur:
            rows = list(await cur.fetchall())
        return [run_row(r) for r in rows if owner_alive(r[13], r[14], r[15])]

    async def get_run(self, run_id: int) -> RunRow | None:
        if not 0 < run_id <= SQLITE_MAX_INT:
            return None  # no such row, and SQLite could not even take the number
        async with self._conn.execute(_RUN_BY_ID, (run_id,)) as cur:
            row = await cur.fetchone()
        return run_row(row) if row else None

    async def list_runs(self, *, limit: int = 50, kind: str | None = None) -> list[RunRow]:
        query, args = (_RUNS_LATEST_OF_KIND, (kind, limit)) if kind else (_RUNS_LATEST, (limit,))
        async with self._conn.execute(query, args) as cur:
            return [run_row(r) for r in await cur.fetchall()]

    # -- phases, samples, summaries ---------------------------------------------------------

    async def add_phase(self, run_id: int, phase: Phase, started_s: float) -> None:
        await self._conn.execute(
            "INSERT INTO phases (run_id, idx, scope, mode, concurrency, rate, num_requests, "
            "started_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                phase.index,
                phase.scope,
                phase.mode,
                phase.concurrency,
                phase.rate,
                phase.num_requests,
                started_s,
            ),
        )

    async def end_phase(self, run_id: int, idx: int, duration_s: float) -> None:
        await self._conn.execute(
            "UPDATE phases SET duration_s = ? WHERE run_id = ? AND idx = ?",
            (duration_s, run_id, idx),
        )

    async def phases(self, run_id: int) -> list[PhaseRow]:
        async with self._conn.execute(
            "SELECT run_id, idx, scope, mode, concurrency, rate, num_requests, started_s, "
            "duration_s FROM phases WHERE run_id = ? ORDER BY idx",
            (run_id,),
        ) as cur:
            return [
                PhaseRow(
                    run_id=r[0],
                    idx=r[1],
                    scope=r[2],
                    mode=r[3],
                    concurrency=r[4],
                    rate=r[5],
                    num_requests=r[6],
                    started_s=r[7],
                    duration_s=r[8],
                )
                for r in await cur.fetchall()
            ]

    async def add_samples(self, run_id: int, samples: Sequence[Sample]) -> None:
        """Samples in multi-row inserts."""
        if not samples:
            return
        rows = [
            (
                run_id,
                s.seq,
                s.phase,
                s.agent,
                s.model,
                s.start_s,
                s.ttft_s,
                s.e2el_s,
                _dumps(s.itl_s),
                s.prompt_tokens,
                s.completion_tokens,
                int(s.ok),
                s.error,
                int(s.fallback),
            )
            for s in samples
        ]
        # One statement per chunk, each atomic on its own: no BEGIN ... COMMIT spanning awaits,
        # which a cancellation (a stop mid-flush) would leave open on the connection, failing
        # every later write of this process.
        for start in range(0, len(rows), _SAMPLE_ROWS_PER_INSERT):
            chunk = rows[start : start + _SAMPLE_ROWS_PER_INSERT]
            await self._conn.execute(
                _INSERT_SAMPLES + ", ".join([_SAMPLE_PLACEHOLDERS] * len(chunk)),
                [value for row in chunk for value in row],
            )

    async def samples(self, run_id: int, phase: int | None = None) -> list[Sample]:
        query, args = (
            (_SAMPLES_OF_PHASE, (run_id, phase))
            if phase is not None
            else (_SAMPLES_OF_RUN, (run_id,))
        )
        async with self._conn.execute(query, args) as cur:
            return [
                Sample(
                    phase=r[0],
                    seq=r[1],
                    agent=r[2],
                    model=r[3],
                    start_s=r[4],
                    ttft_s=r[5],
                    e2el_s=r[6],
                    itl_s=tuple(msgspec.json.decode(r[7])),
                    prompt_tokens=r[8],
                    completion_tokens=r[9],
                    ok=bool(r[10]),
                    error=r[11],
                    fallback=bool(r[12]),
                )
                for r in await cur.fetchall()
            ]

    async def add_summaries(self, run_id: int, results: Iterable[PhaseResult]) -> None:
        rows = [
            (
                run_id,
                r.phase,
                r.scope,
                r.agent,
                r.model,
                r.mode,
                r.concurrency,
                r.rate,
                r.metrics["completed"],
                r.metrics["failed"],
                r.metrics["p95_e2el_ms"],
                r.metrics["tokens_per_s"],
                r.metrics["error_rate"],
                _dumps(r.metrics),
            )
            for r in results
        ]
        await self._conn.executemany(
            "INSERT INTO summaries (run_id, phase, scope, agent, model, mode, concurrency, rate, "
            "completed, failed, p95_e2el_ms, tokens_per_s, error_rate, metrics) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    async def summaries(self, run_id: int) -> list[SummaryRow]:
        async with self._conn.execute(
            "SELECT run_id, phase, scope, agent, model, mode, concurrency, rate, metrics "
            "FROM summaries WHERE run_id = ? ORDER BY phase, agent IS NOT NULL, agent",
            (run_id,),
        ) as cur:
            return [
                SummaryRow(
                    run_id=r[0],
                    phase=r[1],
                    scope=r[2],
                    agent=r[3],
                    model=r[4],
                    mode=r[5],
                    concurrency=r[6],
                    rate=r[7],
                    metrics=msgspec.json.decode(r[8]),
                )
                for r in await cur.fetchall()
            ]

    async def comparable(
        self, summary: SummaryRow, *, profile: str, before_run: int, limit: int = 20
    ) -> list[TrendPoint]:
        """Earlier completed runs' figures for the same scope, agent, model, profile and load."""
        async with self._conn.execute(
            "SELECT s.run_id, r.started_at, s.p95_e2el_ms, s.tokens_per_s, s.error_rate "
            "FROM summaries s JOIN runs r ON r.id = s.run_id "
            "WHERE r.status = 'completed' AND r.profile = ? AND s.run_id < ? AND s.completed > 0 "
            "AND s.scope = ? AND s.agent IS ? AND s.model = ? AND s.mode = ? "
            "AND s.concurrency IS ? AND s.rate IS ? "
            "ORDER BY s.run_id DESC LIMIT ?",
            (
                profile,
                before_run,
                summary.scope,
                summary.agent,
                summary.model,
                summary.mode,
                summary.concurrency,
                summary.rate,
                limit,
            ),
        ) as cur:
            rows = await cur.fetchall()
        return [
            TrendPoint(
                run_id=r[0], started_at=r[1], p95_e2el_ms=r[2], tokens_per_s=r[3], error_rate=r[4]
            )
            for r in reversed(list(rows))
        ]


def _dumps(value: Any) -> str:
    return _json.encode(value).decode()
