"""The planner: which GPUs, what fraction, how many full-length sequences, or why not."""

from __future__ import annotations

import json

import pytest

from appliance.config.schema import EngineConfig
from appliance.placement.gpus import GIB, Gpu, parse_gpu_spec
from appliance.placement.planner import plan_engines
from tests.unit.placement.helpers import vllm_engine

LLAMA_70B = "llama-3.1-70b-instruct"
LLAMA_8B = "llama-3.1-8b-instruct"
QWEN_32B = "qwen-2.5-32b-instruct"


def plan(engines, spec, catalog, **kw):
    return plan_engines(engines, parse_gpu_spec(spec), catalog, profile="t", **kw)


@pytest.mark.parametrize("spec", ["1xA100-80GB", "1xH100-80GB"])
def test_llama_70b_in_16_bit_does_not_fit_in_80_gb(catalog, spec):
    result = plan([vllm_engine("big", LLAMA_70B)], spec, catalog)
    assert not result.feasible
    (big,) = result.engines
    assert big.verdict == "does not fit"
    assert big.weight_bytes == pytest.approx(141.2e9, rel=0.005)
    assert "exceed even a whole" in big.problems[0]


def test_llama_70b_awq_with_tensor_parallel_2_fits_two_a100_40gb(catalog):
    engine = vllm_engine("big", LLAMA_70B, quantization="awq", tensor_parallel_size=2)
    result = plan([engine], "2xA100-40GB", catalog)
    assert result.feasible
    (big,) = result.engines
    assert big.gpus == (0, 1) and big.gpus_chosen_by_planner
    assert big.weight_bytes_per_gpu / GIB == pytest.approx(18.5, abs=0.1)
    assert big.kv_bytes_per_token_per_gpu == 160 * 1024
    assert big.gpu_memory_utilization == 0.92  # alone: vLLM's default
    assert big.kv_cache_tokens > 85_000
    assert big.full_length_seqs == big.kv_cache_tokens // 8192


def test_llama_70b_awq_on_one_a100_40gb_does_not_fit(catalog):
    result = plan([vllm_engine("big", LLAMA_70B, quantization="awq")], "1xA100-40GB", catalog)
    assert not result.feasible


def test_the_budget_adds_up(catalog):
    result = plan([vllm_engine("small", LLAMA_8B)], "1xH100-80GB", catalog)
    (small,) = result.engines
    parts = (
        small.weight_bytes_per_gpu
        + small.runtime_bytes_per_gpu
        + small.cuda_graph_bytes_per_gpu
        + small.activation_bytes_per_gpu
        + small.kv_cache_bytes_per_gpu
    )
    assert parts == small.budget_bytes_per_gpu
    assert small.batch_tokens == 8192
    assert small.kv_cache_tokens * small.kv_bytes_per_token_per_gpu <= small.kv_cache_bytes_per_gpu


def test_unpinned_engines_spread_over_the_gpus(catalog):
    engines = [
        vllm_engine("a", QWEN_32B, quantization="awq", port=8101),
        vllm_engine("b", LLAMA_8B, port=8102),
    ]
    result = plan(engines, "2xA100-40GB", catalog)
    assert result.feasible
    assert {e.gpus for e in result.engines} == {(0,), (1,)}


def test_engines_sharing_a_gpu_split_it_and_stay_under_095(catalog):
    engines = [
        vllm_engine("a", LLAMA_8B, gpus=(0,), port=8101, max_model_len=4096, max_num_seqs=8),
        vllm_engine("b", LLAMA_8B, served_name="copy", gpus=(0,), port=8102, max_model_len=4096,
                    max_num_seqs=8),
    ]  # fmt: skip
    result = plan(engines, "1xA100-80GB", catalog)
    assert result.feasible
    (gpu,) = result.gpu_use
    assert gpu.used_fraction <= 0.95
    assert set(gpu.fractions) == {"a", "b"}
    assert all(e.verdict == "fits" for e in result.engines)


def test_given_fractions_that_oversubscribe_a_gpu_are_refused(catalog):
    engines = [
        vllm_engine("a", LLAMA_8B, gpus=(0,), gpu_memory_utilization=0.6, port=8101),
        vllm_engine("b", LLAMA_8B, served_name="copy", gpus=(0,), gpu_memory_utilization=0.4,
                    port=8102),
    ]  # fmt: skip
    result = plan(engines, "1xA100-80GB", catalog)
    assert not result.feasible
    assert "adds up to 1.00" in result.problems[0]
    assert "at most 0.95" in result.problems[0]


def test_memory_other_processes_hold_lowers_the_limit(catalog):
    total = 80 * GIB
    busy = Gpu(index=0, name="NVIDIA H100", total=total, free=total - 60 * GIB, source="nvml")
    engine = vllm_engine("a", LLAMA_8B, gpu_memory_utilization=0.9)
    result = plan_engines([engine], [busy], catalog)
    assert not result.feasible
    assert "other processes hold 60.0 GiB" in result.problems[0]


