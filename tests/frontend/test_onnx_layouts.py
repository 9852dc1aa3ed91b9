"""Channels-last (Keras/tf2onnx) layouts: Transposes that move data are folded, not computed.

The network input's own Transpose (NHWC data into the first Conv) moves into the Input as its source
layout: the data is reordered once as it enters (``Input.to_network``), so the first layer stays a
convolution.

The graphs reproduce tf2onnx's pattern for a Keras model: an NHWC input transposed to NCHW for each
Conv and back (``perm=[0, 2, 3, 1]``) after it, the bias added in NHWC, pooling between a Transpose
pair, and the Flatten of the NHWC tensor feeding a MatMul. Checked against onnxruntime (rtol 1e-4).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx_helpers import assert_matches_ort, make_model, node

from snncompile.errors import DataError, ShapeError
from snncompile.frontend.onnx import load_onnx
from snncompile.ir import Conv2d, Linear, Permute

_RNG = np.random.default_rng(11)
TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def w(*shape: int) -> np.ndarray:
    return (_RNG.standard_normal(shape) * 0.3).astype(np.float32)


def keras_cnn(c_in: int = 3) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """NHWC (8, 8, c_in) -> [T Conv T BiasAdd Relu] x2 with a T MaxPool T in between -> Flatten(NHWC) -> Dense."""
    nodes = [
        node("Transpose", ["x"], ["x_t"], perm=TO_NCHW),
        node("Conv", ["x_t", "K1"], ["c1"], pads=[1, 1, 1, 1]),
        node("Transpose", ["c1"], ["c1_t"], perm=TO_NHWC),
        node("Add", ["c1_t", "b1"], ["a1"]),
        node("Relu", ["a1"], ["r1"]),
        node("Transpose", ["r1"], ["r1_t"], perm=TO_NCHW),
        node("MaxPool", ["r1_t"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Transpose", ["p1"], ["p1_t"], perm=TO_NHWC),
        node("Transpose", ["p1_t"], ["p1_tt"], perm=TO_NCHW),
        node("Conv", ["p1_tt", "K2", "b2"], ["c2"]),
        node("Relu", ["c2"], ["r2"]),
        node("Transpose", ["r2"], ["r2_t"], perm=TO_NHWC),
        node("Reshape", ["r2_t", "flat"], ["f"]),
        node("MatMul", ["f", "W"], ["m"]),
        node("Add", ["m", "b3"], ["y"]),
    ]
    inits = {"K1": w(4, c_in, 3, 3), "b1": w(4), "K2": w(5, 4, 3, 3), "b2": w(5), "flat": np.array([-1, 20]),
             "W": w(20, 6), "b3": w(6)}
    return make_model(nodes, (8, 8, c_in), 13, **inits), (8, 8, c_in)


def keras_mlp() -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """A (28, 28) image flattened by Reshape and a Dense stack; the last layer's softmax kept."""
    nodes = [
        node("Reshape", ["x", "flat"], ["f"]),
        node("MatMul", ["f", "W1"], ["m1"]),
        node("Add", ["m1", "b1"], ["a1"]),
        node("Relu", ["a1"], ["r1"]),
        node("MatMul", ["r1", "W2"], ["m2"]),
        node("Add", ["m2", "b2"], ["z"]),
        node("Softmax", ["z"], ["y"]),
    ]
    return make_model(nodes, (6, 5), 13, flat=np.array([-1, 30]), W1=w(30, 16), b1=w(16), W2=w(16, 4),
                      b2=w(4)), (6, 5)


@pytest.mark.parametrize("c_in", [1, 3])
def test_tf2onnx_cnn_pattern_matches_onnxruntime(c_in):
    model, shape = keras_cnn(c_in)
    g = assert_matches_ort(model, shape, batches=(1, 4))
    # no Permute anywhere: inside, every Transpose pair cancels and the NHWC flatten folds into the Dense
    # weights; the network input's own NHWC -> NCHW Transpose (a reorder when C = 3) moves into the Input
    assert not g.of_type(Permute)
    assert g.input.source_perm == ((2, 0, 1) if c_in == 3 else ())
    assert g.input.shape == ((3, 8, 8) if c_in == 3 else shape) and g.input.data_shape == shape
    assert len(g.of_type(Conv2d)) == 2 and len(g.of_type(Linear)) == 1
    assert "BatchNorm" not in {n.op for n in g.nodes.values()}  # the NHWC bias folded into the Conv


