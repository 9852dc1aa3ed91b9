"""The time loop of the simulator: one batch, ``pre_steps + T`` steps.

Per step, in topological order, every dynamic node is evaluated on the current step's tensors;
an IF layer updates its membrane in place with :func:`snncompile.ir.neurons.if_step` (Deng & Gu 2021,
eq. soft reset; burst for N > 1):

.. math::
    v \\leftarrow v + x[t] + b, \\quad n = \\mathrm{clamp}(\\lfloor v/\\theta \\rfloor, 0, N)
    \\;(n = \\mathbb{1}[v \\ge \\theta] \\text{ for } N = 1), \\quad v \\leftarrow v - n\\theta,
    \\quad y[t] = n\\theta

and the readout integrates its input, ``acc += x[t]``; the reported output after the t-th
counted step is ``acc / t``. Input coding: ``analog`` feeds x at every step (a constant current);
``poisson`` feeds Bernoulli spikes ``1[u < clip(x, 0, 1)]``, u ~ U[0, 1) i.i.d. per element and step.

Pre-steps (Hao et al. 2023, arXiv 2302.02091): the first ``pre_steps`` steps are simulated but not
counted by the readout (its accumulator restarts at zero). At the end of them, each IF layer
flagged for *residual membrane potential suppression* (SRP) stores the mask
``m = 1[v > 1e-3 theta]`` (neurons whose residual potential is not positive are taken to have ANN
output 0), restarts from ``v = v0`` and emits ``m * n`` from then on; other layers carry their
membrane over unchanged. Spikes during the pre-steps are counted (they cost energy).

Per layer and step the per-sample spike count and synaptic-operation count are recorded with
one matrix product ``[1, f] @ n.view(B, -1).T`` (f = fan-out per neuron, see ``synaptic_paths.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from snncompile.ir.neurons import if_step
from snncompile.ir.populations import SRP_EPS
from snncompile.sim.program import NeuronLayer, Program

__all__ = ["SRP_EPS", "BatchTrace", "run_batch"]


@dataclass
class BatchTrace:
    """What one batch produced (tensors on the simulation device)."""

    outputs: torch.Tensor | None  # (T, B, *out): readout accumulation / t, if per_step
    final: torch.Tensor  # (B, *out): readout accumulation / T
    counts: dict[str, torch.Tensor]  # layer -> (pre_steps + T, B, 2): per-sample (spikes, synops)
    recorded: dict[str, torch.Tensor]  # node -> (B, *shape): mean output over the T counted steps


def _fire(layer: NeuronLayer, x: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
          count_out: torch.Tensor, with_bias: bool = True) -> torch.Tensor:
    """One in-place IF update; writes (spikes, synops) per sample into ``count_out`` (2, B).
    ``with_bias=False``: ``x`` already includes the bias (a static input, summed once per batch)."""
    n, _ = if_step(v, x, layer.theta, layer.bias if with_bias else None, layer.max_spikes)
    if mask is not None:
        n.mul_(mask)
    torch.mm(layer.counter, n.view(n.shape[0], -1).T, out=count_out)  # (2, K) @ (K, B): fast for skinny outputs
    return n.mul_(layer.theta)


class _State:
    """Membranes, SRP masks and the readout accumulator of one batch."""

    def __init__(self, prog: Program, x: torch.Tensor, total: int, out_shape) -> None:
        b = x.shape[0]
        shapes = prog.graph.shapes
        self.v = {ly.name: torch.zeros((b, *shapes[ly.name]), device=x.device) + ly.v0 for ly in prog.layers}
        self.mask: dict[str, torch.Tensor | None] = {ly.name: None for ly in prog.layers}
        self.counts = {ly.name: torch.zeros((total, 2, b), device=x.device) for ly in prog.layers}
        if prog.input_counter is not None:
            self.counts[prog.input_name] = torch.zeros((total, 2, b), device=x.device)
        self.drive: dict[str, torch.Tensor] = {}  # IF layer with a static input -> input + bias, once per batch
        self.acc = torch.zeros((b, *out_shape), device=x.device)

    def end_pre_steps(self, prog: Program) -> None:
        for layer in prog.layers:
            if layer.srp:
                v = self.v[layer.name]
                self.mask[layer.name] = (v > SRP_EPS * layer.theta).to(v.dtype)
                v.zero_().add_(layer.v0)
        self.acc.zero_()


def _step(prog: Program, st: _State, vals: dict[str, torch.Tensor], t: int) -> None:
    for op in prog.dynamic:
        if op.kind == "op":
            vals[op.name] = op.node.forward(*(vals[i] for i in op.inputs))
        elif op.kind == "if":
            name, drive = op.name, st.drive.get(op.name)
            x = vals[op.inputs[0]] if drive is None else drive
            vals[name] = _fire(op.layer, x, st.v[name], st.mask[name], st.counts[name][t], with_bias=drive is None)
        else:
            st.acc.add_(vals[op.inputs[0]])


def run_batch(prog: Program, x: torch.Tensor, timesteps: int, *, pre_steps: int = 0,
              generator: torch.Generator | None = None, per_step: bool = True,
              record: tuple[str, ...] = ()) -> BatchTrace:
    """Simulate one batch ``x`` (B, *input_shape) on ``prog.device``; see the module doc."""
    total = pre_steps + timesteps
    out_shape = prog.graph.shapes[prog.output_name]
    with torch.no_grad():
        st = _State(prog, x, total, out_shape)
        vals: dict[str, torch.Tensor] = {prog.input_name: x}
        for op in prog.static:
            vals[op.name] = op.node.forward(*(vals[i] for i in op.inputs))
        static = {op.name for op in prog.static}
        for op in prog.dynamic:
            if op.kind == "if" and op.inputs[0] in static:
                b = op.layer.bias
                st.drive[op.name] = vals[op.inputs[0]] if b is None else vals[op.inputs[0]] + b
        rec = {name: torch.zeros((x.shape[0], *prog.graph.shapes[name]), device=x.device) for name in record}
        outputs = torch.empty((timesteps, *st.acc.shape), device=x.device) if per_step else None
        p = x.clamp(0.0, 1.0) if prog.input_counter is not None else None
        for t in range(total):
            if t == pre_steps and pre_steps > 0:
                st.end_pre_steps(prog)
            if p is not None:
                spikes = (torch.rand(p.shape, generator=generator, device=x.device) < p).to(x.dtype)
                vals[prog.input_name] = spikes
                torch.mm(prog.input_counter, spikes.view(spikes.shape[0], -1).T, out=st.counts[prog.input_name][t])
            _step(prog, st, vals, t)
            if t >= pre_steps:
                for name in record:
                    rec[name].add_(vals[name])
                if outputs is not None:
                    torch.div(st.acc, t - pre_steps + 1, out=outputs[t - pre_steps])
        recorded = {name: r.div_(timesteps) for name, r in rec.items()}
        counts = {k: c.transpose(1, 2).contiguous() for k, c in st.counts.items()}  # (steps, B, 2)
        return BatchTrace(outputs, st.acc / timesteps, counts, recorded)
