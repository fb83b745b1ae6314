"""Sliding latency windows: percentiles, the horizon, the light-load baseline."""

from __future__ import annotations

import pytest

from appliance.monitor.latency import LatencyWindows, Window, summarize
from appliance.quantiles import percentile, quantile_sorted


def test_percentiles_match_the_benchmarks_method() -> None:
    values = [0.3, 1.7, 0.9, 2.4, 0.2, 5.0, 1.1, 0.8, 0.4, 3.3, 0.7]
    summary = summarize(values)
    assert summary is not None and summary.count == len(values)
    for q, got in ((50, summary.p50), (95, summary.p95), (99, summary.p99)):
        assert got == pytest.approx(percentile(values, q))
    assert summarize([]) is None
    assert quantile_sorted([4.0], 0.95) == 4.0


def test_samples_older_than_the_horizon_drop_out() -> None:
    window = Window(horizon_s=10.0)
    window.add(0.0, 9.0)
    window.add(5.0, 1.0)
    window.add(9.0, 2.0)
    assert window.values(9.5) == [9.0, 1.0, 2.0]
    assert window.values(12.0) == [1.0, 2.0]
    assert window.summary(30.0) is None


def test_a_window_keeps_at_most_max_samples() -> None:
    window = Window(horizon_s=60.0, max_samples=3)
    for i in range(5):
        window.add(float(i), float(i))
    assert window.values(5.0) == [2.0, 3.0, 4.0]


def test_series_per_agent_and_model_with_ttft_only_when_streamed() -> None:
    now = [0.0]
    windows = LatencyWindows(60.0, clock=lambda: now[0])
    windows.add("kai", "big", 4.0, 0.5)
    windows.add("kai", "big", 6.0, None)
    windows.add("kai", "small", 1.0, None)
    windows.add(None, "big", 2.0, None)
    big = windows.e2e("kai", "big")
    assert big is not None and big.count == 2 and big.p50 == 5.0
    ttft = windows.ttft("kai", "big")
    assert ttft is not None and ttft.count == 1
    assert windows.ttft("kai", "small") is None
    report = windows.report()
    assert set(report) == {"kai", "-"}
    assert report["kai"]["big"]["e2e"]["count"] == 2
    now[0] = 61.0
    assert windows.report() == {}


def test_the_baseline_keeps_light_load_samples_however_old() -> None:
    now = [0.0]
    windows = LatencyWindows(10.0, baseline_samples=4, clock=lambda: now[0])
    for value in (1.0, 1.2, 1.1):
        windows.add("kai", "big", value, None, light=True)
    windows.add("kai", "big", 9.0, None, light=False)
    now[0] = 500.0
    assert windows.e2e("kai", "big") is None  # the recent window has emptied
    baseline = windows.baseline("kai", "big")
    assert baseline is not None and baseline.count == 3 and baseline.p95 < 1.2
