"""The memory arithmetic against figures known from vLLM and the models' own cards."""

from __future__ import annotations

import pytest

from appliance.placement import memory
from appliance.placement.figures import AWQ, FP8, SIXTEEN_BIT, from_catalog
from appliance.placement.gpus import GIB, Gpu, parse_gpu_spec
from tests.unit.placement.helpers import vllm_engine


def figures(catalog, name):
    return from_catalog(name, catalog[name])


def test_llama_8b_in_16_bit_is_16_gb_of_weights_and_128_kib_of_kv_per_token(catalog):
    llama = figures(catalog, "llama-3.1-8b-instruct")
    assert memory.weight_bytes(llama, SIXTEEN_BIT) == pytest.approx(16.06e9, rel=0.001)
    assert memory.kv_bytes_per_token(llama) == 128 * 1024


def test_llama_70b_kv_is_320_kib_per_token_split_by_tensor_parallel(catalog):
    llama = figures(catalog, "llama-3.1-70b-instruct")
    assert memory.kv_bytes_per_token(llama) == 320 * 1024
    assert memory.kv_bytes_per_token(llama, tp=2) == 160 * 1024
    # More GPUs than KV heads: each GPU keeps one head.
    assert memory.kv_bytes_per_token(llama, tp=16) == 40 * 1024


def test_quantized_weights_keep_embeddings_in_16_bit(catalog):
    llama70 = figures(catalog, "llama-3.1-70b-instruct")
    llama8 = figures(catalog, "llama-3.1-8b-instruct")
    assert AWQ.bytes_per_param == pytest.approx(0.5 + 2.5 / 128)
    # hugging-quants' AWQ-INT4 70B checkpoint is 39.8 GB; vLLM loads 18.5 GiB per GPU at TP 2.
    assert memory.weight_bytes(llama70, AWQ) == pytest.approx(39.8e9, rel=0.01)
    assert memory.weight_bytes(llama70, AWQ) / 2 / GIB == pytest.approx(18.5, abs=0.1)
    # FP8: 1 byte per linear weight; the 1.05B embedding and head parameters stay 2 bytes.
    assert memory.weight_bytes(llama8, FP8) == pytest.approx(9.08e9, rel=0.01)


