"""Importers of the quantization operators (same conventions as :mod:`onnx_ops`).

* DequantizeLinear of a constant (an int8/uint8 weight or int32 bias, per tensor or per channel, with
  zero points) is folded exactly to floats by :func:`dequantize_constant` (``(w - zp) * s`` in
  float32, as onnxruntime computes it), every version alike.
* QuantizeLinear of an activation is an integer :class:`~snncompile.ir.Quantize`; a DequantizeLinear
  with the same scale and zero point that is its sole consumer turns the pair into one
  :class:`~snncompile.ir.QuantClip` (round half to even, saturation to [qmin, qmax]), the quantized
  clipped ReLU with ``qmax - zp`` levels and ceiling ``(qmax - zp) * s``; where the quantizer removed
  the Relu before it, the pair *is* the activation. Any other DequantizeLinear of an activation is the
  affine map ``(x - zp) * s``.
* Floor is kept for the ANN reference; :mod:`quant_chains` recognizes the QCFS arrangements around it.
"""

from __future__ import annotations

import numpy as np

from snncompile.frontend.onnx_build import Act, Builder, ONode
from snncompile.ir import Flatten, MaxPool2d, Node, Permute, QuantClip, Reshape
from snncompile.ir import Floor as IRFloor
from snncompile.ir import Quantize as IRQuantize

__all__ = ["CONST_FOLDS", "QUANT_OPS"]

_RANGES = {"int4": (-8, 7), "uint4": (0, 15), "int2": (-2, 1), "uint2": (0, 3)}
_ONNX_TYPES = {2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 12: np.uint32}


def _range(n: ONode, dtype) -> tuple[int, int]:
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    for key, r in _RANGES.items():
        if name == key or name.endswith(f"_{key}") or name == f"{key}_":
            return r
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        return int(info.min), int(info.max)
    raise n.fail(f"quantization to {name} unsupported (only integer types)")


def _zero_point(b: Builder, n: ONode, zp, output_dtype: int) -> tuple[int, tuple[int, int]]:
    """(zero point, (qmin, qmax)) of a per-tensor quantizer; uint8 when neither zp nor output_dtype says."""
    if zp is None:
        if output_dtype and output_dtype not in _ONNX_TYPES:
            raise n.fail(f"output_dtype={output_dtype} unsupported (only 8/16/32-bit integers)")
        return 0, _range(n, _ONNX_TYPES.get(output_dtype, np.uint8))
    z = b.const(n, zp, "zero_point")
    if z.size != 1:
        raise n.fail(f"a per-axis zero point of shape {z.shape} for an activation unsupported (per tensor only)")
    return int(z.reshape(-1)[0].astype(np.int64)), _range(n, z.dtype)


def QuantizeLinear(b: Builder, n: ONode, x, y_scale, y_zero_point=None, *, axis=1, saturate=1, block_size=0,
                   output_dtype=0, precision=0) -> Node:
    """``q = clip(round(x / s) + zp, qmin, qmax)`` with round half to even; per-tensor scale only."""
    a = b.act(n, x, "x")
    s = b.const(n, y_scale, "y_scale")
    if s.size != 1:
        raise n.fail(f"per-axis quantization of an activation (scale of shape {s.shape}) unsupported")
    if block_size:
        raise n.fail(f"block_size={block_size} unsupported (blocked quantization of an activation)")
    scale = float(np.float32(s.reshape(-1)[0]))
    if not scale > 0:
        raise n.fail(f"scale {scale} must be > 0")
    zp, (qmin, qmax) = _zero_point(b, n, y_zero_point, output_dtype)
    if not qmin <= zp <= qmax:
        raise n.fail(f"zero point {zp} outside the type's range [{qmin}, {qmax}]")
    return IRQuantize(n.ir, (a.name,), scale=scale, zero_point=zp, qmin=qmin, qmax=qmax)


def DequantizeLinear(b: Builder, n: ONode, x, x_scale, x_zero_point=None, *, axis=1, block_size=0,
                     output_dtype=0) -> Node | Act:
    """``(x - zp) * s``; fused with the QuantizeLinear it undoes into a QuantClip (module doc)."""
    a = b.act(n, x, "x")
    s = b.const(n, x_scale, "x_scale").astype(np.float32)
    zp = np.zeros(s.shape, np.float32) if x_zero_point is None else b.const(n, x_zero_point, "x_zero_point")
    if block_size:
        raise n.fail(f"block_size={block_size} unsupported (blocked dequantization of an activation)")
    q = b.nodes.get(a.name)
    if (isinstance(q, IRQuantize) and b.refs[a.name] == 1 and s.size == 1 and zp.size == 1
            and float(np.float32(s.reshape(-1)[0])) == q.scale and int(zp.reshape(-1)[0]) == q.zero_point
            and q.qmax > q.zero_point):
        qc = QuantClip(a.name, q.inputs, source_op="QuantizeLinear", scale=q.scale, levels=q.qmax - q.zero_point,
                       lo=q.qmin - q.zero_point, rounding="half_even")
        src = _on_grid(b, q.inputs[0], qc)
        if src is not None:  # re-quantizing values already on this grid (a Flatten of a QuantClip): the identity
            del b.nodes[a.name], b.shapes[a.name]
            return Act(src, b.shapes[src])
        b.nodes[a.name] = qc
        return a
    if s.size > 1:  # per axis: scale and zero point along axis
        rank = len(a.shape) + 1
        ax = int(axis) % rank
        if ax == 0:
            raise n.fail("per-axis dequantization along the batch axis unsupported")
        view = [1] * rank
        view[ax] = -1
        s, zp = s.reshape(view), zp.astype(np.float32).reshape(view)
    zp = zp.astype(np.float32)
    return b.affine(n, a, s, -zp * s)


def _on_grid(b: Builder, name: str, qc: QuantClip) -> str | None:
    """``name`` when its values are already outputs of a QuantClip equal to ``qc`` (through reshapes,
    permutations and max pooling, which move values without changing them), else None."""
    node = b.nodes.get(name)
    while isinstance(node, (Flatten, Reshape, Permute, MaxPool2d)):
        node = b.nodes.get(node.inputs[0])
    same = isinstance(node, QuantClip) and (node.scale, node.levels, node.lo, node.offset, node.rounding) == (
        qc.scale, qc.levels, qc.lo, qc.offset, qc.rounding)
    return name if same else None


def Floor(b: Builder, n: ONode, X) -> Node:
    return IRFloor(n.ir, (b.act(n, X, "X").name,))


QUANT_OPS = {f.__name__: f for f in (QuantizeLinear, DequantizeLinear, Floor)}


def dequantize_constant(n: ONode, x, x_scale, x_zero_point=None, *, axis=1, block_size=0, output_dtype=0):
    """``(x - zp) * s`` of constants in float32 (the scale's type), per tensor or along ``axis``."""
    if block_size:
        raise n.fail(f"block_size={block_size} unsupported (blocked dequantization)")
    if not np.issubdtype(x.dtype, np.integer):
        raise n.fail(f"dequantizing {x.dtype} unsupported (only integer types)")
    s = x_scale
    zp = np.zeros((), np.int64) if x_zero_point is None else x_zero_point.astype(np.int64)
    if s.size > 1 or zp.size > 1:
        view = [1] * x.ndim
        view[int(axis) % x.ndim] = -1
        s, zp = s.reshape(view), zp.reshape(view) if zp.size > 1 else zp
    return ((x.astype(np.int64) - zp).astype(np.float32) * s.astype(np.float32)).astype(s.dtype)


CONST_FOLDS = {"DequantizeLinear": dequantize_constant}
