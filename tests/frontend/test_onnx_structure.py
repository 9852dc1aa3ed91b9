"""What the importer builds (folds, node types, names) and what it refuses, with the reason."""

from __future__ import annotations

import inspect
import math

import numpy as np
import onnx
import pytest
from onnx_helpers import assert_matches_ort, make_model, node

from snncompile.errors import ShapeError, UnsupportedOperator
from snncompile.frontend.onnx import OPS, SUPPORTED_OPS, VERSIONS, load_onnx
from snncompile.ir import BatchNorm, Conv2d, Flatten, Linear, ReLU, Reshape

_RNG = np.random.default_rng(7)


def w(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


def pos(*shape: int) -> np.ndarray:
    return _RNG.uniform(0.5, 2.0, shape).astype(np.float32)


def bn(inp: str, out: str, name: str = "") -> onnx.NodeProto:
    return node("BatchNormalization", [inp, "s", "bb", "m", "v"], [out], name=name)


BN = {"s": pos(3), "bb": w(3), "m": w(3), "v": pos(3)}


def types(g) -> list[str]:
    return [type(n).__name__ for n in g.nodes.values()]


def test_schema_attributes_all_accepted():
    """Every attribute of every implemented version of every supported op is a keyword of its importer."""
    assert set(VERSIONS) == set(OPS)
    for op, fn in OPS.items():
        params = inspect.signature(fn).parameters
        for version in VERSIONS[op]:
            schema = onnx.defs.get_schema(op, version)
            assert schema.since_version == version, f"{op}: no version {version}"
            missing = set(schema.attributes) - set(params)
            assert not missing, f"{op} version {version}: attributes {missing} not accepted"


def test_bn_folds_into_conv():
    model = make_model(
        [node("Conv", ["x", "W", "B"], ["c"], name="conv1"), bn("c", "y", "bn1")],
        (2, 5, 5),
        W=w(3, 2, 3, 3),
        B=w(3),
        **BN,
    )
    g = assert_matches_ort(model, (2, 5, 5))
    assert types(g) == ["Input", "Conv2d", "Output"] and "conv1" in g.nodes


def test_bn_standalone_when_conv_has_two_consumers():
    model = make_model(
        [node("Conv", ["x", "W"], ["c"]), bn("c", "d"), node("Add", ["c", "d"], ["y"])],
        (2, 5, 5),
        W=w(3, 2, 3, 3),
        **BN,
    )
    g = assert_matches_ort(model, (2, 5, 5))
    assert types(g).count("BatchNorm") == 1 and types(g).count("Add") == 1


def test_bn_after_identity_of_conv_folds():
    model = make_model(
        [node("Conv", ["x", "W"], ["c"]), node("Identity", ["c"], ["i"]), bn("i", "y")],
        (2, 5, 5),
        W=w(3, 2, 3, 3),
        **BN,
    )
    assert types(assert_matches_ort(model, (2, 5, 5))) == ["Input", "Conv2d", "Output"]


def test_bn_after_conv_with_another_consumer_stays():
    """The Conv's output is also used unnormalized (by the Add), so the BN cannot fold into it."""
    model = make_model([node("Conv", ["x", "W"], ["c"]), bn("c", "z"), node("Add", ["c", "z"], ["y"])], (2, 5, 5),
                       W=w(3, 2, 3, 3), **BN)
    assert "BatchNorm" in types(assert_matches_ort(model, (2, 5, 5)))


def test_matmul_add_becomes_one_linear_and_mul_folds():
    b = w(4)
    model = make_model(
        [node("MatMul", ["x", "W"], ["h"]), node("Add", ["h", "b"], ["a"]), node("Mul", ["a", "k"], ["y"])],
        (6,),
        W=w(6, 4),
        b=b,
        k=np.float32(0.5),
    )
    g = assert_matches_ort(model, (6,))
    assert types(g) == ["Input", "Linear", "Output"]
    np.testing.assert_allclose(g.nodes["MatMul_0"].bias, 0.5 * b, rtol=1e-6)


def test_add_per_channel_on_input_is_batchnorm():
    g = assert_matches_ort(make_model([node("Add", ["x", "c"], ["y"])], (3, 2, 2), c=w(3, 1, 1)), (3, 2, 2))
    (n,) = g.of_type(BatchNorm)
    assert np.all(n.scale == 1)


def test_clip_becomes_relu_with_ceiling():
    model = make_model(
        [node("Clip", ["x", "lo", "hi"], ["y"], name="relu6")], (4,), 13, lo=np.float32(0), hi=np.float32(6)
    )
    (r,) = load_onnx(model).of_type(ReLU)
    assert (r.name, r.max_value, r.source_op) == ("relu6", 6.0, "Clip")
    (r,) = load_onnx(make_model([node("Relu", ["x"], ["y"])], (4,))).of_type(ReLU)
    assert math.isinf(r.max_value) and r.source_op == "Relu"


def test_names_unique_readable_and_made_up():
    nodes = [
        node("Relu", ["x"], ["a"], name="act"),
        node("Relu", ["a"], ["b"], name="dup"),
        node("Relu", ["b"], ["c"], name="dup"),
        node("Relu", ["c"], ["y"]),
    ]
    g = load_onnx(make_model(nodes, (3,)))
    assert list(g.nodes) == ["x", "act", "Relu_1", "Relu_2", "Relu_3", "y"]


def test_names_do_not_collide_with_input_or_output():
    g = load_onnx(
        make_model([node("Relu", ["x"], ["h"], name="x"), node("Relu", ["h"], ["y"], name="y")], (3,))
    )
    assert len(set(g.nodes)) == 4 and g.input.name == "x"


def test_reshape_and_plumbing_types():
    model = make_model(
        [
            node("Unsqueeze", ["x", "a"], ["u"]),
            node("Flatten", ["u"], ["f"]),
            node("Reshape", ["f", "s"], ["y"]),
        ],
        (2, 3),
        a=np.array([1]),
        s=np.array([0, 3, 2]),
    )
    g = assert_matches_ort(model, (2, 3))
    assert [type(n) for n in list(g.nodes.values())[1:-1]] == [Reshape, Flatten, Reshape]
    assert g.shapes[g.outputs[0].name] == (3, 2)


def test_noop_plumbing_vanishes():
    model = make_model(
        [
            node("Reshape", ["x", "s"], ["r"]),
            node("Dropout", ["r"], ["d"]),
            node("Transpose", ["d"], ["y"], perm=[0, 1, 2]),
        ],
        (2, 3),
        s=np.array([0, 2, 3]),
    )
    assert types(assert_matches_ort(model, (2, 3))) == ["Input", "Output"]


def test_gemm_weights():
    b, c = w(3, 4), w(3)
    g = load_onnx(
        make_model([node("Gemm", ["x", "B", "C"], ["y"], alpha=2.0, beta=0.5, transB=1)], (4,), B=b, C=c)
    )
    (lin,) = g.of_type(Linear)
    np.testing.assert_allclose(lin.weight, 2 * b)
    np.testing.assert_allclose(lin.bias, 0.5 * c)


def test_conv_same_upper_padding():
    model = make_model(
        [node("Conv", ["x", "W"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])], (1, 6, 6), W=w(1, 1, 3, 3)
    )
    (c,) = assert_matches_ort(model, (1, 6, 6)).of_type(Conv2d)
    assert c.padding == (0, 0, 1, 1)



@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_same_upper_dilated_pool_pads_the_dilated_extent(op):
    """SAME_UPPER pads ``(ceil(L/s) - 1) s + (k - 1) d + 1 - L`` as the ONNX spec writes it (onnx's shape
    inference too): here the same as explicit pads (2, 1, 2, 1), which onnxruntime checks. onnxruntime
    1.32 itself pads the undilated kernel under SAME (output (4, 7) instead of the spec's (5, 8))."""
    attrs = {"kernel_shape": [3, 2], "dilations": [2, 2], "strides": [2, 1]}
    same = make_model([node(op, ["x"], ["y"], auto_pad="SAME_UPPER", **attrs)], (2, 9, 8), 19)
    spec = [d.dim_value for d in same.graph.output[0].type.tensor_type.shape.dim[1:]]
    explicit = make_model([node(op, ["x"], ["y"], pads=[2, 1, 2, 1], **attrs)], (2, 9, 8), 19)
    want = assert_matches_ort(explicit, (2, 9, 8))
    g = load_onnx(same)
    assert list(g.shapes[g.outputs[0].name]) == spec == [2, 5, 8]
    x = np.random.default_rng(0).standard_normal((2, 2, 9, 8)).astype(np.float32)
    np.testing.assert_array_equal(g.run(x).numpy(), want.run(x).numpy())

@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool_window_larger_than_a_tiny_3d_input_names_the_onnx_node(op):
    """A 2x2x2 window on a (1, 2, 2) volume: the error names the ONNX node and its own shapes, not the
    internal depth pool of the separable import."""
    model = make_model([node(op, ["x"], ["y"], kernel_shape=[2, 2, 2])], (3, 1, 2, 2), 17)
    with pytest.raises(ShapeError, match=rf"^{op}_0 \({op}\): kernel_shape=\[2, 2, 2\] .* padded input \(1, 2, 2\)"):
        load_onnx(model)


REFUSED = {
    "flatten_axis0": ([node("Flatten", ["x"], ["y"], axis=0)], (2, 3), {}, "axis=0"),
    "flatten_axis2": ([node("Flatten", ["x"], ["y"], axis=2)], (2, 3), {}, "batch axis"),
    "reshape_drops_batch": (
        [node("Reshape", ["x", "s"], ["y"])],
        (2, 3),
        {"s": np.array([-1])},
        "batch axis",
    ),
    "reshape_literal_batch": (
        [node("Reshape", ["x", "s"], ["y"])],
        (2, 3),
        {"s": np.array([2, -1])},
        "batch axis",
    ),
    "transpose_batch": ([node("Transpose", ["x"], ["y"], perm=[1, 0, 2])], (1, 3), {}, "moves the batch axis"),
    "squeeze_no_axes": ([node("Squeeze", ["x"], ["y"])], (1, 3), {}, "without axes"),
    "squeeze_batch": ([node("Squeeze", ["x", "a"], ["y"])], (1, 3), {"a": np.array([0])}, "size 1"),
    "unsqueeze_batch": (
        [node("Unsqueeze", ["x", "a"], ["y"])],
        (3,),
        {"a": np.array([0])},
        "before the batch",
    ),
    "concat_batch": ([node("Concat", ["x", "x"], ["y"], axis=0)], (3,), {}, "batch axis"),
    "concat_const": ([node("Concat", ["x", "c"], ["y"], axis=1)], (3,), {"c": w(1, 2)}, "inputs[1]"),
    "maxpool_4d": (
        [node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2, 2, 2])],
        (1, 4, 4, 4, 4),
        {},
        "only 1-, 2- and 3-D pooling",
    ),
    "avgpool_pad_not_below_kernel": (  # a window wholly in the padding: 0/0 for the mean
        [node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], pads=[2, 0, 0, 0])],
        (1, 3, 3),
        {},
        "smaller than the kernel",
    ),
    "maxpool_3d_pad_not_below_kernel": (  # -inf for the maximum
        [node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2, 2], pads=[0, 0, 0, 2, 0, 0])],
        (1, 3, 3, 3),
        {},
        "smaller than the kernel",
    ),
    "maxpool_indices_used": (
        [
            node("MaxPool", ["x"], ["p", "i"], kernel_shape=[2, 2]),
            node("Cast", ["i"], ["ic"], to=1),
            node("Add", ["p", "ic"], ["y"]),
        ],
        (1, 4, 4),
        {},
        "output 1",
    ),
    "conv1d": ([node("Conv", ["x", "W"], ["y"])], (2, 5), {"W": w(3, 2, 3)}, "2-D"),
    "conv_weight_activation": ([node("Conv", ["x", "x"], ["y"])], (1, 3, 3), {}, "input W"),
    "gemm_transA": ([node("Gemm", ["x", "B"], ["y"], transA=1)], (3,), {"B": w(2, 4)}, "transA"),
    "gemm_batch_bias": ([node("Gemm", ["x", "B", "C"], ["y"])], (3,), {"B": w(3, 4), "C": w(5, 4)}, "bias C"),
    "matmul_3d_weight": ([node("MatMul", ["x", "W"], ["y"])], (3,), {"W": w(2, 3, 4)}, "spans the batch"),
    "mul_two_acts": ([node("Mul", ["x", "x"], ["y"])], (3,), {}, "product"),
    "sub_two_acts": ([node("Sub", ["x", "x"], ["y"])], (3,), {}, "difference"),
    "add_broadcast_acts": (
        [node("GlobalAveragePool", ["x"], ["m"]), node("Add", ["x", "m"], ["y"])],
        (2, 3, 3),
        {},
        "broadcasting",
    ),
    "add_spans_batch": ([node("Add", ["x", "c"], ["y"])], (2, 3), {"c": w(4, 2, 3)}, "spanning the batch"),
    "div_by_zero": ([node("Div", ["x", "c"], ["y"])], (3,), {"c": np.float32(0)}, "0"),
    "bn_training": (
        [node("BatchNormalization", ["x", "s", "bb", "m", "v"], ["y", "rm", "rv"], training_mode=1)],
        (3,),
        BN,
        "inference",
    ),
    "clip_negative_max": (
        [node("Clip", ["x", "lo", "hi"], ["y"])],
        (3,),
        {"lo": np.float32(0), "hi": np.float32(-1)},
        "max=-1",
    ),
    "clip_activation_bound": (
        [node("Clip", ["x", "lo", "x"], ["y"])],
        (3,),
        {"lo": np.float32(0)},
        "input max",
    ),
    "custom_domain": ([node("Foo", ["x"], ["y"], domain="com.example")], (3,), {}, "domain"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_with_reason(name: str):
    nodes, shape, inits, reason = REFUSED[name]
    model = make_model(nodes, shape, 17, **inits) if name != "custom_domain" else _custom(nodes, shape)
    with pytest.raises(UnsupportedOperator) as e:
        load_onnx(model)
    msg = str(e.value)
    assert "\n" not in msg and reason in msg and f"({e.value.op_type})" in msg, msg


def _custom(nodes, shape) -> onnx.ModelProto:
    g = onnx.helper.make_graph(
        nodes,
        "t",
        [onnx.helper.make_tensor_value_info("x", 1, ["N", *shape])],
        [onnx.helper.make_tensor_value_info("y", 1, ["N", *shape])],
    )
    return onnx.helper.make_model(
        g,
        opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("com.example", 1)],
        ir_version=8,
    )


def test_unknown_op_lists_supported_and_constant_ops_fold():
    model = make_model(
        [node("Sigmoid", ["c"], ["s"]), node("Mul", ["x", "s"], ["m"]), node("Tanh", ["m"], ["y"])],
        (3,),
        c=w(3),
    )
    with pytest.raises(UnsupportedOperator) as e:  # Sigmoid on a constant folds; Tanh on an activation cannot
        load_onnx(model)
    assert e.value.node == "Tanh_2" and "supported: " in str(e.value) and "Conv" in str(e.value)
    assert set(SUPPORTED_OPS) >= {"Conv", "Gemm", "Clip", "Reshape", "Constant"}
