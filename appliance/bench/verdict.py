"""Judge measured figures against the service guide's expected table (`agents.*.expected`).

A latency below the band is `better`, inside it `within`, above it `worse`; tokens/s the other way
round. The margin is how far outside the band a figure lies or, within it, the headroom left to the
objective (the band's upper latency bound, its lower tokens/s bound); always non-negative, with
its share of the bound it is measured from.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from appliance.config.schema import ExpectedRow

Word = Literal["better", "within", "worse"]


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    metric: str  # "p95_e2el_s" or "tokens_per_s"
    value: float
    band: tuple[float, float]
    verdict: Word
    margin: float  # seconds, or tokens/s
    margin_pct: float

    def describe(self) -> str:
        unit = " s" if self.metric.endswith("_s") and self.metric != "tokens_per_s" else " tok/s"
        amount = f"{self.margin:.2f}{unit} ({self.margin_pct:.0f}%)"
        if self.verdict == "within":
            return f"within, {amount} headroom"
        return f"{self.verdict} by {amount}"


def judge_latency(value_s: float, band: tuple[float, float], metric: str = "p95_e2el_s") -> Verdict:
    low, high = band
    if value_s > high:
        return _verdict(metric, value_s, band, "worse", value_s - high, high)
    if value_s < low:
        return _verdict(metric, value_s, band, "better", low - value_s, low)
    return _verdict(metric, value_s, band, "within", high - value_s, high)


def judge_speed(value: float, band: tuple[float, float], metric: str = "tokens_per_s") -> Verdict:
    low, high = band
    if value < low:
        return _verdict(metric, value, band, "worse", low - value, low)
    if value > high:
        return _verdict(metric, value, band, "better", value - high, high)
    return _verdict(metric, value, band, "within", value - low, low)


def judge(metrics: dict[str, Any], expected: ExpectedRow) -> dict[str, Verdict]:
    """Both verdicts for one agent's figures (vLLM keys, milliseconds)."""
    return {
        "p95": judge_latency(metrics["p95_e2el_ms"] / 1000.0, expected.p95_s),
        "tokens_per_s": judge_speed(metrics["tokens_per_s"], expected.tokens_per_s),
    }


def _verdict(
    metric: str, value: float, band: tuple[float, float], word: Word, margin: float, base: float
) -> Verdict:
    return Verdict(
        metric=metric,
        value=value,
        band=(float(band[0]), float(band[1])),
        verdict=word,
        margin=margin,
        margin_pct=100.0 * margin / base if base else 0.0,
    )
