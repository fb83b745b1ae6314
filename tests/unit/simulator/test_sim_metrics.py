"""`/metrics` text: vLLM's names and labels, parseable by Prometheus' own parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.simulator.metrics import Metrics


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _get(samples, name, **labels):
    base = {"model_name": "llama-3.1-8b-instruct", "engine": "0", **labels}
    return samples[(name, tuple(sorted(base.items())))]


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics("llama-3.1-8b-instruct")
    m.finished(reason="stop", prompt=100, generated=11, queue_s=0.0, ttft_s=0.05, e2e_s=0.55)
    m.finished(reason="length", prompt=50, generated=1, queue_s=1.0, ttft_s=1.2, e2e_s=1.2)
    return m


def test_gauges_and_counters_carry_vllm_names_and_the_model_label(metrics):
    samples = _samples(metrics.render(running=3, waiting=2, kv_usage=0.25))
    assert _get(samples, "vllm:num_requests_running") == 3
    assert _get(samples, "vllm:num_requests_waiting") == 2
    assert _get(samples, "vllm:kv_cache_usage_perc") == 0.25
    assert _get(samples, "vllm:prompt_tokens_total") == 150
    assert _get(samples, "vllm:generation_tokens_total") == 12
    assert _get(samples, "vllm:request_success_total", finished_reason="stop") == 1
    assert _get(samples, "vllm:request_success_total", finished_reason="length") == 1
    assert _get(samples, "vllm:request_success_total", finished_reason="abort") == 0


def test_histograms_are_cumulative_with_count_and_sum(metrics):
    samples = _samples(metrics.render(0, 0, 0.0))
    ttft = "vllm:time_to_first_token_seconds"
    assert _get(samples, f"{ttft}_bucket", le="0.04") == 0
    assert _get(samples, f"{ttft}_bucket", le="0.06") == 1
    assert _get(samples, f"{ttft}_bucket", le="2.5") == 2
    assert _get(samples, f"{ttft}_bucket", le="+Inf") == 2
    assert _get(samples, f"{ttft}_count") == 2
    assert _get(samples, f"{ttft}_sum") == pytest.approx(1.25)
    assert _get(samples, "vllm:e2e_request_latency_seconds_count") == 2
    assert _get(samples, "vllm:request_queue_time_seconds_bucket", le="1.0") == 2
    # Time per output token: (0.55 - 0.05) / 10 = 0.05; a one-token answer has none.
    tpot = "vllm:request_time_per_output_token_seconds"
    assert _get(samples, f"{tpot}_count") == 1
    assert _get(samples, f"{tpot}_sum") == pytest.approx(0.05)
    # Inter-token latency: one observation per gap between tokens, as vLLM makes them.
    itl = "vllm:inter_token_latency_seconds"
    assert _get(samples, f"{itl}_count") == 10
    assert _get(samples, f"{itl}_sum") == pytest.approx(0.5)
    assert _get(samples, "vllm:request_prefill_time_seconds_sum") == pytest.approx(0.05 + 0.2)
    assert _get(samples, "vllm:request_decode_time_seconds_sum") == pytest.approx(0.5)
    assert ("vllm:time_per_output_token_seconds_count", ()) not in {
        (name, ()) for name, _ in samples
    }


def test_legacy_names_use_the_old_kv_cache_gauge():
    text = Metrics("m", legacy_names=True).render(0, 0, 0.5).decode()
    assert 'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.5' in text
    assert "vllm:kv_cache_usage_perc" not in text


def test_a_model_name_is_escaped_in_its_label():
    text = Metrics('odd"name').render(0, 0, 0.0).decode()
    families = list(text_string_to_metric_families(text))
    assert families[0].samples[0].labels["model_name"] == 'odd"name'
