"""Sensitivity analysis and budgeted selection for AdaFire (burst sizes N_l and SSC ratios).

Sensitivity of layer l to a setting s (a burst size N, or a threshold multiplier rho): simulate
the SNN with only layer l changed to s on a calibration subset for T steps and measure the
symmetric KL divergence between the SNN's and the ANN's output distributions,

.. math:: S_l(s) = \\tfrac12\\big(\\mathrm{KL}(p_{ANN} \\| p_{SNN}) + \\mathrm{KL}(p_{SNN} \\| p_{ANN})\\big),
          \\quad p = \\mathrm{softmax}(\\text{readout at } T),

together with the spikes the whole network emitted (its cost). Settings are then chosen per
layer assuming additive effects: minimize sum_l profit_l(s_l) subject to sum_l cost_l(s_l) <= C
by a Pareto-frontier dynamic program over the layers (the authors' search, repo
bic-L/burst-ann2snn; exact for additive costs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from snncompile.ir import Graph
from snncompile.sim.simulate import simulate

__all__ = ["Sensitivity", "pareto_select", "sensitivity", "symmetric_kl"]


@dataclass
class Sensitivity:
    """S_l(s) and the network's spikes per sample for every layer and setting."""

    kl: dict[str, list[float]]  # layer -> one value per setting
    spikes: dict[str, list[float]]


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    """Batch mean of (KL(a||b) + KL(b||a)) / 2 between softmax distributions."""
    la, lb = torch.log_softmax(logits_a.double(), -1), torch.log_softmax(logits_b.double(), -1)
    kl_ab = (la.exp() * (la - lb)).sum(-1)
    kl_ba = (lb.exp() * (lb - la)).sum(-1)
    return float(((kl_ab + kl_ba) / 2).mean())


def sensitivity(build: Callable[[str, object], Graph], layers: Sequence[str], settings: Sequence,
                x: torch.Tensor, ann_logits: torch.Tensor, timesteps: int, *, base: object = None,
                batch_size: int = 256, device: str | torch.device = "cpu") -> Sensitivity:
    """``build(layer, s)`` returns the SNN with only ``layer`` set to ``s``; see module doc.

    ``build(layer, base)`` is the same network for every layer and is simulated once."""
    kl: dict[str, list[float]] = {}
    spikes: dict[str, list[float]] = {}
    memo: dict[str, tuple[float, float]] = {}
    for layer in layers:
        kl[layer], spikes[layer] = [], []
        for s in settings:
            if s != base or "base" not in memo:
                res = simulate(build(layer, s), x, timesteps, batch_size=batch_size, device=device)
                out = res.outputs[-1].reshape(res.num_samples, -1)
                value = (symmetric_kl(out, ann_logits.reshape(out.shape)), res.total_spikes_per_sample())
                memo.update({"base": value} if s == base else {})
            k, n = memo["base"] if s == base else value
            kl[layer].append(k)
            spikes[layer].append(n)
    return Sensitivity(kl, spikes)


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
