"""Sensitivity analysis and budgeted selection for AdaFire (burst sizes N_l and SSC ratios).

Sensitivity of layer l to a setting s (a burst size N, or a threshold multiplier rho): simulate
the SNN with only layer l changed to s on a calibration subset for T steps and measure the
symmetric KL divergence between the SNN's and the ANN's output distributions,

.. math:: S_l(s) = \\tfrac12\\big(\\mathrm{KL}(p_{ANN} \\| p_{SNN}) + \\mathrm{KL}(p_{SNN} \\| p_{ANN})\\big),
          \\quad p = \\mathrm{softmax}(\\text{readout at } T),

together with the spikes the whole network emitted and those of layer l itself (its costs).
Settings are then chosen per layer assuming additive effects: minimize sum_l profit_l(s_l)
subject to sum_l cost_l(s_l) <= C by a Pareto-frontier dynamic program over the layers (the
authors' search, repo bic-L/burst-ann2snn; exact for additive costs).

Cost: the base network once, then per layer one forked run of that layer and its descendants
with all its other settings stacked on the batch axis, the layers upstream replayed from the
base run's recorded spike trains (:mod:`snncompile.convert.replay`) - the same KL and spike
values as one whole-network simulation per (layer, setting). The base run also keeps the
per-step values of the nodes the forks read from upstream (each layer's input current, skip
connections into its descendants; up to ``CACHE_BYTES``), so a fork evaluates nothing upstream
of its layer: bitwise the values it would compute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from snncompile.convert.replay import CACHE_BYTES, fits_in_memory, fork_inputs, fork_outputs, record_run
from snncompile.ir import Graph
from snncompile.sim.simulate import simulate

__all__ = ["Sensitivity", "pareto_select", "sensitivity", "symmetric_kl"]


@dataclass
class Sensitivity:
    """S_l(s) and the network's spikes per sample for every layer and setting."""

    kl: dict[str, list[float]]  # layer -> one value per setting
    spikes: dict[str, list[float]]  # the whole network's spikes per sample
    own: dict[str, list[float]] = field(default_factory=dict)  # layer l's own spikes per sample (l at s)


