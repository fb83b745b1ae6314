"""Reports of a benchmark run: JSON, Markdown and a self-contained HTML page."""

from __future__ import annotations

import json
from typing import Literal

from appliance.bench.report.html import render_html
from appliance.bench.report.markdown import render_markdown, summary_table
from appliance.bench.report.model import Report, build_report, report_json

Format = Literal["json", "md", "html"]
MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
}


def render(report: Report, fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(report_json(report), indent=2, allow_nan=False)
    if fmt == "md":
        return render_markdown(report)
    if fmt == "html":
        return render_html(report)
    raise ValueError(f"unknown report format {fmt!r}; expected json, md or html")


__all__ = [
    "MEDIA_TYPES",
    "Format",
    "Report",
    "build_report",
    "render",
    "render_html",
    "render_markdown",
    "report_json",
    "summary_table",
]