def test_the_checkpoint_size_is_used_when_it_is_held_as_stored(catalog, tmp_path):
    import json

    config = {
        "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
        "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256,
        "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128},
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    with open(tmp_path / "model.safetensors", "wb") as f:
        f.truncate(5_730_000_000)
    from appliance.placement.figures import model_figures

    engine = vllm_engine("e", str(tmp_path), quantization="awq")
    local = model_figures(engine, {})
    fmt, problem = memory.weight_format(engine, local)
    assert problem is None and fmt == AWQ
    assert memory.weight_bytes(local, fmt) == 5_730_000_000


def test_awq_on_a_16_bit_checkpoint_is_a_problem_but_fp8_is_made_while_loading(tmp_path):
    import json

    from appliance.placement.figures import model_figures

    config = {
        "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
        "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    awq = vllm_engine("e", str(tmp_path), quantization="awq")
    _, problem = memory.weight_format(awq, model_figures(awq, {}))
    assert problem is not None and "cannot make AWQ weights while loading" in problem
    fp8 = vllm_engine("e", str(tmp_path), quantization="fp8")
    assert memory.weight_format(fp8, model_figures(fp8, {})) == (FP8, None)


def test_batch_tokens_follow_vllms_defaults_unless_given():
    a100 = parse_gpu_spec("1xA100-80GB")[0]
    h100 = parse_gpu_spec("1xH100-80GB")[0]
    l40s = parse_gpu_spec("1xL40S-48GB")[0]
    engine = vllm_engine("e", "llama-3.1-8b-instruct")
    assert memory.batch_tokens(engine, a100) == 2048  # vLLM keeps A100s at 2048
    assert memory.batch_tokens(engine, h100) == 8192
    assert memory.batch_tokens(engine, l40s) == 2048
    given = vllm_engine("e", "x", extra_args=("--max-num-batched-tokens=4096",))
    assert memory.batch_tokens(given, h100) == 4096
    given = vllm_engine("e", "x", extra_args=("--max-num-batched-tokens", "512"))
    assert memory.batch_tokens(given, h100) == 512


def test_activation_peak_is_a_fraction_of_a_gib_for_an_8b_at_2048_tokens(catalog):
    llama = figures(catalog, "llama-3.1-8b-instruct")
    engine = vllm_engine("e", "llama-3.1-8b-instruct", max_num_seqs=64)
    peak = memory.activation_bytes(llama, engine, tp=1, tokens=2048)
    # vLLM reports about 1.2 GiB at 8192 tokens for this model; a quarter of that at 2048.
    assert 0.2 * GIB < peak < 0.5 * GIB


def test_kv_tokens_come_in_whole_blocks_of_16():
    assert memory.kv_tokens(100 * 1024, 1024) == 96  # 100 tokens fit; 6 are a partial block
    assert memory.kv_tokens(0, 1024) == 0
    assert memory.kv_tokens(-5, 1024) == 0


def test_the_limit_leaves_headroom_and_memory_other_processes_hold():
    gpu = parse_gpu_spec("1xA100-40GB")[0]
    assert memory.usable_bytes(gpu) == gpu.total - memory.CUDA_RESERVED_BYTES
    assert memory.limit_fraction(gpu) == 0.95
    busy = Gpu(index=0, name="A100", total=gpu.total, free=gpu.total - 8 * GIB, source="nvml")
    usable = memory.usable_bytes(busy)
    assert memory.limit_fraction(busy) == pytest.approx((usable - 8 * GIB) / usable)


def test_fractions_are_rounded_down():
    assert memory.floor_fraction(0.719) == 0.71
    assert memory.floor_fraction(0.72) == 0.72


def test_the_runtime_allowance_grows_with_the_tensor_parallel_group():
    assert memory.runtime_bytes(1) / GIB == pytest.approx(1.8)
    assert memory.runtime_bytes(2) / GIB == pytest.approx(3.6)
    assert memory.runtime_bytes(4) / GIB == pytest.approx(5.4)
    assert memory.runtime_bytes(8) / GIB == pytest.approx(7.2)


@pytest.mark.parametrize(
    ("extra", "dtype_bytes"),
    [((), 2), (("--kv-cache-dtype", "fp8"),  1), (("--kv-cache-dtype=fp8_e5m2",), 1),
     (("--kv_cache_dtype", "fp8_e4m3"), 1), (("--kv-cache-dtype", "auto"), 2),
     (("--kv-cache-dtype", "bfloat16"), 2)],
)  # fmt: skip
def test_an_fp8_kv_cache_in_extra_args_halves_the_bytes_per_token(extra, dtype_bytes):
    engine = vllm_engine("e", "llama-3.1-8b-instruct", extra_args=extra)
    assert memory.kv_dtype_bytes(engine) == dtype_bytes


def test_the_planner_fits_twice_the_tokens_with_an_fp8_kv_cache(catalog):
    from appliance.placement.planner import plan_engines

    gpus = parse_gpu_spec("1xA100-40GB")
    plain = plan_engines([vllm_engine("e", "llama-3.1-8b-instruct")], gpus, catalog).engines[0]
    fp8 = plan_engines(
        [vllm_engine("e", "llama-3.1-8b-instruct", extra_args=("--kv-cache-dtype", "fp8"))],
        gpus,
        catalog,
    ).engines[0]
    assert fp8.kv_bytes_per_token_per_gpu * 2 == plain.kv_bytes_per_token_per_gpu
    assert fp8.kv_cache_tokens >= 2 * plain.kv_cache_tokens - 16
