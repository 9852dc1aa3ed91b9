"""Mutation fuzzing of the example models: whatever is wrong with a model, snncompile either compiles
it or raises a :class:`~snncompile.errors.CompileError` with a one-line message, never another
exception type.

A case is an example model with a few mutations drawn by hypothesis, on the protobuf (op types,
attribute values, tensor dims, initializer values including NaN/Inf/huge, dropped nodes and inputs,
duplicated or swapped nodes, opset, element types) and on the serialized bytes (bit flips,
overwrites, truncation, insertions). Each case is imported, converted (T = 2, three samples),
simulated, and on the small models also lowered, quantized and run on the fixed-point simulator,
all in-process. ``make fuzz`` (``benchmarks/fuzz.py``) runs thousands of cases with these strategies.
"""

from __future__ import annotations

import math
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import AttributeProto, TensorProto, numpy_helper

import snncompile
from snncompile.convert import convert
from snncompile.errors import CompileError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MAX_INPUT = 4096  # valid mutants with larger per-sample inputs are only imported (keeps a case fast)
INTS = (0, 1, -1, 2, 3, 5, -7, 64, 2**31 - 1, -(2**31), 2**40)
FLOATS = (0.0, 1.0, -1.0, 0.5, 6.0, 1e-38, 1e38, 3.4e38, math.nan, math.inf, -math.inf)
# fmt: off
OPS = ("Relu", "Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Sum", "Flatten", "Reshape", "Transpose",
       "Squeeze", "Unsqueeze", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization",
       "Clip", "Identity", "Dropout", "Shape", "Constant", "Sigmoid", "Softmax", "LeakyRelu", "Gather",
       "Slice", "Pad", "Cast", "ConvTranspose", "Loop", "If", "Resize", "Neg")
ATTR_NAMES = ("axis", "group", "strides", "pads", "kernel_shape", "dilations", "transA", "transB", "alpha",
              "beta", "ceil_mode", "auto_pad", "perm", "epsilon", "count_include_pad", "bogus")
# fmt: on
STRINGS = (b"NOTSET", b"SAME_UPPER", b"SAME_LOWER", b"VALID", b"bogus", b"")


@cache
def base_model(name: str) -> bytes:
    return (EXAMPLES / f"mnist_{name}.onnx").read_bytes()


# ---- mutations: each takes the model and the hypothesis data object, returns a description ---------
def _node(m, data) -> onnx.NodeProto | None:
    return m.graph.node[data.draw(st.integers(0, len(m.graph.node) - 1))] if m.graph.node else None


def mut_op_type(m, data) -> str:
    n = _node(m, data)
    if n is None:
        return "no node"
    n.op_type = data.draw(st.sampled_from(OPS))
    return f"{n.name}: op_type -> {n.op_type}"


def _new_ints(old: list[int], data) -> list[int]:
    how = data.draw(st.sampled_from(("set", "shorter", "longer", "empty")))
    if how == "set" and old:
        old[data.draw(st.integers(0, len(old) - 1))] = data.draw(st.sampled_from(INTS))
    elif how == "shorter":
        old = old[:-1]
    elif how == "longer":
        old = [*old, data.draw(st.sampled_from(INTS))]
    else:
        old = []
    return old


def mut_attribute(m, data) -> str:
    attrs = [a for n in m.graph.node for a in n.attribute]
    if not attrs:
        return "no attribute"
    a = attrs[data.draw(st.integers(0, len(attrs) - 1))]
    if a.type == AttributeProto.INT:
        a.i = data.draw(st.sampled_from(INTS))
    elif a.type == AttributeProto.FLOAT:
        a.f = data.draw(st.sampled_from(FLOATS))
    elif a.type == AttributeProto.INTS:
        new = _new_ints(list(a.ints), data)
        del a.ints[:]
        a.ints.extend(new)
    elif a.type == AttributeProto.STRING:
        a.s = data.draw(st.sampled_from(STRINGS))
    return f"attribute {a.name} -> {onnx.helper.get_attribute_value(a)}"


