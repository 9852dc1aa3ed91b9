"""The ``nir`` target: export the float population graph as a NIR graph (``model.nir``), no run.

Why the float *population* graph (``RunResult.pop_float``) and not the float SNN graph: it is the
network every chip target runs (the integer graph is its quantization, node for node), its
populations sum their incoming connections exactly as NIR sums the edges entering a node, and its
IF populations emit unit spikes with the thresholds folded into the outgoing weights. NIR 1.0 has
no Concat, Add or Unflatten node, and the population graph needs none: residual Adds and Concats
are already resolved into connections.

Our IF neuron, exactly, in NIR primitives. NIR 1.0.8's ``IF`` (like ``LIF`` and ``CubaLIF``)
resets *to* ``v_reset``, fires on ``v > v_threshold`` and has no initial state, so it cannot hold a
neuron that subtracts theta on a spike, fires on ``v >= theta`` and starts at ``v0`` (theta/2 for
most methods). Each IF population P (``v_t = v_{t-1} + a_t + b - theta*s_{t-1}``, ``s_t = [v_t >=
theta]``, ``v_0 = v0``; ``v`` here is the membrane before the step's reset) becomes three nodes::

    a_t (+ b, in the first connection's bias) --> P = I(r=1)  w_t = w_{t-1} + a_t + b + f_t
                                                  |           (w = v - v0: the integrator starts at 0)
                                                  v
                           P.spike = Threshold(theta_w)  s_t = [w_t > theta_w] --> consumers of P
                                                  |
                                                  v
                        P.reset = Scale(-theta)  --(recurrent edge: read one step later)--> P

* the **initial potential** is a change of variable: ``w = v - v0`` starts at 0, as every NIR
  state does, and ``v >= theta`` is ``w >= theta - v0``. Exact for binary spikes (a burst neuron's
  ``floor(v/theta)`` would need the unshifted ``v``: bursts are refused);
* the **spike condition** ``>=`` becomes NIR's ``>`` with ``theta_w`` the largest float32 below
  ``theta - v0`` (``np.nextafter``): for float32 membranes ``w > theta_w`` is ``w >= theta - v0``;
* the **soft reset** is the recurrent edge ``P.spike -> P.reset -> P``: the spike of step t-1,
  scaled by ``-theta``, enters the integrator at step t, with the step's input. A graph executor
  breaks a cycle by reading the previous step's output there (nirtorch does; NIR's discrete-time
  convention for recurrent edges), which is exactly our ``v -= theta`` after the spike, applied
  before the next comparison;
* time: one NIR time unit is one step, ``dt = 1``, ``r = 1``: ``w_t = w_{t-1} + input_t``.

The rest, one rule per node type in :data:`RULES`:

* ``Source`` -> ``nir.Input`` (the sample ``x`` is applied at every step);
* ``ConvConn`` -> ``nir.Conv2d`` (PyTorch layout and cross-correlation, padding (rows, cols));
* ``DenseConn`` -> ``nir.Flatten`` (3-D sources, C-order) + ``nir.Affine``;
* ``Readout`` -> no node: its connections feed ``nir.Output`` directly, whose value at each step is
  the readout current; the network output after T steps is its mean over the T steps.

The population graph is synchronous, as NIR's executors are: no delays to undo (Lava's delay relays
are made inside the Lava backend only).

A population's per-step bias is the bias of its first incoming connection (NIR's ``I`` has none).
``Conv2d`` carries a per-channel bias only: a bias that varies across a channel is refused. Burst
neurons (``max_spikes > 1``) and SRP populations (``srp_steps > 0``: a per-neuron mask set from
the membrane after the pre-steps) have no NIR counterpart and are refused; the conversion avoids
them for this target (:attr:`NirBackend.supports`, :func:`snncompile.convert.for_target.method_for_target`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from snncompile.backends import Backend, Supports

from snncompile.errors import BackendError
from snncompile.ir import Graph, Input, Output
from snncompile.ir.arrays import channel_view, expand
from snncompile.ir.populations import ConvConn, DenseConn, IFPop, Readout, Source

__all__ = ["GRAPH_METADATA", "RULES", "NirBackend", "spike_threshold", "to_nir"]

log = logging.getLogger("snncompile")

GRAPH_METADATA = {
    "producer": "snncompile",
    "source_graph": "float population graph (RunResult.pop_float)",
    "time_step": "one NIR time unit is one step: dt = 1, every integrator I has r = 1",
    "neuron": "integrate-and-fire with reset by subtraction, in primitives: I (integrator) -> Threshold, "
              "and a recurrent edge Threshold -> Scale(-theta) -> I read one step later (the soft reset)",
    "initial_state": "all zero; the integrator holds v - v0 and the Threshold is theta - v0 (as float32, "
                     "the largest float below it: NIR's '>' is our '>=')",
    "input": "the input sample is applied unchanged at every step",
    "output": "per-step readout current; the network output after T steps is its mean over the T steps",
}


def _safe(name: str) -> str:
    """NIR node names become HDF5 group names, where '/' would nest groups."""
    return name.strip("/").replace("/", ".") or "node"


class _Builder:
    """Collects NIR nodes and edges while walking the population graph in topological order."""

    def __init__(self, g: Graph):
        import nir

        self.nir, self.g = nir, g
        self.nodes: dict = {}
        self.edges: list[tuple[str, str]] = []
        self.names: dict[str, str] = {}
        self.output_of = {o.inputs[0]: o.name for o in g.outputs}  # readout population -> Output node

    def name(self, ours: str) -> str:
        if ours not in self.names:
            new = _safe(ours)
            if new in self.names.values():
                raise BackendError(f"{ours}: its NIR name {new!r} collides with another node's")
            self.names[ours] = new
        return self.names[ours]

    def add(self, ours: str, node) -> str:
        node.metadata = {"source_name": ours, **node.metadata}
        self.nodes[self.name(ours)] = node
        return self.name(ours)

    def out(self, src: str) -> str:
        """NIR name carrying the payload of population ``src`` (an IF population's Threshold node)."""
        return self.name(f"{src}/spike") if isinstance(self.g.nodes[src], IFPop) else self.name(src)

    def target(self, conn) -> str:
        """NIR name a connection feeds: its population, or the Output for a readout."""
        pop = self.g.users(conn.name)[0]
        return self.name(self.output_of[pop.name] if isinstance(pop, Readout) else pop.name)

    def bias_for(self, conn) -> np.ndarray | None:
        """The destination's full-shape bias if ``conn`` is its first connection, else None."""
        pop = self.g.users(conn.name)[0]
        if pop.inputs[0] != conn.name:
            return None
        return expand(pop.bias, self.g.shapes[pop.name])


def _source(b: _Builder, n: Source) -> None:
    b.add(n.name, b.nir.Input(input_type={"input": np.array(b.g.shapes[n.name])}))


def spike_threshold(theta, v0, shape: tuple[int, ...]) -> np.ndarray:
    """The ``Threshold`` of an exported IF population: the largest float32 below ``theta - v0``.

    For float32 integrator values ``w``, ``w > spike_threshold`` is ``w >= theta - v0``, i.e. our
    ``v >= theta`` with ``v = w + v0`` (see the module docstring). Stored as float64, exactly.
    """
    shifted = expand(theta, shape).astype(np.float32) - expand(v0, shape).astype(np.float32)
    return np.nextafter(shifted, np.float32(-np.inf)).astype(np.float64)


def _if(b: _Builder, n: IFPop) -> None:
    if n.max_spikes != 1:
        raise BackendError(f"{n.name} (IF): burst neuron (max_spikes={n.max_spikes}); NIR carries binary "
                           f"spikes only, export a network converted without bursts")
    if n.srp_steps:
        raise BackendError(f"{n.name} (IF): SRP suppression after {n.srp_steps} pre-steps (a per-neuron "
                           f"mask set from the membrane) has no NIR counterpart; export a network converted "
                           f"without srp")
    shape = b.g.shapes[n.name]
    theta = expand(n.theta, shape)
    if not np.all(theta > 0):
        raise BackendError(f"{n.name} (IF): thresholds must be > 0 to export")
    same = {"population": n.name}
    integrator = b.add(n.name, b.nir.I(r=np.ones(shape), metadata={
        **same, "role": "membrane minus v0 (starts at 0); inputs: the connections and the reset edge"}))
    spike = b.add(f"{n.name}/spike", b.nir.Threshold(threshold=spike_threshold(n.theta, n.v0, shape), metadata={
        **same, "role": "spike: [v >= theta] with v = integrator + v0"}))
    reset = b.add(f"{n.name}/reset", b.nir.Scale(scale=-theta, metadata={
        **same, "role": "soft reset: -theta per spike, into the integrator at the next step (recurrent edge)"}))
    b.edges += [(integrator, spike), (spike, reset), (reset, integrator)]


def _conv(b: _Builder, c: ConvConn) -> None:
    to = b.target(c)
    bias = b.bias_for(c)
    channel = np.zeros(c.weight.shape[0]) if bias is None else bias[:, 0, 0].copy()
    if bias is not None and not np.array_equal(bias, np.broadcast_to(channel_view(channel, bias.ndim), bias.shape)):
        pop = b.g.users(c.name)[0]
        raise BackendError(f"{pop.name} ({pop.op}): bias varies within a channel; NIR's Conv2d bias is per "
                           f"channel and NIR 1.0 has no other per-neuron bias")
    src = c.inputs[0]
    node = b.nir.Conv2d(input_shape=tuple(b.g.shapes[src][1:]), weight=np.asarray(c.weight, np.float64),
                        stride=tuple(c.stride), padding=tuple(c.padding), dilation=tuple(c.dilation),
                        groups=int(c.groups), bias=channel)
    name = b.add(c.name, node)
    b.edges += [(b.out(src), name), (name, to)]


def _dense(b: _Builder, c: DenseConn) -> None:
    to = b.target(c)
    if len(c.out_shape) != 1:
        raise BackendError(f"{c.name} (Dense): output shape {tuple(c.out_shape)} needs an unflatten, which "
                           f"NIR 1.0 does not have")
    bias = b.bias_for(c)
    src = c.inputs[0]
    src_name = b.out(src)
    if len(b.g.shapes[src]) > 1:
        flat = b.add(f"{c.name}.flatten", b.nir.Flatten(input_type={"input": np.array(b.g.shapes[src])},
                                                         start_dim=0, end_dim=-1))
        b.edges.append((src_name, flat))
        src_name = flat
    w = np.asarray(c.weight, np.float64)
    name = b.add(c.name, b.nir.Affine(weight=w, bias=np.zeros(w.shape[0]) if bias is None else bias.copy()))
    b.edges += [(src_name, name), (name, to)]


def _output(b: _Builder, o: Output) -> None:
    b.add(o.name, b.nir.Output(output_type={"output": np.array(b.g.shapes[o.name])},
                               metadata={"semantics": GRAPH_METADATA["output"]}))


def _skip(b: _Builder, n) -> None:
    """Nodes with no NIR node of their own (see module docstring)."""


RULES: dict[type, Callable] = {Input: _skip, Source: _source, IFPop: _if, Readout: _skip, ConvConn: _conv,
                               DenseConn: _dense, Output: _output}


def to_nir(g: Graph):
    """The population graph ``g`` as a ``nir.NIRGraph`` (raises BackendError naming the first node NIR can't hold)."""
    import nir

    b = _Builder(g)
    for n in g.nodes.values():
        rule = RULES.get(type(n))
        if rule is None:
            raise BackendError(f"{n.name} ({n.op}): no NIR export rule for this node type")
        rule(b, n)
    try:
        return nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=dict(GRAPH_METADATA))
    except (ValueError, AssertionError) as e:
        raise BackendError(f"{g.name}: NIR rejected the exported graph ({str(e).splitlines()[0]})") from e


