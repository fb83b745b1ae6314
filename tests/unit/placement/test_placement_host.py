"""Planning on host memory for vLLM's CPU build: a profile with `gpus = "cpu"`."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from appliance.config import load_config
from appliance.errors import PlacementError
from appliance.placement import check_plan
from appliance.placement.gpus import GIB, Gpu
from appliance.placement.host import HOST_RUNTIME_BYTES, kv_cache_gib, plan_on_host
from appliance.placement.render import render_plan

MODELS_TOML = Path(__file__).resolve().parents[3] / "models.toml"
TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 2048,
    "max_position_embeddings": 4096,
    "torch_dtype": "bfloat16",
}


def cpu_config(tmp_path: Path, **engine_changes: object):
    model = tmp_path / "tiny-llama"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(json.dumps(TINY_LLAMA))
    config = load_config(MODELS_TOML, profile="cpu", env={})
    engine = msgspec.structs.replace(config.engines[0], model=str(model), **engine_changes)
    return msgspec.structs.replace(config, engines=(engine,))


def host(total_gib: float, free_gib: float) -> Gpu:
    return Gpu(
        index=0,
        name="CPU host memory",
        total=int(total_gib * GIB),
        free=int(free_gib * GIB),
        source="host",
    )


def test_the_cpu_profile_plans_on_host_memory_with_an_explicit_kv_cache(tmp_path):
    config = cpu_config(tmp_path)
    plan = plan_on_host("cpu", config.engines, config.catalog, host=host(16, 12))

    assert plan.feasible and plan.gpu_source == "host"
    (entry,) = plan.engines
    assert entry.device == "cpu" and entry.gpus == () and entry.verdict == "fits"
    # 2 layers x 2 (K, V) x 2 KV heads x head_dim 64 x 2 bytes = 1 KiB a token; 4 x 2048 tokens
    # round up to the 1 GiB vLLM's CPU build takes as its smallest KV cache.
    assert entry.kv_bytes_per_token == 1024
    assert kv_cache_gib(entry) == 1 and entry.kv_cache_tokens == GIB // 1024
    assert entry.full_length_seqs >= entry.max_num_seqs == 4
    assert entry.runtime_bytes_per_gpu == HOST_RUNTIME_BYTES and entry.cuda_graph_bytes_per_gpu == 0
    assert entry.budget_bytes_per_gpu > HOST_RUNTIME_BYTES + GIB
    assert "VLLM_CPU_KVCACHE_SPACE" in render_plan(plan)


def test_a_kv_cache_larger_than_a_gib_is_rounded_up_to_whole_gib(tmp_path):
    config = cpu_config(
        tmp_path, max_num_seqs=64, max_model_len=4096
    )  # 256 Ki tokens of 1 KiB: 256 MiB
    plan = plan_on_host("cpu", config.engines, config.catalog, host=host(64, 60))
    assert kv_cache_gib(plan.engines[0]) == 1
    config = cpu_config(tmp_path, max_num_seqs=512, max_model_len=4096)
    plan = plan_on_host("cpu", config.engines, config.catalog, host=host(64, 60))
    assert kv_cache_gib(plan.engines[0]) == 2


def test_too_little_free_host_memory_is_refused_with_the_figures(tmp_path):
    config = cpu_config(tmp_path)
    plan = plan_on_host("cpu", config.engines, config.catalog, host=host(8, 2))
    assert not plan.feasible
    assert any("GiB of host memory" in p and "2.0 GiB is available" in p for p in plan.problems)


def test_tensor_parallel_is_refused_on_cpu(tmp_path):
    config = cpu_config(tmp_path, tensor_parallel_size=2)
    plan = plan_on_host("cpu", config.engines, config.catalog, host=host(16, 12))
    assert not plan.feasible
    assert any("tensor_parallel_size must be 1 on CPU" in p for p in plan.problems)


def test_check_plan_uses_the_host_for_a_cpu_profile(tmp_path):
    config = cpu_config(tmp_path)
    plan = check_plan(config)  # the real host's memory: a tiny model fits anywhere CI runs
    assert plan.gpu_source == "host" and plan.engines[0].device == "cpu"
    starved = cpu_config(tmp_path, max_num_seqs=1 << 20, max_model_len=4096)
    with pytest.raises(PlacementError):
        check_plan(starved)
