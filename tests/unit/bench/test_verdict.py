from __future__ import annotations

import pytest

from appliance.bench.verdict import judge, judge_latency, judge_speed
from appliance.config.schema import ExpectedRow

KAI = ExpectedRow(model_size="70B", p95_s=(5.0, 8.0), tokens_per_s=(15.0, 20.0))


def test_latency_within_reports_headroom_to_the_objective() -> None:
    v = judge_latency(6.0, (5.0, 8.0))
    assert v.verdict == "within"
    assert v.margin == pytest.approx(2.0) and v.margin_pct == pytest.approx(25.0)
    assert v.describe() == "within, 2.00 s (25%) headroom"


def test_latency_worse_and_better() -> None:
    worse = judge_latency(10.0, (5.0, 8.0))
    assert (worse.verdict, worse.margin, worse.margin_pct) == ("worse", 2.0, 25.0)
    better = judge_latency(4.0, (5.0, 8.0))
    assert (better.verdict, better.margin, better.margin_pct) == ("better", 1.0, 20.0)
    assert judge_latency(8.0, (5.0, 8.0)).verdict == "within"  # bounds are inside the band


def test_speed_is_judged_the_other_way_round() -> None:
    assert judge_speed(12.0, (15.0, 20.0)).verdict == "worse"
    assert judge_speed(12.0, (15.0, 20.0)).margin == pytest.approx(3.0)
    assert judge_speed(25.0, (15.0, 20.0)).verdict == "better"
    within = judge_speed(16.0, (15.0, 20.0))
    assert within.verdict == "within" and within.margin == pytest.approx(1.0)
    assert within.describe() == "within, 1.00 tok/s (7%) headroom"


def test_judge_reads_vllm_keys_in_milliseconds() -> None:
    verdicts = judge({"p95_e2el_ms": 9000.0, "tokens_per_s": 17.0}, KAI)
    assert verdicts["p95"].verdict == "worse"
    assert verdicts["p95"].value == pytest.approx(9.0)
    assert verdicts["tokens_per_s"].verdict == "within"