def test_input_layout_reorders_the_models_data_once():
    """``Input.to_network`` is the input Transpose itself (numpy and torch); the graph refuses NHWC data
    with a message naming the fix."""
    model, shape = keras_cnn(3)
    g = load_onnx(model)
    x = _RNG.standard_normal((2, *shape)).astype(np.float32)
    np.testing.assert_array_equal(g.input.to_network(x), x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(g.input.to_network(torch.from_numpy(x)).numpy(), x.transpose(0, 3, 1, 2))
    with pytest.raises(ShapeError, match=r"graph.input.to_network"):
        g.run(x)
    with pytest.raises(DataError, match=r"expected data of shape \(N, 8, 8, 3\)"):
        g.input.to_network(x.transpose(0, 3, 1, 2))


def test_input_layout_behind_rescaling():
    """Keras' Rescaling (x * s + o, per tensor) before the input Transpose: still folded into the Input."""
    model, shape = keras_cnn(3)
    nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in model.graph.node]
    nodes[0].input[0] = "xr"
    pre = [node("Mul", ["x", "s"], ["xs"]), node("Add", ["xs", "o"], ["xr"])]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    model2 = make_model(pre + nodes, shape, 13, s=np.float32(1 / 255), o=np.float32(-0.5), **inits)
    g = assert_matches_ort(model2, shape, batches=(3,))
    assert not g.of_type(Permute) and g.input.source_perm == (2, 0, 1)


def test_input_layout_first_layer_lowers_as_convolution():
    """With the input Transpose folded, the first Conv is a convolution connection from the input, not a
    dense matrix (as it was behind a Permute), and the population graph keeps the input's layout."""
    from snncompile.convert import convert
    from snncompile.ir.populations import ConvConn, DenseConn
    from snncompile.lower import lower_populations

    model, shape = keras_cnn(3)
    g = load_onnx(model)
    x = g.input.to_network(np.abs(_RNG.standard_normal((16, *shape))).astype(np.float32))
    pop = lower_populations(convert(g, x, method="max", timesteps=4, progress=False))
    src = pop.input.name
    first = [n for n in pop.nodes.values() if n.inputs and n.inputs[0] == f"{src}.src"]
    assert first and all(isinstance(n, ConvConn) for n in first)
    assert not pop.of_type(DenseConn) or all(n.inputs[0] != f"{src}.src" for n in pop.of_type(DenseConn))
    assert pop.input.source_perm == (2, 0, 1)


def test_input_transpose_to_unlike_layout_matches_onnxruntime():
    """Any axis permutation of the input (here H and W swapped, then a Reshape) folds the same way."""
    nodes = [node("Transpose", ["x"], ["t"], perm=[0, 3, 2, 1]), node("Reshape", ["t", "s"], ["r"]),
             node("Conv", ["r", "K"], ["y"])]
    g = assert_matches_ort(make_model(nodes, (5, 4, 2), 13, s=np.array([0, 2, 4, 5]), K=w(3, 2, 3, 3)),
                           (5, 4, 2))
    assert g.input.source_perm == (2, 1, 0) and g.input.shape == (2, 4, 5)


def test_nhwc_flatten_folds_into_dense_rows():
    """Transpose(0, 2, 3, 1) -> Reshape -> MatMul is one Linear whose columns are the permuted rows."""
    nodes = [node("Transpose", ["x"], ["t"], perm=TO_NHWC), node("Reshape", ["t", "flat"], ["f"]),
             node("MatMul", ["f", "W"], ["y"])]
    W = w(24, 5)
    g = assert_matches_ort(make_model(nodes, (2, 3, 4), 13, flat=np.array([0, -1]), W=W), (2, 3, 4))
    lin = g.of_type(Linear)[0]
    assert not g.of_type(Permute)
    # NCHW element (c, h, w) is NHWC row (h, w, c) of W
    want = W.reshape(3, 4, 2, 5).transpose(2, 0, 1, 3).reshape(24, 5).T
    np.testing.assert_array_equal(lin.weight, want)


def test_mlp_pattern_matches_onnxruntime():
    model, shape = keras_mlp()
    assert_matches_ort(model, shape, batches=(3,))


def test_transpose_into_conv_is_a_permute():
    """A real reorder inside the network feeding a Conv cannot fold: it stays one Permute node (exact
    rewiring); the input keeps its layout."""
    nodes = [node("Conv", ["x", "K0"], ["c"]), node("Relu", ["c"], ["r"]),
             node("Transpose", ["r"], ["t"], perm=[0, 1, 3, 2]), node("Conv", ["t", "K"], ["y"])]
    g = assert_matches_ort(make_model(nodes, (2, 7, 6), 13, K0=w(2, 2, 1, 1), K=w(3, 2, 3, 3)), (2, 7, 6))
    assert len(g.of_type(Permute)) == 1 and not g.input.source_perm


