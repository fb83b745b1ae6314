"""Reading an engine's /metrics: vLLM's gauges, both KV-cache names, staleness, failed scrapes."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.errors import MetricsParseError
from appliance.monitor.engine_metrics import EngineLoad, EngineMetricsScraper, parse_load
from appliance.simulator.metrics import Metrics

VLLM_V1 = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.42
# HELP vllm:num_requests_waiting_by_reason Requests waiting, by reason.
vllm:num_requests_waiting_by_reason{engine="0",reason="capacity"} 99.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.3",model_name="m"} 1.0
"""


def test_reads_the_three_gauges_of_a_vllm_exposition() -> None:
    load = parse_load(VLLM_V1, scraped_at=5.0)
    assert (load.running, load.waiting, load.kv_usage) == (12.0, 3.0, 0.42)
    assert load.scraped_at == 5.0


def test_accepts_the_older_kv_cache_name_and_the_simulators_output() -> None:
    for legacy in (False, True):
        text = Metrics("llama-3.1-8b-instruct", legacy_names=legacy).render(5, 2, 0.25).decode()
        assert ("vllm:gpu_cache_usage_perc" in text) is legacy
        load = parse_load(text)
        assert (load.running, load.waiting, load.kv_usage) == (5.0, 2.0, 0.25)


def test_data_parallel_series_add_up_and_the_fullest_cache_counts() -> None:
    text = (
        'vllm:num_requests_running{engine="0"} 4\n'
        'vllm:num_requests_running{engine="1"} 6 1700000000000\n'
        'vllm:num_requests_waiting{engine="0"} 1\n'
        'vllm:num_requests_waiting{engine="1"} 0\n'
        'vllm:kv_cache_usage_perc{engine="0"} 0.2\n'
        'vllm:kv_cache_usage_perc{engine="1"} 0.7\n'
    )
    load = parse_load(text)
    assert (load.running, load.waiting, load.kv_usage) == (10.0, 1.0, 0.7)


def test_label_values_with_spaces_braces_and_quotes_do_not_confuse_the_parser() -> None:
    text = 'vllm:num_requests_running{model_name="a } b \\" {c}",engine="0"} 7\n'
    assert parse_load(text).running == 7.0
    unlabelled = "vllm:num_requests_waiting 2\n"
    assert parse_load(unlabelled).waiting == 2.0


def test_an_exposition_without_the_request_gauges_is_an_error() -> None:
    with pytest.raises(MetricsParseError):
        parse_load("# nothing here\nprocess_cpu_seconds_total 3\n")
    with pytest.raises(MetricsParseError):
        parse_load('vllm:num_requests_running{engine="0"} NaN\n')


def test_freshness_is_the_age_of_the_last_good_reading() -> None:
    load = EngineLoad(running=1.0, waiting=0.0, kv_usage=None, scraped_at=100.0)
    assert load.fresh(105.0, 10.0)
    assert not load.fresh(110.5, 10.0)
    assert not EngineLoad().fresh(0.0, 10.0)


class FakeResponse:
    def __init__(self, status: int, text: str) -> None:
        self.status_code = status
        self.text = text


class FakeClient:
    def __init__(self) -> None:
        self.answers: list[Any] = []

    async def get(self, path: str, *, timeout: float = 2.0) -> FakeResponse:
        assert path == "/metrics"
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_a_failed_scrape_keeps_the_last_good_reading_with_the_error() -> None:
    client = FakeClient()
    now = [10.0]
    scraper = EngineMetricsScraper({"e": client}, clock=lambda: now[0])  # type: ignore[dict-item]
    assert scraper.loads["e"].error == "not scraped yet"
    client.answers = [
        FakeResponse(200, VLLM_V1),
        ConnectionRefusedError(),
        FakeResponse(404, "not found"),
    ]
    good = await scraper.scrape("e")
    assert good.running == 12.0 and good.error is None
    now[0] = 12.0
    failed = await scraper.scrape("e")
    assert failed.running == 12.0 and failed.scraped_at == 10.0
    assert failed.error == "ConnectionRefusedError"
    assert failed.fresh(12.0, 10.0) and not failed.fresh(21.0, 10.0)
    assert (await scraper.scrape("e")).error == "HTTP 404"
