"""The operations page's history: P95 samples for an hour, and rates from counter differences."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.api.chat import completion_tokens
from appliance.config import load_config
from appliance.load.priority import Priority
from appliance.load.recorder import MetricsRecorder
from appliance.monitor.latency import LatencyWindows
from appliance.ui.history import CountSource, History, delta, share
from tests.support.running import SHIPPED


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Gate:
    admitted: list[int] = field(default_factory=lambda: [0] * len(Priority))
    rerouted: dict[tuple[int, str], int] = field(default_factory=dict)
    shed: dict[tuple[int, str], int] = field(default_factory=dict)


def parts() -> tuple[History, MetricsRecorder, Gate, Clock]:
    config = load_config(SHIPPED, env={})
    clock = Clock()
    latency = LatencyWindows(60.0, clock=clock)
    recorder = MetricsRecorder(latency)
    gate = Gate()
    counts = CountSource(config, recorder, lambda: [gate])
    return History(latency, counts, interval_s=30.0, clock=clock), recorder, gate, clock


def test_each_sample_holds_every_agents_p95_and_nothing_for_a_quiet_one() -> None:
    history, recorder, _, _ = parts()
    for e2e in (1.0, 2.0, 3.0, 4.0):
        recorder.request_done(agent="kai", model="llama-3.1-70b-instruct", outcome="ok",
                              ttft_s=None, e2e_s=e2e)  # fmt: skip
    recorder.request_done(agent="kai", model="llama-3.1-8b-instruct", outcome="ok",
                          ttft_s=None, e2e_s=10.0)  # fmt: skip
    sample = history.sample()
    # One P95 over every model that served the agent: the fallback's slow answer counts too.
    assert sample.p95_s["kai"] is not None and sample.p95_s["kai"] > 4.0
    assert sample.p95_s["guardrail"] is None
    assert set(sample.p95_s) == {"kai", "guardrail", "genetic", "wellness"}


def test_the_history_keeps_one_hour_of_samples() -> None:
    history, _, _, clock = parts()
    for _ in range(200):  # 100 minutes at one sample per 30 s
        history.sample()
        clock.now += 30.0
    series = history.series()["kai"]
    assert 119 <= len(series) <= 121
    assert clock.now - series[0][0] <= 3600.0 + 30.0
    assert len(history.samples) <= 121


def test_rates_compare_now_with_a_sample_about_a_minute_old() -> None:
    history, recorder, gate, clock = parts()
    history.sample()  # t = 0: nothing yet
    clock.now += 30.0
    for _ in range(8):
        recorder.request_done(agent="kai", model="llama-3.1-70b-instruct", outcome="ok",
                              ttft_s=None, e2e_s=2.0, tokens=100)  # fmt: skip
    gate.admitted[Priority.INTERACTIVE] = 8
    history.sample()  # t = 30 s
    clock.now += 40.0
    for _ in range(2):
        recorder.request_done(agent="kai", model="llama-3.1-8b-instruct", outcome="ok",
                              ttft_s=None, e2e_s=1.0, tokens=50)  # fmt: skip
    gate.admitted[Priority.INTERACTIVE] = 10
    gate.shed[(Priority.INTERACTIVE, "saturated")] = 10
    now, then, seconds = history.rates()
    # t = 70 s: the sample at t = 0 is the newest one a minute old.
    assert seconds == 70.0
    assert delta(now.served, then.served, "kai") == 10
    assert delta(now.fallbacks, then.fallbacks, "kai") == 2  # answered by the 8B fallback
    assert delta(now.tokens, then.tokens, "kai") == 900
    assert delta(now.token_seconds, then.token_seconds, "kai") == 18.0
    assert delta(now.shed, then.shed, "interactive") == 10
    assert share(10, 10 + 10) == 0.5


def test_a_rate_of_nothing_is_unknown_not_zero() -> None:
    history, _, _, _ = parts()
    now, then, seconds = history.rates()
    assert seconds == 0.0 and share(delta(now.served, then.served, "kai"), 0) is None


def test_completion_tokens_are_read_from_an_answer_without_decoding_it() -> None:
    body = b'{"choices":[{"message":{"content":"say \\"completion_tokens\\": 9"}}],'
    assert completion_tokens(body + b'"usage":{"completion_tokens": 42}}') == 42
    assert completion_tokens(body + b'"usage":null}') is None
