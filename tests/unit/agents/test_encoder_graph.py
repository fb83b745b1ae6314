"""The encoder's packaged ONNX graph: it is what `encoder_graph.build` makes, it names only tensors
the MiniLM file holds, and the six layers it runs say what the layers say written out in numpy."""

from __future__ import annotations

import numpy as np
import onnx

from appliance.agents.encoder import Encoder, mapped_tensors, model_dir
from appliance.agents.encoder_graph import build, packaged_graph, weight_names


def test_the_packaged_graph_is_what_the_builder_makes() -> None:
    packaged = onnx.load_model_from_string(packaged_graph())
    assert packaged == build(), "rebuild it: python -m appliance.agents.encoder_graph"


def test_every_weight_the_graph_expects_is_in_the_model_file() -> None:
    stored = mapped_tensors(model_dir() / "model.safetensors")
    for name, shape in weight_names():
        if name.endswith(".matrix"):  # the stored [out, in] tensor, handed in as (in, out)
            source = name.removesuffix(".matrix") + ".weight"
            assert tuple(reversed(stored[source].shape)) == shape, name
        else:
            assert stored[name].shape == shape, name


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    normed: np.ndarray = (x - mean) / np.sqrt(var + 1e-12) * w + b
    return normed


def _gelu(x: np.ndarray) -> np.ndarray:
    from math import erf

    out: np.ndarray = x * 0.5 * (1 + np.vectorize(erf)(x / np.sqrt(2)))
    return out


def _layers_in_numpy(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """BERT's layers, plainly, in float64: the independent account the graph is checked against."""
    w = {
        k: v.astype(np.float64)
        for k, v in mapped_tensors(model_dir() / "model.safetensors").items()
    }
    n = x.shape[0]
    for i in range(6):
        p = f"encoder.layer.{i}."

        def lin(h: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (
            lin(x, f"attention.self.{part}").reshape(n, 12, 32).transpose(1, 0, 2)
            for part in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(32) + mask
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(1, 0, 2).reshape(n, 384)
        x = _layer_norm(
            x + lin(context, "attention.output.dense"),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        x = _layer_norm(
            x + lin(_gelu(lin(x, "intermediate.dense")), "output.dense"),
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
    return x


def test_the_graph_computes_bert_layers_with_a_block_diagonal_mask() -> None:
    encoder = Encoder(max_tokens=64)
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (9, 384)).astype(np.float32)
    mask = np.full((9, 9), -1e9, dtype=np.float32)
    mask[:4, :4] = 0
    mask[4:, 4:] = 0
    (got,) = encoder.session().run(["hidden"], {"x": x, "mask": mask})
    expected = _layers_in_numpy(x.astype(np.float64), mask.astype(np.float64))
    assert np.abs(got - expected).max() < 1e-3
    # The mask holds: the first segment alone gives its rows unchanged.
    (alone,) = encoder.session().run(["hidden"], {"x": x[:4], "mask": np.zeros((4, 4), np.float32)})
    assert np.abs(alone - got[:4]).max() < 1e-4
    assert encoder.build_s > 0
