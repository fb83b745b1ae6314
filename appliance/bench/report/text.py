"""Shared wording for the Markdown and HTML reports."""

from __future__ import annotations

from typing import Any

from appliance.bench.report.model import Headline, Report, Row
from appliance.bench.verdict import Verdict

SUMMARY_HEADER = (
    "Agent",
    "Model",
    "Load",
    "P95 (s)",
    "Expected P95",
    "P95 verdict",
    "Tokens/s",
    "Expected tok/s",
    "Tokens/s verdict",
    "Capacity",
)
RESULTS_HEADER = (
    "Phase",
    "Scope",
    "Agent",
    "Load",
    "OK",
    "Failed",
    "Req/s",
    "Out tok/s",
    "TTFT p50 (ms)",
    "TTFT p95 (ms)",
    "TPOT p50 (ms)",
    "ITL p95 (ms)",
    "E2EL p50 (s)",
    "E2EL p95 (s)",
    "E2EL p99 (s)",
    "Goodput (req/s)",
    "Fallback",
)
NA = "\u2013"  # en dash: "none" in a table cell, "to" in a range
CAPACITY_HEADER = (
    "Scope",
    "Max concurrency",
    "Request rate",
    "Output tok/s",
    "Limited by",
    "Knee",
    "Knee limited by",
)


def load(row: Row) -> str:
    return f"c={row.concurrency}" if row.mode == "concurrency" else f"{row.rate:g} req/s"


def band(values: Any, unit: str = "") -> str:
    low, high = values
    return f"{low:g}{NA}{high:g}{unit}"


def percent(share: float) -> str:
    return f"{100 * share:.0f}%" if share else "0"


def verdict_text(v: Verdict | None) -> str:
    return v.describe() if v is not None else NA


def capacity_cell(cap: dict[str, Any] | None) -> str:
    if not cap:
        return NA
    if cap.get("max_concurrency") is None:
        knee = cap.get("knee_concurrency")
        return "none" + (f" (knee c={knee})" if knee else "")
    return f"c={cap['max_concurrency']}, {cap['request_rate']:.2f} req/s"


def failure_text(metrics: dict[str, Any]) -> str:
    counts = metrics.get("error_counts") or {}
    top = next(iter(counts), "error")
    return f"no answer: {metrics['failed']} failed, mostly {top}"


def summary_cells(h: Headline) -> list[str]:
    m = h.row.metrics
    share = m.get("fallback_rate", 0.0)
    if not m["completed"]:
        return [
            h.agent,
            h.row.model,
            load(h.row),
            NA,
            band(h.expected["p95_s"], " s"),
            failure_text(m),
            NA,
            band(h.expected["tokens_per_s"]),
            NA,
            capacity_cell(h.capacity),
        ]
    return [
        h.agent,
        h.row.model + (f" ({percent(share)} by fallback)" if share else ""),
        load(h.row) + (" (in mix)" if h.row.scope != h.agent else ""),
        f"{h.row.p95_s:.2f}",
        band(h.expected["p95_s"], " s"),
        verdict_text(h.row.p95),
        f"{m['tokens_per_s']:.1f}",
        band(h.expected["tokens_per_s"]),
        verdict_text(h.row.tokens_per_s),
        capacity_cell(h.capacity),
    ]


def result_cells(r: Row) -> list[str]:
    m = r.metrics
    goodput = m.get("request_goodput")
    return [
        str(r.phase),
        r.scope,
        r.agent or "(all)",
        load(r),
        str(m["completed"]),
        str(m["failed"]),
        f"{m['request_throughput']:.2f}",
        f"{m['output_throughput']:.1f}",
        f"{m['median_ttft_ms']:.0f}",
        f"{m['p95_ttft_ms']:.0f}",
        f"{m['median_tpot_ms']:.1f}",
        f"{m['p95_itl_ms']:.1f}",
        f"{m['median_e2el_ms'] / 1000:.2f}",
        f"{m['p95_e2el_ms'] / 1000:.2f}",
        f"{m['p99_e2el_ms'] / 1000:.2f}",
        NA if goodput is None else f"{goodput:.2f}",
        percent(m.get("fallback_rate", 0.0)),
    ]


def capacity_rows(report: Report) -> list[list[str]]:
    out = []
    for scope, cap in report.capacity.items():
        rate = cap.get("request_rate")
        tput = cap.get("output_throughput")
        knee, knee_rate = cap.get("knee_concurrency"), cap.get("knee_request_rate")
        out.append(
            [
                scope,
                "none" if cap.get("max_concurrency") is None else str(cap["max_concurrency"]),
                NA if rate is None else f"{rate:.2f} req/s",
                NA if tput is None else f"{tput:.0f}",
                cap.get("limited_by", ""),
                "none" if knee is None else f"c={knee}, {knee_rate:.2f} req/s",
                cap.get("knee_limited_by", ""),
            ]
        )
    return out


def regression_lines(report: Report) -> list[str]:
    return [
        f"{h.agent}: P95 {r.p95_s:.2f} s is {r.change_pct:.0f}% worse than the median "
        f"{r.baseline_s:.2f} s of the last {r.runs} comparable runs"
        for h in report.headlines
        if (r := h.regression) is not None
    ]


def when(iso: str) -> str:
    """2025-01-02T03:04:05.678Z -> 2025-01-02 03:04:05 UTC"""
    return iso[:19].replace("T", " ") + (" UTC" if iso.endswith("Z") else "")


def run_facts(report: Report) -> list[tuple[str, str]]:
    run = report.run
    p = run.params
    load_desc = (
        f"sweep, concurrency 1 to {p.get('max_concurrency')}"
        if run.kind == "sweep"
        else f"{p.get('rate')} req/s (Poisson)"
        if p.get("mode") == "rate"
        else f"concurrency {1 if run.kind == 'probe' else p.get('concurrency')}"
    )
    return [
        ("Run", f"#{run.id} ({run.kind}, {run.trigger})"),
        ("Status", run.status + (f" — {run.reason}" if run.reason else "")),
        ("Started", when(run.started_at)),
        ("Finished", when(run.finished_at) if run.finished_at else NA),
        ("Profile", run.profile or NA),
        ("GPU", run.gpu or NA),
        ("Appliance", run.version or NA),
        ("Load", load_desc),
        ("Requests per level", str(p.get("requests", NA))),
        ("Error budget", f"{100 * float(p.get('error_budget', 0)):g}%"),
        *(
            [("Knee", f"P95 up to +{100 * float(p.get('degradation', 0)):g}% of unloaded")]
            if run.kind == "sweep"
            else []
        ),
        ("Seed", str(p.get("seed", NA))),
    ]
