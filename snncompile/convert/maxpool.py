"""MaxPool2d has no spiking equivalent; rewrite it before conversion (a pure ANN rewrite).

``relu-tree``: over a window of K taps ``e_1..e_K`` (each a strided selection of the input, a
fixed one-hot depthwise Conv2d with the pool's stride, padding and dilation), the maximum is
reduced by a balanced pairwise tree of

.. math:: \\max(u, v) = u + \\mathrm{ReLU}(v - u)

where u, v are linear combinations of selections and earlier ReLUs. Every difference ``v - u``
is built from fixed-weight depthwise Conv2d nodes (one for the input taps, +-1 1x1 convs for
ReLU terms) and an Add; every ``ReLU`` created is then converted to an IF like any other.
The final ``u + sum ReLU`` is an Add that keeps the pool's name. A 2x2 window costs 3 ReLUs.
The rewrite equals the max exactly (up to float rounding) for any input when the pool has no
padding; with padding, max pads with -inf and the selections pad with 0, which is the same only
for non-negative inputs.

``avg``: replace by AvgPool2d with the same window (a different function: warns, naming the node).

Default (``mode=None``): relu-tree when the pool's input is provably non-negative (produced by a
ReLU, possibly through pools, Add, Concat, Flatten, Reshape), otherwise ConversionError.
"""

from __future__ import annotations

import warnings

import numpy as np

from snncompile.errors import ConversionError
from snncompile.ir import (
    Add,
    AvgPool2d,
    Concat,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Graph,
    MaxPool2d,
    ReLU,
    Reshape,
)
from snncompile.ir.node import Node

__all__ = ["MAXPOOL_MODES", "nonnegative", "rewrite_maxpool"]

MAXPOOL_MODES = ("relu-tree", "avg")
_PASS_SIGN = (MaxPool2d, AvgPool2d, GlobalAvgPool, Flatten, Reshape, Concat, Add)


def nonnegative(graph: Graph, name: str) -> bool:
    """True if node ``name``'s output is >= 0 for every input (structural proof)."""
    node = graph.nodes[name]
    if isinstance(node, ReLU):
        return True
    return isinstance(node, _PASS_SIGN) and all(nonnegative(graph, i) for i in node.inputs)


class _Tree:
    """Builds the relu-tree nodes of one pool; a value is (tap kernel (kh, kw), {relu: coef})."""

    def __init__(self, pool: MaxPool2d, channels: int) -> None:
        self.pool, self.c, self.nodes, self.fixed, self.relus = pool, channels, [], [], 0

    def conv_node(self, name: str, src: str, kernel: np.ndarray, full: bool) -> Conv2d:
        """Fixed depthwise conv: the pool's window/stride/padding/dilation (``full``) or 1x1."""
        w = np.tile(kernel.astype(np.float32), (self.c, 1, 1, 1))
        p = self.pool
        stride, pad, dil = (p.stride, p.padding, p.dilation) if full else ((1, 1), (0, 0, 0, 0), (1, 1))
        self.fixed.append(name)
        return Conv2d(name, (src,), w, np.zeros(self.c, np.float32), tuple(stride), tuple(pad), tuple(dil),
                      groups=self.c)

    def _conv(self, name: str, src: str, kernel: np.ndarray, full: bool) -> str:
        self.nodes.append(self.conv_node(name, src, kernel, full))
        return name

    def combine(self, name: str, kernel: np.ndarray, terms: dict[str, float]) -> Node | str:
        """Node (or existing name) computing selection(kernel) + sum coef * relu."""
        ins = [self._conv(f"{name}.x", self.pool.inputs[0], kernel[None], True)] if kernel.any() else []
        for r, coef in terms.items():
            ins.append(r if coef == 1 else self._conv(f"{name}.{r}", r, np.full((1, 1, 1), coef), False))
        return Add(name, tuple(ins)) if len(ins) > 1 else ins[0]

    def maximum(self, u, v):
        kernel_u, terms_u = u
        kernel_v, terms_v = v
        i = self.relus
        self.relus += 1
        diff_terms = {**{r: 1.0 for r in terms_v}, **{r: -1.0 for r in terms_u}}
        diff = self.combine(f"{self.pool.name}.d{i}", kernel_v - kernel_u, diff_terms)
        if isinstance(diff, Add):
            self.nodes.append(diff)
            diff = diff.name
        relu = f"{self.pool.name}.relu{i}"
        self.nodes.append(ReLU(relu, (diff,), source_op="MaxPool2d relu-tree"))
        return kernel_u, {**terms_u, relu: 1.0}


