"""Recognize QCFS quantized activations in an imported graph: any chain of scalar elementwise maps
around one Floor that equals a quantized clipped ReLU becomes one :class:`~snncompile.ir.QuantClip`.

QCFS (Bu et al., ICLR 2022) trains ``h(x) = lam/L * clip(floor(x L/lam + 1/2), 0, L)``; exporters write
it as Mul/Div/Add/Sub by scalars, Clip/Relu and one Floor in many orders (e.g. ``x/lam -> Clip(0, 1) ->
*L -> +0.5 -> Floor -> /L -> *lam``, or ``*L/lam -> +0.5 -> Floor -> Clip(0, L) -> *lam/L``). After
import those are scalar BatchNorm (uniform scale and shift), ReLU (with a ceiling) and Floor nodes.

A chain (single-consumer nodes, each a map of one real) is composed symbolically on the chain's input
z, in the form ``a * clip(g(z), lo, hi) + c`` with ``g(z) = p z + q`` before the Floor and
``floor(p z + q)`` after it (a may be negative until the end): a scalar affine map updates a and c; a clip (Relu, Clip, Clamp)
intersects ``[lo, hi]`` (on integers after the Floor, so rounded inward); the Floor maps the form to
``clip(floor(a p z + a q + c), floor(a lo + c), floor(a hi + c))`` (bounds swapped when a < 0; floor
is monotone, so it commutes with clip). The result must end increasing (a > 0, p > 0). A chain with one Floor and finite integer bounds then is, with ``L = hi - lo``,

    y = a * clip(floor(p z + q - lo), 0, L) + (a lo + c)
      = s * clip(floor(z' / s + 1/2), 0, L) + d,   s = a,  z' = a p z + a (q - lo - 1/2),  d = a lo + c

so the affine map z -> z' is folded into the producer (a Conv/Linear/BatchNorm used only here) or
becomes a BatchNorm, followed by the QuantClip (and a BatchNorm shift when d != 0). Chains that do not
fit (two Floors, a negative scale, an unbounded clip) are left as they are: the ANN reference runs
them, the spiking conversion refuses the Floor.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from snncompile.frontend.onnx_build import _scaled
from snncompile.ir import BatchNorm, Clamp, Conv2d, Floor, Graph, Linear, Node, QuantClip, ReLU

__all__ = ["recognize_qcfs"]


def _uniform(node: Node) -> tuple[float, float] | None:
    """(k, d) when ``node`` is the scalar map y = k x + d (a BatchNorm with equal values), else None."""
    if not isinstance(node, BatchNorm):
        return None
    s, h = np.asarray(node.scale, np.float64), np.asarray(node.shift, np.float64)
    if s.size == 0 or not (np.all(s == s.flat[0]) and np.all(h == h.flat[0])):
        return None
    return float(s.flat[0]), float(h.flat[0])


def _link(node: Node) -> bool:
    return type(node) in (ReLU, Floor, Clamp) or _uniform(node) is not None


@dataclasses.dataclass
class _Form:
    """y = a * clip(g(z), lo, hi) + c, g = p z + q (floor(p z + q) once ``floored``); a may be negative."""

    a: float = 1.0
    c: float = 0.0
    p: float = 1.0
    q: float = 0.0
    lo: float = -math.inf
    hi: float = math.inf
    floored: bool = False

    def affine(self, k: float, d: float) -> bool:
        if k == 0:
            return False
        self.a, self.c = self.a * k, self.c * k + d
        return True

    def clip(self, m: float, big: float) -> None:
        """clip(y, m, big) = a * clip(g, lo', hi') + c with the bounds of g that keep y in [m, big]."""
        lo, hi = (m - self.c) / self.a, (big - self.c) / self.a
        if self.a < 0:
            lo, hi = hi, lo
        if self.floored:  # g takes integer values: round the bounds inward
            lo = math.ceil(lo - 1e-9) if math.isfinite(lo) else lo
            hi = math.floor(hi + 1e-9) if math.isfinite(hi) else hi
        self.lo, self.hi = max(self.lo, lo), min(self.hi, hi)

    def floor(self) -> bool:
        """floor(a * clip(t, lo, hi) + c) = clip(floor(a t + c), floor(bound), floor(bound)), floor monotone."""
        if self.floored:
            return False
        a, c = self.a, self.c
        ends = sorted(a * v + c if math.isfinite(v) else math.copysign(math.inf, a * v) for v in (self.lo, self.hi))
        self.p, self.q = a * self.p, a * self.q + c
        self.lo, self.hi = (math.floor(v) if math.isfinite(v) else v for v in ends)
        self.a, self.c, self.floored = 1.0, 0.0, True
        return True


def _compose(chain: list[Node]) -> _Form | None:
    f = _Form()
    for n in chain:
        if isinstance(n, Floor):
            if not f.floor():
                return None
        elif isinstance(n, ReLU):
            f.clip(0.0, n.max_value)
        elif isinstance(n, Clamp):
            f.clip(n.lo, n.hi)
        elif not f.affine(*_uniform(n)):
            return None
    ok = (f.floored and math.isfinite(f.lo) and math.isfinite(f.hi) and f.hi > f.lo and f.a > 0 and f.p > 0)
    return f if ok else None


def _chains(g: Graph) -> list[list[Node]]:
    """Maximal single-consumer chains of scalar elementwise nodes around each Floor. The walk forwards
    stops before the next Floor, the walk backwards does not: a chain that reaches an earlier Floor holds
    two, and :func:`_compose` refuses it."""
    out, used = [], set()
    for fl in g.of_type(Floor):
        if fl.name in used:
            continue
        chain = [fl]
        while True:  # backwards: the producer, if it is a link used only by the chain
            prev = g.nodes[chain[0].inputs[0]]
            if not _link(prev) or len(g.users(prev.name)) != 1:
                break
            chain.insert(0, prev)
        while True:  # forwards
            users = g.users(chain[-1].name)
            if len(users) != 1 or not _link(users[0]) or isinstance(users[0], Floor):
                break
            chain.append(users[0])
        used.update(n.name for n in chain)
        out.append(chain)
    return out


def recognize_qcfs(g: Graph) -> Graph:
    """``g`` with every QCFS chain (module doc) replaced by a QuantClip (and the affine maps around it)."""
    replace: dict[str, list[Node]] = {}  # last chain node -> the nodes emitted in its place
    drop: set[str] = set()
    changed: dict[str, Node] = {}
    for chain in _chains(g):
        f = _compose(chain)
        if f is None:
            continue
        levels, s = int(f.hi - f.lo), f.a
        alpha, beta, shift = f.a * f.p, f.a * (f.q - f.lo - 0.5), f.a * f.lo + f.c
        src = chain[0].inputs[0]
        prod, shape = g.nodes[src], g.shapes[src]
        emitted: list[Node] = []
        channels = shape[-1] if isinstance(prod, Linear) else shape[0] if shape else 1
        if (alpha, beta) != (1.0, 0.0):
            if isinstance(prod, (Conv2d, Linear, BatchNorm)) and len(g.users(src)) == 1:
                changed[src] = _scaled(changed.get(src, prod), np.full(channels, alpha, np.float32),
                                       np.full(channels, beta, np.float32))
            else:
                pre = BatchNorm(f"{chain[0].name}.scale", (src,), scale=np.full(shape[0], alpha, np.float32),
                                shift=np.full(shape[0], beta, np.float32))
                emitted.append(pre)
                src = pre.name
        last = chain[-1].name
        fl = next(n for n in chain if isinstance(n, Floor))
        qname = last if shift == 0.0 else fl.name
        emitted.append(QuantClip(qname, (src,), source_op="QCFS", scale=float(s), levels=levels, offset=0.5,
                                 rounding="floor"))
        if shift != 0.0:
            emitted.append(BatchNorm(last, (qname,), scale=np.ones(shape[0], np.float32),
                                     shift=np.full(shape[0], shift, np.float32)))
        replace[last] = emitted
        drop.update(n.name for n in chain[:-1])
    if not replace:
        return g
    nodes: list[Node] = []
    for name, node in g.nodes.items():
        if name in drop:
            continue
        nodes.extend(replace.get(name, [changed.get(name, node)]))
    out = Graph(nodes, g.name)
    out.meta = dict(g.meta)
    return out
