"""The MiniLM layers as an ONNX graph, without weights: built here, packaged as `minilm.onnx`.

onnxruntime runs the encoder's six layers about half again as fast as numpy over OpenBLAS on these
shapes (a few dozen word pieces by 384): it packs each weight matrix once at load instead of on
every product, and fuses the small steps. The graph names its weights after the safetensors
tensors (`encoder.layer.3.intermediate.dense.weight`, held as external data); `encoder.py` hands
them in at load, with the crisis adapter's delta merged, so the package ships only the graph
(tens of kilobytes) and the MiniLM file stays the one copy of the weights.

A second graph, `minilm_int8.onnx`, runs the linear maps of the later layers (from
`FLOAT_LAYERS` on) as onnxruntime's `DynamicQuantizeMatMul`: the matrix held as int8 with one scale
per output column (`<matrix>.int8`, `<matrix>.scale`), the activations quantized to uint8 on the
fly. On a CPU with VNNI those products cost well under half as much. The first layer stays in
float: quantizing every layer cost the crisis classifier about 0.01 of its dev recall (0.915
against 0.924 for all-float at the same false-positive rate), and an error made early is carried
through the rest. The first layer in float won back half of that (0.920) for about a quarter more
time per message; the first three won back all of it (0.924), but for about three quarters more,
which a slower host's Kai turns cannot spare inside 20 ms p99. The float graph stays the one
checked against transformers, and the one the adapter is fitted through.

A third, `minilm_uint8.onnx`, is the same with each matrix held as uint8 about a zero point of 128
(`<matrix>.uint8`, `<matrix>.zero`): the same numbers, another kernel. On x86 without VNNI
onnxruntime multiplies uint8 by int8 in 16-bit pairs that saturate, and its products there drift
from the exact ones (by a quarter of their size on random inputs); uint8 by uint8 it widens first,
exact, for about a third more time per product. `encoder.py` asks a tiny packaged graph
(`int8_probe.onnx`, one product whose pairs would saturate) which holds on the host, and takes the
uint8 graph where int8 is not exact, so the classifier computes the vectors its head was tuned on
whatever the CPU.

Inputs: `x` (n, 384), the embedded and normalised word pieces of one or more segments laid end to
end; `mask` (n, n), 0 where a piece may attend and -1e9 where not. Output: `hidden` (n, 384).

Building needs the `onnx` package (a development dependency); the appliance only reads the file.
Rebuild after changing this module: `python -m appliance.agents.encoder_graph`, and a test checks
that the packaged files are what this module builds.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

GRAPH_FILE = "minilm.onnx"
QUANTIZED_GRAPH_FILE = "minilm_int8.onnx"
UNSIGNED_GRAPH_FILE = "minilm_uint8.onnx"
PROBE_FILE = "int8_probe.onnx"
PROBE_DEPTH = 64  # the probe's product: [0, 1, 1, ...] (64) by a column of 127s, exactly 63
# Rows the probe reads: the fewest a segment has ([CLS], a word piece, [SEP]), so the product
# takes the matrix-by-matrix path the layers take rather than a one-row one.
PROBE_ROWS = 3
ZERO_POINT = 128  # a uint8 matrix's zero: int8 value v is held as v + 128
LAYERS = 6
HEADS = 12
WIDTH = 384
FEED_FORWARD = 1536
EPSILON = 1e-12  # MiniLM's LayerNorm epsilon
OPSET = 17  # LayerNormalization
# The int8 graph keeps the linear maps of the layers before this one in float (see above).
FLOAT_LAYERS = 1

# Each layer's linear maps: name under `encoder.layer.N.`, (in, out).
LINEAR_MAPS: tuple[tuple[str, tuple[int, int]], ...] = (
    ("attention.self.query", (WIDTH, WIDTH)),
    ("attention.self.key", (WIDTH, WIDTH)),
    ("attention.self.value", (WIDTH, WIDTH)),
    ("attention.output.dense", (WIDTH, WIDTH)),
    ("intermediate.dense", (WIDTH, FEED_FORWARD)),
    ("output.dense", (FEED_FORWARD, WIDTH)),
)
NORMS = ("attention.output.LayerNorm", "output.LayerNorm")


def matrix_name(layer: int, module: str) -> str:
    """The graph's name for a linear map's matrix, laid out (in, out): the stored [out, in] tensor
    transposed, with the adapter's delta added."""
    return f"encoder.layer.{layer}.{module}.matrix"


