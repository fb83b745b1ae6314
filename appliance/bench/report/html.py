"""The HTML report: one self-contained page (inline CSS, inline SVG; no script, no network)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from appliance.bench.records import MIX
from appliance.bench.report import text
from appliance.bench.report.model import Headline, Report, Row
from appliance.bench.report.svg import PALETTE, Chart, Series, render

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;
margin:0;background:#f5f6f8}
main{max-width:1220px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.sub{color:#5b6475;margin-bottom:16px}
dl{display:grid;grid-template-columns:repeat(4,auto 1fr);gap:4px 12px;background:#fff;
padding:12px 16px;border-radius:8px;border:1px solid #dde1e8}
dt{color:#5b6475}dd{margin:0;font-weight:500}
.note{background:#fff8e1;border:1px solid #f0d58a;padding:8px 12px;border-radius:6px;margin:10px 0}
.alert{background:#fdecee;border:1px solid #e9a2ad;padding:8px 12px;border-radius:6px;margin:10px 0}
table{border-collapse:collapse;background:#fff;width:100%;border:1px solid #dde1e8;
font-variant-numeric:tabular-nums}
th,td{padding:5px 8px;border-bottom:1px solid #e7eaf0;text-align:left;white-space:nowrap}
th{background:#eef1f6;font-weight:600;font-size:12.5px;white-space:normal;vertical-align:bottom}
td.w{white-space:normal}small{color:#5b6475}
.scroll{overflow-x:auto}table.dense{font-size:12.5px}table.dense td,table.dense th{padding:4px 6px}
td.n{text-align:right}
.v{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;font-weight:600}
.v.within{background:#e3f3e6;color:#1f6b30}.v.better{background:#e2ecfa;color:#244f8f}
.v.worse{background:#fbe3e6;color:#9a2233}
.grid2{display:grid;grid-template-columns:repeat(2,1fr);gap:14px}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:8px}
svg.chart{width:100%;height:auto;font-size:11px;fill:#39404d}
svg .ct{font-size:13px;font-weight:600;fill:#1d2330}svg .al{fill:#5b6475}
svg .grid{stroke:#e7eaf0}svg .axis{stroke:#8a93a3}
svg .band{fill:#3f8f4f;fill-opacity:.13}
svg .objective{stroke:#b8475a;stroke-dasharray:5 3;stroke-width:1.4}
.empty{color:#8a93a3;padding:40px 10px;text-align:center}
footer{color:#8a93a3;margin-top:28px;font-size:12px}
"""


def render_html(report: Report) -> str:
    run = report.run
    body = [
        f"<h1>Benchmark run #{run.id}: {escape(run.kind)}</h1>",
        f'<div class="sub">Kai LLM appliance {escape(run.version)} · profile '
        f"{escape(run.profile)} · {escape(run.status)}</div>",
        _facts(report),
        *(f'<div class="note">{escape(n)}</div>' for n in report.notes),
        *(
            f'<div class="alert">⚠ Regression: {escape(line)}</div>'
            for line in text.regression_lines(report)
        ),
        "<h2>Against the expected table</h2>",
        _summary(report.headlines),
    ]
    if report.capacity:
        body += [
            "<h2>Capacity</h2>",
            '<p class="sub">Max concurrency: the highest load at which every P95 objective (the '
            "top of the expected band) and the error budget hold. Knee: the highest load at "
            "which P95 stays within the sweep's allowance above its unloaded value, useful "
            "when the objective is missed even unloaded.</p>",
            _table(text.CAPACITY_HEADER, text.capacity_rows(report), wrap=(4, 6)),
        ]
    body += _load_charts(report)
    body += ["<h2>P95 across past comparable runs</h2>", _trend_charts(report)]
    body += [
        "<h2>Every phase</h2>",
        _table(
            text.RESULTS_HEADER,
            [text.result_cells(r) for r in report.rows],
            numeric_from=4,
            dense=True,
        ),
        "<footer>Synthetic workload: no user text was sent or stored. Metric names follow "
        "<code>vllm bench serve</code> (TTFT, TPOT, ITL, E2EL; percentiles interpolated "
        "linearly).</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Benchmark run #{run.id}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def _facts(report: Report) -> str:
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in text.run_facts(report))
    return f"<dl>{items}</dl>"


def _badge(cell: str) -> str:
    word = cell.split(" ", 1)[0].rstrip(",")
    if word in ("better", "within", "worse"):
        rest = escape(cell[len(word) :].lstrip(", "))
        return f'<span class="v {word}">{escape(word)}</span><br><small>{rest}</small>'
    return escape(cell)


