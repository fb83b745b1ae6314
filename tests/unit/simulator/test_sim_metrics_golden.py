"""The simulator's `/metrics` held to a real vLLM 0.32 exposition (tests/data/vllm-0.32-metrics.txt).

The golden text was captured once from `vllm serve` (CPU build, max_model_len 2048) after a few
requests. Every family the simulator writes must exist there with the same type, help, label
names and buckets, and the families the appliance and dashboards read must all be written.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from appliance.monitor.engine_metrics import parse_load
from appliance.simulator.metrics import Metrics

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "vllm-0.32-metrics.txt"
READ_BY_THE_APPLIANCE = {
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:request_success",
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:request_time_per_output_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
}


def _families(text: str) -> dict[str, dict[str, object]]:
    """name -> type, help, label names of its samples (without `le`), buckets, sample names."""
    out: dict[str, dict[str, object]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("vllm:"):
            continue
        labels: set[str] = set()
        buckets: list[str] = []
        names: set[str] = set()
        for sample in family.samples:
            names.add(sample.name.removeprefix(family.name))
            labels |= set(sample.labels) - {"le"}
            le = sample.labels.get("le")
            if sample.name.endswith("_bucket") and le is not None and le not in buckets:
                buckets.append(le)
        out[family.name] = {
            "type": family.type,
            "help": family.documentation,
            "labels": sorted(labels),
            "buckets": buckets,
            "suffixes": sorted(names),
        }
    return out


def _simulated() -> str:
    metrics = Metrics("tiny", max_model_len=2048)
    metrics.finished(
        reason="stop", prompt=12, generated=5, queue_s=0.01, ttft_s=0.05, e2e_s=0.2, max_tokens=5
    )
    return metrics.render(1, 0, 0.1).decode()


def test_every_simulated_family_is_a_real_one_with_the_same_shape():
    real = _families(GOLDEN.read_text(encoding="utf-8"))
    simulated = _families(_simulated())
    assert simulated
    for name, shape in simulated.items():
        assert name in real, f"{name} is not in vLLM 0.32's exposition"
        assert shape == real[name], name


def test_the_families_the_appliance_reads_are_all_written():
    simulated = _families(_simulated())
    assert set(simulated) >= READ_BY_THE_APPLIANCE
    assert "vllm:time_per_output_token_seconds" not in simulated


def test_the_writer_orders_labels_and_adds_created_samples_as_vllm_does():
    golden = GOLDEN.read_text(encoding="utf-8")
    text = _simulated()
    real_line = next(
        line for line in golden.splitlines() if line.startswith("vllm:request_success_total{")
    )
    sim_line = next(
        line for line in text.splitlines() if line.startswith("vllm:request_success_total{")
    )
    assert real_line.split("{")[1].split("}")[0].replace('"tiny"', "") == sim_line.split("{")[
        1
    ].split("}")[0].replace('"tiny"', "")
    assert "vllm:prompt_tokens_created{" in golden and "vllm:prompt_tokens_created{" in text


def test_the_engine_metrics_reader_reads_the_real_exposition():
    load = parse_load(GOLDEN.read_text(encoding="utf-8"))
    assert (load.running, load.waiting, load.kv_usage) == (0.0, 0.0, 0.0)
    load = parse_load(_simulated())
    assert (load.running, load.waiting, load.kv_usage) == (1.0, 0.0, 0.1)
