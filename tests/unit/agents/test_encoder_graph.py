"""The encoder's packaged ONNX graphs: they are what `encoder_graph.build` makes, they name only
tensors the MiniLM file holds, the six layers the float graph runs say what the layers say written
out in numpy, and the int8 graph (its last layers in int8) stays close to the float one, held as the
host holds it (int8 where the probe finds int8 products exact) and as uint8 about 128; uint8
products are exact on any host, and the probe says whether int8 ones are on this one."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from appliance.agents import encoder as encoder_module
from appliance.agents.encoder import (
    Encoder,
    exact_int8,
    mapped_tensors,
    model_dir,
    packaged_adapters,
    quantize_columns,
)
from appliance.agents.encoder_graph import (
    FLOAT_LAYERS,
    LAYERS,
    OPSET,
    ZERO_POINT,
    build,
    packaged_graph,
    packaged_probe,
    probe,
    weight_names,
)

FORMS = [(False, False), (True, False), (True, True)]  # float; int8; int8 held as uint8

TEXTS = [
    "i'm standing on the multi storey roof and nobody knows where i am",
    "what should i cook tonight",
    "I gave the cat to my sister and wrote letters for everyone",
    "this deadline is killing me lol",
    "a",
]


@pytest.mark.parametrize(("quantized", "unsigned"), FORMS)
def test_the_packaged_graph_is_what_the_builder_makes(quantized: bool, unsigned: bool) -> None:
    packaged = onnx.load_model_from_string(packaged_graph(quantized, unsigned))
    assert packaged == build(quantized, unsigned), (
        "rebuild: python -m appliance.agents.encoder_graph"
    )
    assert onnx.load_model_from_string(packaged_probe()) == probe()


@pytest.mark.parametrize(("quantized", "unsigned"), FORMS)
def test_every_weight_the_graph_expects_is_in_the_model_file(
    quantized: bool, unsigned: bool
) -> None:
    stored = mapped_tensors(model_dir() / "model.safetensors")
    for name, shape in weight_names(quantized, unsigned):
        if name.endswith((".matrix", ".matrix.int8", ".matrix.uint8")):  # [out, in] as (in, out)
            source = name.split(".matrix")[0] + ".weight"
            assert tuple(reversed(stored[source].shape)) == shape, name
        elif name.endswith((".matrix.scale", ".matrix.zero")):  # one per output column
            source = name.split(".matrix")[0] + ".weight"
            assert (stored[source].shape[0],) == shape, name
        else:
            assert stored[name].shape == shape, name


def _product(weights: np.ndarray, scale: np.ndarray, zero: np.ndarray | None) -> Any:
    """One `DynamicQuantizeMatMul` session, as the int8 graph's linear maps run."""
    held = [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(scale, "s")]
    if zero is not None:
        held.append(numpy_helper.from_array(zero, "z"))
    inputs = ["x", "w", "s", "z" if zero is not None else ""]
    depth, width = weights.shape
    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeMatMul", inputs, ["y"], domain="com.microsoft")],
        "product",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, depth])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, width])],
        held,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
    )
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_uint8_products_are_exact_and_the_probe_says_whether_int8_ones_are() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 384)).astype(np.float32)
    q, scale = quantize_columns((rng.standard_normal((384, 64)) * 0.05).astype(np.float32))
    # The exact product of onnxruntime's roundings: x to uint8 with one scale and zero point.
    step = (x.max() - min(float(x.min()), 0.0)) / 255
    zero = np.clip(np.rint(-min(float(x.min()), 0.0) / step), 0, 255)
    xq = np.clip(np.rint(x / step) + zero, 0, 255) - zero
    exact = (xq @ q.astype(np.float64)) * step * scale
    size = np.abs(exact).max()
    held = (q.astype(np.int16) + ZERO_POINT).astype(np.uint8)
    unsigned = _product(held, scale, np.full(64, ZERO_POINT, np.uint8)).run(None, {"x": x})[0]
    assert np.abs(unsigned - exact).max() < 1e-5 * size
    signed = _product(q, scale, None).run(None, {"x": x})[0]
    # Where the probe finds int8 exact the int8 product is too; where not, it has drifted.
    signed_exact = bool(np.abs(signed - exact).max() < 1e-5 * size)
    assert signed_exact == exact_int8()