def _summary(headlines: Sequence[Headline]) -> str:
    rows = []
    for h in headlines:
        cells = text.summary_cells(h)
        tds = []
        for i, c in enumerate(cells):
            if i in (5, 8):
                tds.append(f'<td class="w">{_badge(c)}</td>')
            elif i == 9:
                tds.append(f'<td class="w">{escape(c)}</td>')
            else:
                tds.append(f'<td class="{"n" if i in (3, 6) else ""}">{escape(c)}</td>')
        rows.append("<tr>" + "".join(tds) + "</tr>")
    head = "".join(f"<th>{escape(c)}</th>" for c in text.SUMMARY_HEADER)
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numeric_from: int = 99,
    wrap: Sequence[int] = (),
    dense: bool = False,
) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"n" if i >= numeric_from else "w" if i in wrap else ""}">{escape(c)}</td>'
            for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    cls = ' class="dense"' if dense else ""
    return (
        f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _points(rows: Sequence[Row], agent: str, scope: str, metric: str) -> list[tuple[float, float]]:
    pts = [
        (float(r.concurrency), _value(r, metric))
        for r in rows
        if r.agent == agent
        and r.scope == scope
        and r.mode == "concurrency"
        and r.concurrency
        and r.metrics["completed"]
    ]
    return sorted(pts)


def _value(r: Row, metric: str) -> float:
    return r.p95_s if metric == "p95" else float(r.metrics["tokens_per_s"])


def _load_charts(report: Report) -> list[str]:
    levels = {r.concurrency for r in report.rows if r.mode == "concurrency"}
    if len(levels) < 2:
        return []
    out = ["<h2>P95 and tokens/s against concurrency</h2>", '<div class="grid2">']
    for h in report.headlines:
        color = PALETTE.get(h.agent, "#3b6ea8")
        for metric, band, unit, edge in (
            ("p95", "p95_s", "P95 end-to-end (s)", 1),
            ("tokens_per_s", "tokens_per_s", "tokens/s per request", 0),
        ):
            series = [
                Series("alone", _points(report.rows, h.agent, h.agent, metric), color),
                Series(
                    "in the mix",
                    _points(report.rows, h.agent, MIX, metric),
                    PALETTE[MIX],
                    dashed=True,
                ),
            ]
            series = [s for s in series if s.points]
            chart = Chart(
                title=f"{h.agent} ({h.row.model}): {unit}",
                x_label="concurrent requests",
                y_label=unit,
                series=series,
                band=tuple(h.expected[band]),
                band_label=f"expected {text.band(h.expected[band])}",
                objective=float(h.expected[band][edge]),
                x_log2=True,
            )
            out.append(f'<div class="card">{render(chart)}</div>')
    out.append("</div>")
    return out


def _trend_charts(report: Report) -> str:
    cards = []
    for h in report.headlines:
        history = [(p.run_id, p.p95_e2el_ms / 1000.0) for p in h.trend]
        points = [*history, (report.run.id, h.row.p95_s)]
        title = f"{h.agent}: P95 at {text.load(h.row)}, run by run"
        if len(points) < 2:
            cards.append(
                f'<div class="card"><div class="ct"><b>{escape(title)}</b></div>'
                '<div class="empty">No earlier comparable run yet.</div></div>'
            )
            continue
        xs = [(float(i), f"#{rid}") for i, (rid, _) in enumerate(points)]
        chart = Chart(
            title=title,
            x_label="run",
            y_label="P95 end-to-end (s)",
            series=[
                Series(
                    h.agent,
                    [(float(i), p) for i, (_, p) in enumerate(points)],
                    PALETTE.get(h.agent, "#3b6ea8"),
                )
            ],
            band=tuple(h.expected["p95_s"]),
            band_label=f"expected {text.band(h.expected['p95_s'], ' s')}",
            objective=float(h.expected["p95_s"][1]),
            x_ticks=_thin(xs),
        )
        cards.append(f'<div class="card">{render(chart)}</div>')
    return f'<div class="grid2">{"".join(cards)}</div>'


def _thin(ticks: list[tuple[float, str]], most: int = 10) -> list[tuple[float, str]]:
    step = max(1, -(-len(ticks) // most))
    kept = ticks[::step]
    return kept if kept[-1] == ticks[-1] else [*kept, ticks[-1]]