def _kl_per_sample(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    la, lb = torch.log_softmax(logits_a.double(), -1), torch.log_softmax(logits_b.double(), -1)
    kl_ab = (la.exp() * (la - lb)).sum(-1)
    kl_ba = (lb.exp() * (lb - la)).sum(-1)
    return (kl_ab + kl_ba) / 2


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    """Batch mean of (KL(a||b) + KL(b||a)) / 2 between softmax distributions."""
    return float(_kl_per_sample(logits_a, logits_b).mean())


def sensitivity(build: Callable[[str, object], Graph], layers: Sequence[str], settings: Sequence,
                x: torch.Tensor, ann_logits: torch.Tensor, timesteps: int, *, base: object = None,
                batch_size: int = 256, device: str | torch.device = "cpu", spikes: bool = True) -> Sensitivity:
    """``build(layer, s)`` returns the SNN with only ``layer`` set to ``s``; see module doc.
    ``spikes=False``: the forked runs do not count spikes (the spike table is then meaningless).

    ``build(layer, base)`` is the same network for every layer. It is simulated once per batch of
    samples, recording every IF layer's spike trains; then, per layer, the settings other than
    ``base`` run in one forked run of that layer and its descendants (settings stacked along the
    batch axis, upstream layers replayed, :mod:`snncompile.convert.replay`). Without a ``base``,
    or when the recording would not fit in memory, every (layer, setting) is simulated whole."""
    others = [s for s in settings if s != base]
    chunk = max(1, batch_size // max(1, len(others)))  # the forked runs hold len(others) * chunk samples
    net = build(layers[0], base) if base is not None and base in settings else None
    if net is None or not fits_in_memory(net, chunk, timesteps):
        return _sensitivity_full(build, layers, settings, x, ann_logits, timesteps, base=base,
                                 batch_size=batch_size, device=device)
    variants = {layer: [build(layer, s).nodes[layer] for s in others] for layer in layers}
    keep = _kept_inputs(net, layers if others else [], min(chunk, len(x)), timesteps)
    ref = ann_logits.reshape(len(x), -1)
    kl = {layer: [[] for _ in settings] for layer in layers}
    total = {layer: [[] for _ in settings] for layer in layers}  # the network's spikes (``spikes`` is the flag)
    own = {layer: [[] for _ in settings] for layer in layers}
    j_base = list(settings).index(base)
    for s in range(0, len(x), chunk):
        xc, rc = x[s:s + chunk].to(device), ref[s:s + chunk]
        out, base_spikes, trains = record_run(net, xc, timesteps, keep)
        base_kl = _kl_per_sample(out.cpu(), rc)
        base_total = sum(base_spikes.values()).cpu()
        for layer in layers:
            kl[layer][j_base].append(base_kl)
            total[layer][j_base].append(base_total)
            own[layer][j_base].append(base_spikes[layer].cpu())
            if not others:
                continue
            outs, sp = fork_outputs(net, layer, variants[layer], xc, timesteps, trains, count=spikes)
            upstream = base_total - sum(base_spikes[n].cpu() for n in sp)
            for j, k in enumerate(i for i, v in enumerate(settings) if v != base):
                kl[layer][k].append(_kl_per_sample(outs[j].cpu(), rc))
                total[layer][k].append(upstream + sum(v[j].cpu() for v in sp.values()))
                own[layer][k].append(sp[layer][j].cpu())
        del trains  # freed before the next chunk's run: TRAIN_BYTES and CACHE_BYTES bound one chunk's
    def per_sample(table):
        return {n: [float(torch.cat(v).sum()) / len(x) for v in table[n]] for n in layers}
    return Sensitivity({n: [float(torch.cat(v).mean()) for v in kl[n]] for n in layers}, per_sample(total),
                       per_sample(own))


def _kept_inputs(net: Graph, layers: Sequence[str], samples: int, timesteps: int) -> list[str]:
    """The forks' inputs (:func:`snncompile.convert.replay.fork_inputs`) the base run keeps for them,
    in the layers' order while their float values for ``samples`` samples fit ``CACHE_BYTES``."""
    keep, size = [], 0
    for layer in layers:
        for n in fork_inputs(net, layer):
            nbytes = 4 * samples * timesteps * int(math.prod(net.shapes[n]))
            if n not in keep and size + nbytes <= CACHE_BYTES:
                keep.append(n)
                size += nbytes
    return keep


def _sensitivity_full(build, layers, settings, x, ann_logits, timesteps, *, base, batch_size, device) -> Sensitivity:
    """One whole-network simulation per (layer, setting); ``base`` once."""
    kl: dict[str, list[float]] = {}
    spikes: dict[str, list[float]] = {}
    own: dict[str, list[float]] = {}
    memo: dict[str, tuple[float, float, dict]] = {}
    for layer in layers:
        kl[layer], spikes[layer], own[layer] = [], [], []
        for s in settings:
            if s != base or "base" not in memo:
                res = simulate(build(layer, s), x, timesteps, batch_size=batch_size, device=device)
                out = res.outputs[-1].reshape(res.num_samples, -1)
                value = (symmetric_kl(out, ann_logits.reshape(out.shape)), res.total_spikes_per_sample(),
                         res.spikes_per_sample())
                memo.update({"base": value} if s == base else {})
            k, n, per_layer = memo["base"] if s == base else value
            kl[layer].append(k)
            spikes[layer].append(n)
            own[layer].append(per_layer[layer])
    return Sensitivity(kl, spikes, own)


def pareto_select(costs: Sequence[Sequence[float]], profits: Sequence[Sequence[float]],
                  limit: float) -> list[int]:
    """Per layer the index of a setting minimizing sum(profits) s.t. sum(costs) <= limit.

    ``costs[l][j]``, ``profits[l][j]``: layer l, setting j. Keeps only Pareto-optimal partial
    assignments (lower cost and lower profit) after each layer. Falls back to the cheapest
    assignment when nothing fits the limit.
    """
    frontier: list[tuple[float, float, tuple[int, ...]]] = [(0.0, 0.0, ())]
    for cost_l, profit_l in zip(costs, profits):
        grown = sorted((c + cost_l[j], p + profit_l[j], ch + (j,))
                       for c, p, ch in frontier for j in range(len(cost_l)))
        frontier = []
        for c, p, ch in grown:
            if not frontier or p < frontier[-1][1]:
                frontier.append((c, p, ch))
    feasible = [f for f in frontier if f[0] <= limit + 1e-9]
    best = min(feasible, key=lambda f: f[1]) if feasible else frontier[0]
    return list(best[2])
