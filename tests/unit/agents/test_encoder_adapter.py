"""The crisis adapters in the encoder: an encoder given low-rank deltas must say exactly what a model
file holding the merged matrices W + (A B)^T says, an encoder of several members must say what each
says alone, end to end, and the packaged adapters must load."""

from __future__ import annotations

import json
import shutil
import threading
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.agents import encoder as encoder_module
from appliance.agents.encoder import (
    ADAPTER_FILES,
    Encoder,
    mapped_tensors,
    model_dir,
    packaged_adapters,
)

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


def _random_adapter(rank: int = 4, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
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

    with_delta = Encoder(max_tokens=64, adapters=[adapter])
    with_merged = Encoder(tmp_path, max_tokens=64)
    plain = Encoder(max_tokens=64)
    segments = [with_delta.tokens(t) for t in TEXTS]
    got = with_delta.encode_segments(segments)
    assert np.abs(got - with_merged.encode_segments(segments)).max() < 1e-5
    assert np.abs(got - plain.encode_segments(segments)).max() > 1e-2  # the delta is not lost
    assert with_delta.adapted and not plain.adapted


def test_members_read_side_by_side_say_what_each_says_alone() -> None:
    first, second = _random_adapter(seed=7), _random_adapter(rank=2, seed=8)
    for quantized in (False, True):
        both = Encoder(max_tokens=64, adapters=[first, second], quantized=quantized)
        alone = [Encoder(max_tokens=64, adapters=[a], quantized=quantized) for a in (first, second)]
        segments = [both.tokens(t) for t in TEXTS]
        got = both.encode_segments(segments)
        assert both.width == 768 and got.shape == (len(TEXTS), 768)
        assert np.array_equal(got[:, :384], alone[0].encode_segments(segments))
        assert np.array_equal(got[:, 384:], alone[1].encode_segments(segments))
        assert np.abs(got[:, :384] - got[:, 384:]).max() > 1e-2  # two members, not one twice
        assert len(both.sessions()) == 2 and both.build_s > 0


class _Meeting:
    """A member's session that reads only once every member is reading: members read one after
    another never meet, and the barrier breaks."""

    def __init__(self, session: Any, barrier: threading.Barrier, threads: set[int]) -> None:
        self._session, self._barrier, self._threads = session, barrier, threads

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> Any:
        self._threads.add(threading.get_ident())
        self._barrier.wait()
        return self._session.run(names, feed)


def test_members_read_at_the_same_time_on_their_own_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = _random_adapter(seed=7), _random_adapter(rank=2, seed=8)
    segments = [Encoder().tokens(t) for t in TEXTS]
    alone = Encoder(max_tokens=64, adapters=[second], quantized=True).encode_segments(segments)
    barrier, threads = threading.Barrier(2, timeout=10), set[int]()
    real = encoder_module.layer_session
    monkeypatch.setattr(
        encoder_module,
        "layer_session",
        lambda *args: _Meeting(real(*args), barrier, threads),
    )
    both = Encoder(max_tokens=64, adapters=[first, second], quantized=True)
    got = both.encode_segments(segments)  # three segments, each read alone, by both at once
    assert len(threads) == 2 and threading.get_ident() in threads
    assert np.array_equal(got[:, 384:], alone)


def test_every_packaged_adapter_covers_every_mapped_matrix() -> None:
    adapters = packaged_adapters()
    assert len(adapters) == len(ADAPTER_FILES)
    for adapter in adapters:
        modules = {k.rsplit(".", 1)[0] for k in adapter}
        assert len(modules) == 36
        assert all(f"{m}.a" in adapter and f"{m}.b" in adapter for m in modules)
        for module in modules:
            rank = adapter[f"{module}.a"].shape[1]
            assert adapter[f"{module}.b"].shape[0] == rank
            assert np.isfinite(adapter[f"{module}.a"]).all()
            assert np.isfinite(adapter[f"{module}.b"]).all()
    key = "encoder.layer.0.attention.self.query.a"
    for earlier, later in pairwise(adapters):
        assert not np.array_equal(earlier[key], later[key])  # members fitted apart, not copies