def test_fewer_full_length_sequences_than_max_num_seqs_is_tight(catalog):
    result = plan([vllm_engine("a", LLAMA_8B, max_num_seqs=256)], "1xA100-40GB", catalog)
    (engine,) = result.engines
    assert result.feasible
    assert engine.verdict == "tight"
    assert 0 < engine.full_length_seqs < 256


def test_a_kv_cache_smaller_than_one_sequence_does_not_fit(catalog):
    engine = vllm_engine("a", LLAMA_8B, gpu_memory_utilization=0.45, max_model_len=131072)
    result = plan([engine], "1xA100-40GB", catalog)
    assert not result.feasible
    assert "less than one sequence" in result.engines[0].problems[0]


@pytest.mark.parametrize(
    ("overrides", "spec", "expected"),
    [
        ({"tensor_parallel_size": 4}, "2xA100-80GB", "needs 4 GPUs; there are 2"),
        ({"tensor_parallel_size": 3}, "4xA100-80GB", "does not divide the model's 64"),
        ({"gpus": (2,)}, "2xA100-80GB", "names GPU 2, not on this host"),
        ({"gpus": (0,), "tensor_parallel_size": 2}, "2xA100-80GB", "lists 1 GPU(s) but"),
        ({"gpus": (0, 0), "tensor_parallel_size": 2}, "2xA100-80GB", "lists a GPU twice"),
        ({"max_model_len": 262144}, "2xA100-80GB", "above the model's limit of 131072"),
    ],
)
def test_impossible_layouts_are_explained(catalog, overrides, spec, expected):
    settings = {"quantization": "awq", **overrides}
    result = plan([vllm_engine("big", LLAMA_70B, **settings)], spec, catalog)
    assert not result.feasible
    assert any(expected in p for p in result.engines[0].problems), result.engines[0].problems


def test_no_gpus_for_vllm_engines_is_a_problem(catalog):
    result = plan_engines([vllm_engine("a", LLAMA_8B)], [], catalog)
    assert not result.feasible
    assert result.gpu_source == "none"
    assert "no GPUs" in result.problems[0]


def test_sim_and_external_engines_are_not_placed(catalog):
    engines = [
        EngineConfig(id="s", kind="sim", model=LLAMA_8B, port=8101),
        EngineConfig(id="x", kind="external", model="m", base_url="http://h/v1"),
    ]
    result = plan_engines(engines, [], catalog)
    assert result.feasible and result.engines == ()
    assert result.not_placed == ("s", "x")


def test_awq_on_a_local_16_bit_checkpoint_is_refused_unless_hypothetical(tmp_path, catalog):
    config = {
        "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
        "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256,
        "max_position_embeddings": 131072,
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    engine = vllm_engine("a", str(tmp_path), quantization="awq")
    assert not plan([engine], "1xA100-40GB", catalog).feasible
    assert plan([engine], "1xA100-40GB", catalog, hypothetical=True).feasible


def test_the_shortfall_measures_how_far_from_fitting(catalog):
    near = plan([vllm_engine("a", LLAMA_8B, gpu_memory_utilization=0.40)], "1xA100-40GB", catalog)
    far = plan([vllm_engine("a", LLAMA_70B)], "1xA100-40GB", catalog)
    assert 0 < near.shortfall_bytes < far.shortfall_bytes
    assert plan([vllm_engine("a", LLAMA_8B)], "1xA100-40GB", catalog).shortfall_bytes == 0


def test_replicas_of_one_model_get_gpus_of_their_own(catalog):
    # GPU 1 holds another 8B model; by room alone the second replica would join the first on
    # GPU 0, but replicas sharing a GPU share its compute.
    other = vllm_engine("other", LLAMA_8B, served_name="other-8b", gpus=(1,), port=8103)
    first = vllm_engine("guard-a", LLAMA_8B, max_num_seqs=8, port=8101)
    second = vllm_engine("guard-b", LLAMA_8B, max_num_seqs=8, port=8102)
    result = plan([other, first, second], "2xA100-80GB", catalog)
    gpus = {e.engine_id: e.gpus for e in result.engines}
    assert {gpus["guard-a"], gpus["guard-b"]} == {(0,), (1,)}
    assert result.feasible


def test_tensor_parallel_replicas_take_separate_gpu_groups(catalog):
    replicas = [
        vllm_engine(f"big-{n}", LLAMA_70B, quantization="awq", tensor_parallel_size=2, port=p)
        for n, p in (("a", 8101), ("b", 8102))
    ]
    result = plan(replicas, "4xA100-40GB", catalog)
    groups = sorted(e.gpus for e in result.engines)
    assert groups == [(0, 1), (2, 3)]
    assert result.feasible