def test_the_int8_graph_keeps_the_first_layers_in_float() -> None:
    graph = onnx.load_model_from_string(packaged_graph(True)).graph
    int8_layers = {
        int(n.name.split(".")[2]) for n in graph.node if n.op_type == "DynamicQuantizeMatMul"
    }
    float_layers = {
        int(n.name.split(".")[2])
        for n in graph.node
        if n.op_type == "MatMul" and n.name.endswith(".product")
    }
    assert 0 < FLOAT_LAYERS < LAYERS
    assert float_layers == set(range(FLOAT_LAYERS))
    assert int8_layers == set(range(FLOAT_LAYERS, LAYERS))
    assert not any(n.op_type == "DynamicQuantizeMatMul" for n in build(False).graph.node)


def test_columns_quantize_to_within_half_a_step() -> None:
    rng = np.random.default_rng(5)
    matrix = rng.normal(0, 0.05, (384, 96)).astype(np.float32)
    matrix[:, 3] = 0.0  # an empty column gets a tiny scale, not a division by zero
    matrix[7, 9] = 4.0  # an outlier widens its own column's step only
    q, scale = quantize_columns(matrix)
    assert q.dtype == np.int8 and scale.shape == (96,)
    assert np.abs(q).max() == 127 and not q[:, 3].any()
    error = np.abs(q * scale - matrix)
    assert (error <= scale / 2 + 1e-7).all()
    assert scale[9] > 10 * scale[8]


@pytest.mark.parametrize("held", ["as this host holds them", "uint8"])
def test_the_int8_encoder_stays_close_to_the_float_one(
    held: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the appliance holds the matrices here (int8 where the probe finds int8 products exact,
    # uint8 elsewhere), and as uint8 whatever the host. Int8 matrices where the products saturate
    # are a path the appliance never takes: their drift would be the CPU's, not the quantization's.
    if held == "uint8":
        monkeypatch.setattr(encoder_module, "exact_int8", lambda: False)
    adapters = packaged_adapters()
    exact = Encoder(max_tokens=64, adapters=adapters)
    int8 = Encoder(max_tokens=64, adapters=adapters, quantized=True)
    for member in range(len(adapters)):
        part = slice(384 * member, 384 * (member + 1))
        a, b = exact.encode(TEXTS)[:, part], int8.encode(TEXTS)[:, part]
        cosine = (a * b).sum(axis=1)
        assert (cosine > 0.98).all(), cosine
        # Each text is still nearer its own float vector than any other text's.
        assert ((a @ b.T).argmax(axis=0) == np.arange(len(TEXTS))).all()
        assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)


def test_the_int8_encoder_reads_each_segment_alone() -> None:
    int8 = Encoder(max_tokens=64, quantized=True)
    segments = [int8.tokens(t) for t in TEXTS]
    together = int8.encode_segments(segments)
    for i, segment in enumerate(segments):
        assert np.array_equal(together[i], int8.encode_segments([segment])[0])


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
    (got,) = encoder.sessions()[0].run(["hidden"], {"x": x, "mask": mask})
    expected = _layers_in_numpy(x.astype(np.float64), mask.astype(np.float64))
    assert np.abs(got - expected).max() < 1e-3
    # The mask holds: the first segment alone gives its rows unchanged.
    (alone,) = encoder.sessions()[0].run(
        ["hidden"], {"x": x[:4], "mask": np.zeros((4, 4), np.float32)}
    )
    assert np.abs(alone - got[:4]).max() < 1e-4
    assert encoder.build_s > 0