def _summary(graph) -> dict:
    neurons = sum(int(np.prod(n.threshold.shape)) for n in graph.nodes.values() if type(n).__name__ == "Threshold")
    return {"file": "model.nir", "nodes": dict(Counter(type(n).__name__ for n in graph.nodes.values())),
            "edges": len(graph.edges), "neurons": neurons, "source_graph": GRAPH_METADATA["source_graph"],
            "neuron": "exact: I + Threshold(theta - v0) + recurrent Scale(-theta) (soft reset, initial potential)"}


class NirBackend(Backend):
    """Export only: ``evaluate`` checks that the graph fits NIR, ``write`` stores ``model.nir``.

    ``supports``: binary spikes only (NIR has no graded-spike neuron), no SRP mask; soft reset and
    initial potentials are exact (module docstring); synchronous, like the population graph.
    """

    name = "nir"
    supports = Supports(bursts=False, srp=False, soft_reset=True, initial_potential=True, early_exit=False)

    def evaluate(self, graph, evals, cfg, *, reference):
        summary = _summary(to_nir(graph))  # the integer graph has the float graph's structure
        log.info("nir: %d nodes, %d edges, %d IF neurons as I + Threshold + recurrent Scale (exact soft reset "
                 "and initial potential)", sum(summary["nodes"].values()), summary["edges"], summary["neurons"])
        return None, {"nir": summary}

    def write(self, result, directory: Path) -> list[Path]:
        import nir

        if result.pop_float is None:
            raise BackendError("nir: the run has no float population graph to export")
        path = Path(directory) / "model.nir"
        nir.write(path, to_nir(result.pop_float))
        return [path]
