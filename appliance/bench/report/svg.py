"""Small inline SVG line charts drawn by hand, so a report needs no script, font or network.

A chart has numeric axes with rounded ticks, any number of series, and an optional shaded band
(the expected range) and the objective drawn as a dashed line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = {
    "kai": "#3b6ea8",
    "guardrail": "#d9822b",
    "genetic": "#3f8f4f",
    "wellness": "#b8475a",
    "mix": "#6a5aa8",
}


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]
    color: str = "#3b6ea8"
    dashed: bool = False


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    x_label: str
    y_label: str
    series: Sequence[Series]
    band: tuple[float, float] | None = None
    band_label: str = ""
    # The edge of the band that is the objective: the top for latency, the bottom for speed.
    objective: float | None = None
    x_log2: bool = False
    # Tick labels for given x values (e.g. run ids on a trend); default: the numbers.
    x_ticks: Sequence[tuple[float, str]] = field(default_factory=tuple)
    width: int = 520
    height: int = 280


_M_LEFT, _M_RIGHT, _M_TOP, _M_BOTTOM = 56, 16, 34, 58


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """0 .. at least `high` in round steps (1, 2, 2.5 or 5 times a power of ten)."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    n = math.ceil(high / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 or float(v).is_integer() else f"{v:.2g}"


def render(chart: Chart) -> str:
    w, h = chart.width, chart.height
    plot_w, plot_h = w - _M_LEFT - _M_RIGHT, h - _M_TOP - _M_BOTTOM
    xs = [x for s in chart.series for x, _ in s.points] or [1.0]
    ys = [y for s in chart.series for _, y in s.points]
    y_top = max([*ys, *(chart.band or ()), 0.0]) * 1.08
    yticks = nice_ticks(y_top)
    y_max = yticks[-1]

    def fx(x: float) -> float:
        tx = math.log2(x) if chart.x_log2 else x
        lo = math.log2(min(xs)) if chart.x_log2 else min(xs)
        hi = math.log2(max(xs)) if chart.x_log2 else max(xs)
        frac = 0.5 if hi == lo else (tx - lo) / (hi - lo)
        return _M_LEFT + 12 + frac * (plot_w - 24)

    def fy(y: float) -> float:
        return _M_TOP + plot_h - (y / y_max) * plot_h

    out = [
        f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        f'aria-label="{escape(chart.title)}">',
        f"<title>{escape(chart.title)}</title>",
        f'<text x="{_M_LEFT}" y="18" class="ct">{escape(chart.title)}</text>',
    ]
    if chart.band is not None:
        low, high = chart.band
        out.append(
            f'<rect x="{_M_LEFT}" y="{fy(high):.1f}" width="{plot_w}" '
            f'height="{fy(low) - fy(high):.1f}" class="band"/>'
        )
    if chart.objective is not None:
        y = fy(chart.objective)
        out.append(
            f'<line x1="{_M_LEFT}" x2="{_M_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            'class="objective"/>'
        )
    for t in yticks:
        y = fy(t)
        out.append(
            f'<line x1="{_M_LEFT}" x2="{_M_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
        )
        out.append(f'<text x="{_M_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    ticks = chart.x_ticks or [(x, _fmt(x)) for x in sorted(set(xs))]
    for x, label in ticks:
        out.append(
            f'<text x="{fx(x):.1f}" y="{_M_TOP + plot_h + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    out.append(
        f'<line x1="{_M_LEFT}" x2="{_M_LEFT}" y1="{_M_TOP}" y2="{_M_TOP + plot_h}" class="axis"/>'
    )
    out.append(
        f'<line x1="{_M_LEFT}" x2="{_M_LEFT + plot_w}" y1="{_M_TOP + plot_h}" '
        f'y2="{_M_TOP + plot_h}" class="axis"/>'
    )
    out.append(
        f'<text x="{_M_LEFT + plot_w / 2:.0f}" y="{_M_TOP + plot_h + 34}" '
        f'text-anchor="middle" class="al">{escape(chart.x_label)}</text>'
    )
    out.append(
        f'<text transform="translate(14 {_M_TOP + plot_h / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle" class="al">{escape(chart.y_label)}</text>'
    )
    for s in chart.series:
        out.extend(_series(s, fx, fy))
    out.extend(_legend(chart, _M_LEFT, h - 8))
    out.append("</svg>")
    return "\n".join(out)


def _series(s: Series, fx: Callable[[float], float], fy: Callable[[float], float]) -> list[str]:
    if not s.points:
        return []
    pts = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in s.points)
    dash = ' stroke-dasharray="6 4"' if s.dashed else ""
    out = [f'<polyline points="{pts}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>']
    out += [
        f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="3.2" fill="{s.color}">'
        f"<title>{escape(s.name)}: {_fmt(x)} → {y:.3g}</title></circle>"
        for x, y in s.points
    ]
    return out


def _legend(chart: Chart, x0: float, y: float) -> list[str]:
    """Series first, then the shaded band and the objective line, so nothing sits on the plot."""
    out: list[str] = []
    x = x0
    for s in chart.series:
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        out.append(
            f'<line x1="{x:.0f}" x2="{x + 22:.0f}" y1="{y - 4:.0f}" y2="{y - 4:.0f}" '
            f'stroke="{s.color}" stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{x + 27:.0f}" y="{y:.0f}">{escape(s.name)}</text>')
        x += 34 + 6.5 * len(s.name)
    if chart.band is not None and chart.band_label:
        out.append(f'<rect x="{x:.0f}" y="{y - 10:.0f}" width="18" height="11" class="band"/>')
        out.append(f'<text x="{x + 23:.0f}" y="{y:.0f}">{escape(chart.band_label)}</text>')
        x += 30 + 6.5 * len(chart.band_label)
    if chart.objective is not None:
        out.append(
            f'<line x1="{x:.0f}" x2="{x + 22:.0f}" y1="{y - 4:.0f}" y2="{y - 4:.0f}" '
            'class="objective"/>'
        )
        out.append(f'<text x="{x + 27:.0f}" y="{y:.0f}">objective</text>')
    return out
