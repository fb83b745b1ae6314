"""The gateway's recorder: counters, histograms and latency windows from finished requests."""

from __future__ import annotations

from appliance.histogram import Histogram
from appliance.load.recorder import MetricsRecorder
from appliance.monitor.latency import LatencyWindows


def test_histogram_buckets_are_cumulative_and_end_with_inf() -> None:
    histogram = Histogram((0.5, 1.0, 2.0))
    for value in (0.1, 0.5, 0.7, 1.5, 9.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("0.5", 2), ("1.0", 3), ("2.0", 4), ("+Inf", 5)]
    assert histogram.count == 5 and histogram.sum == 11.8


def test_requests_are_counted_by_agent_model_and_outcome() -> None:
    recorder = MetricsRecorder(LatencyWindows(60.0))
    done = recorder.request_done
    done(agent="kai", model="big", outcome="ok", ttft_s=0.2, e2e_s=3.0)
    done(agent="kai", model="big", outcome="ok", ttft_s=None, e2e_s=4.0)
    done(agent="kai", model="big", outcome="http_500", ttft_s=None, e2e_s=0.1)
    done(agent=None, model="small", outcome="ok", ttft_s=None, e2e_s=0.3)
    recorder.engine_failure("big-engine", "ConnectError")
    assert recorder.requests == {
        ("kai", "big", "ok"): 2,
        ("kai", "big", "http_500"): 1,
        ("-", "small", "ok"): 1,
    }
    assert recorder.e2e[("kai", "big")].count == 3
    assert recorder.ttft[("kai", "big")].count == 1
    assert recorder.engine_failures == {("big-engine", "ConnectError"): 1}
    # The windows judge answered requests only: the failed one is not a latency sample.
    window = recorder.latency.e2e("kai", "big")
    assert window is not None and window.count == 2


def test_light_load_samples_feed_the_baseline() -> None:
    busy = {"big": True, "small": False}
    recorder = MetricsRecorder(LatencyWindows(60.0), light=lambda model: not busy[model])
    recorder.request_done(agent="kai", model="big", outcome="ok", ttft_s=None, e2e_s=9.0)
    recorder.request_done(agent="kai", model="small", outcome="ok", ttft_s=None, e2e_s=1.0)
    assert recorder.latency.baseline("kai", "big") is None
    small = recorder.latency.baseline("kai", "small")
    assert small is not None and small.count == 1