def in_int8(layer: int, quantized: bool) -> bool:
    """Whether the layer's linear maps run in int8 in the (quantized or float) graph."""
    return quantized and layer >= FLOAT_LAYERS


def weight_names(
    quantized: bool = False, unsigned: bool = False
) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor the graph expects from outside, with its shape. In the quantized graph each
    int8 matrix comes as `<matrix>.int8` (in, out) and its column scales `<matrix>.scale` (out,);
    in the `unsigned` one as `<matrix>.uint8`, the scales and its zero points `<matrix>.zero`."""
    names: list[tuple[str, tuple[int, ...]]] = []
    for layer in range(LAYERS):
        p = f"encoder.layer.{layer}."
        for module, (n_in, n_out) in LINEAR_MAPS:
            matrix = matrix_name(layer, module)
            if in_int8(layer, quantized):
                held = "uint8" if unsigned else "int8"
                names += [(f"{matrix}.{held}", (n_in, n_out)), (f"{matrix}.scale", (n_out,))]
                if unsigned:
                    names.append((f"{matrix}.zero", (n_out,)))
            else:
                names.append((matrix, (n_in, n_out)))
            names.append((f"{p}{module}.bias", (n_out,)))
        for norm in NORMS:
            names += [(f"{p}{norm}.weight", (WIDTH,)), (f"{p}{norm}.bias", (WIDTH,))]
    return names


def build(quantized: bool = False, unsigned: bool = False) -> Any:
    """The graph as an `onnx.ModelProto`; with `quantized`, the later layers' linear maps in int8
    (held as uint8 about 128 where `unsigned`)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []

    def node(op: str, inputs: list[str], output: str, **attributes: Any) -> str:
        domain = "com.microsoft" if op in ("Gelu", "DynamicQuantizeMatMul") else ""
        nodes.append(
            helper.make_node(op, inputs, [output], name=output, domain=domain, **attributes)
        )
        return output

    def external(name: str, shape: tuple[int, ...]) -> Any:
        kind = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "zero": TensorProto.UINT8}
        data_type = kind.get(name.rsplit(".", 1)[-1], TensorProto.FLOAT)
        tensor = TensorProto(name=name, data_type=data_type, dims=list(shape))
        tensor.data_location = TensorProto.EXTERNAL
        size = (4 if data_type == TensorProto.FLOAT else 1) * int(np.prod(shape))
        for key, value in (("location", "weights"), ("offset", "0"), ("length", str(size))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        return tensor

    constants = [
        numpy_helper.from_array(np.array([0, HEADS, WIDTH // HEADS], np.int64), "heads_shape"),
        numpy_helper.from_array(np.array([0, WIDTH], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array(1 / np.sqrt(WIDTH // HEADS), np.float32), "scale"),
    ]

    def add_and_norm(x: str, added: str, p: str, which: int, summed: str, out: str) -> str:
        """The residual sum, then the layer's LayerNorm number `which`."""
        total = node("Add", [x, added], f"{p}{summed}")
        norm = f"{p}{NORMS[which]}"
        inputs = [total, f"{norm}.weight", f"{norm}.bias"]
        return node("LayerNormalization", inputs, f"{p}{out}", axis=-1, epsilon=EPSILON)

    x = "x"
    for layer in range(LAYERS):
        p = f"encoder.layer.{layer}."

        def linear(source: str, module: str, p: str = p, layer: int = layer) -> str:
            if in_int8(layer, quantized):
                m = matrix_name(layer, module)
                held, zero = (f"{m}.uint8", f"{m}.zero") if unsigned else (f"{m}.int8", "")
                inputs = [source, held, f"{m}.scale", zero, f"{p}{module}.bias"]
                return node("DynamicQuantizeMatMul", inputs, f"{p}{module}.out")
            product = node("MatMul", [source, matrix_name(layer, module)], f"{p}{module}.product")
            return node("Add", [product, f"{p}{module}.bias"], f"{p}{module}.out")

        heads = {}
        for part, perm in (("query", [1, 0, 2]), ("key", [1, 2, 0]), ("value", [1, 0, 2])):
            flat = linear(x, f"attention.self.{part}")
            split = node("Reshape", [flat, "heads_shape"], f"{p}{part}.split")
            heads[part] = node("Transpose", [split], f"{p}{part}.heads", perm=perm)
        scores = node("MatMul", [heads["query"], heads["key"]], f"{p}scores")
        scaled = node("Mul", [scores, "scale"], f"{p}scaled")
        masked = node("Add", [scaled, "mask"], f"{p}masked")
        weights = node("Softmax", [masked], f"{p}attention", axis=-1)
        mixed = node("MatMul", [weights, heads["value"]], f"{p}mixed")
        joined = node("Transpose", [mixed], f"{p}joined", perm=[1, 0, 2])
        context = node("Reshape", [joined, "flat_shape"], f"{p}context")
        x1 = add_and_norm(x, linear(context, "attention.output.dense"), p, 0, "attended", "normed")
        expanded = node("Gelu", [linear(x1, "intermediate.dense")], f"{p}gelu")
        x = add_and_norm(x1, linear(expanded, "output.dense"), p, 1, "fed", "hidden")
    node("Identity", [x], "hidden")

    float_input = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "minilm-layers",
        [
            helper.make_tensor_value_info("x", float_input, ["n", WIDTH]),
            helper.make_tensor_value_info("mask", float_input, ["n", "n"]),
        ],
        [helper.make_tensor_value_info("hidden", float_input, ["n", WIDTH])],
        constants + [external(name, shape) for name, shape in weight_names(quantized, unsigned)],
    )
    return _model(graph)


def probe() -> Any:
    """A one-product graph that answers 63 in each row (to float rounding) where onnxruntime's
    int8 products are exact: each row of `x` (3, 64), [0, 1, 1, ...], quantizes to uint8
    [0, 255, 255, ...], and each pair of 255 x 127 (64,770) overflows a 16-bit sum."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weights = [
        numpy_helper.from_array(np.full((PROBE_DEPTH, 1), 127, np.int8), "w"),
        numpy_helper.from_array(np.full((1,), 1 / 127, np.float32), "w.scale"),
    ]
    product = helper.make_node(
        "DynamicQuantizeMatMul", ["x", "w", "w.scale"], ["y"], name="y", domain="com.microsoft"
    )
    graph = helper.make_graph(
        [product],
        "int8-probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [PROBE_ROWS, PROBE_DEPTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [PROBE_ROWS, 1])],
        weights,
    )
    return _model(graph)


def _model(graph: Any) -> Any:
    """`graph` as a model of this project's opsets (onnxruntime's own ops included)."""
    from onnx import helper

    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
        producer_name="kai-llm-appliance",
    )
    model.ir_version = 9
    return model


def graph_file(quantized: bool = False, unsigned: bool = False) -> str:
    if quantized:
        return UNSIGNED_GRAPH_FILE if unsigned else QUANTIZED_GRAPH_FILE
    return GRAPH_FILE


def packaged_graph(quantized: bool = False, unsigned: bool = False) -> bytes:
    """The packaged graph's bytes."""
    return (resources.files("appliance.agents") / graph_file(quantized, unsigned)).read_bytes()


def packaged_probe() -> bytes:
    return (resources.files("appliance.agents") / PROBE_FILE).read_bytes()


def main() -> int:
    built = {
        graph_file(quantized, unsigned): build(quantized, unsigned)
        for quantized, unsigned in ((False, False), (True, False), (True, True))
    }
    for name, model in (*built.items(), (PROBE_FILE, probe())):
        target = Path(__file__).with_name(name)
        data = model.SerializeToString()
        target.write_bytes(data)
        print(f"wrote {target.name} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
