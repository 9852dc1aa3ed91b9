"""Importers of the weighted, activation and pooling ONNX operators, one function per op.

Each function is named exactly as the ONNX op, takes the :class:`Builder`, the node, the op's
inputs in ONNX order (:class:`Act` for activations, numpy arrays for constants, None when absent)
and the ONNX attributes as keywords with the ONNX defaults. It returns a new IR node, or an
existing :class:`Act` when the op was absorbed into its producer.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from snncompile.errors import ShapeError
from snncompile.frontend.onnx_build import Act, Builder, ONode, along
from snncompile.ir import AvgPool2d, Clamp, Conv2d, GlobalAvgPool, Linear, MaxPool2d, Node, ReLU, Reshape
from snncompile.ir import LogSoftmax as IRLogSoftmax
from snncompile.ir import Sigmoid as IRSigmoid
from snncompile.ir import Softmax as IRSoftmax
from snncompile.ir.arrays import channel_view
from snncompile.ir.linear import conv_out_size

__all__ = ["LAYER_OPS"]

_FLT_MAX = 3.4028234663852886e38  # the default Clip bounds of opsets < 11 are +-FLT_MAX


def _pair(n: ONode, what: str, v: list[int] | None) -> tuple[int, int]:
    if v is None:
        return (1, 1)
    if len(v) != 2:
        raise n.fail(f"{what}={list(v)} unsupported, only 2-D (2 values)")
    if min(v) < 1:
        raise n.fail(f"{what}={list(v)} invalid, values must be >= 1")
    return (int(v[0]), int(v[1]))


def _pads(
    n: ONode,
    auto_pad: str,
    pads: list[int] | None,
    size: tuple[int, ...],
    k: tuple[int, ...],
    s: tuple[int, ...],
) -> tuple[int, ...]:
    """ONNX ``pads``/``auto_pad`` as (begin per spatial axis..., end per spatial axis...), for 2-D
    (top, left, bottom, right); ``k`` is the dilated kernel extent."""
    rank = len(size)
    if auto_pad == "NOTSET":
        p = (0,) * (2 * rank) if pads is None else tuple(int(v) for v in pads)
        if len(p) != 2 * rank:
            raise n.fail(f"pads={list(p)} unsupported, expected {2 * rank} values for {rank} spatial axes")
        if min(p) < 0:
            raise n.fail(f"pads={list(p)} invalid, values must be >= 0")
        return p
    if auto_pad == "VALID":
        return (0,) * (2 * rank)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise n.fail(f"auto_pad={auto_pad} unsupported")
    total = [max((-(-i // st) - 1) * st + kk - i, 0) for i, kk, st in zip(size, k, s)]
    half = [t // 2 for t in total]
    rest = [t - h for t, h in zip(total, half)]
    begin, end = (half, rest) if auto_pad == "SAME_UPPER" else (rest, half)
    return (*begin, *end)


def _spatial(n: ONode, x: Act, what: str) -> None:
    if len(x.shape) != 3:
        raise n.fail(f"only 2-D {what} (input (N, C, H, W)) converts, got per-sample shape {x.shape}")


def Conv(
    b: Builder,
    n: ONode,
    X,
    W,
    B=None,
    *,
    auto_pad="NOTSET",
    dilations=None,
    group=1,
    kernel_shape=None,
    pads=None,
    strides=None,
) -> Node:
    x, w = b.act(n, X, "X"), b.const(n, W, "W").astype(np.float32)
    _spatial(n, x, "convolution")
    if w.ndim != 4 or (kernel_shape is not None and tuple(kernel_shape) != w.shape[2:]):
        raise n.fail(f"weight of shape {w.shape} does not match kernel_shape={kernel_shape}")
    if group < 1 or w.shape[0] % group:
        raise n.fail(f"{w.shape[0]} output channels do not split into group={group}")
    stride, dil = _pair(n, "strides", strides), _pair(n, "dilations", dilations)
    extent = ((w.shape[2] - 1) * dil[0] + 1, (w.shape[3] - 1) * dil[1] + 1)
    top, left, bottom, right = _pads(n, auto_pad, pads, x.shape[1:], extent, stride)
    bias = np.zeros(w.shape[0], np.float32) if B is None else b.const(n, B, "B").astype(np.float32)
    if bias.size != w.shape[0]:
        raise n.fail(f"bias B of shape {bias.shape} for {w.shape[0]} output channels")
    return Conv2d(
        n.ir,
        (x.name,),
        weight=w,
        bias=bias.reshape(-1),
        stride=stride,
        padding=(top, left, bottom, right),
        dilation=dil,
        groups=int(group),
    )


def Gemm(b: Builder, n: ONode, A, B, C=None, *, alpha=1.0, beta=1.0, transA=0, transB=0) -> Node:
    x, w = b.act(n, A, "A"), b.const(n, B, "B").astype(np.float32)
    if transA:
        raise n.fail("transA=1 would transpose the batch axis; only transA=0")
    if w.ndim != 2 or len(x.shape) != 1:
        raise n.fail(f"expected A (N, K) and B 2-D, got per-sample A {x.shape} and B {w.shape}")
    w = w if transB else w.T  # (N, K)
    bias = np.zeros(w.shape[0], np.float32) if C is None else along(b.const(n, C, "C"), (w.shape[0],), 0)
    if bias is None:
        raise n.fail(f"bias C of shape {np.shape(C)} does not broadcast per output ({w.shape[0]},)")
    src, w = b.dense_input(n, x, (alpha * w).astype(np.float32))
    return Linear(n.ir, (src,), weight=w, bias=(beta * bias).astype(np.float32))


_DENSE_MAX = 16_000_000  # entries of the matrix a MatMul with a batched right operand becomes


def MatMul(b: Builder, n: ONode, A, B) -> Node:
    """``A @ B`` with a constant B: a Linear over the last axis when B is 2-D; else (B 1-D, or
    stacked matrices broadcasting over A's per-sample leading axes) the linear map it is on the
    flattened sample, as Flatten -> Linear (matrix read off by applying it to unit vectors) -> Reshape."""
    x, w = b.act(n, A, "A"), b.const(n, B, "B").astype(np.float32)
    if w.ndim == 2:
        if len(x.shape) != 1:
            x = b.materialize(x)
        src, w = b.dense_input(n, x, np.ascontiguousarray(w.T))
        return Linear(n.ir, (src,), weight=w, bias=np.zeros(w.shape[0], np.float32))
    try:
        out = np.matmul(np.zeros((1, *x.shape), np.float32), w).shape
    except ValueError:
        raise n.fail(f"A of per-sample shape {x.shape} and B of shape {w.shape} do not multiply") from None
    if w.ndim > len(x.shape) and any(d != 1 for d in w.shape[: w.ndim - len(x.shape)]):
        raise n.fail(f"B of shape {w.shape} spans the batch axis of A (per-sample {x.shape})")
    if len(out) < 2:
        raise n.fail(f"A of per-sample shape {x.shape} times B of shape {w.shape} leaves no per-sample axis")
    size_in, size_out = math.prod(x.shape), math.prod(out[1:])
    if size_in * size_out > _DENSE_MAX:
        raise n.fail(f"the {size_out}x{size_in} matrix of this MatMul exceeds {_DENSE_MAX:,} entries")
    basis = np.eye(size_in, dtype=np.float64).reshape(size_in, *x.shape)
    dense = np.matmul(basis, w.astype(np.float64)).reshape(size_in, size_out).T.astype(np.float32)
    src, dense = b.dense_input(n, b.flat(b.materialize(x)), dense)
    lin = b.extra(Linear(f"{n.ir}.dense", (src,), weight=dense, bias=np.zeros(size_out, np.float32)))
    return b.reshape(n, lin, out[1:])


def BatchNormalization(
    b: Builder,
    n: ONode,
    X,
    scale,
    B,
    input_mean,
    input_var,
    *,
    epsilon=1e-5,
    momentum=0.9,
    spatial=1,
    training_mode=0,
) -> Node | Act:
    """Inference-mode BN (``momentum`` only matters in training): folded or a BatchNorm node."""
    x = b.act(n, X, "X")
    if training_mode or not spatial:
        raise n.fail("only inference mode with spatial=1 (per-channel statistics) converts")
    g, beta, mu, var = (
        b.const(n, v, k).astype(np.float64).reshape(-1)
        for v, k in ((scale, "scale"), (B, "B"), (input_mean, "input_mean"), (input_var, "input_var"))
    )
    if not x.shape or g.shape != (x.shape[0],):
        raise n.fail(f"{g.shape[0]} channels of statistics for an input of per-sample shape {x.shape}")
    s = g / np.sqrt(var + epsilon)
    return b.affine(n, x, channel_view(s, len(x.shape)).astype(np.float32),
                    channel_view(beta - mu * s, len(x.shape)).astype(np.float32))


def _axes(n: ONode, what: str, v: list[int] | None, rank: int) -> tuple[int, ...]:
    """A pooling attribute with one value per spatial axis (1 on each when absent)."""
    if v is None:
        return (1,) * rank
    if len(v) != rank:
        raise n.fail(f"{what}={list(v)} has {len(v)} values for {rank} spatial axes")
    if min(v) < 1:
        raise n.fail(f"{what}={list(v)} invalid, values must be >= 1")
    return tuple(int(i) for i in v)


@dataclasses.dataclass(frozen=True)
class _Axis:
    """One spatial axis of a pooling window; ``end`` includes ``extra``, the end padding ceil mode adds."""

    kernel: int = 1
    stride: int = 1
    dilation: int = 1
    begin: int = 0
    end: int = 0
    extra: int = 0


def _ceil_extra(length: int, extent: int, stride: int, begin: int, end: int) -> int:
    """End padding that makes floor-mode pooling give the ceil-mode output size (torch/onnxruntime rule:
    a last window that would start in the end padding is dropped)."""
    out = conv_out_size(length, extent, stride, begin, end, ceil=True)
    out -= (out - 1) * stride >= length + begin
    return max((out - 1) * stride + extent - (length + begin + end), 0)


def _pool2d(name: str, src: str, rows: _Axis, cols: _Axis, count_include_pad: int | None) -> Node:
    """The 2-D pool over the last two axes: MaxPool2d (``count_include_pad`` None) or AvgPool2d."""
    window = {"kernel": (rows.kernel, cols.kernel), "stride": (rows.stride, cols.stride),
              "padding": (rows.begin, cols.begin, rows.end, cols.end),
              "dilation": (rows.dilation, cols.dilation)}
    if count_include_pad is None:
        return MaxPool2d(name, (src,), **window)
    return AvgPool2d(name, (src,), **window, count_include_pad=bool(count_include_pad),
                     uncounted=(rows.extra, cols.extra))


def _pool(
    b: Builder,
    n: ONode,
    X,
    kernel_shape,
    auto_pad,
    pads,
    strides,
    ceil_mode,
    dilations,
    count_include_pad: int | None,
) -> Node:
    """1-, 2- or 3-D pooling as 2-D pools. 1-D: one on (C, 1, L). 3-D: a box window is separable (its
    max is the max over depth of the maxima over (H, W); its mean over the counted taps is the mean
    over depth of the means over (H, W), the counted taps being a box too), so one pool over (H, W) on
    (C*D, H, W), then one over depth, a (k_D, 1) window on (C, D, H'*W')."""
    x = b.act(n, X, "X")
    rank = len(x.shape) - 1
    if rank not in (1, 2, 3) or len(kernel_shape) != rank:
        raise n.fail(f"kernel_shape={list(kernel_shape)} for per-sample shape {x.shape}: only 1-, 2- and 3-D "
                     f"pooling (input (N, C, ...) with one spatial axis per kernel value)")
    k = _axes(n, "kernel_shape", kernel_shape, rank)
    s, d = _axes(n, "strides", strides, rank), _axes(n, "dilations", dilations, rank)
    extent = tuple((kk - 1) * dd + 1 for kk, dd in zip(k, d))
    pad = _pads(n, auto_pad, pads, x.shape[1:], extent, s)
    if auto_pad == "NOTSET" and any(p >= kk for p, kk in zip(pad, k + k)):
        raise n.fail(f"pads={list(pad)} invalid: each must be smaller than the kernel {list(k)} (a window could "
                     "lie wholly in the padding; onnxruntime refuses it too)")
    axes = []
    for i, length in enumerate(x.shape[1:]):
        extra = _ceil_extra(length, extent[i], s[i], pad[i], pad[rank + i]) if ceil_mode else 0
        axes.append(_Axis(k[i], s[i], d[i], pad[i], pad[rank + i] + extra, extra))
    padded = tuple(length + a.begin + a.end for length, a in zip(x.shape[1:], axes))
    if any(e > p for e, p in zip(extent, padded)):  # before the 1-/3-D pools' internal reshapes hide the shapes
        raise ShapeError(f"{n.label} ({n.op}): kernel_shape={list(k)} (dilations {list(d)}) larger than the "
                         f"padded input {padded}")
    if rank == 2:
        return _pool2d(n.ir, x.name, *axes, count_include_pad)
    if rank == 1:
        c, length = x.shape
        x2 = b.extra(Reshape(f"{n.ir}.2d", (x.name,), shape=(c, 1, length)))
        pooled = b.extra(_pool2d(f"{n.ir}.pool", x2.name, _Axis(), axes[0], count_include_pad))
        return Reshape(n.ir, (pooled.name,), shape=(c, pooled.shape[2]))
    c, depth, h, w = x.shape
    planes = b.extra(Reshape(f"{n.ir}.planes", (x.name,), shape=(c * depth, h, w)))
    hw = b.extra(_pool2d(f"{n.ir}.hw", planes.name, axes[1], axes[2], count_include_pad))
    cols = b.extra(Reshape(f"{n.ir}.columns", (hw.name,), shape=(c, depth, hw.shape[1] * hw.shape[2])))
    pooled = b.extra(_pool2d(f"{n.ir}.depth", cols.name, axes[0], _Axis(), count_include_pad))
    return Reshape(n.ir, (pooled.name,), shape=(c, pooled.shape[1], *hw.shape[1:]))


def AveragePool(
    b: Builder,
    n: ONode,
    X,
    *,
    kernel_shape,
    auto_pad="NOTSET",
    ceil_mode=0,
    count_include_pad=0,
    dilations=None,
    pads=None,
    strides=None,
) -> Node:
    return _pool(b, n, X, kernel_shape, auto_pad, pads, strides, ceil_mode, dilations, count_include_pad)


def MaxPool(
    b: Builder,
    n: ONode,
    X,
    *,
    kernel_shape,
    auto_pad="NOTSET",
    ceil_mode=0,
    dilations=None,
    pads=None,
    storage_order=0,
    strides=None,
) -> Node:
    """``storage_order`` only affects the Indices output, which must be unused."""
    return _pool(b, n, X, kernel_shape, auto_pad, pads, strides, ceil_mode, dilations, None)


def GlobalAveragePool(b: Builder, n: ONode, X) -> Node:
    x = b.act(n, X, "X")
    if len(x.shape) < 2:
        raise n.fail(f"expected input (N, C, ...spatial), got per-sample shape {x.shape}")
    return GlobalAvgPool(n.ir, (x.name,))


def Relu(b: Builder, n: ONode, X) -> Node:
    return ReLU(n.ir, (b.act(n, X, "X").name,))


def _bound(b: Builder, n: ONode, v, what: str, default: float) -> float:
    """A Clip bound from an attribute (opset < 11) or a constant input; +-FLT_MAX means unbounded."""
    c = default if v is None else v if isinstance(v, float) else b.scalar(n, v, what)
    return math.copysign(math.inf, c) if abs(c) >= _FLT_MAX else c


def Clip(b: Builder, n: ONode, X, min=None, max=None) -> Node:
    """``Clip(0, c)`` is a ReLU saturating at c (ReLU6: c = 6). Another finite lower bound lo is the
    same shifted, ``ReLU(x - lo, max=c - lo) + lo`` (two per-channel shifts around it). Without a
    lower bound it is a Clamp node (the ANN reference runs it; only inside a QCFS chain does it
    convert, see :mod:`snncompile.frontend.quant_chains`)."""
    x = b.act(n, X, "input")
    lo, hi = _bound(b, n, min, "min", -math.inf), _bound(b, n, max, "max", math.inf)
    if hi < lo:
        raise n.fail(f"min={lo} > max={hi}")
    if lo == 0.0:
        if hi == 0.0:
            raise n.fail("min = max = 0: the output is the constant 0")
        return ReLU(n.ir, (x.name,), max_value=hi, source_op="Clip")
    if math.isinf(lo):
        return x if math.isinf(hi) else Clamp(n.ir, (x.name,), lo=lo, hi=hi)
    if hi == lo:
        raise n.fail(f"min = max = {lo}: the output is a constant")
    shifted = b.affine(dataclasses.replace(n, ir=f"{n.ir}.shift"), x, np.float32(1), np.float32(-lo))
    if not isinstance(shifted, Act):
        shifted = b.extra(shifted)
    relu = b.extra(ReLU(f"{n.ir}.relu", (shifted.name,), max_value=hi - lo, source_op="Clip"))
    return b.affine(n, relu, np.float32(1), np.float32(lo))


def _softmax(b: Builder, n: ONode, x, axis, cls) -> Node:
    x = b.act(n, x, "input")
    legacy = n.version < 13  # versions 1 and 11: over the input coerced to 2-D at axis (default 1)
    axis = (1 if legacy else -1) if axis is None else int(axis)
    a = axis % (len(x.shape) + 1)
    if a == 0:
        raise n.fail(f"axis={axis} normalizes across the batch axis; only per-sample axes")
    return cls(n.ir, (x.name,), axis=a - 1, flat=legacy and a < len(x.shape))


def Softmax(b: Builder, n: ONode, input, *, axis=None) -> Node:
    """Network output only (keeps the argmax; see :class:`snncompile.ir.Softmax`)."""
    return _softmax(b, n, input, axis, IRSoftmax)


def LogSoftmax(b: Builder, n: ONode, input, *, axis=None) -> Node:
    """Network output only (keeps the argmax)."""
    return _softmax(b, n, input, axis, IRLogSoftmax)


def Sigmoid(b: Builder, n: ONode, X) -> Node:
    """Network output only (keeps the argmax)."""
    return IRSigmoid(n.ir, (b.act(n, X, "X").name,))


LAYER_OPS = {
    f.__name__: f
    for f in (Conv, Gemm, MatMul, BatchNormalization, AveragePool, MaxPool, GlobalAveragePool, Relu, Clip,
              Softmax, LogSoftmax, Sigmoid)
}
