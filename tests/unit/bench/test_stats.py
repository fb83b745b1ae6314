"""Statistics against values worked out by hand (and numpy's documented definitions)."""

from __future__ import annotations

import math

import pytest

from appliance.bench.records import Sample
from appliance.bench.stats import Slo, mean, percentile, std, summarize, tpot


def sample(
    ttft: float,
    e2el: float,
    tokens: int,
    *,
    itl: tuple[float, ...] = (),
    prompt: int = 10,
    ok: bool = True,
) -> Sample:
    return Sample(
        phase=0,
        seq=0,
        agent="kai",
        model="m",
        start_s=0.0,
        ttft_s=ttft,
        e2el_s=e2el,
        itl_s=itl,
        prompt_tokens=prompt,
        completion_tokens=tokens,
        ok=ok,
        error=None if ok else "http_503 overloaded_error",
    )


def test_percentile_interpolates_linearly_between_ranks() -> None:
    xs = [1.0, 2.0, 3.0, 4.0]
    # rank = (n - 1) * p / 100: p50 -> 1.5 -> 2.5; p95 -> 2.85 -> 3.85; p99 -> 2.97 -> 3.97
    assert percentile(xs, 50) == pytest.approx(2.5)
    assert percentile(xs, 95) == pytest.approx(3.85)
    assert percentile(xs, 99) == pytest.approx(3.97)
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 100) == 4.0


def test_percentile_ignores_input_order_and_handles_one_and_none() -> None:
    assert percentile([10.0, 0.0, 5.0], 25) == pytest.approx(2.5)  # sorted 0,5,10; rank 0.5
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 95) == 0.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_mean_and_population_std() -> None:
    xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    assert mean(xs) == 5.0
    assert std(xs) == 2.0  # the textbook population example
    assert mean([]) == 0.0 and std([]) == 0.0


def test_tpot_excludes_the_first_token() -> None:
    assert tpot(e2el_s=2.1, ttft_s=0.1, output_tokens=101) == pytest.approx(0.02)
    assert tpot(1.0, 0.5, 1) is None
    assert tpot(1.0, 0.5, 0) is None


def test_summarize_gives_vllm_keys_and_hand_computed_values() -> None:
    samples = [
        sample(0.1, 1.1, 11, itl=(0.1,) * 10, prompt=100),  # tpot 0.1
        sample(0.2, 2.2, 21, itl=(0.1,) * 20, prompt=200),  # tpot 0.1
        sample(0.3, 0.3, 1, prompt=50),  # one token: no tpot, no itl
        sample(0.0, 0.5, 0, prompt=0, ok=False),
    ]
    m = summarize(samples, duration_s=4.0)
    assert m["completed"] == 3 and m["failed"] == 1
    assert m["total_input_tokens"] == 350
    assert m["total_output_tokens"] == 33
    assert m["request_throughput"] == pytest.approx(3 / 4)
    assert m["output_throughput"] == pytest.approx(33 / 4)
    assert m["total_token_throughput"] == pytest.approx(383 / 4)
    assert m["request_goodput"] is None
    assert m["mean_ttft_ms"] == pytest.approx(200.0)
    assert m["median_ttft_ms"] == pytest.approx(200.0)
    assert m["p99_ttft_ms"] == pytest.approx(298.0)  # rank 1.98 -> 0.2 + 0.98 * 0.1
    assert m["mean_tpot_ms"] == pytest.approx(100.0)
    assert m["std_tpot_ms"] == pytest.approx(0.0)
    assert m["mean_itl_ms"] == pytest.approx(100.0)
    assert m["p95_e2el_ms"] == pytest.approx(2090.0)  # sorted .3 1.1 2.2, rank 1.9
    assert m["std_e2el_ms"] == pytest.approx(1000 * std([1.1, 2.2, 0.3]))
    assert m["error_rate"] == pytest.approx(0.25)
    assert m["tokens_per_s"] == pytest.approx(10.0)  # 1 / median TPOT
    for key in ("p50_itl_ms", "p95_itl_ms", "p99_itl_ms", "median_e2el_ms", "std_ttft_ms"):
        assert key in m


def test_goodput_counts_requests_meeting_every_slo() -> None:
    samples = [
        sample(0.1, 1.0, 11),  # tpot 0.09
        sample(0.5, 1.5, 11),  # ttft too slow
        sample(0.1, 3.0, 11),  # e2el too slow, tpot 0.29 too slow
        sample(0.1, 0.2, 1),  # one token counts as tpot 0
    ]
    slo = Slo(ttft_s=0.2, tpot_s=0.1, e2el_s=2.0)
    m = summarize(samples, duration_s=2.0, slo=slo)
    assert m["request_goodput"] == pytest.approx(2 / 2.0)
    assert Slo(e2el_s=1.0).met_by(samples[0])
    assert not Slo(e2el_s=0.99).met_by(samples[0])


def test_fallback_rate_is_the_share_of_completed_answers_from_a_fallback() -> None:
    import msgspec

    plain = sample(0.1, 1.0, 11)
    moved = msgspec.structs.replace(plain, fallback=True)
    failed = sample(0.0, 0.5, 0, ok=False)
    assert summarize([plain, moved, moved, failed], 1.0)["fallback_rate"] == pytest.approx(2 / 3)
    assert summarize([plain], 1.0)["fallback_rate"] == 0.0


def test_summarize_of_nothing_is_zeros_not_errors() -> None:
    m = summarize([], duration_s=0.0)
    assert m["completed"] == 0 and m["request_throughput"] == 0.0
    assert m["p95_e2el_ms"] == 0.0 and m["tokens_per_s"] == 0.0
    assert not math.isnan(m["mean_itl_ms"])
