"""One-node (or few-node) ONNX models per supported op and attribute variant, against onnxruntime.

Each case is ``(nodes, per-sample input shape, initializers)``; the model is checked at every listed
opset with a dynamic batch of 2 (batch 1 and 3 for a few), bound: rtol 1e-4, atol 1e-5.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx_helpers import assert_matches_ort, make_model, node

_RNG = np.random.default_rng(1234)


def _t(v) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(v, dtype=np.float32))


def w(*shape: int) -> np.ndarray:
    return (_RNG.standard_normal(shape) * 0.5).astype(np.float32)


def pos(*shape: int) -> np.ndarray:
    return _RNG.uniform(0.5, 2.0, shape).astype(np.float32)


def conv(shape, wshape, bias=True, **attrs):
    inputs = ["x", "W", "B"] if bias else ["x", "W"]
    inits = {"W": w(*wshape), **({"B": w(wshape[0])} if bias else {})}
    return [node("Conv", inputs, ["y"], **attrs)], shape, inits


def gemm(k, n, c_shape=None, **attrs):
    b = w(n, k) if attrs.get("transB") else w(k, n)
    inits = {"B": b, **({"C": w(*c_shape)} if c_shape is not None else {})}
    return [node("Gemm", ["x", "B", "C"] if c_shape is not None else ["x", "B"], ["y"], **attrs)], (k,), inits


def bn_inits(c: int) -> dict:
    return {"s": pos(c), "bb": w(c), "m": w(c), "v": pos(c)}


def pool(op, shape=(2, 7, 7), **attrs):
    return [node(op, ["x"], ["y"], **attrs)], shape, {}


def one(op, shape, *extra_inputs, **attrs):
    return [node(op, ["x", *extra_inputs], ["y"], **attrs)], shape, {}


ALL = (7, 9, 11, 13, 17, 21)
CASES = {
    # ---- Conv -----------------------------------------------------------------------------
    "conv_pad1": (ALL, lambda o: conv((3, 8, 8), (4, 3, 3, 3), pads=[1, 1, 1, 1])),
    "conv_stride2_asym_pads": (
        (7, 13),
        lambda o: conv((3, 9, 8), (4, 3, 3, 3), strides=[2, 2], pads=[0, 1, 2, 1]),
    ),
    "conv_dilation2": ((7, 17), lambda o: conv((2, 9, 9), (3, 2, 3, 3), dilations=[2, 2], pads=[2, 2, 2, 2])),
    "conv_groups2": ((7, 21), lambda o: conv((4, 6, 6), (6, 2, 3, 3), group=2)),
    "conv_depthwise": ((11, 21), lambda o: conv((4, 6, 6), (4, 1, 3, 3), group=4, pads=[1, 1, 1, 1])),
    "conv_no_bias": ((7, 13), lambda o: conv((3, 6, 6), (5, 3, 2, 2), bias=False, strides=[2, 1])),
    "conv_kernel_3x1": ((13,), lambda o: conv((2, 6, 5), (3, 2, 3, 1), kernel_shape=[3, 1])),
    "conv_same_upper_s2": (
        (7, 17),
        lambda o: conv((2, 7, 8), (3, 2, 3, 3), auto_pad="SAME_UPPER", strides=[2, 2]),
    ),
    "conv_same_lower_s2": (
        (7, 17),
        lambda o: conv((2, 7, 8), (3, 2, 4, 4), auto_pad="SAME_LOWER", strides=[2, 2]),
    ),
    "conv_valid": ((7, 21), lambda o: conv((2, 7, 7), (3, 2, 3, 3), auto_pad="VALID")),
    "conv_notset_pads": (
        (13,),
        lambda o: conv((2, 5, 5), (3, 2, 3, 3), auto_pad="NOTSET", pads=[1, 0, 0, 1]),
    ),
    # ---- Gemm / MatMul ----------------------------------------------------------------------
    "gemm_transB1": (ALL, lambda o: gemm(6, 4, (4,), transB=1)),
    "gemm_transB0": ((7, 13), lambda o: gemm(6, 4, (4,))),
    "gemm_alpha_beta": ((9, 17), lambda o: gemm(5, 3, (1, 3), alpha=0.5, beta=2.0, transB=1)),
    "gemm_scalar_c": ((9, 13), lambda o: gemm(5, 3, (), beta=-1.0)),
    "gemm_no_c": ((11, 21), lambda o: gemm(5, 3, None, alpha=1.5)),
    "matmul": ((7, 13, 21), lambda o: ([node("MatMul", ["x", "W"], ["y"])], (6,), {"W": w(6, 4)})),
    "matmul_add": (
        (7, 13),
        lambda o: (
            [node("MatMul", ["x", "W"], ["h"]), node("Add", ["h", "b"], ["y"])],
            (6,),
            {"W": w(6, 4), "b": w(4)},
        ),
    ),
    "matmul_3d_add": (
        (13,),
        lambda o: (
            [node("MatMul", ["x", "W"], ["h"]), node("Add", ["b", "h"], ["y"])],
            (2, 3, 6),
            {"W": w(6, 4), "b": w(4)},
        ),
    ),
    # ---- activations ------------------------------------------------------------------------
    "relu": (ALL, lambda o: one("Relu", (3, 4, 4))),
    "clip_attr_0_6": ((7, 9), lambda o: one("Clip", (3, 4, 4), min=0.0, max=0.5)),
    "clip_attr_no_max": ((7,), lambda o: one("Clip", (5,), min=0.0)),
    "clip_inputs": (
        (11, 13, 21),
        lambda o: (
            [node("Clip", ["x", "lo", "hi"], ["y"])],
            (3, 4),
            {"lo": np.float32(0), "hi": np.float32(0.7)},
        ),
    ),
    "clip_constant_nodes": (
        (11, 17),
        lambda o: (
            [
                node("Constant", [], ["lo"], value=_t(0.0)),
                node("Constant", [], ["hi"], value=_t(0.3)),
                node("Clip", ["x", "lo", "hi"], ["y"]),
            ],
            (4,),
            {},
        ),
    ),
    "clip_constant_value_float": (
        (12, 21),
        lambda o: (
            [
                node("Constant", [], ["lo"], value_float=0.0),
                node("Constant", [], ["hi"], value_float=0.3),
                node("Clip", ["x", "lo", "hi"], ["y"]),
            ],
            (4,),
            {},
        ),
    ),
    "clip_no_max_input": (
        (13,),
        lambda o: ([node("Clip", ["x", "lo", ""], ["y"])], (4, 2), {"lo": np.float32(0)}),
    ),
    "clip_inf_max": (
        (13,),
        lambda o: (
            [node("Clip", ["x", "lo", "hi"], ["y"])],
            (4,),
            {"lo": np.float32(0), "hi": np.float32(np.inf)},
        ),
    ),
    # ---- BatchNormalization -----------------------------------------------------------------
    "bn_standalone": (
        (7, 9, 14, 15, 21),
        lambda o: (
            [node("BatchNormalization", ["x", "s", "bb", "m", "v"], ["y"], epsilon=1e-3)],
            (3, 4, 4),
            bn_inits(3),
        ),
    ),
    "bn_2d": (
        (9, 15),
        lambda o: ([node("BatchNormalization", ["x", "s", "bb", "m", "v"], ["y"])], (5,), bn_inits(5)),
    ),
    "bn_after_conv": (
        (7, 13, 21),
        lambda o: (
            [
                node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
                node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["y"]),
            ],
            (2, 5, 5),
            {"W": w(3, 2, 3, 3), "B": w(3), **bn_inits(3)},
        ),
    ),
    "bn_after_gemm": (
        (9, 17),
        lambda o: (
            [
                node("Gemm", ["x", "W", "B"], ["c"], transB=1),
                node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["y"]),
            ],
            (6,),
            {"W": w(4, 6), "B": w(4), **bn_inits(4)},
        ),
    ),
    "bn_after_shared_conv": (
        (13,),
        lambda o: (
            [
                node("Conv", ["x", "W"], ["c"]),
                node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["d"]),
                node("Add", ["c", "d"], ["y"]),
            ],
            (2, 5, 5),
            {"W": w(3, 2, 3, 3), **bn_inits(3)},
        ),
    ),
    # ---- pooling ----------------------------------------------------------------------------
    "maxpool_2x2": ((8, 12, 21), lambda o: pool("MaxPool", kernel_shape=[2, 2], strides=[2, 2])),
    "maxpool_pads_stride1": ((8, 13), lambda o: pool("MaxPool", kernel_shape=[3, 3], pads=[1, 0, 1, 2])),
    "maxpool_ceil": ((10, 17), lambda o: pool("MaxPool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    "maxpool_ceil_pads": (
        (10, 21),
        lambda o: pool(
            "MaxPool", (2, 6, 5), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1
        ),
    ),
    "maxpool_same_upper": (
        (8, 13),
        lambda o: pool("MaxPool", kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    ),
    "maxpool_storage_order_indices_unused": (
        (10, 13),
        lambda o: (
            [node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2], storage_order=1)],
            (2, 4, 4),
            {},
        ),
    ),
    # dilated and 3-D windows (3-D: a pool over (H, W) then one over depth, see onnx_ops._pool)
    "maxpool_dilated": (
        (10, 12, 22),
        lambda o: pool("MaxPool", (2, 9, 8), kernel_shape=[3, 2], dilations=[2, 3], strides=[1, 2],
                       pads=[1, 1, 2, 0]),
    ),
    "maxpool_dilated_ceil": (
        (10, 21),
        lambda o: pool("MaxPool", (2, 9, 8), kernel_shape=[3, 2], dilations=[2, 2], strides=[2, 2],
                       ceil_mode=1),
    ),
    "maxpool_1d_dilated": (
        (12, 21),
        lambda o: pool("MaxPool", (3, 11), kernel_shape=[3], strides=[2], dilations=[2], pads=[1, 2]),
    ),
    "maxpool_3d": (
        (8, 12, 22),
        lambda o: pool("MaxPool", (2, 5, 6, 7), kernel_shape=[2, 3, 2], strides=[2, 1, 2],
                       pads=[1, 0, 1, 0, 2, 1]),
    ),
    "maxpool_3d_dilated_ceil": (
        (12, 21),
        lambda o: pool("MaxPool", (2, 7, 6, 9), kernel_shape=[2, 2, 3], strides=[2, 2, 2],
                       dilations=[2, 1, 2], ceil_mode=1),
    ),
    "avgpool_2x2": ((7, 11, 19, 21), lambda o: pool("AveragePool", kernel_shape=[2, 2], strides=[2, 2])),
    "avgpool_dilated": (
        (19, 21),
        lambda o: pool("AveragePool", (2, 9, 8), kernel_shape=[3, 2], dilations=[2, 3], strides=[1, 2],
                       pads=[1, 1, 2, 0]),
    ),
    "avgpool_dilated_include_pad": (
        (19,),
        lambda o: pool("AveragePool", (2, 9, 8), kernel_shape=[3, 2], dilations=[2, 3], strides=[1, 2],
                       pads=[1, 1, 2, 0], count_include_pad=1),
    ),
    "avgpool_ceil_include_pad": (  # the window part ceil mode adds is not counted (torch, onnxruntime)
        (10, 19),
        lambda o: pool("AveragePool", (2, 7, 6), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 1],
                       ceil_mode=1, count_include_pad=1),
    ),
    "avgpool_dilated_ceil_include_pad": (
        (19, 21),
        lambda o: pool("AveragePool", (2, 9, 8), kernel_shape=[3, 3], dilations=[2, 2], strides=[2, 2],
                       ceil_mode=1, count_include_pad=1),
    ),
    "avgpool_1d_dilated_ceil_include_pad": (
        (19,),
        lambda o: pool("AveragePool", (3, 11), kernel_shape=[3], strides=[2], dilations=[2], pads=[1, 2],
                       ceil_mode=1, count_include_pad=1),
    ),
    "avgpool_3d": (
        (7, 11, 19, 21),
        lambda o: pool("AveragePool", (2, 5, 6, 7), kernel_shape=[2, 3, 2], strides=[2, 1, 2],
                       pads=[1, 0, 1, 0, 2, 1]),
    ),
    "avgpool_3d_include_pad_ceil": (
        (10, 19),
        lambda o: pool("AveragePool", (2, 5, 6, 7), kernel_shape=[2, 3, 2], strides=[2, 2, 2],
                       pads=[1, 0, 1, 0, 1, 1], ceil_mode=1, count_include_pad=1),
    ),
    "avgpool_3d_dilated_include_pad": (
        (19, 21),
        lambda o: pool("AveragePool", (2, 5, 6, 7), kernel_shape=[2, 3, 2], strides=[2, 1, 2],
                       pads=[1, 0, 1, 0, 2, 1], dilations=[1, 2, 2], count_include_pad=1),
    ),
    "avgpool_3d_same_upper": (
        (7, 19),
        lambda o: pool("AveragePool", (2, 5, 6, 7), kernel_shape=[2, 3, 2], strides=[2, 2, 2],
                       auto_pad="SAME_UPPER"),
    ),
    "avgpool_pads_exclude": (
        (7, 13),
        lambda o: pool("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    ),
    "avgpool_pads_include": (
        (7, 13),
        lambda o: pool(
            "AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 2, 1], count_include_pad=1
        ),
    ),
    "avgpool_ceil": (
        (10, 19),
        lambda o: pool("AveragePool", (2, 6, 6), kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    ),
    "avgpool_ceil_pads": (
        (10, 17),
        lambda o: pool(
            "AveragePool", (2, 5, 5), kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1
        ),
    ),
    "avgpool_ceil_noop_include": (
        (10,),
        lambda o: pool(
            "AveragePool", (2, 6, 6), kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1, count_include_pad=1
        ),
    ),
    "avgpool_same_lower": (
        (7, 13),
        lambda o: pool("AveragePool", kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER"),
    ),
    "avgpool_valid": ((7, 13), lambda o: pool("AveragePool", kernel_shape=[3, 2], auto_pad="VALID")),
    "global_avgpool": ((7, 13, 21), lambda o: pool("GlobalAveragePool")),
    # ---- elementwise ------------------------------------------------------------------------
    "add_two_acts": (
        (7, 14),
        lambda o: ([node("Relu", ["x"], ["r"]), node("Add", ["x", "r"], ["y"])], (3, 4, 4), {}),
    ),
    "add_scalar": ((7, 13), lambda o: ([node("Add", ["x", "c"], ["y"])], (3, 4), {"c": np.float32(0.5)})),
    "add_per_channel": ((7, 13), lambda o: ([node("Add", ["c", "x"], ["y"])], (3, 4, 4), {"c": w(3, 1, 1)})),
    "add_per_channel_4d": (
        (13,),
        lambda o: ([node("Add", ["x", "c"], ["y"])], (3, 4, 4), {"c": w(1, 3, 1, 1)}),
    ),
    "conv_add_bias": (
        (13,),
        lambda o: (
            [node("Conv", ["x", "W"], ["c"]), node("Add", ["c", "b"], ["y"])],
            (2, 5, 5),
            {"W": w(3, 2, 3, 3), "b": w(1, 3, 1, 1)},
        ),
    ),
    "sub_const": ((7, 13), lambda o: ([node("Sub", ["x", "c"], ["y"])], (3, 2, 2), {"c": w(3, 1, 1)})),
    "const_sub": ((13,), lambda o: ([node("Sub", ["c", "x"], ["y"])], (3, 2, 2), {"c": w(3, 1, 1)})),
    "mul_scalar": ((7, 13), lambda o: ([node("Mul", ["c", "x"], ["y"])], (3, 2, 2), {"c": np.float32(-1.5)})),
    "conv_mul_fold": (
        (13,),
        lambda o: (
            [node("Conv", ["x", "W", "B"], ["c"]), node("Mul", ["c", "s"], ["y"])],
            (2, 5, 5),
            {"W": w(3, 2, 3, 3), "B": w(3), "s": pos(3, 1, 1)},
        ),
    ),
    "div_scalar": ((7, 14), lambda o: ([node("Div", ["x", "c"], ["y"])], (4,), {"c": np.float32(4.0)})),
    "sum3": (
        (8, 13),
        lambda o: ([node("Relu", ["x"], ["r"]), node("Sum", ["x", "r", "x"], ["y"])], (2, 3), {}),
    ),
    "sum1": ((8, 13), lambda o: ([node("Sum", ["x"], ["s"]), node("Relu", ["s"], ["y"])], (2, 3), {})),
    # ---- shape plumbing ---------------------------------------------------------------------
    "concat_channels": (
        (7, 13),
        lambda o: ([node("Relu", ["x"], ["r"]), node("Concat", ["x", "r"], ["y"], axis=1)], (2, 3, 3), {}),
    ),
    "concat_neg_axis": (
        (11, 21),
        lambda o: (
            [node("Relu", ["x"], ["r"]), node("Concat", ["r", "x", "r"], ["y"], axis=-1)],
            (2, 3, 3),
            {},
        ),
    ),
    "flatten": ((7, 13, 21), lambda o: one("Flatten", (2, 3, 4), axis=1)),
    "flatten_default_axis": ((9,), lambda o: one("Flatten", (2, 3, 4))),
    "flatten_neg_axis": ((11, 13), lambda o: one("Flatten", (2, 3, 4), axis=-3)),
    "flatten_axis2_unit": ((13,), lambda o: one("Flatten", (1, 3, 4), axis=2)),
    "reshape_0_m1": (
        (7, 13, 21),
        lambda o: ([node("Reshape", ["x", "s"], ["y"])], (2, 3, 4), {"s": np.array([0, -1])}),
    ),
    "reshape_m1_first": (
        (13,),
        lambda o: ([node("Reshape", ["x", "s"], ["y"])], (2, 3, 4), {"s": np.array([-1, 6, 4])}),
    ),
    "reshape_0_keep": (
        (14,),
        lambda o: (
            [node("Reshape", ["x", "s"], ["y"], allowzero=0)],
            (2, 3, 4),
            {"s": np.array([0, 0, 2, 6])},
        ),
    ),
    "reshape_shape_pattern": (
        (9, 13, 17),
        lambda o: (
            [
                node("Shape", ["x"], ["sh"]),
                node("Gather", ["sh", "i0"], ["b"], axis=0),
                node("Unsqueeze", ["b"], ["bu"], axes=[0])
                if o < 13
                else node("Unsqueeze", ["b", "ax"], ["bu"]),
                node("Concat", ["bu", "m1"], ["s"], axis=0),
                node("Reshape", ["x", "s"], ["y"]),
            ],
            (2, 3, 4),
            {"i0": np.array(0), "m1": np.array([-1]), **({"ax": np.array([0])} if o >= 13 else {})},
        ),
    ),
    "transpose_unit_axes": ((7, 13), lambda o: one("Transpose", (3, 1, 1), perm=[0, 2, 3, 1])),
    "transpose_identity_perm": ((13,), lambda o: one("Transpose", (3, 2), perm=[0, 1, 2])),
    "squeeze_attr": ((7, 11), lambda o: one("Squeeze", (3, 1, 1), axes=[2, 3])),
    "squeeze_input": (
        (13, 21),
        lambda o: ([node("Squeeze", ["x", "a"], ["y"])], (3, 1, 1), {"a": np.array([-1, 2])}),
    ),
    "unsqueeze_attr": ((7, 11), lambda o: one("Unsqueeze", (3, 4), axes=[2, -1] if o >= 11 else [2, 4])),
    "unsqueeze_input": (
        (13, 21),
        lambda o: ([node("Unsqueeze", ["x", "a"], ["y"])], (5,), {"a": np.array([1, 3])}),
    ),
    "identity": (
        (7, 13, 21),
        lambda o: ([node("Identity", ["x"], ["i"]), node("Relu", ["i"], ["y"])], (3,), {}),
    ),
    "dropout_attr": ((7, 10), lambda o: one("Dropout", (3, 2), ratio=0.3)),
    "dropout_input": (
        (12, 13, 21),
        lambda o: (
            [node("Dropout", ["x", "r", "t"], ["y", "mask"])],
            (3, 2),
            {"r": np.float32(0.3), "t": np.array(False)},
        ),
    ),
    # ---- constants folded -------------------------------------------------------------------
    "constant_weight_transposed": (
        (9, 13),
        lambda o: (
            [
                node("Constant", [], ["W0"], value=_t(w(4, 6))),
                node("Transpose", ["W0"], ["W"]),
                node("MatMul", ["x", "W"], ["y"]),
            ],
            (6,),
            {},
        ),
    ),
    "constant_subgraph_bias": (
        (13,),
        lambda o: (
            [node("Mul", ["b0", "two"], ["b"]), node("Gemm", ["x", "W", "b"], ["y"], transB=1)],
            (6,),
            {"W": w(3, 6), "b0": w(3), "two": np.float32(2)},
        ),
    ),
    # ---- added with the opset/layout work (issue 18) ---------------------------------------
    "clip_hardtanh": (
        (13, 21),
        lambda o: (
            [node("Conv", ["x", "W"], ["c"]), node("Clip", ["c", "lo", "hi"], ["y"])],
            (2, 5, 5),
            {"W": w(3, 2, 3, 3), "lo": np.float32(-0.5), "hi": np.float32(1.0)},
        ),
    ),
    "mul_add_per_neuron": (
        (13, 14),
        lambda o: ([node("Mul", ["x", "s"], ["m"]), node("Add", ["m", "c"], ["y"])], (2, 3, 4), {"s": w(4), "c": w(3, 1)}),
    ),
    "matmul_stacked_weight": ((13, 21), lambda o: ([node("MatMul", ["x", "W"], ["y"])], (2, 3, 4), {"W": w(2, 4, 5)})),
    "matmul_vector_weight": ((13,), lambda o: ([node("MatMul", ["x", "W"], ["y"])], (3, 4), {"W": w(4)})),
    "avgpool_1d": ((11, 22), lambda o: pool("AveragePool", (3, 9), kernel_shape=[3], strides=[2], pads=[1, 0])),
    "maxpool_1d": ((12, 22), lambda o: pool("MaxPool", (3, 9), kernel_shape=[2], strides=[1])),
    "transpose_to_output": ((13, 21), lambda o: one("Transpose", (2, 3, 4), perm=[0, 3, 1, 2])),
    "transpose_relu_gemm": (
        (13, 25),
        lambda o: (
            [
                node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
                node("Relu", ["t"], ["r"]),
                node("Add", ["r", "bias"], ["a"]),
                node("Flatten", ["a"], ["f"]),
                node("Gemm", ["f", "W"], ["y"], transB=1),
            ],
            (3, 2, 2),
            {"bias": w(3), "W": w(5, 12)},
        ),
    ),
}


PARAMS = [
    pytest.param(name, opset, id=f"{name}-op{opset}")
    for name, (opsets, _) in CASES.items()
    for opset in opsets
]


@pytest.mark.parametrize("name,opset", PARAMS)
def test_op_matches_onnxruntime(name: str, opset: int):
    nodes, shape, inits = CASES[name][1](opset)
    assert_matches_ort(make_model(nodes, shape, opset, **inits), shape)


@pytest.mark.parametrize("name", ["conv_pad1", "gemm_transB1", "reshape_shape_pattern", "avgpool_ceil"])
def test_batch_sizes_1_and_3(name: str):
    nodes, shape, inits = CASES[name][1](13)
    assert_matches_ort(make_model(nodes, shape, 13, **inits), shape, batches=(1, 3))


def test_fixed_batch_dim_accepts_constant_reshape():
    """A model exported with batch 1 and a literal Reshape target (1, -1) keeps its batch axis."""
    model = make_model([node("Reshape", ["x", "s"], ["y"])], (2, 3), 13, batch=1, s=np.array([1, -1]))
    g = assert_matches_ort(model, (2, 3), batches=(1,))
    assert g.shapes[g.outputs[0].name] == (6,) and math.prod(g.shapes[g.input.name]) == 6
