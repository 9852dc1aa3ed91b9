"""Importers of the quantization operators (same conventions as :mod:`onnx_ops`).

* DequantizeLinear of a constant (an int8/uint8 weight or int32 bias, per tensor, per channel or blocked,
  with zero points) is folded exactly to floats by :func:`dequantize_constant` (``(w - zp) * s`` in
  float32, as onnxruntime computes it), every version alike.
* QuantizeLinear of an activation is an integer :class:`~snncompile.ir.Quantize`; a DequantizeLinear
  with the same scale and zero point that is its sole consumer turns the pair into one
  :class:`~snncompile.ir.QuantClip` (round half to even, saturation to [qmin, qmax]), the quantized
  clipped ReLU with ``qmax - zp`` levels and ceiling ``(qmax - zp) * s``; where the quantizer removed
  the Relu before it, the pair *is* the activation. Any other DequantizeLinear of an activation is the
  affine map ``(x - zp) * s``. A per-axis scale and zero point (``axis`` a per-sample axis) are arrays
  per channel (the first per-sample axis) or per neuron (any other axis, or blocked), by
  :mod:`snncompile.ir.arrays`' rule, so each channel has its own levels and ceiling.
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


def _zero_point(b: Builder, n: ONode, zp, output_dtype: int, like: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """(zero point as int64, (qmin, qmax)); 0 (shaped like the scale ``like``) and uint8 when neither zp nor
    output_dtype says."""
    if zp is None:
        if output_dtype and output_dtype not in _ONNX_TYPES:
            raise n.fail(f"output_dtype={output_dtype} unsupported (only 8/16/32-bit integers)")
        return np.zeros(like.shape, np.int64), _range(n, _ONNX_TYPES.get(output_dtype, np.uint8))
    z = b.const(n, zp, "zero_point")
    return z.astype(np.int64), _range(n, z.dtype)


def _axis(n: ONode, axis: int, rank: int) -> int:
    """``axis`` in [0, rank): ONNX accepts [-rank, rank - 1] (onnxruntime refuses the rest)."""
    if not -rank <= int(axis) < rank:
        raise n.fail(f"axis={axis} out of range for a tensor of rank {rank}")
    return int(axis) % rank


def _unblock(n: ONode, c: np.ndarray, shape: tuple[int, ...], axis: int, block_size: int, what: str) -> np.ndarray:
    """A blocked quantization parameter (opset 21: one value per ``block_size`` elements along ``axis``,
    the tensor's shape elsewhere) repeated to the tensor's ``shape`` (dim 0 as ``c`` has it)."""
    ax = _axis(n, axis, len(shape))
    want = tuple(-(-d // block_size) if i == ax else d for i, d in enumerate(shape))
    if block_size < 0 or c.shape != want:
        raise n.fail(f"{what} of shape {c.shape} does not block a tensor of shape {shape} along axis {ax} "
                     f"(block_size={block_size})")
    return np.repeat(c, block_size, axis=ax).take(np.arange(shape[ax]), axis=ax)


def _params(n: ONode, shape: tuple[int, ...], s: np.ndarray, zp: np.ndarray, axis: int,
            block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point of a quantizer on an activation of per-sample ``shape``, as arrays that
    broadcast against the batch (batch, *shape) in ONNX's (numpy's) convention: as given per tensor,
    along ``axis`` per axis, repeated over each block when blocked."""
    rank = len(shape) + 1
    if block_size:
        if _axis(n, axis, rank) == 0:
            raise n.fail("blocked quantization along the batch axis unsupported")
        full = (s.shape[0] if s.ndim == rank else 1, *shape)
        zp = zp if zp.shape == s.shape else np.broadcast_to(zp, s.shape)
        return (_unblock(n, s, full, axis, block_size, "scale"), _unblock(n, zp, full, axis, block_size, "zero point"))
    if s.size == 1 and zp.size == 1:
        return s.reshape(()), zp.reshape(())
    ax = _axis(n, axis, rank)
    if ax == 0:
        raise n.fail(f"per-axis quantization along the batch axis (scale of shape {s.shape}) unsupported")
    view = [1] * rank
    view[ax] = -1
    if any(c.ndim > 1 or c.size not in (1, (1, *shape)[ax]) for c in (s, zp)):
        raise n.fail(f"per-axis scale/zero point of shapes {s.shape}, {zp.shape} do not match axis {ax} of "
                     f"an input of shape (N, {', '.join(map(str, shape))})")
    return s.reshape(view) if s.size > 1 else s.reshape(()), zp.reshape(view) if zp.size > 1 else zp.reshape(())


def _per_sample(c: np.ndarray, shape: tuple[int, ...]):
    """A parameter broadcasting against (batch, *shape) in the IR's convention (:mod:`snncompile.ir.arrays`):
    a Python scalar when it is one value, an array per channel when it varies only along per-sample axis
    0, else per neuron (the sample shape); None when it spans the batch (a value per sample)."""
    if c.ndim == len(shape) + 1 and c.shape[0] != 1:
        return None
    full = np.broadcast_to(c, (1, *shape))[0]
    flat = full.reshape(-1)
    if (flat == flat[0]).all():
        return flat[0].item()
    v = full.reshape(shape[0], -1)
    return v[:, 0].copy() if (v == v[:, :1]).all() else full.copy()


def QuantizeLinear(b: Builder, n: ONode, x, y_scale, y_zero_point=None, *, axis=1, saturate=1, block_size=0,
                   output_dtype=0, precision=0) -> Node:
    """``q = clip(round(x / s) + zp, qmin, qmax)`` with round half to even; scale and zero point per tensor,
    per axis (per channel along the first per-sample axis, else per neuron) or blocked."""
    a = b.act(n, x, "x")
    s = b.const(n, y_scale, "y_scale").astype(np.float32)
    if not (s > 0).all():
        raise n.fail(f"scale {s.min()} must be > 0")
    zp, (qmin, qmax) = _zero_point(b, n, y_zero_point, output_dtype, s)
    if not ((qmin <= zp) & (zp <= qmax)).all():
        raise n.fail(f"zero point {zp.min() if zp.min() < qmin else zp.max()} outside the type's range "
                     f"[{qmin}, {qmax}]")
    s, zp = _params(n, a.shape, s, zp, axis, block_size)
    scale, zero = _per_sample(s, a.shape), _per_sample(zp, a.shape)
    if scale is None or zero is None:
        raise n.fail(f"a scale/zero point of shape {s.shape} spans the batch (a different quantizer per sample)")
    return IRQuantize(n.ir, (a.name,), scale=scale, zero_point=zero, qmin=qmin, qmax=qmax)


def DequantizeLinear(b: Builder, n: ONode, x, x_scale, x_zero_point=None, *, axis=1, block_size=0,
                     output_dtype=0) -> Node | Act:
    """``(x - zp) * s``; fused with the QuantizeLinear it undoes into a QuantClip (module doc)."""
    a = b.act(n, x, "x")
    s = b.const(n, x_scale, "x_scale").astype(np.float32)
    zp = np.zeros(s.shape, np.int64) if x_zero_point is None else b.const(n, x_zero_point, "x_zero_point")
    s, zp = _params(n, a.shape, s, zp.astype(np.int64), axis, block_size)
    q = b.nodes.get(a.name)
    if (isinstance(q, IRQuantize) and b.refs[a.name] == 1 and np.array_equal(_per_sample(s, a.shape), q.scale)
            and np.array_equal(_per_sample(zp, a.shape), q.zero_point) and np.all(q.qmax > np.asarray(q.zero_point))):
        qc = QuantClip(a.name, q.inputs, source_op="QuantizeLinear", scale=q.scale, levels=q.qmax - q.zero_point,
                       lo=q.qmin - q.zero_point, rounding="half_even")
        src = _on_grid(b, q.inputs[0], qc)
        if src is not None:  # re-quantizing values already on this grid (a Flatten of a QuantClip): the identity
            del b.nodes[a.name], b.shapes[a.name]
            return Act(src, b.shapes[src])
        b.nodes[a.name] = qc
        return a
    return b.affine(n, a, s, -zp.astype(np.float32) * s)


def _on_grid(b: Builder, name: str, qc: QuantClip) -> str | None:
    """``name`` when its values are already outputs of a QuantClip equal to ``qc`` (through reshapes,
    permutations and max pooling, which move values without changing them), else None. A grid that varies
    across elements stays put only through reshapes (equal parameter shapes then mean the same elements:
    flat order kept) and, when it varies only per channel, max pooling; a permutation moves values onto
    another element's grid."""
    arrays = [np.ndim(getattr(qc, f)) for f in ("scale", "levels", "lo")]
    movers = ((Flatten, Reshape) + ((MaxPool2d,) if max(arrays) <= 1 else ())
              + ((Permute,) if not any(arrays) else ()))
    node = b.nodes.get(name)
    while isinstance(node, movers):
        node = b.nodes.get(node.inputs[0])
    same = isinstance(node, QuantClip) and (node.offset, node.rounding) == (qc.offset, qc.rounding) and all(
        np.array_equal(getattr(node, f), getattr(qc, f)) for f in ("scale", "levels", "lo"))
    return name if same else None


def Floor(b: Builder, n: ONode, X) -> Node:
    return IRFloor(n.ir, (b.act(n, X, "X").name,))


QUANT_OPS = {f.__name__: f for f in (QuantizeLinear, DequantizeLinear, Floor)}


def dequantize_constant(n: ONode, x, x_scale, x_zero_point=None, *, axis=1, block_size=0, output_dtype=0):
    """``(x - zp) * s`` of constants in float32 (the scale's type), per tensor, along ``axis`` or blocked
    (``block_size`` elements along ``axis`` share one scale and zero point)."""
    if not np.issubdtype(x.dtype, np.integer):
        raise n.fail(f"dequantizing {x.dtype} unsupported (only integer types)")
    s = x_scale
    zp = np.zeros((), np.int64) if x_zero_point is None else x_zero_point.astype(np.int64)
    if block_size:
        s = _unblock(n, s, x.shape, axis, block_size, "x_scale")
        zp = zp if zp.ndim == 0 else _unblock(n, zp, x.shape, axis, block_size, "x_zero_point")
    elif s.size > 1 or zp.size > 1:
        ax = _axis(n, axis, x.ndim)
        for what, c in (("x_scale", s), ("x_zero_point", zp)):
            if c.size > 1 and (c.ndim != 1 or c.size != x.shape[ax]):
                raise n.fail(f"per-axis {what} of shape {c.shape} does not match axis {ax} of size {x.shape[ax]} "
                             f"of x {x.shape}")
        view = [1] * x.ndim
        view[ax] = -1
        s, zp = s.reshape(view), zp.reshape(view) if zp.size > 1 else zp
    return ((x.astype(np.int64) - zp).astype(np.float32) * s.astype(np.float32)).astype(s.dtype)


CONST_FOLDS = {"DequantizeLinear": dequantize_constant}
