"""Importers of the shape-plumbing ONNX operators (same conventions as :mod:`onnx_ops`).

On activations these ops only convert when they keep the batch axis first and do not reorder data
in memory; they then become a Reshape/Flatten (or vanish). On constants they never get here: the
loader folds any node whose inputs are all constant.
"""

from __future__ import annotations

import math

import numpy as np

from snncompile.frontend.onnx_build import Act, Builder, ONode, Sym, collapse
from snncompile.ir import Concat as IRConcat
from snncompile.ir import Node

__all__ = ["SHAPE_OPS"]


def _axes(b: Builder, n: ONode, axes, rank: int) -> list[int]:
    """Axes from an attribute (list, older opsets) or a constant input, made non-negative."""
    arr = np.asarray(axes if isinstance(axes, list) else b.const(n, axes, "axes"), dtype=np.int64).reshape(-1)
    if ((arr < -rank) | (arr >= rank)).any():
        raise n.fail(f"axes={arr.tolist()} out of range for rank {rank}")
    return sorted(int(a) % rank for a in arr)


def Identity(b: Builder, n: ONode, input) -> Act:
    return b.act(n, input, "input")


def Dropout(b: Builder, n: ONode, data, ratio=None, training_mode=None, *, seed=None) -> Act:
    """Inference: the identity. ``ratio`` and ``seed`` only matter in training."""
    if training_mode is not None and b.scalar(n, training_mode, "training_mode"):
        raise n.fail("training_mode=1 unsupported (inference only)")
    return b.act(n, data, "data")


def Flatten(b: Builder, n: ONode, input, *, axis=1) -> Node | Act:
    x = b.act(n, input, "input")
    a = axis % (len(x.shape) + 1)
    if a == 0 or math.prod(x.shape[: a - 1]) != 1:
        raise n.fail(f"axis={axis} merges the batch axis with per-sample axes of {x.shape}; only axis=1")
    return b.reshape(n, x, (math.prod(x.shape[a - 1 :]),))


def _resolve(n: ONode, target: np.ndarray, full: tuple[int, ...], allowzero: int) -> tuple[int, ...]:
    """The Reshape output shape for input shape ``full`` (0 copies a dim, -1 is inferred)."""
    t = np.asarray(target, dtype=np.int64).reshape(-1).copy()
    zero = np.flatnonzero(t == 0) if not allowzero else np.empty(0, np.int64)
    if zero.size and zero.max() >= len(full):
        raise n.fail(f"shape {target.tolist()} copies a dimension the input {full} does not have")
    t[zero] = np.asarray(full)[zero]
    known = int(np.prod(t[t != -1]))
    if (t == -1).sum() > 1 or (t < -1).any() or known == 0 or math.prod(full) % known:
        raise n.fail(f"cannot reshape {full} to {target.tolist()}")
    t[t == -1] = math.prod(full) // known
    return tuple(int(d) for d in t)


def Reshape(b: Builder, n: ONode, data, shape, *, allowzero=0) -> Node | Act:
    x = b.act(n, data, "data")
    if isinstance(shape, Act):
        raise n.fail("the target shape must be constant, got an activation")
    vals = shape.vals if isinstance(shape, Sym) else (np.asarray(shape),) * len(b.batches)
    outs = [_resolve(n, v, (batch, *x.shape), allowzero) for v, batch in zip(vals, b.batches)]
    if any(o[0] != batch or math.prod(o[1:]) != math.prod(x.shape) for o, batch in zip(outs, b.batches)):
        shown = "a batch-dependent shape" if isinstance(shape, Sym) else f"{vals[0].tolist()}"
        raise n.fail(f"reshaping per-sample {x.shape} to {shown} does not keep the batch axis")
    return b.reshape(n, x, outs[0][1:])


def Transpose(b: Builder, n: ONode, data, *, perm=None) -> Node | Act:
    """A reshape when only size-1 axes move; else a view (see :class:`Act`), folded into a following
    Gemm/MatMul, undone by a later inverse Transpose, or materialized as a Permute node."""
    x = b.act(n, data, "data")
    rank = len(x.shape) + 1
    perm = list(range(rank))[::-1] if perm is None else [int(p) % rank for p in perm]
    if perm[0] != 0:
        raise n.fail(f"perm={perm} moves the batch axis; only permutations of the per-sample axes convert")
    return b.view(n, x, b.index_of(x).transpose([p - 1 for p in perm[1:]]))


def Squeeze(b: Builder, n: ONode, data, axes=None) -> Node | Act:
    x = b.act(n, data, "data")
    if axes is None:
        raise n.fail("Squeeze without axes would drop the batch axis when the batch is 1; give axes")
    ax = _axes(b, n, axes, len(x.shape) + 1)
    if 0 in ax or any(x.shape[a - 1] != 1 for a in ax):
        raise n.fail(f"axes={ax} must name per-sample axes of size 1, input per-sample shape {x.shape}")
    return b.reshape(n, x, tuple(d for i, d in enumerate(x.shape, 1) if i not in ax))


def Unsqueeze(b: Builder, n: ONode, data, axes=None) -> Node | Act:
    x = b.act(n, data, "data")
    n_new = len(axes) if isinstance(axes, list) else b.const(n, axes, "axes").size
    ax = _axes(b, n, axes, len(x.shape) + 1 + n_new)
    if 0 in ax:
        raise n.fail("axes=0 would insert an axis before the batch axis")
    shape = list(x.shape)
    for a in ax:
        shape.insert(a - 1, 1)
    return b.reshape(n, x, tuple(shape))


def Concat(b: Builder, n: ONode, *inputs, axis) -> Node | Act:
    xs = [b.act(n, v, f"inputs[{i}]") for i, v in enumerate(inputs)]
    a = axis % (len(xs[0].shape) + 1)
    if a == 0:
        raise n.fail("concatenation along the batch axis (axis=0) unsupported")
    return xs[0] if len(xs) == 1 else IRConcat(n.ir, tuple(x.name for x in xs), axis=a - 1)


def Shape(b: Builder, n: ONode, data, *, start=0, end=None) -> np.ndarray | Sym:
    """The shape of an activation, with the batch dim taken from each trial batch size."""
    x = b.act(n, data, "data")
    return collapse(tuple(np.array((batch, *x.shape), np.int64)[start:end] for batch in b.batches))


SHAPE_OPS = {
    f.__name__: f for f in (Identity, Dropout, Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Concat, Shape)
}
