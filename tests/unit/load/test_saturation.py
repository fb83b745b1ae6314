"""The saturation score's terms and the rule for unknown metrics."""

from __future__ import annotations

import pytest

from appliance.load.saturation import combine, engine_signal, latency_term, own_term
from appliance.monitor.engine_metrics import EngineLoad
from appliance.monitor.latency import Percentiles


def p95(value: float, count: int = 50) -> Percentiles:
    return Percentiles(count=count, p50=value / 2, p95=value, p99=value)


def test_a_fresh_scrape_gives_queue_and_kv_terms() -> None:
    load = EngineLoad(running=12.0, waiting=4.0, kv_usage=0.6, scraped_at=100.0)
    signal = engine_signal(load, now=101.0, max_age_s=10.0, max_num_seqs=16, latency=0.2)
    assert signal.known
    assert signal.engine == pytest.approx(1.0) and signal.kv == 0.6
    assert signal.floor == pytest.approx(1.0)


def test_a_stale_scrape_is_unknown_and_keeps_only_the_latency_term() -> None:
    load = EngineLoad(running=16.0, waiting=9.0, kv_usage=0.99, scraped_at=100.0)
    signal = engine_signal(load, now=111.0, max_age_s=10.0, max_num_seqs=16, latency=0.4)
    assert not signal.known
    assert (signal.engine, signal.kv, signal.floor) == (0.0, 0.0, 0.4)


def test_unknown_metrics_rule() -> None:
    # conservative: half busy with work the appliance cannot see
    assert own_term(0.0, known=False, conservative=True) == 0.5
    assert own_term(0.7, known=False, conservative=True) == pytest.approx(0.85)
    # admit: the own counters alone; and known metrics never change the own term
    assert own_term(0.7, known=False, conservative=False) == 0.7
    assert own_term(0.7, known=True, conservative=True) == 0.7


def test_combine_takes_the_largest_term_and_queued_means_at_least_full() -> None:
    assert combine(0.3, 0.6, known=True, conservative=True, queued=False) == 0.6
    assert combine(1.3, 0.6, known=True, conservative=True, queued=False) == 1.3
    assert combine(0.3, 0.2, known=True, conservative=True, queued=True) == 1.0
    assert combine(1.3, 0.2, known=True, conservative=True, queued=True) == 1.3


def test_latency_term_is_p95_over_the_objective() -> None:
    assert latency_term([(p95(1.0), None, 2.0), (p95(9.0), None, 6.0)], min_samples=20) == 1.5


def test_latency_term_needs_enough_samples_and_a_positive_objective() -> None:
    assert latency_term([(p95(9.0, count=5), None, 2.0)], min_samples=20) == 0.0
    assert latency_term([(None, None, 2.0)], min_samples=20) == 0.0
    assert latency_term([(p95(9.0), None, 0.0)], min_samples=20) == 0.0


def test_an_objective_unreachable_even_at_light_load_measures_the_slowdown_instead() -> None:
    # Answers so long that the light-load P95 is 12 s against an 8 s objective:
    light = p95(12.0)
    assert latency_term([(p95(12.0), light, 8.0)], min_samples=20) == pytest.approx(1.0)
    assert latency_term([(p95(18.0), light, 8.0)], min_samples=20) == pytest.approx(1.5)
    # A baseline inside the objective leaves the objective as the bound.
    assert latency_term([(p95(6.0), p95(3.0), 8.0)], min_samples=20) == pytest.approx(0.75)
    # A baseline with too few samples is not used.
    assert latency_term([(p95(12.0), p95(12.0, count=3), 8.0)], min_samples=20) == 1.5
