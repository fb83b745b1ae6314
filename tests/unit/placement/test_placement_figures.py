"""Model figures: from a local checkpoint's config.json, else from the models.toml catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.config.schema import CatalogEntry, EngineConfig
from appliance.errors import ConfigError
from appliance.placement.figures import AWQ, FP8, is_local_model, model_figures

LLAMA_8B = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
QWEN_32B = {
    "hidden_size": 5120,
    "intermediate_size": 27648,
    "num_attention_heads": 40,
    "num_hidden_layers": 64,
    "num_key_value_heads": 8,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "torch_dtype": "bfloat16",
}
CATALOG = {
    "llama-3.1-8b-instruct": CatalogEntry(
        params_b=8.03, size_class="8B", layers=32, hidden_size=4096, attention_heads=32,
        kv_heads=8, head_dim=128,
    ),
}  # fmt: skip


def checkpoint(tmp_path: Path, config: dict, name: str = "model") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def vllm(model: str, **overrides) -> EngineConfig:
    return EngineConfig(id="e", kind="vllm", model=model, port=8101, **overrides)


def test_config_json_gives_the_shape_and_counts_the_parameters(tmp_path):
    directory = checkpoint(tmp_path, LLAMA_8B)
    figures = model_figures(vllm(str(directory), served_name="llama-8b"), {})
    assert (figures.layers, figures.hidden_size, figures.kv_heads, figures.head_dim) == (
        32,
        4096,
        8,
        128,
    )
    assert figures.params == pytest.approx(8.03e9, rel=0.005)
    assert figures.checkpoint_format is None and figures.from_checkpoint
    assert figures.source == str(directory / "config.json")


def test_head_size_defaults_to_hidden_over_heads(tmp_path):
    figures = model_figures(vllm(str(checkpoint(tmp_path, QWEN_32B))), {})
    assert figures.head_dim == 128
    assert figures.params == pytest.approx(32.8e9, rel=0.01)
    assert figures.max_position_embeddings == 32768


def test_a_model_without_kv_heads_has_one_per_attention_head(tmp_path):
    config = {k: v for k, v in LLAMA_8B.items() if k != "num_key_value_heads"}
    assert model_figures(vllm(str(checkpoint(tmp_path, config))), {}).kv_heads == 32


def test_multimodal_configs_are_read_from_their_text_config(tmp_path):
    config = {"architectures": ["Mllama"], "text_config": LLAMA_8B}
    assert model_figures(vllm(str(checkpoint(tmp_path, config))), {}).layers == 32


def test_an_awq_checkpoint_declares_its_format_and_its_files_give_the_size(tmp_path):
    config = {**LLAMA_8B, "quantization_config": {"quant_method": "awq", "bits": 4,
                                                   "group_size": 128}}  # fmt: skip
    directory = checkpoint(tmp_path, config)
    with open(directory / "model.safetensors", "wb") as weights:
        weights.truncate(5_700_000_000)  # sparse: takes no disk
    figures = model_figures(vllm(str(directory)), {})
    assert figures.checkpoint_format == AWQ
    assert figures.checkpoint_bytes == 5_700_000_000


def test_fp8_and_compressed_tensors_checkpoints(tmp_path):
    fp8 = {**LLAMA_8B, "quantization_config": {"quant_method": "fp8"}}
    assert model_figures(vllm(str(checkpoint(tmp_path, fp8, "a"))), {}).checkpoint_format == FP8
    w4 = {
        **LLAMA_8B,
        "quantization_config": {
            "quant_method": "compressed-tensors",
            "config_groups": {"g": {"weights": {"num_bits": 4, "group_size": 128}}},
        },
    }
    fmt = model_figures(vllm(str(checkpoint(tmp_path, w4, "b"))), {}).checkpoint_format
    assert fmt is not None and fmt.bits == 4 and fmt.group_size == 128


def test_a_float32_checkpoint_file_size_is_not_gpu_memory(tmp_path):
    directory = checkpoint(tmp_path, {**LLAMA_8B, "torch_dtype": "float32"})
    with open(directory / "model.safetensors", "wb") as weights:
        weights.truncate(32_000_000_000)
    assert model_figures(vllm(str(directory)), {}).checkpoint_bytes is None


def test_a_hub_id_uses_the_catalog_entry_of_its_served_name():
    engine = vllm("meta-llama/Llama-3.1-8B-Instruct", served_name="llama-3.1-8b-instruct")
    figures = model_figures(engine, CATALOG)
    assert figures.source == "catalog entry 'llama-3.1-8b-instruct'"
    assert figures.params == pytest.approx(8.03e9)
    assert not figures.from_checkpoint


def test_a_model_with_no_figures_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        model_figures(vllm("org/unknown", served_name="mystery"), CATALOG, "site.toml")
    assert "site.toml: catalog.mystery" in str(caught.value)


def test_a_broken_config_json_is_a_config_error(tmp_path):
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "config.json").write_text("{not json")
    with pytest.raises(ConfigError):
        model_figures(vllm(str(directory)), {})
    (directory / "config.json").write_text(json.dumps({"hidden_size": 4096}))
    with pytest.raises(ConfigError) as caught:
        model_figures(vllm(str(directory)), {})
    assert "num_hidden_layers" in str(caught.value)


def test_paths_are_local_models_and_hub_ids_are_not(tmp_path):
    assert is_local_model("/srv/models/llama")  # absent here, still a path
    assert is_local_model("./models/llama")
    assert is_local_model(str(tmp_path))
    assert not is_local_model("meta-llama/Llama-3.1-8B-Instruct")
