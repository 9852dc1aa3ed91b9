"""Evaluation records: one per simulated target, in a form the report and the compare tool share."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from snncompile.ir import IF, Graph
from snncompile.ir.populations import CONNECTIONS, IFPop, Relay

__all__ = ["Evaluation", "ann_correct", "ann_macs", "from_float_sim", "from_population_sim", "input_macs"]


@dataclass
class Evaluation:
    """Accuracy over time and per-layer activity of one simulation run (totals over samples)."""

    target: str
    samples: int
    timesteps: int
    correct_vs_t: list[int] | None  # correctly classified samples after t = 1..T steps (None: no labels)
    spikes: dict[str, float]
    synops: dict[str, float]
    neurons: dict[str, int]
    synapses: dict[str, int]
    ops: dict[str, str]
    seconds: float
    predictions: np.ndarray  # (N,) at T
    per_sample_spikes: dict[str, np.ndarray] = field(default_factory=dict)
    saturations: dict[str, int] = field(default_factory=dict)
    pre_steps: int = 0  # uncounted steps before the T counted ones (SRP's tau), included in the spike counts

    @property
    def latency_steps(self) -> int:
        """Steps per sample until the output at T: the pre-steps plus T."""
        return self.pre_steps + self.timesteps

    @property
    def accuracy_vs_t(self) -> list[float | None]:
        if self.correct_vs_t is None:
            return [None] * self.timesteps
        return [c / self.samples for c in self.correct_vs_t]

    @property
    def accuracy(self) -> float | None:
        return self.accuracy_vs_t[-1] if self.timesteps else None


def _correct_vs_t(outputs: torch.Tensor, y: np.ndarray | None) -> list[int] | None:
    if y is None:
        return None
    pred = outputs.reshape(outputs.shape[0], outputs.shape[1], -1).argmax(-1).numpy()
    return [int(v) for v in (pred == y[None, :]).sum(axis=1)]


def ann_correct(graph: Graph, x: np.ndarray, y: np.ndarray | None, batch_size: int = 256) -> int | None:
    """Samples the ANN reference executor classifies correctly (None without labels), in batches."""
    if y is None:
        return None
    return int(sum(int((graph.run(x[i:i + batch_size]).argmax(-1).numpy() == y[i:i + batch_size]).sum())
                   for i in range(0, len(x), batch_size)))


def ann_macs(graph: Graph) -> int:
    """Multiply-accumulates of the weighted layers of the ANN, per sample."""
    total = 0
    for n in graph.nodes.values():
        w = getattr(n, "weight", None)
        if w is not None:
            out = graph.shapes[n.name]
            total += int(np.prod(out[1:] if len(out) == 3 else (1,))) * int(np.prod(w.shape))
    return total


def input_macs(graph: Graph) -> int:
    """Multiply-accumulates of the weighted layers fed by the analog input before any activation.

    In the SNN these layers still multiply (the input is not spikes): held constant over a
    sample's steps, they are computed once per sample (what the simulators do), so the energy
    model charges them as MACs once per sample."""
    from snncompile.ir import Input, ReLU

    reach, todo = set(), [n.name for n in graph.nodes.values() if isinstance(n, Input)]
    while todo:
        k = todo.pop()
        if k in reach:
            continue
        reach.add(k)
        todo += [u.name for u in graph.users(k) if not isinstance(u, ReLU)]
    sub = [graph.nodes[k] for k in reach]
    total = 0
    for n in sub:
        w = getattr(n, "weight", None)
        if w is not None:
            out = graph.shapes[n.name]
            total += int(np.prod(out[1:] if len(out) == 3 else (1,))) * int(np.prod(w.shape))
    return total


def from_float_sim(snn: Graph, res, y: np.ndarray | None, fanouts: dict[str, torch.Tensor]) -> Evaluation:
    """From ``snncompile.sim.simulate``'s SimResult on the float SNN graph."""
    ops = {n.name: f"IF({n.source_op}{', N=' + str(n.max_spikes) if n.max_spikes > 1 else ''})"
           for n in snn.of_type(IF)}
    return Evaluation(
        target="sim", samples=res.num_samples, timesteps=res.timesteps,
        correct_vs_t=_correct_vs_t(res.outputs, y), spikes=dict(res.spikes), synops=dict(res.synops),
        neurons=dict(res.neurons), synapses={k: int(v.sum()) for k, v in fanouts.items() if k in res.neurons},
        ops=ops, seconds=res.wall_s, predictions=res.predictions()[-1].numpy(),
        per_sample_spikes={k: v[:, :, 0].double().sum(0).numpy() for k, v in res.trace.items()},
        pre_steps=res.pre_steps)


def from_population_sim(pop: Graph, res, y: np.ndarray | None, target: str) -> Evaluation:
    """From ``snncompile.sim.populations``' result (or the Lava runner's, same fields)."""
    from snncompile.sim.populations import fanout

    syn: dict[str, int] = {}
    for c in pop.of_type(*CONNECTIONS):
        src = c.inputs[0]
        syn[src] = syn.get(src, 0) + int(fanout(c, pop.shapes[src]).sum())
    spiking = {n.name: n for n in pop.nodes.values() if isinstance(n, (IFPop, Relay))}
    ops = {k: (f"IF(N={n.max_spikes})" if isinstance(n, IFPop) else "Relay") for k, n in spiking.items()}
    return Evaluation(
        target=target, samples=res.samples, timesteps=res.timesteps,
        correct_vs_t=_correct_vs_t(res.outputs, y),
        spikes={k: res.spikes.get(k, 0.0) for k in spiking}, synops={k: res.synops.get(k, 0.0) for k in spiking},
        neurons={k: res.neurons[k] for k in spiking}, synapses={k: syn.get(k, 0) for k in spiking}, ops=ops,
        seconds=res.seconds, predictions=res.outputs[-1].argmax(-1).numpy(),
        per_sample_spikes=dict(res.layer_spike_counts), saturations=dict(res.saturations),
        pre_steps=res.pre_steps)

