"""Importers of the elementwise arithmetic ONNX operators (same conventions as :mod:`onnx_ops`).

Two activations: only an equal-shape sum converts (``Add``/``Sum`` -> IR Add). An activation and a
constant: an affine map ``x * scale + shift`` that :meth:`Builder.affine` folds into the producing
Conv/Linear/BatchNorm or turns into a per-channel BatchNorm node.
"""

from __future__ import annotations

import numpy as np

from snncompile.frontend.onnx_build import Act, Builder, ONode
from snncompile.ir import Add as IRAdd
from snncompile.ir import Node

__all__ = ["ELEMENTWISE_OPS"]

_ONE, _ZERO = np.float32(1.0), np.float32(0.0)


def _sum(n: ONode, xs: list[Act]) -> Node:
    if any(x.shape != xs[0].shape for x in xs):
        raise n.fail(f"broadcasting between activations of shapes {[x.shape for x in xs]} unsupported")
    return IRAdd(n.ir, tuple(x.name for x in xs))


def Add(b: Builder, n: ONode, A, B) -> Node | Act:
    if isinstance(A, Act) and isinstance(B, Act):
        return _sum(n, [A, B])
    x, c = (A, B) if isinstance(A, Act) else (B, A)
    return b.affine(n, x, _ONE, b.const(n, c, "B" if x is A else "A"))


def Sum(b: Builder, n: ONode, *data) -> Node | Act:
    xs = [b.act(n, v, f"data_{i}") for i, v in enumerate(data)]
    return xs[0] if len(xs) == 1 else _sum(n, xs)


def Sub(b: Builder, n: ONode, A, B) -> Node | Act:
    if isinstance(A, Act) and isinstance(B, Act):
        raise n.fail("the difference of two activations unsupported")
    if isinstance(A, Act):
        return b.affine(n, A, _ONE, -b.const(n, B, "B").astype(np.float32))
    return b.affine(n, B, -_ONE, b.const(n, A, "A"))


def Mul(b: Builder, n: ONode, A, B) -> Node | Act:
    if isinstance(A, Act) and isinstance(B, Act):
        raise n.fail("the product of two activations unsupported")
    x, c = (A, B) if isinstance(A, Act) else (B, A)
    return b.affine(n, x, b.const(n, c, "B" if x is A else "A"), _ZERO)


def Div(b: Builder, n: ONode, A, B) -> Node | Act:
    x, c = b.act(n, A, "A"), b.const(n, B, "B").astype(np.float32)
    if (c == 0).any():
        raise n.fail("division by a constant containing 0")
    return b.affine(n, x, 1.0 / c, _ZERO)


ELEMENTWISE_OPS = {f.__name__: f for f in (Add, Sum, Sub, Mul, Div)}
