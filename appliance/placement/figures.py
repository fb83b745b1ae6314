"""What the planner needs to know of a model: its shape and how its weights are stored.

A local model directory speaks for itself (`config.json`, and the size of its `*.safetensors`
files); otherwise the figures come from the `[catalog."<served name>"]` entry in models.toml.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from msgspec import Struct

from appliance.config.schema import CatalogEntry, EngineConfig
from appliance.errors import ConfigError


class WeightFormat(Struct, frozen=True, kw_only=True):
    """How linear-layer weights are stored on the GPU. Embeddings and the output head stay
    16-bit under every method vLLM runs (AWQ, GPTQ, FP8)."""

    name: str  # "bf16", "fp8", "awq-4bit", ...
    bits: int
    # Quantized weights carry a 16-bit scale (and a packed zero point) per group of weights.
    group_size: int | None = None
    group_overhead_bytes: float = 0.0

    @property
    def bytes_per_param(self) -> float:
        extra = self.group_overhead_bytes / self.group_size if self.group_size else 0.0
        return self.bits / 8 + extra

    @property
    def quantized(self) -> bool:
        return self.bits < 16


SIXTEEN_BIT = WeightFormat(name="16-bit", bits=16)
FP8 = WeightFormat(name="fp8", bits=8)
# 4-bit AWQ/GPTQ with groups of 128: a 2-byte scale and a 4-bit zero point per group.
AWQ = WeightFormat(name="awq-4bit", bits=4, group_size=128, group_overhead_bytes=2.5)
GPTQ = WeightFormat(name="gptq-4bit", bits=4, group_size=128, group_overhead_bytes=2.5)
# bitsandbytes NF4: a 4-byte absmax per block of 64.
NF4 = WeightFormat(name="nf4-4bit", bits=4, group_size=64, group_overhead_bytes=4.0)

ENGINE_FORMATS: dict[str, WeightFormat] = {
    "awq": AWQ,
    "gptq": GPTQ,
    "fp8": FP8,
    "bitsandbytes": NF4,
}
CATALOG_FORMATS: dict[str, WeightFormat] = {
    "float16": SIXTEEN_BIT,
    "bfloat16": SIXTEEN_BIT,
    "fp8": FP8,
    "int4": AWQ,
}


class ModelFigures(Struct, frozen=True, kw_only=True):
    """A model's shape, enough for weight, KV-cache and activation memory."""

    name: str
    source: str  # where the figures came from, for the report
    params: float  # parameter count
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int
    max_position_embeddings: int
    tied_embeddings: bool = False
    # How the checkpoint stores its weights; None for 16-bit checkpoints.
    checkpoint_format: WeightFormat | None = None
    # Size of the checkpoint's weight files, when they can be seen.
    checkpoint_bytes: int | None = None
    # True when the figures were read from the checkpoint itself (its config.json).
    from_checkpoint: bool = False

    @property
    def embedding_params(self) -> float:
        """Input embedding plus output head (one matrix when they are tied)."""
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)


def is_local_model(model: str) -> bool:
    """A path rather than a hub id: vLLM then loads from disk and needs no network."""
    expanded = os.path.expanduser(model)
    return model.startswith(("/", "./", "../", "~")) or os.path.isdir(expanded)


def model_figures(
    engine: EngineConfig, catalog: dict[str, CatalogEntry], source: str = "models.toml"
) -> ModelFigures:
    """Figures for an engine's model: its directory's config.json, else the catalog."""
    directory = Path(os.path.expanduser(engine.model))
    config_file = directory / "config.json"
    if is_local_model(engine.model) and config_file.is_file():
        return from_config_json(engine.name, directory)
    for key in (engine.name, engine.model):
        if key in catalog:
            return from_catalog(key, catalog[key])
    raise ConfigError(
        source,
        f"catalog.{engine.name}",
        f'figures for the model of engine {engine.id!r}: a [catalog."{engine.name}"] entry, '
        "or `model` pointing at a local directory with a config.json",
    )


def from_catalog(name: str, entry: CatalogEntry) -> ModelFigures:
    heads = entry.attention_heads or entry.hidden_size // entry.head_dim
    return ModelFigures(
        name=name,
        source=f"catalog entry {name!r}",
        params=entry.params_b * 1e9,
        layers=entry.layers,
        hidden_size=entry.hidden_size,
        attention_heads=heads,
        kv_heads=entry.kv_heads,
        head_dim=entry.head_dim,
        vocab_size=entry.vocab_size,
        intermediate_size=_estimated_intermediate(entry.hidden_size),
        max_position_embeddings=entry.max_position_embeddings,
        checkpoint_format=_catalog_format(entry.weight_dtype),
    )


