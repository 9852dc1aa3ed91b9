"""Evaluation records: one per simulated target, in a form the report and the compare tool share."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from snncompile.ir import IF, Graph, Input, Output, ReLU
from snncompile.ir.populations import CONNECTIONS, IFPop, Readout, Source

__all__ = ["Evaluation", "ann_correct", "ann_macs", "ann_predictions", "from_float_sim", "from_population_sim",
           "input_macs"]


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
    silent_saturations: dict[str, int] = field(default_factory=dict)  # of those, the ones that changed no spike
    pre_steps: int = 0  # uncounted steps before the T counted ones (SRP's tau), included in the spike counts
    # early exit (graph.meta["early_exit"], --early-exit): each sample's exit step in 1..T, the samples correct
    # at it, and what spikes/synops count: "exit_step" (to each sample's exit step, from a per-step trace: the
    # simulators', or Lava's recorded per-step counts) or "full_window" (all T: a run without a per-step trace,
    # e.g. run_lava(trace=False)). ``predictions`` are then read at the exit step;
    # ``correct_vs_t`` and ``per_sample_spikes`` stay those of the full run (Lava's spike check compares them).
    exit_steps: np.ndarray | None = None
    exit_correct: int | None = None
    exit_counts: str | None = None
    exit_policy: dict | None = None

    @property
    def latency_steps(self) -> int:
        """Steps per sample until the output at T: the pre-steps plus T."""
        return self.pre_steps + self.timesteps

    @property
    def correct(self) -> int | None:
        """Samples classified correctly: at their exit step with early exit, else at T (None without labels)."""
        if self.exit_steps is not None:
            return self.exit_correct
        return None if self.correct_vs_t is None else self.correct_vs_t[-1]

    @property
    def accuracy_vs_t(self) -> list[float | None]:
        if self.correct_vs_t is None:
            return [None] * self.timesteps
        return [c / self.samples for c in self.correct_vs_t]

    @property
    def accuracy(self) -> float | None:
        if self.exit_steps is not None:
            return None if self.exit_correct is None else self.exit_correct / self.samples
        return self.accuracy_vs_t[-1] if self.timesteps else None


def _exit_policy(graph: Graph):
    """The graph's early-exit policy (``meta["early_exit"]``, set by the pipeline for --early-exit) or None."""
    from snncompile.sim.early_exit import ExitPolicy

    d = (getattr(graph, "meta", None) or {}).get("early_exit")
    return None if not d else ExitPolicy.from_dict(d)


def _with_exit(ev: Evaluation, policy, outputs: torch.Tensor, trace: dict, y: np.ndarray | None) -> Evaluation:
    """``ev`` with each sample stopped at its exit step under ``policy``: predictions at that step and, when a
    per-step ``trace`` (layer -> (pre_steps + T, N, 2)) is there, spikes and synops counted up to it."""
    from snncompile.sim.early_exit import counts_to_exit, predictions_at

    steps = policy.exit_steps(outputs)
    pred = predictions_at(outputs, steps).numpy()
    ev.predictions, ev.exit_steps, ev.exit_policy = pred, steps.numpy(), policy.as_dict()
    ev.exit_correct = None if y is None else int((pred == np.asarray(y)).sum())
    if trace:
        c = counts_to_exit(trace, steps, ev.pre_steps)
        ev.spikes = {k: float(c[k][0]) if k in c else 0.0 for k in ev.spikes}
        ev.synops = {k: float(c[k][1]) if k in c else 0.0 for k in ev.synops}
        ev.exit_counts = "exit_step"
    else:
        ev.exit_counts = "full_window"
    return ev


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


def ann_predictions(graph: Graph, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(N,) the ANN reference executor's predicted class of every sample, in batches."""
    return np.concatenate([graph.run(x[i:i + batch_size]).reshape(len(x[i:i + batch_size]), -1).argmax(-1).numpy()
                           for i in range(0, len(x), batch_size)])


def ann_macs(graph: Graph) -> int:
    """Multiply-accumulates of the weighted layers of the ANN, per sample."""
    return _macs(graph, graph.nodes.values())


def _macs(graph: Graph, nodes) -> int:
    """Multiply-accumulates per sample of the weighted layers among ``nodes``."""
    total = 0
    for n in nodes:
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
    reach, todo = set(), [n.name for n in graph.nodes.values() if isinstance(n, Input)]
    while todo:
        k = todo.pop()
        if k in reach:
            continue
        reach.add(k)
        todo += [u.name for u in graph.users(k) if not isinstance(u, ReLU)]
    return _macs(graph, (graph.nodes[k] for k in reach))


def from_float_sim(snn: Graph, res, y: np.ndarray | None, paths: dict[str, torch.Tensor]) -> Evaluation:
    """From ``snncompile.sim.simulate``'s SimResult on the float SNN graph."""
    ops = {n.name: f"IF({n.source_op}{', N=' + str(n.max_spikes) if n.max_spikes > 1 else ''})"
           for n in snn.of_type(IF)}
    ev = Evaluation(
        target="sim", samples=res.num_samples, timesteps=res.timesteps,
        correct_vs_t=_correct_vs_t(res.outputs, y), spikes=dict(res.spikes), synops=dict(res.synops),
        neurons=dict(res.neurons), synapses={k: int(v.sum()) for k, v in paths.items() if k in res.neurons},
        ops=ops, seconds=res.wall_s, predictions=res.predictions()[-1].numpy(),
        per_sample_spikes={k: v[:, :, 0].double().sum(0).numpy() for k, v in res.trace.items()},
        pre_steps=res.pre_steps)
    policy = _exit_policy(snn)
    return ev if policy is None else _with_exit(ev, policy, res.outputs, res.trace, y)


def from_population_sim(pop: Graph, res, y: np.ndarray | None, target: str) -> Evaluation:
    """From ``snncompile.sim.popsim``'s result (or the Lava runner's, same fields, on the graph it ran).

    Layers are the populations that emit spikes: IF populations, and any population a backend's own
    pass added (Lava's delay relays, op ``Relay``); not the Source nor the Readout."""
    from snncompile.sim.popsim import synapses_per_neuron

    syn: dict[str, int] = {}
    for c in pop.of_type(*CONNECTIONS):
        src = c.inputs[0]
        syn[src] = syn.get(src, 0) + int(synapses_per_neuron(c, pop.shapes[src]).sum())
    spiking = {n.name: n for n in pop.nodes.values()
               if not isinstance(n, (Input, Output, Source, Readout, *CONNECTIONS))}
    ops = {k: (f"IF(N={n.max_spikes})" if isinstance(n, IFPop) else n.op) for k, n in spiking.items()}
    ev = Evaluation(
        target=target, samples=res.samples, timesteps=res.timesteps,
        correct_vs_t=_correct_vs_t(res.outputs, y),
        spikes={k: res.spikes.get(k, 0.0) for k in spiking}, synops={k: res.synops.get(k, 0.0) for k in spiking},
        neurons={k: res.neurons[k] for k in spiking}, synapses={k: syn.get(k, 0) for k in spiking}, ops=ops,
        seconds=res.seconds, predictions=res.outputs[-1].argmax(-1).numpy(),
        per_sample_spikes=dict(res.layer_spike_counts), saturations=dict(res.saturations),
        silent_saturations=dict(getattr(res, "silent_saturations", {})), pre_steps=res.pre_steps)
    policy = _exit_policy(pop)  # counts to each exit step need a per-step trace (popsim's trace=True, Lava's)
    return ev if policy is None else _with_exit(ev, policy, res.outputs, getattr(res, "trace", {}), y)