def test_input_used_twice_keeps_its_layout():
    """The input read both through a Transpose and directly: the reorder stays a Permute."""
    nodes = [node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]), node("Add", ["t", "t2"], ["y"]),
             node("Transpose", ["x"], ["t2"], perm=[0, 1, 3, 2])]
    nodes = [nodes[0], nodes[2], nodes[1]]
    g = assert_matches_ort(make_model(nodes, (2, 4, 4), 13), (2, 4, 4))
    assert not g.input.source_perm


def test_views_of_two_branches_add():
    """Two activations with the same pending Transpose add without materializing it."""
    nodes = [node("Conv", ["x", "K"], ["c"]), node("Transpose", ["c"], ["t"], perm=TO_NHWC),
             node("Relu", ["t"], ["r"]), node("Add", ["r", "t"], ["s"]), node("Reshape", ["s", "flat"], ["f"]),
             node("Gemm", ["f", "W"], ["y"])]
    g = assert_matches_ort(make_model(nodes, (2, 4, 4), 13, K=w(3, 2, 3, 3), flat=np.array([0, -1]), W=w(12, 4)),
                           (2, 4, 4))
    assert not g.of_type(Permute)


def test_load_is_deterministic_for_views():
    model, _ = keras_cnn(3)
    a, b = load_onnx(model), load_onnx(model)
    assert list(a.nodes) == list(b.nodes)


def _behind(pre: list, **consts: np.ndarray) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """keras_cnn(3) with the nodes ``pre`` (from ``x`` to ``xr``) before its input Transpose."""
    model, shape = keras_cnn(3)
    nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in model.graph.node]
    nodes[0].input[0] = "xr"
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    return make_model(pre + nodes, shape, 13, **consts, **inits), shape


@pytest.mark.parametrize("mean_shape", [(3,), (1, 1, 3), (8, 1, 1), (8, 8, 3)])
def test_input_layout_behind_per_channel_normalization(mean_shape):
    """Keras' Normalization ((x - mean) / sqrt(var), constants of shape (C,) on the NHWC tensor) and a
    per-channel Rescaling before the input Transpose: the constants move through the permutation and
    the Transpose still folds into the Input. Per NHWC channel they become BatchNorms over the NCHW
    channels; a constant varying along H (or per element) one per element. No Permute, the first Conv
    reads the normalization directly; with per-channel constants it lowers as a convolution from the
    input (a constant varying along H makes it a per-pixel scale before the Conv, which lowers as a
    dense connection in any layout)."""
    from snncompile.convert import convert
    from snncompile.ir import BatchNorm
    from snncompile.ir.populations import ConvConn
    from snncompile.lower import lower_populations

    pre = [node("Sub", ["x", "mean"], ["xc"]), node("Div", ["xc", "std"], ["xn"]),
           node("Mul", ["xn", "gain"], ["xg"]), node("Add", ["xg", "offset"], ["xr"])]
    model, shape = _behind(pre, mean=w(*mean_shape), std=np.float32(1.5) + np.abs(w(*mean_shape)),
                           gain=np.float32([0.5, 2.0, -1.0]), offset=np.float32([0.1, -0.2, 0.3]))
    g = assert_matches_ort(model, shape, batches=(1, 3))
    assert not g.of_type(Permute) and g.input.source_perm == (2, 0, 1) and g.input.shape == (3, 8, 8)
    conv = g.of_type(Conv2d)[0]
    assert isinstance(g.nodes[conv.inputs[0]], BatchNorm)  # not a Permute, nor a Reshape of one
    if mean_shape in ((3,), (1, 1, 3)):  # per channel all the way: four BatchNorms of 3 channels on the Input
        assert [n.scale.shape for n in g.of_type(BatchNorm)] == [(3,)] * 4
        x = g.input.to_network(np.abs(_RNG.standard_normal((8, *shape))).astype(np.float32))
        pop = lower_populations(convert(g, x, method="max", timesteps=4, progress=False))
        first = [n for n in pop.nodes.values() if n.inputs and n.inputs[0] == f"{pop.input.name}.src"]
        assert first and all(isinstance(n, ConvConn) for n in first)
