"""Statistics of one benchmark phase, named and computed the way `vllm bench serve` does.

Percentiles interpolate linearly between closest ranks (numpy's default method) and the standard
deviation is the population one (numpy's default `ddof=0`), so figures can be compared with vLLM's
own benchmark output. Empty inputs give 0, as vLLM's `np.mean(xs or 0)` does.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from appliance.bench.records import Sample
from appliance.quantiles import percentile

PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0)
METRICS: tuple[str, ...] = ("ttft", "tpot", "itl", "e2el")


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else 0.0


def std(values: Sequence[float]) -> float:
    """Population standard deviation (numpy's default)."""
    if not values:
        return 0.0
    mu = mean(values)
    return math.sqrt(math.fsum((v - mu) ** 2 for v in values) / len(values))


def tpot(e2el_s: float, ttft_s: float, output_tokens: int) -> float | None:
    """Time per output token after the first: (E2EL - TTFT) / (tokens - 1); None for 0-1 tokens."""
    if output_tokens <= 1:
        return None
    return (e2el_s - ttft_s) / (output_tokens - 1)


@dataclass(frozen=True, slots=True)
class Slo:
    """Per-request objectives for goodput, in seconds; `None` = not checked."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2el_s: float | None = None

    def met_by(self, sample: Sample) -> bool:
        # vLLM counts TPOT as 0 for requests of 0-1 output tokens.
        tp = tpot(sample.e2el_s, sample.ttft_s, sample.completion_tokens) or 0.0
        checks = ((self.ttft_s, sample.ttft_s), (self.tpot_s, tp), (self.e2el_s, sample.e2el_s))
        return all(limit >= value for limit, value in checks if limit is not None)

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.ttft_s, self.tpot_s, self.e2el_s))


def _describe(name: str, values_s: Sequence[float], out: dict[str, float]) -> None:
    out[f"mean_{name}_ms"] = mean(values_s) * 1000.0
    out[f"median_{name}_ms"] = percentile(values_s, 50.0) * 1000.0
    out[f"std_{name}_ms"] = std(values_s) * 1000.0
    for p in PERCENTILES:
        word = str(int(p)) if float(p).is_integer() else str(p)
        out[f"p{word}_{name}_ms"] = percentile(values_s, p) * 1000.0


def summarize(
    samples: Iterable[Sample], duration_s: float, slo: Slo | None = None
) -> dict[str, Any]:
    """vLLM's result keys for a set of samples measured over `duration_s` seconds."""
    samples = list(samples)
    good = [s for s in samples if s.ok]
    ttfts = [s.ttft_s for s in good]
    e2els = [s.e2el_s for s in good]
    tpots = [t for s in good if (t := tpot(s.e2el_s, s.ttft_s, s.completion_tokens)) is not None]
    itls = [gap for s in good for gap in s.itl_s]
    total_in = sum(s.prompt_tokens for s in good)
    total_out = sum(s.completion_tokens for s in good)
    dur = duration_s if duration_s > 0 else float("nan")
    result: dict[str, Any] = {
        "duration": duration_s,
        "completed": len(good),
        "failed": len(samples) - len(good),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": _rate(len(good), dur),
        "request_goodput": None,
        "output_throughput": _rate(total_out, dur),
        "total_token_throughput": _rate(total_in + total_out, dur),
    }
    if slo is not None and slo.active:
        result["request_goodput"] = _rate(sum(1 for s in good if slo.met_by(s)), dur)
    for name, values in zip(METRICS, (ttfts, tpots, itls, e2els), strict=True):
        _describe(name, values, result)
    result["error_rate"] = result["failed"] / len(samples) if samples else 0.0
    # Failures by status and error type, most frequent first.
    result["error_counts"] = dict(
        Counter(s.error or "error" for s in samples if not s.ok).most_common()
    )
    # Share of answers that came from a fallback model (through the appliance only).
    result["fallback_rate"] = sum(1 for s in good if s.fallback) / len(good) if good else 0.0
    mtpot = result["median_tpot_ms"]
    # Decode speed one user sees, in the guide's sense of "tokens/s": 1 / median TPOT.
    result["tokens_per_s"] = 1000.0 / mtpot if mtpot > 0 else 0.0
    return result


def _rate(count: float, duration_s: float) -> float:
    return 0.0 if math.isnan(duration_s) else count / duration_s


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)
