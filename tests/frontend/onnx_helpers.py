"""Builders of small ONNX models and the onnxruntime comparison used by the frontend tests."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from snncompile.frontend.onnx import load_onnx

__all__ = ["ATOL", "POOL_SHAPE", "RTOL", "assert_matches_ort", "make_model", "node", "ort_run", "pool_case",
           "pool_model"]

RTOL, ATOL = 1e-4, 1e-5
node = oh.make_node


def make_model(
    nodes: list[onnx.NodeProto],
    shape: tuple[int, ...],
    opset: int = 13,
    *,
    batch: str | int = "N",
    inputs: tuple[str, ...] = ("x",),
    **inits: np.ndarray,
) -> onnx.ModelProto:
    """A model with input(s) ``x`` of shape (batch, *shape), output ``y``, and ``inits`` as initializers."""
    ins = [oh.make_tensor_value_info(i, TensorProto.FLOAT, [batch, *shape]) for i in inputs]
    if opset < 9:  # IR version 3 lists initializers among the graph inputs
        ins += [
            oh.make_tensor_value_info(k, oh.np_dtype_to_tensor_dtype(v.dtype), v.shape)
            for k, v in inits.items()
        ]
    graph = oh.make_graph(
        nodes,
        "test",
        ins,
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    opsets = [oh.make_opsetid("", opset)]
    model = oh.make_model(graph, opset_imports=opsets, ir_version=oh.find_min_ir_version_for(opsets))
    model = onnx.shape_inference.infer_shapes(model)  # the checker wants the output's shape too
    out = model.graph.output[0].type.tensor_type
    if not out.HasField("shape"):  # a shape computed at run time: declare the rank onnxruntime finds
        x = np.zeros((1, *shape), np.float32)
        out.shape.CopyFrom(
            oh.make_tensor_type_proto(1, [f"d{i}" for i in range(ort_run(model, x).ndim)]).tensor_type.shape
        )
    return model


def ort_run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def assert_matches_ort(
    model: onnx.ModelProto, shape: tuple[int, ...], batches: tuple[int, ...] = (2,), seed: int = 0
):
    """``load_onnx(model).run(x)`` equals onnxruntime within RTOL/ATOL for random x of each batch size (x in
    the network's layout: ``Input.to_network`` reorders the model's data where an input Transpose was folded)."""
    g = load_onnx(model)
    rng = np.random.default_rng(seed)
    for b in batches:
        x = rng.standard_normal((b, *shape)).astype(np.float32)
        want = ort_run(model, x)
        got = g.run(g.input.to_network(x)).numpy()  # the model's data; a folded input Transpose reorders it
        assert got.shape == want.shape, f"shape {got.shape} != onnxruntime {want.shape}"
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    return g


POOL_SHAPE = (2, 4, 8, 8)  # (C, D, H, W)


def pool_model(bias: np.ndarray | None = None) -> onnx.ModelProto:
    """Relu -> MaxPool 2x2x2 -> AveragePool (2, 3, 3) padded -> Reshape (C, H, W) -> Conv 3x3 -> Relu ->
    MaxPool 2x2 dilated 2 -> Flatten -> Gemm (10 classes), opset 19 (tests/frontend/test_onnx_pool_snn.py,
    tests/quantize/test_compensated_rounding.py)."""
    rng = np.random.default_rng(0)
    w, b, g = (rng.standard_normal(s).astype(np.float32) * 0.5 for s in ((6, 2, 3, 3), (6,), (10, 24)))
    nodes = [node("Relu", ["x"], ["r0"]),
             node("MaxPool", ["r0"], ["p1"], kernel_shape=[2, 2, 2], strides=[2, 2, 2]),
             node("AveragePool", ["p1"], ["p2"], kernel_shape=[2, 3, 3], pads=[0, 1, 1, 0, 1, 1]),
             node("Reshape", ["p2", "s"], ["q"]),
             node("Conv", ["q", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
             node("Relu", ["c"], ["r1"]),
             node("MaxPool", ["r1"], ["p3"], kernel_shape=[2, 2], dilations=[2, 2]),
             node("Flatten", ["p3"], ["f"]),
             node("Gemm", ["f", "G", "C"], ["y"], transB=1)]
    return make_model(nodes, POOL_SHAPE, 19, s=np.array([0, 2, 4, 4]), W=w, B=0.1 * b, G=g,
                      C=np.zeros(10, np.float32) if bias is None else bias)


def pool_case(n: int = 300) -> tuple[onnx.ModelProto, np.ndarray]:
    """:func:`pool_model` with its logits centred on ``n`` standard normal samples (so the classes vary),
    and those samples."""
    x = np.random.default_rng(1).standard_normal((n, *POOL_SHAPE)).astype(np.float32)
    return pool_model(-ort_run(pool_model(), x).mean(0)), x
