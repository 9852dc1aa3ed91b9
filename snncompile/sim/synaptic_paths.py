"""Per-neuron synaptic fan-out of every spike source of an SNN graph.

A spike of neuron i in source layer S (an ``IF`` node, or the ``Input`` under spike coding)
travels through the *downstream linear region* of S: every node reachable from S without
passing through another ``IF`` node, ending at the next ``IF`` nodes or at the ``Output``
(the readout). Its fan-out is the number of synaptic paths it drives there:

.. math:: f_i = \\Big[ J_{|W|}^\\top \\mathbf{1} \\Big]_i,
          \\qquad J_{|W|} = \\frac{\\partial\\, \\mathrm{sinks}}{\\partial\\, s_S}
          \\text{ with every weight } W \\to \\mathbb{1}[W \\neq 0],\\ \\text{biases} \\to 0

i.e. one vector-Jacobian product of the *structural* linear chain: Conv2d/Linear weights become
their non-zero pattern, BatchNorm scales likewise, average pools become sum pools (a pool
window is a connection of weight 1), structural nodes (Add, Concat, Flatten, Reshape) pass
counts through. The result counts paths: a neuron feeding a 3x3 conv with 32 output channels
has f = 9*32 away from borders (fewer near zero-padded borders); through a non-overlapping
2x2 pool each neuron reaches one pool output, so f equals the conv fan-out of that output.
Overlapping pools or two weighted layers in a row count every path (an upper bound on the
distinct synapses of a fused kernel). Computed once per graph; synops = spikes . f.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from snncompile.ir import AvgPool2d, BatchNorm, Conv2d, GlobalAvgPool, Graph, Linear, Node
from snncompile.ir.neurons import IF
from snncompile.ir.ops import Output

__all__ = ["structural", "synaptic_paths"]


def _nonzero(arr: np.ndarray) -> np.ndarray:
    return (np.asarray(arr) != 0).astype(np.float32)


def _weighted(node: Conv2d | Linear, _shape) -> Node:
    return dataclasses.replace(node, weight=_nonzero(node.weight), bias=np.zeros_like(node.bias))


def _batchnorm(node: BatchNorm, _shape) -> Node:
    return dataclasses.replace(node, scale=_nonzero(node.scale), shift=np.zeros_like(node.shift))


def _sum_pool(node: AvgPool2d, shape) -> Node:
    c = shape[0]
    ones = np.ones((c, 1, *node.kernel), np.float32)
    return Conv2d(node.name, node.inputs, ones, np.zeros(c, np.float32), tuple(node.stride),
                  tuple(node.padding), tuple(node.dilation), groups=c)


def _global_sum(node: GlobalAvgPool, shape) -> Node:
    c = shape[0]
    ones = np.ones((c, 1, *shape[1:]), np.float32)
    return Conv2d(node.name, node.inputs, ones, np.zeros(c, np.float32), groups=c)


_STRUCTURAL = {Conv2d: _weighted, Linear: _weighted, BatchNorm: _batchnorm, AvgPool2d: _sum_pool,
               GlobalAvgPool: _global_sum}


def structural(node: Node, in_shape) -> Node:
    """The node with |W| replaced by its non-zero pattern (others unchanged); see module doc."""
    rule = _STRUCTURAL.get(type(node))
    return rule(node, in_shape) if rule else node


def _region(graph: Graph, source: str) -> list[str]:
    """Nodes reachable from ``source`` without passing through an IF, in topological order."""
    seen, stack = set(), [source]
    while stack:
        for user in graph.users(stack.pop()):
            if user.name not in seen:
                seen.add(user.name)
                if not isinstance(user, (IF, Output)):
                    stack.append(user.name)
    return [n for n in graph.nodes if n in seen]


def _paths_of(graph: Graph, source: str) -> torch.Tensor:
    region = _region(graph, source)
    s = torch.ones((1, *graph.shapes[source]), requires_grad=True)
    vals: dict[str, torch.Tensor] = {source: s}
    sinks = []
    for name in region:
        node = graph.nodes[name]
        if isinstance(node, (IF, Output)):
            sinks.append(vals[node.inputs[0]].sum())
            continue
        ins = [vals.get(i, torch.zeros((1, *graph.shapes[i]))) for i in node.inputs]
        vals[name] = structural(node, graph.shapes[node.inputs[0]]).forward(*ins)
    if not sinks:
        return torch.zeros(graph.shapes[source])
    (grad,) = torch.autograd.grad(torch.stack(sinks).sum(), s, allow_unused=True)
    return torch.zeros(graph.shapes[source]) if grad is None else grad[0].detach()


def synaptic_paths(graph: Graph, sources: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Fan-out per neuron (per-sample shape, float32) of each spike source: the synaptic paths it drives
    through its downstream linear region (module doc). Not one connection's synapses, which the
    population simulator counts (:func:`snncompile.sim.popsim.synapses_per_neuron`).

    ``sources`` defaults to every IF node; pass the Input's name too for spike-coded input.
    """
    names = sources if sources is not None else [n.name for n in graph.of_type(IF)]
    with torch.enable_grad():
        return {name: _paths_of(graph, name) for name in names}
