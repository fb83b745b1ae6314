"""The rows of the benchmark store, as the rest of the appliance reads them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RunMeta(msgspec.Struct, frozen=True, kw_only=True):
    """Where and with what a run was made."""

    profile: str = ""
    gpu: str = ""
    version: str = ""
    config_source: str = ""


class RunRow(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    kind: str
    trigger: str
    status: str
    started_at: str
    finished_at: str | None
    profile: str
    gpu: str
    version: str
    config_source: str
    params: dict[str, Any]
    result: dict[str, Any] | None
    reason: str | None


class PhaseRow(msgspec.Struct, frozen=True, kw_only=True):
    run_id: int
    idx: int
    scope: str
    mode: str
    concurrency: int | None
    rate: float | None
    num_requests: int
    started_s: float
    duration_s: float | None


class SummaryRow(msgspec.Struct, frozen=True, kw_only=True):
    run_id: int
    phase: int
    scope: str
    agent: str | None
    model: str
    mode: str
    concurrency: int | None
    rate: float | None
    metrics: dict[str, Any]


class TrendPoint(msgspec.Struct, frozen=True, kw_only=True):
    run_id: int
    started_at: str
    p95_e2el_ms: float
    tokens_per_s: float
    error_rate: float


def run_row(r: Sequence[Any]) -> RunRow:
    return RunRow(
        id=r[0],
        kind=r[1],
        trigger=r[2],
        status=r[3],
        started_at=r[4],
        finished_at=r[5],
        profile=r[6],
        gpu=r[7],
        version=r[8],
        config_source=r[9],
        params=msgspec.json.decode(r[10]),
        result=msgspec.json.decode(r[11]) if r[11] else None,
        reason=r[12],
    )
