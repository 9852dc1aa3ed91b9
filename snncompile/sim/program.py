"""Compile an SNN graph into a step program for the simulator.

Every node is classified once per graph:

* ``Input`` - the input current (analog) or spike train (Poisson);
* ``IF`` - a stateful neuron layer (membrane ``v``), see :class:`snncompile.ir.IF`;
* ``Output`` - the readout: a membrane integrator of its input (no spikes, no reset);
* everything else - a synaptic or structural operator evaluated with its ``forward`` on the
  current step's tensors. An operator whose inputs are all time-invariant (with analog coding:
  the chain from the Input up to the first IF) is *static* and is computed once per batch.

A ``ReLU`` left in the graph is an error: an SNN has no analog activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from snncompile.errors import GraphError
from snncompile.ir import Conv2d, Graph, Linear
from snncompile.ir.arrays import per_channel
from snncompile.ir.neurons import IF
from snncompile.ir.ops import Input, Output, ReLU
from snncompile.sim.synaptic_paths import synaptic_paths

__all__ = ["NeuronLayer", "Op", "Program", "compile_program"]


@dataclass
class NeuronLayer:
    """Tensors of one IF layer on the simulation device (viewed to broadcast over a batch)."""

    name: str
    theta: torch.Tensor  # (1, C, 1, 1)-like or scalar view
    bias: torch.Tensor | None  # per-step current, None when zero
    v0: torch.Tensor
    max_spikes: int
    counter: torch.Tensor  # (2, neurons): rows [1, fan-out]; counter @ n.T -> per-sample (spikes, synops)
    srp: bool  # residual-potential suppression after the pre-steps


@dataclass
class Op:
    """One node evaluation per step: ``vals[name] = fn(*vals[inputs])``."""

    name: str
    kind: str  # "op" | "if" | "output"
    inputs: tuple[str, ...]
    node: object = None
    layer: NeuronLayer | None = None


@dataclass
class Program:
    graph: Graph
    device: torch.device
    input_name: str
    output_name: str
    static: list[Op] = field(default_factory=list)  # computed once per batch
    dynamic: list[Op] = field(default_factory=list)  # computed every step, topological order
    layers: list[NeuronLayer] = field(default_factory=list)
    input_counter: torch.Tensor | None = None  # (2, input elements) for spike-coded input
    input_macs: int = 0  # dense MACs per sample of the weighted layers fed by the Input


def _layer(node: IF, shape, fan: torch.Tensor, device, srp: bool) -> NeuronLayer:
    like = torch.zeros((1, *shape), device=device)
    bias = per_channel(node.bias, like) if node.bias.any() else None
    counter = torch.stack([torch.ones(fan.numel()), fan.reshape(-1)]).to(device)
    return NeuronLayer(node.name, per_channel(node.theta, like), bias, per_channel(node.v0, like),
                       int(node.max_spikes), counter, srp)


def _input_macs(graph: Graph) -> int:
    """MACs per sample of the Conv2d/Linear layers directly downstream of the Input."""
    total = 0
    for user in graph.users(graph.input.name):
        if isinstance(user, Conv2d):
            total += int(user.weight[0].size) * math.prod(graph.shapes[user.name])
        elif isinstance(user, Linear):
            total += int(user.weight.size) * math.prod(graph.shapes[user.name][:-1])
    return total


def compile_program(graph: Graph, device: torch.device | str, *, analog: bool,
                    srp_nodes: frozenset[str] = frozenset()) -> Program:
    """Classify the nodes of ``graph`` (see module doc) and move parameters to ``device``."""
    outs = graph.outputs
    if len(outs) != 1:
        raise GraphError(f"{graph.name}: the simulator needs exactly one Output, got "
                         f"{', '.join(o.name for o in outs)}")
    device = torch.device(device)
    sources = [n.name for n in graph.of_type(IF)] + ([] if analog else [graph.input.name])
    fans = synaptic_paths(graph, sources)
    prog = Program(graph, device, graph.input.name, outs[0].name)
    static = {graph.input.name} if analog else set()
    for node in graph.nodes.values():
        if isinstance(node, ReLU):
            raise GraphError(f"{node.name} (ReLU): analog activation left in the SNN; convert the graph "
                             f"first (snncompile.convert.convert)")
        if isinstance(node, Input):
            continue
        if isinstance(node, IF):
            layer = _layer(node, graph.shapes[node.name], fans[node.name], device, node.name in srp_nodes)
            prog.layers.append(layer)
            prog.dynamic.append(Op(node.name, "if", node.inputs, node, layer))
        elif isinstance(node, Output):
            prog.dynamic.append(Op(node.name, "output", node.inputs, node))
        elif all(i in static for i in node.inputs):
            static.add(node.name)
            prog.static.append(Op(node.name, "op", node.inputs, node))
        else:
            prog.dynamic.append(Op(node.name, "op", node.inputs, node))
    if analog:
        prog.input_macs = _input_macs(graph)
    else:
        fan = fans[graph.input.name]
        prog.input_counter = torch.stack([torch.ones(fan.numel()), fan.reshape(-1)]).to(device)
    return prog