def _catalog_format(dtype: str) -> WeightFormat | None:
    fmt = CATALOG_FORMATS[dtype]
    return fmt if fmt.quantized else None


def _estimated_intermediate(hidden: int) -> int:
    """Gated MLPs of the Llama family are 3.5x the hidden size; used for activation size only."""
    return int(hidden * 3.5)


def from_config_json(name: str, directory: Path) -> ModelFigures:
    """Read a Hugging Face config.json (multimodal ones keep the language model in text_config)."""
    path = directory / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(str(path), "-", "a readable JSON model config", got=str(exc)) from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "-", "a JSON object")
    cfg: dict[str, Any] = {**raw, **raw.get("text_config", {})}

    def need(key: str) -> int:
        value = cfg.get(key)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(str(path), key, "a positive integer", got=repr(value))
        return value

    layers, hidden = need("num_hidden_layers"), need("hidden_size")
    heads = need("num_attention_heads")
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or hidden // heads
    vocab = need("vocab_size")
    intermediate = cfg.get("intermediate_size") or _estimated_intermediate(hidden)
    experts = cfg.get("num_local_experts") or 1
    tied = bool(cfg.get("tie_word_embeddings", False))
    params = _count_params(layers, hidden, heads, kv_heads, head_dim, intermediate, experts)
    params += vocab * hidden * (1 if tied else 2)
    checkpoint = _checkpoint_format(cfg.get("quantization_config"))
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "")
    # A float32 checkpoint is loaded as 16-bit: its file size says nothing about GPU memory.
    files = None if dtype == "float32" and checkpoint is None else _safetensors_bytes(directory)
    return ModelFigures(
        name=name,
        source=f"{path}",
        params=float(params),
        layers=layers,
        hidden_size=hidden,
        attention_heads=heads,
        kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        vocab_size=vocab,
        intermediate_size=int(intermediate),
        max_position_embeddings=int(cfg.get("max_position_embeddings") or 4096),
        tied_embeddings=tied,
        checkpoint_format=checkpoint,
        checkpoint_bytes=files,
        from_checkpoint=True,
    )


def _count_params(
    layers: int, hidden: int, heads: int, kv_heads: int, head_dim: int, inter: int, experts: int
) -> int:
    """Decoder parameters: attention projections plus a gated (SwiGLU) MLP per expert."""
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    mlp = 3 * hidden * inter * experts
    return layers * (attention + mlp + 2 * hidden)


def _checkpoint_format(qcfg: object) -> WeightFormat | None:
    """The checkpoint's own quantization, from config.json's quantization_config."""
    if not isinstance(qcfg, dict):
        return None
    method = str(qcfg.get("quant_method", "")).lower()
    if method in ("awq", "awq_marlin", "gptq", "gptq_marlin"):
        bits = int(qcfg.get("bits") or qcfg.get("w_bit") or 4)
        group = qcfg.get("group_size") or qcfg.get("q_group_size") or 128
        group = int(group) if int(group) > 0 else None
        kind = "awq" if method.startswith("awq") else "gptq"
        return WeightFormat(
            name=f"{kind}-{bits}bit", bits=bits, group_size=group, group_overhead_bytes=2.5
        )
    if method == "fp8":
        return FP8
    if method == "bitsandbytes":
        return NF4 if qcfg.get("load_in_4bit") else WeightFormat(name="int8", bits=8)
    if method == "compressed-tensors":
        return _compressed_tensors_format(qcfg)
    return None


def _compressed_tensors_format(qcfg: dict[str, Any]) -> WeightFormat:
    groups = qcfg.get("config_groups") or {}
    for group in groups.values() if isinstance(groups, dict) else ():
        weights = group.get("weights") if isinstance(group, dict) else None
        if isinstance(weights, dict) and weights.get("num_bits"):
            bits = int(weights["num_bits"])
            size = weights.get("group_size")
            if size:
                return WeightFormat(
                    name=f"int{bits}", bits=bits, group_size=int(size), group_overhead_bytes=2.0
                )
            kind = str(weights.get("type", "int"))
            return (
                FP8 if bits == 8 and kind == "float" else WeightFormat(name=f"int{bits}", bits=bits)
            )
    return FP8


def _safetensors_bytes(directory: Path) -> int | None:
    try:
        files = [p for p in directory.glob("*.safetensors") if p.is_file()]
        return sum(p.stat().st_size for p in files) or None
    except OSError:
        return None
