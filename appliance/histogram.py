"""A Prometheus-style histogram kept as plain counts: cheap to observe, rendered when scraped.

Used by the appliance's `/metrics` and by the simulator's vLLM-shaped `/metrics`; it imports
nothing heavy so the simulator stays lean.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence


class Histogram:
    """Per-bucket counts (not cumulative), a sum and a count."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs ending with +Inf, as Prometheus expects."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, count in zip((*self.bounds, None), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound is None else repr(float(bound)), total))
        return out
