"""State of one ONNX import: the IR nodes built so far, ONNX tensor values, and the shared folds.

An ONNX tensor is either an *activation* (:class:`Act`: computed from the network input, held by
one IR node) or a *constant* (a numpy array: initializer, ``Constant`` output or folded subgraph).
A constant that depends on the dynamic batch size (``Shape`` of an activation and what is computed
from it) is a :class:`Sym`: its value for each trial batch size in ``Builder.batches``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from snncompile.errors import UnsupportedOperator
from snncompile.ir import BatchNorm, Conv2d, Flatten, Linear, Node, Permute, Reshape, Shape
from snncompile.ir.arrays import channel_view

__all__ = ["Act", "Builder", "ONode", "Sym", "along", "collapse"]


@dataclass(frozen=True, eq=False)
class Act:
    """An activation tensor: the IR node that computes it and its per-sample shape.

    With ``index`` it is a *view* (a Transpose or Transpose/Reshape chain not yet materialized):
    the ONNX tensor is ``flat(node output)[index]``, ``index`` of shape ``shape`` holding positions
    in the node's C-order flattened output. Elementwise ops pass views through, Gemm/MatMul fold
    them into their weights (permuted columns), anything else materializes them as a Permute node.
    """

    name: str
    shape: Shape
    index: np.ndarray | None = None


@dataclass(frozen=True)
class Sym:
    """A batch-size dependent constant: ``vals[i]`` is its value when the batch is ``batches[i]``."""

    vals: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class ONode:
    """The ONNX node being imported: ``label`` for messages, ``ir`` the name of the IR node it makes."""

    label: str
    ir: str
    op: str
    version: int = 0  # the op's schema version at the model's opset (its since_version)

    def fail(self, reason: str) -> UnsupportedOperator:
        return UnsupportedOperator(self.label, self.op, reason)


def collapse(vals: tuple[np.ndarray, ...]) -> np.ndarray | Sym:
    """One value per trial batch size: a plain array when they agree, else a :class:`Sym`."""
    same = all(v.dtype == vals[0].dtype and np.array_equal(v, vals[0]) for v in vals[1:])
    return vals[0] if same else Sym(vals)


def along(c: np.ndarray, shape: Shape, axis: int) -> np.ndarray | None:
    """``c`` broadcast against a batch of ``shape`` as a vector along per-sample ``axis``.

    None when ``c`` would enlarge the activation or varies along any other axis.
    """
    c = np.asarray(c, dtype=np.float32)
    full = (1, *shape)
    if not shape or c.ndim > len(full):
        return None
    try:
        if np.broadcast_shapes(c.shape, full) != full:
            return None
    except ValueError:  # not broadcastable at all
        return None
    v = np.moveaxis(np.broadcast_to(c, full)[0], axis, 0).reshape(shape[axis], -1)
    return v[:, 0].copy() if (v == v[:, :1]).all() else None


def _shape_str(c: np.ndarray) -> str:
    return "scalar" if np.ndim(c) == 0 else f"shape {np.shape(c)}"


class Builder:
    """Collects IR nodes while the ONNX nodes are visited in topological order.

    ``uses[t]`` counts the ONNX consumers of tensor ``t`` (graph outputs included); ``refs[ir]``
    sums them over every tensor bound to IR node ``ir``, so a producer may absorb a following
    BatchNormalization/Add/Mul only when ``refs`` says that op is its sole consumer.
    """

    def __init__(self, uses: Counter[str], batches: tuple[int, ...]):
        self.uses, self.batches = uses, batches
        self.nodes: dict[str, Node] = {}
        self.shapes: dict[str, Shape] = {}
        self.values: dict[str, Act | Sym | np.ndarray] = {}
        self.refs: Counter[str] = Counter()
        self._made: dict[tuple, Act] = {}  # materialized views and flattened sources, by (node, kind, index)

    # ---- binding ONNX tensors ---------------------------------------------------------------
    def add(self, node: Node, out: str) -> Act:
        """Append a new IR node computing ONNX tensor ``out``."""
        shape = tuple(node.infer_shape(*(self.shapes[i] for i in node.inputs)))
        self.nodes[node.name], self.shapes[node.name] = node, shape
        self.refs[node.name] = self.uses[out]
        self.values[out] = act = Act(node.name, shape)
        return act

    def alias(self, out: str, act: Act) -> Act:
        """Bind ``out`` to an existing activation (an op that became the identity or was absorbed)."""
        self.refs[act.name] += self.uses[out] - 1
        self.values[out] = act
        return act

    # ---- checked access to inputs -----------------------------------------------------------
    def act(self, n: ONode, v: object, what: str) -> Act:
        if not isinstance(v, Act):
            raise n.fail(f"input {what} must be computed from the network input, got a constant")
        return v

    def const(self, n: ONode, v: object, what: str) -> np.ndarray:
        if isinstance(v, Act):
            raise n.fail(f"input {what} must be a constant (initializer), got an activation")
        if isinstance(v, Sym):
            raise n.fail(f"input {what} depends on the batch size")
        return np.asarray(v)

    def scalar(self, n: ONode, v: object, what: str) -> float:
        c = self.const(n, v, what)
        if c.size != 1:
            raise n.fail(f"input {what} must be a scalar, got shape {c.shape}")
        return float(c.reshape(()))

    # ---- views (data reorderings not yet materialized) -----------------------------------------
    def phys(self, x: Act) -> Act:
        """The activation of the IR node under ``x`` (``x`` itself unless ``x`` is a view)."""
        return x if x.index is None else Act(x.name, self.shapes[x.name])

    def index_of(self, x: Act) -> np.ndarray:
        """``x`` as positions in its node's flattened output (the identity for a plain activation)."""
        return x.index if x.index is not None else np.arange(math.prod(x.shape)).reshape(x.shape)

    def view(self, n: ONode, x: Act, index: np.ndarray) -> Node | Act:
        """The tensor ``flat(x's node output)[index]``: a plain reshape when no data moves, else a view."""
        index = np.asarray(index, np.int64)
        p = self.phys(x)
        if np.array_equal(index.reshape(-1), np.arange(index.size)):
            return self._reshape(n, p, index.shape)
        return Act(p.name, tuple(int(d) for d in index.shape), index)

    def materialize(self, x: Act) -> Act:
        """A view as a Permute node (cached per view); a plain activation unchanged."""
        if x.index is None:
            return x
        key = (x.name, "permute", x.index.shape, x.index.tobytes())
        if key not in self._made:
            self._made[key] = self.extra(Permute(f"{x.name}.permute{len(self._made)}", (x.name,), index=x.index))
        return self._made[key]

    def to_phys(self, x: Act, c: np.ndarray) -> np.ndarray:
        """A constant broadcasting against view ``x`` rearranged to broadcast against its node's output."""
        if x.index is None:
            return c
        log = np.broadcast_to(np.asarray(c), (1, *x.shape)).reshape(-1)
        out = np.empty(log.size, log.dtype)
        out[x.index.reshape(-1)] = log
        return out.reshape(1, *self.shapes[x.name])

    def dense_input(self, n: ONode, x: Act, w: np.ndarray) -> tuple[str, np.ndarray]:
        """(input node, weight) of a Linear computing ``w @ x`` for a 1-D ``x``, folding a view into
        ``w``'s columns (``W'[:, index[k]] = w[:, k]``) on the flattened node output."""
        if x.index is None:
            return x.name, w
        p = self.flat(self.phys(x))
        wp = np.zeros((w.shape[0], math.prod(p.shape)), w.dtype)
        wp[:, x.index.reshape(-1)] = w
        return p.name, wp

    def flat(self, x: Act) -> Act:
        """A plain activation flattened to 1-D (a Flatten node, cached), or ``x`` if already 1-D."""
        if len(x.shape) == 1:
            return x
        key = (x.name, "flatten")
        if key not in self._made:
            self._made[key] = self.extra(Flatten(f"{x.name}.flatten", (x.name,)))
        return self._made[key]

    def extra(self, node: Node) -> Act:
        """Add an IR node that no ONNX tensor names (a materialization)."""
        shape = tuple(node.infer_shape(*(self.shapes[i] for i in node.inputs)))
        self.nodes[node.name], self.shapes[node.name] = node, shape
        self.refs[node.name] = 1
        return Act(node.name, shape)

    # ---- shared rewrites --------------------------------------------------------------------
    def reshape(self, n: ONode, x: Act, shape: Shape) -> Node | Act:
        """``x`` viewed as per-sample ``shape``: the same activation, a Flatten, a Reshape or a view."""
        shape = tuple(int(d) for d in shape)
        if x.index is not None:
            return self.view(n, x, x.index.reshape(shape))
        return self._reshape(n, x, shape)

    def _reshape(self, n: ONode, x: Act, shape: Shape) -> Node | Act:
        shape = tuple(int(d) for d in shape)
        if shape == x.shape:
            return x
        if len(shape) == 1:
            return Flatten(n.ir, (x.name,))
        return Reshape(n.ir, (x.name,), shape=shape)

    def affine(self, n: ONode, x: Act, scale: np.ndarray, shift: np.ndarray) -> Node | Act:
        """``x * scale + shift`` with constants that broadcast against ``x``.

        Absorbed into the producing Conv2d/Linear/BatchNorm when that has no other consumer and the
        constants vary only along its output-channel axis; else a BatchNorm when they are per
        channel (per-sample axis 0); else (per neuron) Flatten -> BatchNorm with one channel per
        element -> Reshape; UnsupportedOperator when a constant would enlarge the activation (it
        spans the batch).
        """
        prod = self.nodes.get(x.name)
        axis = {Conv2d: 0, BatchNorm: 0, Linear: len(x.shape) - 1}.get(type(prod))
        if axis is not None and self.refs[x.name] == 1:
            s, h = along(scale, x.shape, axis), along(shift, x.shape, axis)
            if s is not None and h is not None:
                self.nodes[x.name] = _scaled(prod, s, h)
                return x
        s, h = along(scale, x.shape, 0), along(shift, x.shape, 0)
        if s is not None and h is not None:
            return BatchNorm(n.ir, (x.name,), scale=s, shift=h)
        full = (1, *x.shape)
        try:
            s, h = (np.broadcast_to(np.asarray(c, np.float32), full) for c in (scale, shift))
        except ValueError:
            s = h = None
        if s is None or s.shape != full or h.shape != full:
            bad = shift if h is None or h.shape != full else scale
            raise n.fail(f"constant of {_shape_str(bad)} does not broadcast against an input of shape {x.shape} "
                         "without spanning the batch")
        # per neuron: a BatchNorm over the flattened sample (one channel per element), shaped back
        bn = self.extra(BatchNorm(f"{n.ir}.affine", (self.flat(x).name,), scale=s.reshape(-1).copy(),
                                  shift=h.reshape(-1).copy()))
        return self._reshape(n, bn, x.shape)


def _scaled(node: Node, s: np.ndarray, h: np.ndarray) -> Node:
    """``node`` followed by ``y * s + h`` per output channel, as one node of the same type."""
    if isinstance(node, BatchNorm):
        return dataclasses.replace(node, scale=node.scale * s, shift=node.shift * s + h)
    w = node.weight * channel_view(s, node.weight.ndim)
    return dataclasses.replace(node, weight=w.astype(np.float32), bias=(node.bias * s + h).astype(np.float32))
