"""Percentiles with linear interpolation between closest ranks (numpy's default method).

One definition for every figure the appliance reports: latency windows, benchmark statistics,
the connection check and the performance benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def quantile_sorted(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of values already sorted ascending; 0.0 when there are none."""
    if not ordered:
        return 0.0
    rank = (len(ordered) - 1) * q
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) of unsorted values; 0.0 when there are none."""
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {p}")
    return quantile_sorted(sorted(values), p / 100.0)
