"""Broken or unsupported ONNX files: each gives one typed error whose one-line message names the
file or the node, never a traceback from onnx/protobuf."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from snncompile import load_onnx
from snncompile.errors import CompileError, GraphError, ModelFileError, ShapeError, UnsupportedOperator


def _model(nodes, inputs=(("x", ["N", 4]),), out_shape=("N", 4), opset=13, **inits) -> onnx.ModelProto:
    g = oh.make_graph(
        nodes,
        "bad",
        [oh.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)], ir_version=8)


def _good_bytes() -> bytes:
    w = np.ones((4, 4), np.float32)
    return _model(
        [oh.make_node("MatMul", ["x", "W"], ["h"]), oh.make_node("Relu", ["h"], ["y"])], W=w
    ).SerializeToString()


def _one_line_error(exc_type, model, *must_contain: str) -> CompileError:
    with pytest.raises(exc_type) as e:
        load_onnx(model)
    msg = str(e.value)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    for s in must_contain:
        assert s in msg, f"{s!r} not in {msg!r}"
    return e.value


def test_good_model_loads(tmp_path):
    f = tmp_path / "good.onnx"
    f.write_bytes(_good_bytes())
    assert load_onnx(f).name == "bad" and load_onnx(str(f), name="mine").name == "mine"


def test_truncated_file(tmp_path):
    f = tmp_path / "truncated.onnx"
    f.write_bytes(_good_bytes()[:57])
    _one_line_error(ModelFileError, f, "truncated.onnx")


def test_random_bytes(tmp_path):
    f = tmp_path / "random.onnx"
    f.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _one_line_error(ModelFileError, f, "random.onnx")


def test_text_file(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_text("this is not a protobuf\n" * 20)
    _one_line_error(ModelFileError, f, "model.onnx")


def test_empty_file(tmp_path):
    f = tmp_path / "empty.onnx"
    f.write_bytes(b"")
    _one_line_error(ModelFileError, f, "empty.onnx", "empty")


def test_missing_file(tmp_path):
    _one_line_error(ModelFileError, tmp_path / "nope.onnx", "nope.onnx", "not found")


def test_directory(tmp_path):
    _one_line_error(ModelFileError, tmp_path, str(tmp_path), "not a file")


def test_random_bytes_object():
    _one_line_error(ModelFileError, b"\x08\x07garbage\xff\xff\xff", "<bytes>")


def test_checker_failure():
    m = _model([oh.make_node("Relu", ["undefined"], ["y"])])
    _one_line_error(ModelFileError, m, "invalid ONNX model")


def test_opset_out_of_range():
    top = onnx.defs.onnx_opset_version()
    _one_line_error(ModelFileError, _model([oh.make_node("Relu", ["x"], ["y"])], opset=top + 1), f"opset {top + 1}")


def test_op_version_not_implemented():
    """Relu-1 (opset 5) has the legacy consumed_inputs; the error names op, version and known versions."""
    m = _model([oh.make_node("Relu", ["x"], ["y"])], opset=5)
    _one_line_error(UnsupportedOperator, m, "Relu version 1 (opset 5)", "6, 13, 14")


def test_newest_opset_accepted():
    """The newest opset the installed onnx defines reads; Conv/Relu/Gemm mean the same since 13."""
    top = onnx.defs.onnx_opset_version()
    w = np.eye(4, dtype=np.float32)
    m = _model([oh.make_node("Gemm", ["x", "W"], ["h"]), oh.make_node("Relu", ["h"], ["y"])], opset=top, W=w)
    x = np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)
    np.testing.assert_array_equal(load_onnx(m).run(x).numpy(), np.maximum(x, 0))


def test_input_type_contradicts_op():
    """An int64 input into Gemm is caught by the checker's full (type-inferring) check."""
    m = _model([oh.make_node("Gemm", ["x", "W"], ["y"])], W=np.ones((4, 4), np.float32))
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    _one_line_error(ModelFileError, m, "invalid ONNX model", "Gemm")


def test_unsupported_op_deep_inside():
    nodes = [
        oh.make_node("MatMul", ["x", "W"], ["a"], name="fc1"),
        oh.make_node("Relu", ["a"], ["b"], name="relu1"),
        oh.make_node("Tanh", ["b"], ["c"], name="gate"),
        oh.make_node("Relu", ["c"], ["y"], name="relu2"),
    ]
    e = _one_line_error(
        UnsupportedOperator,
        _model(nodes, W=np.eye(4, dtype=np.float32)),
        "gate",
        "Tanh",
        "supported: ",
        "Conv",
        "Relu",
    )
    assert (e.node, e.op_type) == ("gate", "Tanh")