def mut_add_attribute(m, data) -> str:
    n = _node(m, data)
    if n is None:
        return "no node"
    name = data.draw(st.sampled_from(ATTR_NAMES))
    value = data.draw(
        st.one_of(
            st.sampled_from(INTS),
            st.sampled_from(FLOATS),
            st.lists(st.sampled_from(INTS), max_size=4),
            st.sampled_from(STRINGS),
        )
    )
    for a in [a for a in n.attribute if a.name == name]:
        n.attribute.remove(a)
    n.attribute.append(
        onnx.helper.make_attribute(name, value)
        if value != []
        else onnx.helper.make_attribute(name, [], attr_type=AttributeProto.INTS)
    )
    return f"{n.name}: attribute {name}={value}"


def _initializer(m, data) -> onnx.TensorProto | None:
    inits = m.graph.initializer
    return inits[data.draw(st.integers(0, len(inits) - 1))] if inits else None


def mut_initializer_values(m, data) -> str:
    t = _initializer(m, data)
    if t is None:
        return "no initializer"
    try:
        a = numpy_helper.to_array(t).copy()
    except ValueError:  # dims or data_type broken by an earlier mutation
        return f"initializer {t.name}: unreadable"
    how = data.draw(st.sampled_from(("poke", "scale", "reshape", "transpose")))
    if how == "poke" and a.size:
        v = data.draw(st.sampled_from(FLOATS if a.dtype.kind == "f" else INTS[:6]))
        a.reshape(-1)[data.draw(st.integers(0, a.size - 1))] = v
    elif how == "scale" and a.dtype.kind == "f":
        with np.errstate(all="ignore"):
            a = (a * data.draw(st.sampled_from((0.0, -1.0, 1e-30, 1e6, 1e30)))).astype(a.dtype)
    elif how == "reshape":
        a = a.reshape(*a.shape, 1) if data.draw(st.booleans()) else a.reshape(-1)
    elif how == "transpose":
        a = np.ascontiguousarray(a.T)
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    return f"initializer {t.name}: {how}"


def mut_dims(m, data) -> str:
    """Dims without data: an initializer's (now inconsistent) or the graph input's."""
    if data.draw(st.booleans()) and m.graph.initializer:
        t = _initializer(m, data)
        new = _new_ints(list(t.dims), data)
        del t.dims[:]
        t.dims.extend(d % 100 for d in new)
        return f"initializer {t.name}: dims -> {list(t.dims)}"
    dims = m.graph.input[0].type.tensor_type.shape.dim
    i = data.draw(st.integers(0, len(dims)))
    how = data.draw(st.sampled_from(("value", "symbol", "drop", "append")))
    if how == "append" or i == len(dims):
        dims.add().dim_value = data.draw(st.integers(1, 3))
    elif how == "drop":
        del dims[i]
    elif how == "symbol":
        dims[i].dim_param = data.draw(st.sampled_from(("batch", "C", "")))
    else:
        dims[i].dim_value = data.draw(st.sampled_from((0, 1, 2, 3, 14, 27, 29, 56)))
    return f"input dims {how} {i}"


def mut_element_type(m, data) -> str:
    t = data.draw(
        st.sampled_from(
            (
                TensorProto.DOUBLE,
                TensorProto.FLOAT16,
                TensorProto.INT64,
                TensorProto.INT8,
                TensorProto.STRING,
                TensorProto.BOOL,
            )
        )
    )
    if data.draw(st.booleans()) and m.graph.initializer:
        init = _initializer(m, data)
        init.data_type = t
        return f"initializer {init.name}: data_type -> {t}"
    m.graph.input[0].type.tensor_type.elem_type = t
    return f"input elem_type -> {t}"


def mut_drop_node(m, data) -> str:
    n = _node(m, data)
    if n is None:
        return "no node"
    m.graph.node.remove(n)
    return f"dropped {n.name}"


def mut_edges(m, data) -> str:
    n = _node(m, data)
    if n is None or not n.input:
        return "no input"
    j = data.draw(st.integers(0, len(n.input) - 1))
    how = data.draw(st.sampled_from(("drop", "rewire", "empty", "dangling")))
    if how == "drop":
        del n.input[j]
    elif how == "empty":
        n.input[j] = ""
    elif how == "dangling":
        n.input[j] = "no_such_tensor"
    else:
        names = [o for k in m.graph.node for o in k.output] + [t.name for t in m.graph.initializer]
        n.input[j] = data.draw(st.sampled_from(names))
    return f"{n.name}: input {j} {how}"