def _relu_tree(pool: MaxPool2d, channels: int) -> tuple[list[Node], Node, list[str], int]:
    kh, kw = pool.kernel
    tree = _Tree(pool, channels)
    level = [(np.eye(kh * kw, dtype=np.float32)[k].reshape(kh, kw), {}) for k in range(kh * kw)]
    while len(level) > 1:
        pairs = [tree.maximum(level[k], level[k + 1]) for k in range(0, len(level) - 1, 2)]
        level = pairs + level[len(pairs) * 2:]
    kernel, terms = level[0]
    if not terms:  # a 1x1 window: the pool is a strided selection
        return tree.nodes, tree.conv_node(pool.name, pool.inputs[0], kernel[None], True), tree.fixed, 0
    ins = [tree._conv(f"{pool.name}.x", pool.inputs[0], kernel[None], True), *terms]
    return tree.nodes, Add(pool.name, tuple(ins)), tree.fixed, tree.relus


def _avg(pool: MaxPool2d) -> AvgPool2d:
    warnings.warn(f"{pool.name} (MaxPool2d): replaced by AvgPool2d (maxpool='avg'); the network computes a "
                  f"different function", stacklevel=4)
    return AvgPool2d(pool.name, pool.inputs, kernel=tuple(pool.kernel), stride=tuple(pool.stride),
                     padding=tuple(pool.padding), dilation=tuple(pool.dilation), count_include_pad=False)


def _choose(graph: Graph, pool: MaxPool2d, mode: str | None) -> str:
    if mode is not None and mode not in MAXPOOL_MODES:
        raise ConversionError(f"maxpool must be one of {MAXPOOL_MODES}, got {mode!r}")
    nonneg = nonnegative(graph, pool.inputs[0])
    if mode is None and not nonneg:
        raise ConversionError(f"{pool.name} (MaxPool2d): its input '{pool.inputs[0]}' may be negative, so no "
                              f"exact spiking max exists here; pass maxpool='avg' to use an average pool")
    if mode == "relu-tree" and not nonneg and any(pool.padding):
        raise ConversionError(f"{pool.name} (MaxPool2d): relu-tree is not exact with padding on a possibly "
                              f"negative input; pass maxpool='avg'")
    return mode or "relu-tree"


def rewrite_maxpool(graph: Graph, *, mode: str | None = None) -> Graph:
    """Rewrite every MaxPool2d (see module doc). The result's ``meta`` holds ``maxpool_log``
    (one dict per pool: node, from_op, to, notes) and ``fixed_weights`` (names of the created
    Conv2d nodes, which calibration must not train)."""
    mapping: dict[str, Node] = {}
    extra: list[Node] = []
    log, fixed = [], []
    for pool in graph.of_type(MaxPool2d):
        how = _choose(graph, pool, mode)
        if how == "avg":
            mapping[pool.name] = _avg(pool)
            log.append({"node": pool.name, "from_op": "MaxPool2d", "to": "AvgPool2d",
                        "notes": "approximation (maxpool='avg')"})
            continue
        nodes, final, names, relus = _relu_tree(pool, graph.shapes[pool.inputs[0]][0])
        extra += nodes
        mapping[pool.name] = final
        fixed += names
        log.append({"node": pool.name, "from_op": "MaxPool2d", "to": "relu-tree",
                    "notes": f"max(u,v)=u+relu(v-u): {relus} ReLU->IF, {len(names)} fixed Conv2d; exact on the ANN"})
    out = graph.replace(mapping, extra=extra) if mapping else graph.replace({})
    out.meta = {**(getattr(graph, "meta", {}) or {}), "maxpool_log": log, "fixed_weights": fixed}
    return out
