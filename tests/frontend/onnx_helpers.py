"""Builders of small ONNX models and the onnxruntime comparison used by the frontend tests."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from snncompile.frontend.onnx import load_onnx

__all__ = ["ATOL", "RTOL", "assert_matches_ort", "make_model", "node", "ort_run"]

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