def mut_reorder(m, data) -> str:
    nodes = m.graph.node
    if len(nodes) < 2:
        return "too few nodes"
    i, j = data.draw(st.integers(0, len(nodes) - 1)), data.draw(st.integers(0, len(nodes) - 1))
    if data.draw(st.booleans()):  # duplicate node i (two producers of one tensor)
        nodes.add().CopyFrom(nodes[i])
        return f"duplicated node {i}"
    a = onnx.NodeProto()
    a.CopyFrom(nodes[i])
    nodes[i].CopyFrom(nodes[j])
    nodes[j].CopyFrom(a)
    return f"swapped nodes {i}, {j}"


def mut_opset(m, data) -> str:
    m.opset_import[0].version = data.draw(st.integers(1, 25))
    return f"opset {m.opset_import[0].version}"


# Structural mutations nearly always end at the ONNX checker (ModelFileError); the value mutations that
# keep a model valid come twice as often so that more cases reach conversion, quantization and simulation.
VALUE_MUTATIONS = (mut_op_type, mut_attribute, mut_add_attribute, mut_initializer_values)
PROTO_MUTATIONS = (
    *VALUE_MUTATIONS,
    *VALUE_MUTATIONS,
    mut_dims,
    mut_element_type,
    mut_drop_node,
    mut_edges,
    mut_reorder,
    mut_opset,
)


def mutate_bytes(b: bytes, data) -> tuple[bytes, str]:
    b = bytearray(b)
    i = data.draw(st.integers(0, len(b) - 1))
    how = data.draw(st.sampled_from(("flip", "overwrite", "truncate", "insert")))
    if how == "flip":
        b[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "overwrite":
        chunk = data.draw(st.binary(min_size=1, max_size=16))
        b[i : i + len(chunk)] = chunk
    elif how == "truncate":
        del b[i:]
    else:
        b[i:i] = data.draw(st.binary(min_size=1, max_size=16))
    return bytes(b), f"bytes {how} at {i}"


def mutant(data, models: tuple[str, ...]) -> tuple[bytes, list[str]]:
    """Draw an example model and 1-3 mutations (the last one may be on the serialized bytes)."""
    name = data.draw(st.sampled_from(models))
    m = onnx.load_from_string(base_model(name))
    log = [name]
    for _ in range(data.draw(st.integers(1, 3))):
        log.append(data.draw(st.sampled_from(PROTO_MUTATIONS))(m, data))
    b = m.SerializeToString()
    if data.draw(st.integers(0, 4)) == 0:
        b, what = mutate_bytes(b, data)
        log.append(what)
    return b, log


# ---- what a case runs --------------------------------------------------------------------------------
def exercise(model: bytes, *, integer: bool = True) -> str:
    """Import, convert, simulate (with ``integer`` also lower, quantize, run fixed point); 'ok' or raises."""
    from snncompile.lower import lower_populations
    from snncompile.quantize import quantize
    from snncompile.sim.popsim import simulate_populations

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = snncompile.load_onnx(model)
        shape = g.shapes[g.input.name]
        if math.prod(shape) > MAX_INPUT:
            return "imported (input too large to simulate)"
        x = np.random.default_rng(0).random((3, *shape), dtype=np.float32)
        snn = convert(g, x, method="max", timesteps=2, progress=False)
        snncompile.simulate(snn, x, 2)
        if integer:
            simulate_populations(quantize(lower_populations(snn), x), x, 2)
    return "ok"


def outcome(model: bytes, *, integer: bool = True) -> str:
    """'ok', or the CompileError subclass name; any other exception propagates."""
    try:
        return exercise(model, integer=integer)
    except CompileError as e:
        msg = str(e)
        assert msg and "\n" not in msg and len(msg) < 1000, (
            f"{type(e).__name__} message not one line: {msg!r}"
        )
        return type(e).__name__


# The MLP runs the whole path (its integer lowering is fast); the residual CNN stops at the float simulator
# (lowering a CNN probes every convolution: about a second) - ``make fuzz`` runs the integer path on both.
@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_mutated_models_compile_or_fail_cleanly(data):
    model, log = mutant(data, ("mlp", "resnet"))
    outcome(model, integer=log[0] == "mlp")


@pytest.mark.parametrize("name", ["mlp", "resnet", "concat"])
def test_unmutated_examples_pass_the_harness(name):
    assert exercise(base_model(name), integer=name == "mlp") == "ok"
