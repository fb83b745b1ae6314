"""The Markdown report: facts, summary table with verdicts, capacity, every phase."""

from __future__ import annotations

from collections.abc import Sequence

from appliance.bench.report import text
from appliance.bench.report.model import Report


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def summary_table(report: Report) -> str:
    return table(text.SUMMARY_HEADER, [text.summary_cells(h) for h in report.headlines])


def render_markdown(report: Report) -> str:
    parts = [f"# Benchmark run #{report.run.id}", ""]
    parts += [f"- **{k}:** {v}" for k, v in text.run_facts(report)]
    for note in report.notes:
        parts += ["", f"> {note}"]
    parts += ["", "## Against the expected table", "", summary_table(report)]
    regressions = text.regression_lines(report)
    parts += ["", "## Regressions", ""]
    parts += [f"- ⚠ {line}" for line in regressions] or ["None flagged."]
    if report.capacity:
        parts += ["", "## Capacity", "", table(text.CAPACITY_HEADER, text.capacity_rows(report))]
    parts += [
        "",
        "## Every phase",
        "",
        table(text.RESULTS_HEADER, [text.result_cells(r) for r in report.rows]),
        "",
    ]
    return "\n".join(parts)