def test_sigmoid_inside_the_network():
    nodes = [
        oh.make_node("MatMul", ["x", "W"], ["a"], name="fc1"),
        oh.make_node("Sigmoid", ["a"], ["c"], name="gate"),
        oh.make_node("Relu", ["c"], ["y"], name="relu2"),
    ]
    e = _one_line_error(UnsupportedOperator, _model(nodes, W=np.eye(4, dtype=np.float32)), "gate (Sigmoid)",
                        "network output", "relu2 (Relu)")
    assert (e.node, e.op_type) == ("gate", "Sigmoid")


def test_unsupported_op_unnamed_gets_made_up_name():
    nodes = [oh.make_node("Relu", ["x"], ["a"]), oh.make_node("Tanh", ["a"], ["y"])]
    _one_line_error(UnsupportedOperator, _model(nodes), "Tanh_1 (Tanh)")


def test_two_inputs():
    nodes = [oh.make_node("Add", ["x", "z"], ["y"])]
    _one_line_error(
        GraphError, _model(nodes, inputs=(("x", ["N", 4]), ("z", ["N", 4]))), "x, z", "one graph input"
    )


def test_nan_weights():
    w = np.ones((4, 4), np.float32)
    w[1, 2] = np.nan
    _one_line_error(
        ModelFileError,
        _model([oh.make_node("MatMul", ["x", "fc.weight"], ["y"])], **{"fc.weight": w}),
        "fc.weight",
        "NaN",
    )


def test_inf_weights():
    w = np.ones((4, 4), np.float32)
    w[0, 0] = -np.inf
    _one_line_error(ModelFileError, _model([oh.make_node("MatMul", ["x", "W"], ["y"])], W=w), "'W'", "Inf")


def test_nan_in_constant_node():
    c = oh.make_node(
        "Constant",
        [],
        ["c"],
        name="k",
        value=numpy_helper.from_array(np.array([np.nan, 1, 2, 3], np.float32)),
    )
    _one_line_error(ModelFileError, _model([c, oh.make_node("Add", ["x", "c"], ["y"])]), "'c'", "k", "NaN")


def test_symbolic_non_batch_dim():
    m = _model(
        [oh.make_node("Relu", ["x"], ["y"])], inputs=(("x", ["N", "features"]),), out_shape=("N", "features")
    )
    _one_line_error(ShapeError, m, "x (Input)", "dim 1", "'features'")


def test_input_without_per_sample_dims():
    m = _model([oh.make_node("Relu", ["x"], ["y"])], inputs=(("x", ["N"]),), out_shape=("N",))
    _one_line_error(ShapeError, m, "x (Input)", "rank >= 2")


def test_clip_min_unbounded_runs_but_does_not_convert():
    """Clip without a floor is a Clamp: the ANN reference runs it, the conversion refuses it by name."""
    from snncompile.convert import convert
    from snncompile.errors import ConversionError

    nodes = [oh.make_node("Clip", ["x", "", "hi"], ["y"], name="cap")]
    g = load_onnx(_model(nodes, hi=np.float32(1)))
    x = np.array([[-3.0, 0.5, 2.0, 1.0]], np.float32)
    np.testing.assert_array_equal(g.run(x).numpy(), np.minimum(x, 1))
    with pytest.raises(ConversionError, match=r"cap \(Clamp\)"):
        convert(g, x, method="max", timesteps=2, progress=False)


def test_clip_min_above_max_old_opset_attribute():
    nodes = [oh.make_node("Clip", ["x"], ["y"], min=2.0, max=1.0)]
    _one_line_error(UnsupportedOperator, _model(nodes, opset=9), "Clip_0 (Clip)", "min=2.0 > max=1.0")


def test_output_is_constant():
    nodes = [oh.make_node("Relu", ["x"], ["h"]), oh.make_node("Identity", ["c"], ["y"])]
    _one_line_error(GraphError, _model(nodes, c=np.ones((1, 4), np.float32)), "y (Output)", "constant")


def test_every_truncation_is_a_one_line_error():
    good = _good_bytes()
    for i in range(len(good)):
        with pytest.raises(CompileError) as e:
            load_onnx(good[:i])
        assert "\n" not in str(e.value) and str(e.value).startswith("<bytes>"), str(e.value)
