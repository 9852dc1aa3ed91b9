"""Adaptive Calibration / AdaFire: burst neurons, SSC and IAT (method "adafire").

"Adaptive Calibration: A Unified Conversion Framework of Spiking Neural Networks"
(repo bic-L/burst-ann2snn; see docs/seeds). Pipeline in our IR:

1. **Adaptive-firing neurons.** Layer l may emit up to N_l spikes per step (a graded spike of
   size n, :class:`snncompile.ir.IF` with ``max_spikes = N_l``):
   n = clamp(floor(v/theta), 0, N_l), v -= n theta. With T steps the layer has N_l T levels, so
   a sensitive layer gets a finer quantization without more time steps. theta_l(N) is the MSE
   threshold of Li et al. (eq. 9) for range N theta (round quantization, v0 = theta/2).
2. **Sensitivity analysis under a budget.** For each layer and candidate N in ``candidates``
   (others at the largest candidate), S_l(N) = symmetric KL between SNN and ANN outputs on a
   calibration subset (:mod:`snncompile.convert.adafire_search`), and s_l(N) = the spikes layer l
   itself emits per sample (a burst of n counts n). N_l minimizes sum_l S_l(N_l) subject to the
   authors' spike budget (default): the spikes of the burst layers may not exceed ``spike_budget``
   times their spikes at the uniform reference burst size ``spike_ref``,

   .. math:: \\sum_l s_l(N_l) \\le \\text{spike\\_budget} \\cdot \\sum_l s_l(\\text{spike\\_ref}),
             \\quad 0.95 \\text{ and } 4 \\text{ by default.}

   The paper's full text is not among our seeds; the constraint is the one its code applies
   (bic-L/burst-ann2snn, ``general_utils/spiking_layer.py``, ``sensitivity_anylysis``:
   ``constraint=maxspike_ratio * sum(energy_result[disred_maxspike-1])``, where
   ``energy_result[j][i]`` is layer i's spike count with layer i at the j-th candidate and the
   others at the initial maximum, ``--maxspike_ratio`` 0.95 and ``--maxspike`` 4 by default in
   ``convert_cifar.py``), which issue 19 paraphrases as "sum of spikes <= 0.95 x the spikes at
   uniform phi = 4". Deviations: candidates (1, 2, 4, 8), not every integer 1..8; theta_l is
   re-derived for each candidate N (the authors' threshold search runs once at the initial
   maximum and again after the choice). ``spike_ref`` is simulated as an extra setting when it is
   not a candidate. ``budget`` (a number) replaces this by our former cap on the mean burst size,
   mean_l N_l <= ``budget``: there a candidate N that cannot fit the budget even with every other
   layer at the smallest candidate is never chosen and is not simulated.
3. **Sensitivity spike compression (SSC).** Per layer a threshold multiplier rho_l in
   ``ssc_ratios`` (theta_l <- rho_l theta_l, fewer spikes): minimize the network's spikes
   subject to sum_l [S_l(rho_l) - S_base] <= ``ssc_tolerance`` * S_base. (The authors'
   ``sensitivity_anylysis_threshold`` tries rho in 1, 1.5, ..., 10, minimizes the layers' own
   spikes under sum_l S_l(rho_l) <= 0.95 sum_l S_l(1), after a first BC: docs/methods.md.)
4. **Bias correction** of Li et al. (per-step current, layer by layer), as the authors do.
5. **Input-aware adaptive timesteps (IAT)**, with ``iat=True``: exit thresholds lambda_t calibrated on
   the calibration set with the ANN's predictions as reference labels, as the authors do
   (:mod:`snncompile.sim.early_exit`; default rule "both": the repo's heuristic, raised per
   step where early exits would disagree with the ANN on more than ``iat_max_error`` of the
   calibration samples), stored in ``meta["iat"]``; apply them to a simulation result with
   :func:`snncompile.sim.early_exit`. Off by default: it costs a simulation of the calibration
   samples BC did not simulate (half of 256 with the defaults; all of them without BC), the
   pipeline's ``--early-exit`` calibrates its own policy (on the ``--validation`` samples when given: the conversion is fitted to the calibration
   samples, so thresholds calibrated there come out lax; ``snncompile.search``), and nothing else reads them.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from snncompile.convert.activations import record_ann
from snncompile.convert.adafire_search import Sensitivity, pareto_select, sensitivity
from snncompile.convert.bias_correction import correct_bias, replay_error, with_bias
from snncompile.convert.calib_set import CalibSet
from snncompile.convert.kept_outputs import calibration_run, kept_entry, offer
from snncompile.convert.replay import LayerwiseSim, fits_in_memory
from snncompile.convert.stages import stage
from snncompile.convert.thresholds import threshold_from_stats
from snncompile.convert.to_snn import relu_names, to_snn, with_meta
from snncompile.errors import ConversionError
from snncompile.ir import Graph
from snncompile.sim.early_exit import calibrate_exit_thresholds

__all__ = ["adafire"]


class _Builder:
    """Builds SNN variants from per-layer burst sizes and threshold multipliers."""

    def __init__(self, ann: Graph, stats, timesteps: int) -> None:
        self.ann, self.stats, self.T = ann, stats, timesteps
        self.cache: dict[tuple[str, int], np.ndarray] = {}

    def theta(self, name: str, n: int) -> np.ndarray:
        if (name, n) not in self.cache:
            self.cache[(name, n)] = threshold_from_stats(
                name, self.stats[name], "mse", timesteps=self.T, max_spikes=n, rounding="round",
                max_value=self.ann.nodes[name].max_value)
        return self.cache[(name, n)]

    def build(self, bursts: dict[str, int], ratios: dict[str, float]) -> Graph:
        theta = {k: self.theta(k, n) * np.float32(ratios.get(k, 1.0)) for k, n in bursts.items()}
        return to_snn(self.ann, theta, timesteps=self.T, shift="v0", max_spikes=bursts)


def _choose_bursts(b: _Builder, names, candidates, budget, spike_budget, spike_ref, x, logits,
                   calib) -> tuple[dict, object, str]:
    """Burst sizes N_l and the sensitivity table; the third item says which constraint held."""
    top = max(candidates)
    if len(candidates) == 1:  # nothing to choose (binary targets: candidates=(1,))
        nan = {n: [float("nan")] for n in names}
        return dict.fromkeys(names, top), Sensitivity(nan, {}), "single candidate"
    base = dict.fromkeys(names, top)
    build = lambda layer, n: b.build({**base, layer: n}, {})
    if budget is None:  # the paper's constraint on the spikes of the burst layers
        settings = sorted(set(candidates) | {spike_ref})
        sens = sensitivity(build, names, settings, x, logits, b.T, base=top, batch_size=calib.batch_size,
                           device=calib.device, spikes=True)
        col = [settings.index(c) for c in candidates]
        costs = [[sens.own[n][j] for j in col] for n in names]
        limit = spike_budget * sum(sens.own[n][settings.index(spike_ref)] for n in names)
        kl = {n: [sens.kl[n][j] for j in col] for n in names}
        pick = pareto_select(costs, [kl[n] for n in names], limit)
        used = sum(costs[i][j] for i, j in enumerate(pick))
        return ({n: int(candidates[j]) for n, j in zip(names, pick)}, Sensitivity(kl, {}),
                f"spikes/sample {used:.0f} <= {spike_budget:g} x {limit / spike_budget:.0f} at N={spike_ref}")
    # N_l that no assignment within the budget can hold (N_l + the others at the smallest N > limit) are
    # never chosen: they are not simulated (KL inf); the base N = top is simulated anyway
    spare = budget * len(names) - (len(names) - 1) * min(candidates)
    tried = [c for c in candidates if c <= spare + 1e-9 or c == top]
    sens = sensitivity(build, names, tried, x, logits, b.T,
                       base=top, batch_size=calib.batch_size, device=calib.device, spikes=False)
    kl = {n: [sens.kl[n][tried.index(c)] if c in tried else float("inf") for c in candidates] for n in names}
    pick = pareto_select([list(map(float, candidates))] * len(names), [kl[n] for n in names],
                         budget * len(names))
    return {n: int(candidates[j]) for n, j in zip(names, pick)}, Sensitivity(kl, {}), f"mean N <= {budget:g}"


def _choose_ratios(b: _Builder, names, bursts, ratios, tolerance, x, logits, calib) -> tuple[dict, object]:
    sens = sensitivity(lambda layer, r: b.build(bursts, {layer: r}), names, ratios, x, logits, b.T,
                       base=1.0, batch_size=calib.batch_size, device=calib.device)
    i1 = list(ratios).index(1.0)
    base_kl, base_spikes = sens.kl[names[0]][i1], sens.spikes[names[0]][i1]
    costs = [[k - base_kl for k in sens.kl[n]] for n in names]
    profits = [[s - base_spikes for s in sens.spikes[n]] for n in names]
    pick = pareto_select(costs, profits, tolerance * base_kl)
    return {n: float(ratios[j]) for n, j in zip(names, pick)}, sens


def adafire(ann: Graph, calib: CalibSet, timesteps: int, *, candidates=(1, 2, 4, 8),
            budget: float | None = None, spike_budget: float = 0.95, spike_ref: int = 4,
            ssc_ratios=(1.0, 1.25, 1.5, 2.0), ssc_tolerance: float = 0.1, bias_correction: bool = True,
            samples: int = 128, iat: bool = False, iat_metric: str = "entropy", iat_rule: str = "both",
            iat_max_error: float = 0.002, per_channel: bool = False, search_samples: int | None = None) -> Graph:
    """Convert ``ann`` with AdaFire for ``timesteps`` (see module doc).

    ``samples``: calibration samples used by the sensitivity analyses and BC; the IAT thresholds
    (``iat=True``) use the whole calibration set. ``search_samples``: the first ones of those that the burst and
    SSC searches use (default: all ``samples``; the searches' cost is proportional to it).
    ``per_channel``: thresholds per output channel (the authors' ``channel_wise=True``) from
    per-channel statistics, instead of one per layer.
    """
    if not candidates or min(candidates) < 1 or (budget is not None and budget < min(candidates)):
        raise ConversionError(f"adafire: need candidates >= 1 and budget >= min(candidates), got "
                              f"{tuple(candidates)}, budget={budget}")
    if not (_number(spike_budget) and spike_budget > 0 and _number(spike_ref) and spike_ref >= 1
            and int(spike_ref) == spike_ref):
        raise ConversionError(f"adafire: need spike_budget > 0 and an integer spike_ref >= 1, got "
                              f"spike_budget={spike_budget!r}, spike_ref={spike_ref!r}")
    if not isinstance(iat, bool):
        raise ConversionError(f"adafire: iat must be true or false, got {iat!r}")
    if not iat and (iat_metric, iat_rule, iat_max_error) != ("entropy", "both", 0.002):
        raise ConversionError("adafire: iat_metric, iat_rule and iat_max_error are options of the in-conversion IAT "
                              "thresholds; give iat=true too (or --early-exit for the pipeline's own policy)")
    if search_samples is not None and not (_number(search_samples) and search_samples >= 1
                                           and int(search_samples) == search_samples):
        raise ConversionError(f"adafire: search_samples must be an integer >= 1, got {search_samples!r}")
    if 1.0 not in ssc_ratios:
        raise ConversionError(f"adafire: ssc_ratios must contain 1.0, got {tuple(ssc_ratios)}")
    names = relu_names(ann)
    n_head = min(samples, len(calib))
    rec = record_ann(ann, calib, names, per_channel=per_channel, keep=n_head)  # the only ANN pass
    b = _Builder(ann, rec.stats, timesteps)
    n_search = n_head if search_samples is None else min(int(search_samples), n_head)
    x = calib.head(n_search)
    logits = rec.logits[:n_search]
    with stage("burst_search"):
        bursts, s_n, held = _choose_bursts(b, names, candidates, budget, spike_budget, int(spike_ref), x,
                                           logits, calib)
    with stage("ssc_search"):
        ratios, s_r = _choose_ratios(b, names, bursts, ssc_ratios, ssc_tolerance, x, logits, calib)
    snn = b.build(bursts, ratios)
    notes = {n: [f"burst N={bursts[n]} (KL by N: {', '.join(_kl_note(v) for v in s_n.kl[n])}; {held})",
                 (f"SSC theta x{ratios[n]:g} (network spikes/sample by ratio: "
                 f"{', '.join(f'{v:.0f}' for v in s_r.spikes[n])})")] for n in names}
    with stage("bias_correction"):
        snn, head_outputs = _bias_correction(ann, snn, calib, names, timesteps, n_head, rec, notes) \
            if bias_correction else (snn, None)
    if head_outputs is not None:
        offer(snn, calib, head_outputs)  # for a caller that simulates the calibration set again
    extra = {}
    if iat:
        with stage("iat_thresholds"):
            mine = {} if head_outputs is None else kept_entry(snn, calib, head_outputs, rows="calib")
            res = calibration_run(snn, calib.x, timesteps, mine, batch_size=calib.batch_size, device=calib.device)
            ref = rec.logits.reshape(len(calib), -1).argmax(-1)
            lam = calibrate_exit_thresholds(res, ref, metric=iat_metric, rule=iat_rule, max_error=iat_max_error)
        extra["iat"] = {"metric": iat_metric, "rule": iat_rule, "thresholds": lam}
    return with_meta(snn, getattr(ann, "meta", {}), notes=notes, max_spikes=bursts, ssc=ratios, **extra)


def _number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _kl_note(v: float) -> str:
    return f"{v:.3g}" if v != float("inf") else "over budget"


def _bias_correction(ann: Graph, snn: Graph, calib: CalibSet, names, timesteps: int, n: int, rec,
                     notes) -> tuple[Graph, torch.Tensor | None]:
    """BC layer by layer on the first ``n`` samples; also returns the corrected network's readout on
    them (T, n, K) when the layer-at-a-time simulation was used (None otherwise)."""
    if not fits_in_memory(snn, n, timesteps):
        for name in names:
            snn, d = correct_bias(ann, snn, calib, name, timesteps, n)
            notes[name].append(f"BC mean|db|={d:.3g}")
        return snn, None
    sim = LayerwiseSim(snn, calib.head(n), timesteps, calib.batch_size, calib.device)
    for name in names:
        snn, d = with_bias(snn, name, replay_error(sim, snn, name, rec.head[name]))
        notes[name].append(f"BC mean|db|={d:.3g}")
        sim.emit(snn, snn.nodes[name])
    return snn, sim.outputs(snn)
