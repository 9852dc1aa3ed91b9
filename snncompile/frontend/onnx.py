"""ONNX -> snncompile IR (:class:`~snncompile.ir.Graph`), every opset the installed onnx defines.

The model is read with ``onnx.load``, validated with ``onnx.checker.check_model`` and, once its
input is known to be (batch, concrete dims), with ``full_check=True`` (strict type and shape
inference: an int64 input into a Gemm is a one-line ModelFileError), and its nodes visited in (the
required) topological order. Each node's schema is resolved at the model's opset (``onnx.defs.get_schema(op, opset).since_version``); an importer
lists in ``VERSIONS`` the versions of its op whose meaning it implements, and any other version is
refused naming the op, the version and the known versions (e.g. the legacy ``broadcast`` attribute
of Add-6, or the ``consumed_inputs`` of Relu-1). A node whose inputs are all constants (initializers,
``Constant`` outputs, earlier folds, or ``Shape`` of an activation) is evaluated with
``onnx.reference`` and its outputs become constants, whatever its op. Every other node goes through
a table of importers named as the ONNX op (``onnx_ops``, ``onnx_elementwise``, ``onnx_shape_ops``):

====================  =====================================================================
ONNX op               IR
====================  =====================================================================
Conv                  Conv2d (2-D only; pads, auto_pad, strides, dilations, group, bias)
Gemm                  Linear, weight ``alpha * B^T`` (transB=0) or ``alpha * B``, bias ``beta * C``
MatMul                Linear (constant 2-D right operand), bias 0; a 1-D or stacked (broadcasting)
                      constant: Flatten -> Linear (the map's matrix) -> Reshape
Relu                  ReLU
Clip                  ReLU(max_value=max, source_op="Clip") when min = 0; another finite min:
                      BatchNorm(+ -min) -> ReLU(max - min) -> BatchNorm(+ min); min=-inf: Clamp
                      (ANN only, unless in a QCFS chain)
BatchNormalization    folded into the producing Conv/Linear/BatchNorm if it is the sole
                      consumer, else BatchNorm (scale = gamma/sqrt(var+eps), shift = beta - mean*scale)
Add / Sub / Mul / Div  two equal-shape activations: Add. Activation and constant: folded into the
                      producer's weights/bias like BN, else a per-channel BatchNorm, else (per
                      neuron) Flatten -> BatchNorm -> Reshape; a constant spanning the batch refused
Sum                   Add (equal shapes)
AveragePool           AvgPool2d (dilations, pads, auto_pad, count_include_pad); ceil_mode via end
                      padding the divisor never counts; 1-D: on (C, 1, L); 3-D (separable box):
                      over (H, W) on (C*D, H, W), then over depth on (C, D, H'*W')
MaxPool               MaxPool2d (pad -inf; dilations; 1-D and 3-D as above); a used Indices output
                      refused; for both pools, explicit pads not below the kernel refused
                      (onnxruntime's rule: a window could lie wholly in the padding)
GlobalAveragePool     GlobalAvgPool
Concat                Concat (axis - 1); the batch axis refused
Flatten, Reshape      Flatten (1-D result) or Reshape; must keep the batch axis first
Squeeze, Unsqueeze    Reshape; the batch axis stays first
Transpose             a Reshape when no data moves (size-1 axes); else a view (``Act.index``):
                      folded into a following Gemm/MatMul's columns, passed through elementwise
                      ops, cancelled by an inverse Transpose; on the network input, the Input's
                      source layout (``Input.source_perm``: the data is reordered as it enters),
                      also behind elementwise affine maps (their constants' axes permuted alike);
                      otherwise a Permute node
Softmax, LogSoftmax,  Softmax/LogSoftmax/Sigmoid, only on the network output (they keep the
Sigmoid               argmax; conversion drops them); feeding anything else is refused
DequantizeLinear      of a constant: folded exactly, ``(w - zp) * s`` (per tensor, per axis or
                      blocked); after a matching QuantizeLinear (its sole consumer): the pair is one
                      QuantClip (quantized clipped ReLU, round half to even, saturation; per channel
                      for a per-axis quantizer); else ``(x - zp) * s``
QuantizeLinear        Quantize (integer output; ANN reference only unless dequantized); per tensor,
                      per axis (per channel, or per neuron along another axis) or blocked; the
                      batch axis refused
Floor                 Floor (ANN reference only); QCFS chains around it become a QuantClip
                      (:mod:`snncompile.frontend.quant_chains`)
Identity, Dropout     removed (inference)
Shape                 a constant: the per-sample shape, the batch dim tracked symbolically
Constant              a constant
====================  =====================================================================

The one graph input must be (batch, *per_sample) with concrete per-sample dims; the batch dim may
be symbolic or of any size. A Reshape target computed from ``Shape`` is evaluated for two trial
batch sizes to check that the batch axis is kept. Errors are one line naming the file or the node.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
import os
import warnings
from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from snncompile.errors import GraphError, ModelFileError, ShapeError, UnsupportedOperator
from snncompile.frontend.onnx_build import Act, Builder, ONode, Sym, along, collapse
from snncompile.frontend.onnx_elementwise import ELEMENTWISE_OPS
from snncompile.frontend.onnx_ops import LAYER_OPS
from snncompile.frontend.onnx_quant import CONST_FOLDS, QUANT_OPS
from snncompile.frontend.onnx_shape_ops import SHAPE_OPS
from snncompile.frontend.quant_chains import recognize_qcfs
from snncompile.ir import (
    PROBABILITY_OUTPUTS,
    BatchNorm,
    Flatten,
    Graph,
    Input,
    Output,
    Permute,
    Reshape,
    Shape,
)
from snncompile.ir.arrays import expand

__all__ = ["OPSETS", "SUPPORTED_OPS", "VERSIONS", "load_onnx"]

OPS = {**LAYER_OPS, **ELEMENTWISE_OPS, **SHAPE_OPS, **QUANT_OPS}
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted({*OPS, "Constant"}))
OPSETS = range(1, onnx.defs.onnx_opset_version() + 1)
_BINARY = (7, 13, 14)  # 1 and 6 broadcast only with the legacy broadcast/axis attributes
_NEWER_TYPES = (21, 23, 24, 25)  # versions that only added element types (int4, float8, ...)
# The versions of each op (its schemas' since_version) whose meaning the importer implements.
VERSIONS: dict[str, tuple[int, ...]] = {
    "Add": _BINARY,
    "Sub": _BINARY,
    "Mul": _BINARY,
    "Div": _BINARY,
    "Sum": (6, 8, 13),
    "AveragePool": (7, 10, 11, 19, 22),
    "BatchNormalization": (7, 9, 14, 15),
    "Clip": (6, 11, 12, 13),
    "Concat": (4, 11, 13),
    "Conv": (1, 11, 22),
    "Dropout": (7, 10, 12, 13, 22),
    "Flatten": (1, 9, 11, 13, *_NEWER_TYPES),
    "Gemm": (7, 9, 11, 13),
    "GlobalAveragePool": (1, 22),
    "Identity": (1, 13, 14, 16, 19, *_NEWER_TYPES),
    "MatMul": (1, 9, 13),
    "MaxPool": (1, 8, 10, 11, 12, 22),
    "Relu": (6, 13, 14),
    "Reshape": (5, 13, 14, 19, *_NEWER_TYPES),
    "Shape": (1, 13, 15, 19, *_NEWER_TYPES),
    "Squeeze": (1, 11, 13, *_NEWER_TYPES),
    "Transpose": (1, 13, *_NEWER_TYPES),
    "Unsqueeze": (1, 11, 13, *_NEWER_TYPES),
    "Softmax": (1, 11, 13),
    "LogSoftmax": (1, 11, 13),
    "Sigmoid": (6, 13),
    "QuantizeLinear": (10, 13, 19, 21, 23, 24, 25, 28),
    "DequantizeLinear": (10, 13, 19, 21, 23, 24, 25, 28),
    "Floor": (6, 13),
}
_TRIAL_BATCHES = (2, 3)  # stand-ins for a symbolic batch size when folding Shape-derived constants
_VIEW_AWARE = {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Gemm", "MatMul",
               "Shape"}
_AFFINE = {"Add", "Sub", "Mul", "Div"}  # their constant operands are rearranged for a view
_QUANT = {"QuantizeLinear", "DequantizeLinear"}  # elementwise for a per-tensor scale
_ELEMENTWISE = {"Relu", "Clip", "Sum", "Floor", *_QUANT, *_AFFINE}
_RANDOM = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}


def load_onnx(model: str | os.PathLike | bytes | onnx.ModelProto, *, name: str | None = None) -> Graph:
    """Import an ONNX model (a path, serialized bytes or a ModelProto) as an IR graph."""
    proto, src = _read(model)
    opset = _opset(proto, src)
    g = proto.graph
    consts = {t.name: _initializer(t, src) for t in g.initializer}
    x = _single_input(g, consts, src)
    shape, batches = _input_shape(x)
    _check(proto, src, full=True)  # after the clearer input checks: type/shape contradictions
    uses = Counter(t for nd in g.node for t in nd.input if t) + Counter(o.name for o in g.output)
    b = Builder(uses, batches)
    b.values.update(consts)
    taken: set[str] = set()
    b.add(Input(_fresh(x.name, taken), (), shape=shape), x.name)
    counts = Counter(nd.name for nd in g.node)
    for i, nd in enumerate(g.node):
        base = nd.name if nd.name and counts[nd.name] == 1 else f"{nd.op_type}_{i}"
        n = ONode(nd.name or f"{nd.op_type}_{i}", _fresh(base, taken), nd.op_type)
        _visit(b, nd, n, opset, src)
    outs = []
    if len(g.output) > 1:
        names = ", ".join(f"'{o.name}'" for o in g.output)
        warnings.warn(f"{g.output[0].name} (Output): the model has {len(g.output)} outputs ({names}); snncompile "
                      f"compiles the first and drops the others with the nodes only they need", stacklevel=2)
    for o in g.output[:1]:
        v = b.values.get(o.name)
        if not isinstance(v, Act):
            raise GraphError(
                f"{o.name} (Output): the graph output is a constant, not computed from the input"
            )
        outs.append(Output(_fresh(o.name, taken), (b.materialize(v).name,)))
    _check_finite(b, src)
    stem = os.path.splitext(os.path.basename(src))[0] if not src.startswith("<") else ""
    nodes = _fold_input_layout(_needed([*b.nodes.values(), *outs]))
    return recognize_qcfs(Graph(nodes, name or g.name or stem or "graph"))


def _fold_input_layout(nodes: list) -> list:
    """Move a data-moving Transpose on the network input into the Input as its source layout.

    When the input's only path is a Permute (a materialized Transpose, e.g. tf2onnx's NHWC -> NCHW
    before the first Conv), possibly behind elementwise affine maps in the source layout (BatchNorms,
    with the Flatten/Reshape around a per-neuron one: Keras' Rescaling, or a Normalization/Mul/Add by
    a per-channel constant of shape (C,) on the NHWC tensor), and the Permute is an axis permutation of
    the input (then any reshape), the Input takes the permuted shape and declares the permutation
    (``Input.source_shape``/``source_perm``): the data is reordered once as it enters instead of by a
    Permute node every pass, which would also make the first layer a dense connection when lowered.
    Each affine map moves through the permutation with its constants' axes permuted alike (element
    ``k`` of the source is element ``index^-1(k)`` of the network's layout): a BatchNorm over the
    network's channels when they vary only along it (an NHWC per-channel constant, a per-tensor one),
    else Flatten -> BatchNorm per element -> Reshape. Anything else is left as it is.
    """
    users: dict[str, list] = {}
    for n in nodes:
        for i in n.inputs:
            users.setdefault(i, []).append(n)
    inp = next(n for n in nodes if isinstance(n, Input))
    chain, cur = [], inp
    while True:
        nxt = users.get(cur.name, [])
        if len(nxt) != 1:
            return nodes
        cur = nxt[0]
        if isinstance(cur, Permute):
            break
        if not isinstance(cur, (BatchNorm, Flatten, Reshape)):  # elementwise affine maps and flat-order reshapes
            return nodes
        chain.append(cur)
    perm = _axis_perm(cur.index, inp.shape)
    if perm is None:
        return nodes
    shape = tuple(int(d) for d in cur.index.shape)
    moved, last = _affines_in_layout(chain, tuple(inp.shape), cur.index, inp.name, {n.name for n in nodes})
    out = []
    for n in nodes:
        if n is inp:
            out.append(dataclasses.replace(inp, shape=shape, source_shape=tuple(inp.shape), source_perm=perm))
            out.extend(moved)
            continue
        if n is cur or n in chain:
            continue
        if cur.name in n.inputs:
            n = dataclasses.replace(n, inputs=tuple(last if i == cur.name else i for i in n.inputs))
        out.append(n)
    return out


def _affines_in_layout(chain: list, src_shape: Shape, index: np.ndarray, first: str,
                       taken: set[str]) -> tuple[list, str]:
    """The BatchNorms of ``chain`` (elementwise on the source's flat order) as nodes on the network's
    layout ``flat(source)[index]``, fed from ``first``; returns (nodes, name of the last)."""
    shape = tuple(int(d) for d in index.shape)
    out, prev, in_shape = [], first, src_shape
    for n in chain:
        out_shape = tuple(n.infer_shape(in_shape))
        if isinstance(n, BatchNorm):  # its constants per source element, then gathered into the network layout
            scale, shift = (expand(v, in_shape, None).reshape(-1)[index] for v in (n.scale, n.shift))
            s, h = along(scale, shape, 0), along(shift, shape, 0)
            if s is not None and h is not None:
                out.append(dataclasses.replace(n, inputs=(prev,), scale=s.astype(n.scale.dtype),
                                               shift=h.astype(n.shift.dtype)))
            else:
                flat, back = _fresh(f"{n.name}.flatten", taken), _fresh(f"{n.name}.reshape", taken)
                out += [Flatten(flat, (prev,)),
                        dataclasses.replace(n, inputs=(flat,), scale=scale.reshape(-1).astype(n.scale.dtype),
                                            shift=shift.reshape(-1).astype(n.shift.dtype)),
                        Reshape(back, (n.name,), shape=shape)]
            prev = out[-1].name
        in_shape = out_shape
    return out, prev


def _axis_perm(index: np.ndarray, shape: Shape) -> tuple[int, ...] | None:
    """The axis permutation p with ``index == arange.reshape(shape).transpose(p)`` (then reshaped), or None."""
    if len(shape) > 6:
        return None
    flat = np.arange(math.prod(shape)).reshape(shape)
    for p in itertools.permutations(range(len(shape))):
        if p != tuple(range(len(shape))) and np.array_equal(flat.transpose(p).reshape(-1), index.reshape(-1)):
            return p
    return None


def _needed(nodes: list) -> list:
    """The nodes the output depends on (and the input): what an unused second output needed is dropped."""
    by_name = {n.name: n for n in nodes}
    keep, todo = set(), [n.name for n in nodes if isinstance(n, (Output, Input))]
    while todo:
        k = todo.pop()
        if k not in keep and k in by_name:
            keep.add(k)
            todo.extend(by_name[k].inputs)
    return [n for n in nodes if n.name in keep]


def _oneline(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 240 else text[:237] + "..."


def _read(model) -> tuple[onnx.ModelProto, str]:
    """Parse and check the model; every failure is a one-line ModelFileError naming the source."""
    if isinstance(model, onnx.ModelProto):
        proto, src = model, f"<ModelProto {model.graph.name or 'unnamed'}>"
    else:
        src = "<bytes>" if isinstance(model, (bytes, bytearray, memoryview)) else os.fspath(model)
        if src != "<bytes>" and not os.path.isfile(src):
            raise ModelFileError(f"{src}: " + ("not a file" if os.path.exists(src) else "file not found"))
        if (len(model) if src == "<bytes>" else os.path.getsize(src)) == 0:
            raise ModelFileError(f"{src}: the file is empty, not an ONNX model")
        try:
            proto = onnx.load_from_string(bytes(model)) if src == "<bytes>" else onnx.load(src)
        except Exception as e:  # noqa: BLE001 - protobuf and file errors come in many types; all mean "unreadable"
            raise ModelFileError(f"{src}: not a readable ONNX model ({_oneline(e)})") from None
    _check(proto, src, full=False)
    return proto, src


def _check(proto: onnx.ModelProto, src: str, *, full: bool) -> None:
    """``onnx.checker`` (``full``: with strict type and shape inference); failures are one line."""
    try:
        onnx.checker.check_model(proto, full_check=full)
    except Exception as e:  # noqa: BLE001 - ValidationError, or a C++ error for protos too broken to validate
        raise ModelFileError(f"{src}: invalid ONNX model ({_oneline(e)})") from None


def _opset(proto: onnx.ModelProto, src: str) -> int:
    v = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if v not in OPSETS:
        raise ModelFileError(
            f"{src}: opset {v} unsupported; the installed onnx defines opsets {OPSETS[0]} to {OPSETS[-1]}"
        )
    return v


def _finite(arr: np.ndarray, what: str, src: str) -> np.ndarray:
    """NaN anywhere, or Inf in a tensor of more than one element (a weight), is a broken model.

    A single infinite value is a legitimate bound (e.g. the max of a Clip)."""
    if np.issubdtype(arr.dtype, np.floating) and (
        np.isnan(arr).any() or (arr.size > 1 and np.isinf(arr).any())
    ):
        raise ModelFileError(f"{src}: {what} contains NaN or Inf values")
    return arr


def _initializer(t: onnx.TensorProto, src: str) -> np.ndarray:
    """An initializer as an array; data that does not fit its dims or type is a broken model."""
    try:
        arr = numpy_helper.to_array(t)
    except Exception as e:  # noqa: BLE001 - numpy_helper raises ValueError, TypeError, ... on bad data
        raise ModelFileError(
            f"{src}: initializer '{t.name}' (dims {list(t.dims)}) is unreadable ({_oneline(e)})"
        ) from None
    return _finite(arr, f"initializer '{t.name}'", src)


def _check_finite(b: Builder, src: str) -> None:
    """Finite initializers can still fold into NaN/Inf parameters (Gemm alpha=inf, BN var < -eps)."""
    for node in b.nodes.values():
        for f in dataclasses.fields(node):
            v = getattr(node, f.name)
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and not np.isfinite(v).all():
                raise ModelFileError(
                    f"{src}: {node.name} ({node.op}): {f.name} contains NaN or Inf after folding the "
                    "model's constants and attributes"
                )


def _single_input(g: onnx.GraphProto, consts: dict, src: str) -> onnx.ValueInfoProto:
    real = [v for v in g.input if v.name not in consts]  # old opsets also list initializers as inputs
    if len(real) != 1:
        names = ", ".join(v.name for v in real) or "none"
        raise GraphError(f"{src}: expected exactly one graph input, got {len(real)} ({names})")
    return real[0]


def _input_shape(v: onnx.ValueInfoProto) -> tuple[Shape, tuple[int, ...]]:
    """Per-sample shape and the batch sizes to try: the declared one, or two trial sizes if dynamic."""
    tt = v.type.tensor_type
    if not v.type.HasField("tensor_type") or not tt.HasField("shape") or len(tt.shape.dim) < 2:
        raise ShapeError(f"{v.name} (Input): expected a tensor of shape (batch, ...) with known rank >= 2")
    dims = tt.shape.dim
    for i, d in enumerate(dims[1:], 1):
        if not d.HasField("dim_value") or d.dim_value < 1:
            got = (
                repr(d.dim_param)
                if d.HasField("dim_param")
                else "unknown"
                if not d.HasField("dim_value")
                else d.dim_value
            )
            raise ShapeError(
                f"{v.name} (Input): dim {i} is {got}; per-sample dims must be concrete positive ints"
            )
    batch = dims[0].dim_value if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else 0
    return tuple(d.dim_value for d in dims[1:]), (batch,) if batch else _TRIAL_BATCHES


def _fresh(base: str, taken: set[str]) -> str:
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _attr(a: onnx.AttributeProto):
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    return v


def _visit(b: Builder, nd: onnx.NodeProto, n: ONode, opset: int, src: str) -> None:
    """Import one ONNX node: fold it when all its inputs are constant, else use the op table."""
    if nd.domain not in ("", "ai.onnx"):
        raise UnsupportedOperator(n.label, n.op, f"domain '{nd.domain}' unsupported", SUPPORTED_OPS)
    missing = [t for t in nd.input if t and t not in b.values]
    if missing:
        raise GraphError(f"{n.label} ({n.op}): input '{missing[0]}' is not produced by any node")
    vals = [b.values[t] if t else None for t in nd.input]
    if not any(isinstance(v, Act) for v in vals) and nd.op_type not in _RANDOM:
        for out, v in _fold(nd, vals, n, opset).items():
            b.values[out] = (
                _finite(v, f"constant '{out}' of {n.label}", src) if nd.op_type == "Constant" else v
            )
        return
    fn = OPS.get(nd.op_type)
    if fn is None:
        raise UnsupportedOperator(n.label, n.op, f"operator not supported (opset {opset})", SUPPORTED_OPS)
    n = dataclasses.replace(n, version=_check_version(n, opset))
    _probability_feeds(b, n, vals)
    attrs = {a.name: _attr(a) for a in nd.attribute}
    known = inspect.signature(fn).parameters
    for k in attrs:
        if k not in known:
            raise n.fail(f"attribute '{k}' unsupported")
    for i, out in enumerate(nd.output[1:], 1):
        if out and b.uses[out]:
            raise n.fail(f"output {i} ('{out}') is used; only the first output converts")
    vals, index = _views(b, nd.op_type, vals)
    r = fn(b, n, *vals, **attrs)
    if isinstance(r, Act):
        b.alias(nd.output[0], r if index is None else Act(r.name, index.shape, index))
    elif isinstance(r, (np.ndarray, Sym)):
        b.values[nd.output[0]] = r
    else:
        act = b.add(r, nd.output[0])
        if index is not None:
            b.values[nd.output[0]] = Act(act.name, index.shape, index)


def _views(b: Builder, op: str, vals: list) -> tuple[list, np.ndarray | None]:
    """Inputs for the importer of ``op`` when some are views (reorderings not yet materialized).

    Elementwise ops whose activation inputs share one view run on the underlying node outputs (their
    constants rearranged alike) and the view is returned, to be put back on the result; view-aware
    ops (reshapes, Transpose, Gemm, MatMul) get the views; every other op gets them materialized.
    """
    acts = [v for v in vals if isinstance(v, Act)]
    if not any(a.index is not None for a in acts) or op in _VIEW_AWARE:
        return vals, None
    first = acts[0]
    same = all(
        a.index is not None and b.shapes[a.name] == b.shapes[first.name] and np.array_equal(a.index, first.index)
        for a in acts
    )
    per_axis = op in _QUANT and any(isinstance(v, np.ndarray) and v.size > 1 for v in vals[1:])
    if op not in _ELEMENTWISE or not same or per_axis:
        return [b.materialize(v) if isinstance(v, Act) else v for v in vals], None
    remap = op in _AFFINE
    out = [
        b.phys(v) if isinstance(v, Act) else b.to_phys(first, v) if remap and isinstance(v, np.ndarray) else v
        for v in vals
    ]
    return out, first.index


def _probability_feeds(b: Builder, n: ONode, vals: list) -> None:
    """Softmax/LogSoftmax/Sigmoid keep the argmax only on the network output: refuse any other use."""
    if n.op in ("Identity", "Dropout"):
        return
    for v in vals:
        node = b.nodes.get(v.name) if isinstance(v, Act) else None
        if isinstance(node, PROBABILITY_OUTPUTS):
            raise UnsupportedOperator(
                node.name, node.op, f"only converts on the network output (where it keeps the argmax), but it "
                f"feeds {n.label} ({n.op}); a spiking network cannot compute it inside the network"
            )


def _check_version(n: ONode, opset: int) -> int:
    """The op's schema at ``opset`` must be a version whose meaning the importer implements."""
    try:
        since = onnx.defs.get_schema(n.op, opset).since_version
    except onnx.defs.SchemaError:
        raise n.fail(f"not defined at opset {opset}") from None
    known = VERSIONS.get(n.op, ())
    if since not in known:
        raise n.fail(
            f"{n.op} version {since} (opset {opset}) unsupported; implemented versions "
            + ", ".join(map(str, known))
        )
    return since


FOLD_LIMIT = 1 << 30  # bytes: the largest tensor constant folding may create (docs/robustness.md)
_CONTROL_FLOW = ("Loop", "Scan", "If", "SequenceMap")


def _fold_bounds(nd: onnx.NodeProto, vals: list, n: ONode, opset: int) -> None:
    """Refuse, before any work, a fold that would run a subgraph or create a tensor over FOLD_LIMIT.

    Output shapes come from onnx's shape inference with the constant inputs' values (data
    propagation); the ops whose output size is set by an input's values (ConstantOfShape, Expand,
    Tile, Range) are also sized from those values directly."""
    graphs = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    if nd.op_type in _CONTROL_FLOW or any(a.type in graphs for a in nd.attribute):
        raise UnsupportedOperator(n.label, n.op, "control flow (a subgraph) cannot run as a spiking network and "
                                  "is not evaluated, not even on constants", SUPPORTED_OPS)
    arrays = [v.vals[0] if isinstance(v, Sym) else v for v in vals]
    sizes = [_expanding_size(nd.op_type, arrays)]
    try:
        small = {t: a for t, a in zip(nd.input, arrays) if t and isinstance(a, np.ndarray) and a.size <= 64}
        inputs = [onnx.helper.make_tensor_value_info(t, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                  for t, a in zip(nd.input, arrays) if t and isinstance(a, np.ndarray) and t not in small]
        g = onnx.helper.make_graph([nd], "bounds", inputs, [onnx.helper.make_empty_tensor_value_info(t)
                                                            for t in nd.output if t],
                                   initializer=[numpy_helper.from_array(a, t) for t, a in small.items()])
        m = onnx.shape_inference.infer_shapes(
            onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", opset)]), data_prop=True)
        for o in m.graph.output:
            t = o.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            if t.HasField("shape") and None not in dims:
                item = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).itemsize if t.elem_type else 4
                sizes.append(math.prod(dims) * item)
    except Exception:  # noqa: BLE001, S110 - inference is a best effort here; the evaluator reports real errors
        pass
    big = max(s for s in sizes if s is not None) if any(s is not None for s in sizes) else 0
    if big > FOLD_LIMIT:
        raise n.fail(f"folding this node on constant inputs would create a tensor of {big} bytes, more than the "
                     f"limit of {FOLD_LIMIT} bytes")


def _expanding_size(op: str, a: list) -> int | None:
    """Bytes of the output of the ops whose output size an input's values choose (None: not one of them)."""
    try:
        if op == "ConstantOfShape" and a and isinstance(a[0], np.ndarray):
            return int(np.prod(a[0].astype(np.float64))) * 4
        if op == "Expand" and len(a) == 2:
            shape = np.broadcast_shapes(a[0].shape, tuple(int(v) for v in a[1]))
            return math.prod(shape) * a[0].dtype.itemsize
        if op == "Tile" and len(a) == 2:
            return int(a[0].size * np.prod(a[1].astype(np.float64))) * a[0].dtype.itemsize
        if op == "Range" and len(a) == 3:
            start, limit, delta = (float(np.asarray(v).reshape(-1)[0]) for v in a)
            return max(0, math.ceil((limit - start) / delta)) * 8 if delta else None
    except (ValueError, TypeError, OverflowError, AttributeError, IndexError):
        return None
    return None


def _fold(nd: onnx.NodeProto, vals: list, n: ONode, opset: int) -> dict[str, np.ndarray | Sym]:
    """Evaluate a node on constant inputs, once per trial batch size if any input depends on it."""
    _fold_bounds(nd, vals, n, opset)
    k = max((len(v.vals) for v in vals if isinstance(v, Sym)), default=1)
    outs = [t for t in nd.output if t]
    if nd.op_type in CONST_FOLDS and k == 1:  # exact numpy folds (onnx.reference lacks some versions)
        attrs = {a.name: _attr(a) for a in nd.attribute}
        return {outs[0]: CONST_FOLDS[nd.op_type](n, *[None if v is None else np.asarray(v) for v in vals], **attrs)}
    try:
        info = onnx.helper.make_empty_tensor_value_info
        g = onnx.helper.make_graph(
            [nd], "fold", [info(t) for t in dict.fromkeys(t for t in nd.input if t)], [info(t) for t in outs]
        )
        ev = ReferenceEvaluator(g, opsets={"": opset})
        runs = [
            ev.run(None, {t: v.vals[i] if isinstance(v, Sym) else v for t, v in zip(nd.input, vals) if t})
            for i in range(k)
        ]
    except Exception as e:  # noqa: BLE001 - the reference evaluator raises whatever its op implementation raises
        raise n.fail(f"cannot evaluate on constant inputs ({_oneline(e)})") from None
    return {t: collapse(tuple(np.asarray(r[j]) for r in runs)) for j, t in enumerate(outs)}
