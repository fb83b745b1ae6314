"""The crisis adapter in the encoder: an encoder given low-rank deltas must say exactly what a model
file holding the merged matrices W + (A B)^T says, and the packaged adapter must load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from appliance.agents.encoder import Encoder, mapped_tensors, model_dir, packaged_adapter

TEXTS = ["i wrote my last letter tonight", "the bus was late again", "a"]


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header: dict[str, object] = {}
    offset, blobs = 0, []
    for name, array in tensors.items():
        blob = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        offset += len(blob)
        blobs.append(blob)
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(blobs))


def _random_adapter(rank: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    weights = mapped_tensors(model_dir() / "model.safetensors")
    adapter = {}
    for name, w in weights.items():
        if (name.startswith("encoder.layer.") and name.endswith("dense.weight")) or (
            ".attention.self." in name and name.endswith(".weight")
        ):
            module = name.removesuffix(".weight")
            out_features, in_features = w.shape
            adapter[f"{module}.a"] = rng.normal(0, 0.05, (in_features, rank)).astype(np.float32)
            adapter[f"{module}.b"] = rng.normal(0, 0.05, (rank, out_features)).astype(np.float32)
    return adapter


def test_an_adapter_says_what_its_merged_weights_say(tmp_path: Path) -> None:
    adapter = _random_adapter()
    assert len(adapter) == 6 * 6 * 2  # six maps in each of six layers, two factors each
    merged = {k: np.array(v) for k, v in mapped_tensors(model_dir() / "model.safetensors").items()}
    for key in [k for k in adapter if k.endswith(".a")]:
        module = key.removesuffix(".a")
        merged[f"{module}.weight"] += (adapter[key] @ adapter[f"{module}.b"]).T
    _write_safetensors(tmp_path / "model.safetensors", merged)
    shutil.copy(model_dir() / "tokenizer.json", tmp_path / "tokenizer.json")

    with_delta = Encoder(max_tokens=64, adapter=adapter)
    with_merged = Encoder(tmp_path, max_tokens=64)
    plain = Encoder(max_tokens=64)
    segments = [with_delta.tokens(t) for t in TEXTS]
    got = with_delta.encode_segments(segments)
    assert np.abs(got - with_merged.encode_segments(segments)).max() < 1e-5
    assert np.abs(got - plain.encode_segments(segments)).max() > 1e-2  # the delta is not lost
    assert with_delta.adapted and not plain.adapted


def test_the_packaged_adapter_covers_every_mapped_matrix() -> None:
    adapter = packaged_adapter()
    assert adapter is not None
    modules = {k.rsplit(".", 1)[0] for k in adapter}
    assert len(modules) == 36 and all(f"{m}.a" in adapter and f"{m}.b" in adapter for m in modules)
    for module in modules:
        rank = adapter[f"{module}.a"].shape[1]
        assert adapter[f"{module}.b"].shape[0] == rank
        assert (
            np.isfinite(adapter[f"{module}.a"]).all() and np.isfinite(adapter[f"{module}.b"]).all()
        )
