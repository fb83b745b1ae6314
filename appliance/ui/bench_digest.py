"""The benchmarks in a few lines: the last runs with their verdicts, the next scheduled ones, and
which agents the latest completed run flags as regressed.

A finished run never changes, so its verdicts are computed once (from the same report model the
run's report uses) and kept; only running runs are read again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from appliance.bench.report.model import build_report
from appliance.bench.service import BenchService
from appliance.config.schema import AGENTS
from appliance.errors import ApplianceError

LAST_RUNS = 8
log = logging.getLogger("appliance.ui")


class BenchDigest:
    def __init__(self, service: BenchService | None) -> None:
        self.service = service
        self._verdicts: dict[int, list[dict[str, Any]]] = {}
        self.runs: list[dict[str, Any]] = []
        self.regressed: dict[str, bool] = {}
        self.latest_completed: int | None = None

    async def refresh(self) -> None:
        """Read the last runs from the store; verdicts of finished runs once each."""
        if self.service is None:
            return
        try:
            rows = await self.service.list(limit=LAST_RUNS)
        except ApplianceError:  # the store is not open (starting or stopping)
            return
        runs: list[dict[str, Any]] = []
        for row in rows:
            if row.id not in self._verdicts and row.status not in ("running",):
                self._verdicts[row.id] = await self._headlines(row)
            runs.append(
                {
                    "id": row.id,
                    "kind": row.kind,
                    "trigger": row.trigger,
                    "status": row.status,
                    "started_at": row.started_at,
                    "finished_at": row.finished_at,
                    "reason": row.reason,
                    "verdicts": self._verdicts.get(row.id, []),
                    "report": f"/benchmarks/{row.id}/report?format=html",
                }
            )
        self.runs = runs
        completed = next((r for r in runs if r["status"] == "completed"), None)
        self.latest_completed = completed["id"] if completed else None
        flagged = (
            {v["agent"] for v in completed["verdicts"] if v["regressed"]} if completed else set()
        )
        self.regressed = {agent: agent in flagged for agent in AGENTS}

    async def _headlines(self, row: Any) -> list[dict[str, Any]]:
        assert self.service is not None
        bench = self.service.config.bench
        try:
            report = await build_report(
                self.service.store,
                row,
                window=bench.regression_window,
                threshold=bench.regression_threshold,
            )
        except (ApplianceError, KeyError, ValueError) as exc:  # a run stored by an older version
            log.warning("benchmark run %s: no verdicts for the page: %s", row.id, exc)
            return []
        return [
            {
                "agent": h.agent,
                "p95_s": round(h.row.p95_s, 4),
                "verdict": h.row.p95.verdict if h.row.p95 is not None else None,
                "regressed": h.regression is not None,
                "change_pct": round(h.regression.change_pct, 1) if h.regression else None,
            }
            for h in report.headlines
        ]

    def view(self) -> dict[str, Any]:
        service = self.service
        if service is None:
            return {"available": False}
        next_runs = {
            name: when.isoformat() if when is not None else None
            for name, when in service.scheduler.next_runs().items()
        }
        return {
            "available": True,
            "scheduled": service.config.bench.enabled,
            "next_runs": next_runs,
            "current_run": service.current_run,
            "runs": self.runs,
        }

    def metrics(self) -> Iterator[Metric]:
        """`appliance_benchmark_regression`: 1 for an agent the latest completed run flags."""
        family = GaugeMetricFamily(
            "appliance_benchmark_regression",
            "1 when the latest completed benchmark run flags the agent's P95 as regressed.",
            labels=["agent"],
        )
        for agent in AGENTS:
            family.add_metric([agent], 1 if self.regressed.get(agent) else 0)
        yield family
        latest = GaugeMetricFamily(
            "appliance_benchmark_latest_completed_run",
            "Id of the latest completed benchmark run (0: none yet).",
        )
        latest.add_metric([], self.latest_completed or 0)
        yield latest
