"""Lava's timing as a pass: ``pipeline(g) -> Graph`` makes a synchronous population graph run on Lava.

The core population graph (``snncompile.lower``, ``snncompile.quantize``) is synchronous: a
population reads what its sources emit in the same step. On Lava every connection (a Dense or Conv
process) delays by one step (``docs/lava_internals.md``, section 1), so a population at depth ``d``
(the length of the longest path of connections from the input) sees the input ``d`` steps late. A
connection from depth ``d_S`` into depth ``d_P > d_S + 1`` would deliver its payload
``d_P - d_S - 1`` steps before the population's other inputs. :func:`pipeline` therefore inserts a
chain of :class:`Relay` populations on such connections, each fed by an identity connection, so
that every connection spans exactly one depth level; then Lava's run is the synchronous run shifted
by ``d`` steps per population, which the Lava lowering accounts for with each process's ``offset =
d`` (:func:`depths`).

Relays are made here, after quantization, directly as integers where the graph is integer: the
identity connection has mantissa 1 and exponent 0 (``fixed=True``), a depthwise 1x1 convolution
for 3-D populations and an identity matrix otherwise, and the relay forwards its input payload
unchanged (``s = a``): exact for every payload (spike counts and graded input values), and the
connection after the relay keeps the quantized weights of the original one. Relays are Lava
processes (``Passthrough``): they take neurons, synapses and messages on the chip, so the Lava
report counts them (``snncompile.backends.lava.runner``); the simulators never see them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from snncompile.errors import BackendError
from snncompile.ir import Graph, Input, Node, Output
from snncompile.ir.populations import CONNECTIONS, ConvConn, DenseConn, Source

__all__ = ["Relay", "depths", "origin", "pipeline"]


@dataclass(frozen=True, eq=False)
class Relay(Node):
    """Delay relay: forwards its input payload, ``s = a`` (a graded spike), one step later on Lava.

    Fed by exactly one identity connection; made only by :func:`pipeline`.
    """

    op = "Relay"

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a


def _conns(g: Graph, pop: Node) -> list[Node]:
    return [g.nodes[c] for c in pop.inputs]


def depths(g: Graph) -> dict[str, int]:
    """Depth of every population (the Source 0; else 1 + the largest depth of its sources), checking
    that every connection spans exactly one level (BackendError naming the first that does not)."""
    depth: dict[str, int] = {}
    for n in g.nodes.values():
        if isinstance(n, Source):
            depth[n.name] = 0
        elif not isinstance(n, (Input, Output, *CONNECTIONS)):
            srcs = [c.inputs[0] for c in _conns(g, n)]
            depth[n.name] = 1 + max(depth[s] for s in srcs)
            for c, s in zip(n.inputs, srcs):
                if depth[s] != depth[n.name] - 1:
                    raise BackendError(f"{c} (connection): spans depth {depth[s]} -> {depth[n.name]}; Lava needs "
                                       f"one level per connection (snncompile.backends.lava.timing.pipeline adds the relays)")
    return depth


def _identity(name: str, src: str, shape: tuple[int, ...], fixed: bool) -> Node:
    """The identity connection from ``src`` (payload shape ``shape``), integer (mantissa 1, exp 0) if ``fixed``."""
    if len(shape) == 3:
        return ConvConn(name, (src,), weight=np.ones((shape[0], 1, 1, 1)), groups=shape[0], fixed=fixed)
    return DenseConn(name, (src,), weight=np.eye(math.prod(shape)), out_shape=tuple(shape), fixed=fixed)


def pipeline(g: Graph) -> Graph:
    """``g`` with relays on every connection that skips depth levels (see module docstring).

    Idempotent: a graph where every connection spans one level comes back unchanged (the same
    object). Relay ``{origin}.relay{d}`` carries the payload of population ``origin`` at depth ``d``;
    the relays of one origin are shared by every connection that needs them."""
    fixed = g.stage == "integer"
    depth: dict[str, int] = {}
    mapping: dict[str, Node] = {}
    rename: dict[str, str] = {}
    extra: list[Node] = []
    for n in g.nodes.values():
        if isinstance(n, Source):
            depth[n.name] = 0
        elif not isinstance(n, (Input, Output, *CONNECTIONS)):
            conns = _conns(g, n)
            depth[n.name] = d = 1 + max(depth[c.inputs[0]] for c in conns)
            for c in conns:
                src = c.inputs[0]
                while depth[src] < d - 1:  # relay the payload one level further
                    name = f"{origin(g, c.inputs[0])}.relay{depth[src] + 1}"
                    if name not in depth:
                        if name in g.nodes:
                            raise BackendError(f"{name}: a node already has the name of a Lava delay relay")
                        ident = _identity(f"{src}->{name}", src, g.shapes[c.inputs[0]], fixed)
                        extra += [ident, Relay(name, (ident.name,))]
                        depth[name] = depth[src] + 1
                    src = name
                if src != c.inputs[0]:
                    mapping[c.name] = dataclasses.replace(c, name=f"{src}->{n.name}", inputs=(src,))
                    rename[c.name] = mapping[c.name].name
    return g.replace(mapping, rename=rename, extra=extra) if mapping else g


def origin(g: Graph, name: str) -> str:
    """The population whose payload ``name`` carries: ``name`` itself, or a relay's origin."""
    while isinstance(g.nodes.get(name), Relay):
        name = g.nodes[g.nodes[name].inputs[0]].inputs[0]
    return name
