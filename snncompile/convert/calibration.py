"""SNN Calibration (Li et al. 2021): methods "calib-light", "calib-advanced" and our variants.

Li, Deng, Dong, Gong, Gu, "A Free Lunch From ANN: Towards Efficient, Accurate Spiking Neural
Networks Calibration", ICML 2021, arXiv 2106.06984 (repo yhhhli/SNN_Calibration).

1. Initial conversion: soft-reset IF, theta_l from the MSE search of eq. 9 for the target T
   (:mod:`snncompile.convert.thresholds`), v0 = theta/2 (the shift that turns floor into round).
   The search uses the round quantizer that the shifted neuron implements (the authors' code
   searches with floor; round is the consistent objective for v0 = theta/2).
2. Layer-wise calibration, l = 1..L in topological order; layer l is corrected given the SNN
   *with layers 1..l-1 already calibrated*, because conversion error propagates forward (their
   Theorem 1 decomposes the output error into per-layer terms):

   * ``light`` ("calib-light", the authors' light pipeline): bias correction (BC) from a
     measurement of e_l = E[a_l - r_l] (:mod:`snncompile.convert.bias_correction`);
   * ``advanced`` ("calib-advanced", the authors' advanced pipeline on CIFAR): potential
     correction (PC); with ``wc=True`` (their ImageNet pipeline) weight calibration
     (:mod:`snncompile.convert.weight_calibration`) with their budget - ``wc_samples=1024``,
     ``wc_iters=5000``, ``wc_lr=1e-5`` (their ImageNet value; their default is 4e-5), batch 32,
     cosine schedule - then PC;
   * ``light+pc`` ("calib-light+pc", ours): BC, then PC from a fresh measurement;
   * "calib-wc+pc" (ours): ``advanced`` with ``wc=True`` on a budget for small models and CPUs
     (128 samples, 300 iterations, lr 1e-4).

   The authors run WC over all layers first and PC over all layers after it; we correct layer by
   layer (WC then PC for layer l before layer l+1), so every measurement sees the final SNN before
   it (docs/methods.md).

The corrections live in the IF nodes' ``bias`` (per-step current) and ``v0`` fields; WC changes
the Conv2d/Linear weights of the block feeding the layer. Cost: about one simulation of T steps
on the calibration subset for all layers together (+ the WC optimisation): layer l's input
current is computed once from the recorded spike trains of the calibrated layers before it and
every measurement re-runs only layer l's neurons (:class:`snncompile.convert.replay.LayerwiseSim`;
networks whose trains would not fit in memory fall back to one prefix simulation per
measurement).
"""

from __future__ import annotations

import torch

from snncompile.convert.activations import record_ann
from snncompile.convert.balance import thresholds_from_record
from snncompile.convert.bias_correction import (
    correct_bias,
    correct_potential,
    replay_error,
    with_bias,
    with_potential,
)
from snncompile.convert.calib_set import CalibSet
from snncompile.convert.kept_outputs import collecting, offer
from snncompile.convert.replay import LayerwiseSim, fits_in_memory
from snncompile.convert.stages import stage
from snncompile.convert.to_snn import relu_names, to_snn, with_meta
from snncompile.convert.weight_calibration import calibrate_weights, synaptic_block
from snncompile.errors import ConversionError
from snncompile.ir import Graph

__all__ = ["PIPELINES", "WC_BUDGET", "snn_calibration"]

PIPELINES = {"light": ("bias",), "light+pc": ("bias", "potential"), "advanced": ("potential",)}
WC_BUDGET = {"wc_samples": 1024, "wc_iters": 5000, "wc_lr": 1e-5, "wc_batch": 32}  # the authors' (see module doc)


def _calibrate_layer(ann: Graph, snn: Graph, calib: CalibSet, name: str, timesteps: int, steps,
                     samples: int | None, wc: dict) -> tuple[Graph, list[str]]:
    """Without replay: every measurement simulates the prefix up to ``name`` from the input."""
    notes = []
    for step in steps:
        if step == "bias":
            snn, d = correct_bias(ann, snn, calib, name, timesteps, samples)
            notes.append(f"BC mean|db|={d:.3g}")
        elif step == "potential":
            snn, d = correct_potential(ann, snn, calib, name, timesteps, samples)
            notes.append(f"PC mean|dv0|={d:.3g}")
        else:
            snn, (before, after) = calibrate_weights(ann, snn, calib, name, timesteps, **wc)
            notes.append(f"WC loss {before:.4g}->{after:.4g}")
    return snn, notes


def _calibrate_replayed(sim: LayerwiseSim, snn: Graph, head: dict, x: torch.Tensor, name: str, timesteps: int,
                        steps, samples: int, wc: dict) -> tuple[Graph, list[str]]:
    """The same steps on the layer-at-a-time simulation ``sim`` (layers before ``name`` emitted):
    each measurement re-runs only this layer's neurons on its cached input current."""
    notes = []
    for step in steps:
        if step == "bias":
            snn, d = with_bias(snn, name, replay_error(sim, snn, name, head[name][:samples]))
            notes.append(f"BC mean|db|={d:.3g}")
        elif step == "potential":
            snn, d = with_potential(snn, name, replay_error(sim, snn, name, head[name][:samples]), timesteps)
            notes.append(f"PC mean|dv0|={d:.3g}")
        else:
            n = wc["samples"]
            _, sources = synaptic_block(snn, name)
            rates = {s: (sim.source_rates(s)[:n] if s in sim.emitted_rates else x[:n]) for s in sources}
            with stage("weight_calibration"):
                snn, (before, after) = calibrate_weights(None, snn, None, name, timesteps, **wc,
                                                         cached=(rates, head[name][:n]))
            notes.append(f"WC loss {before:.4g}->{after:.4g}")
    sim.emit(snn, snn.nodes[name])
    return snn, notes


def snn_calibration(ann: Graph, calib: CalibSet, timesteps: int, *, pipeline: str = "light", wc: bool = False,
                    threshold: str = "mse", per_channel: bool = False, samples: int | None = 128,
                    wc_samples: int = WC_BUDGET["wc_samples"], wc_iters: int = WC_BUDGET["wc_iters"],
                    wc_lr: float = WC_BUDGET["wc_lr"], wc_batch: int = WC_BUDGET["wc_batch"]) -> Graph:
    """Convert ``ann`` and calibrate it layer by layer for ``timesteps`` (see module doc).

    ``samples``: calibration samples used per BC/PC measurement (None = all); ``wc``: weight
    calibration before PC (``advanced`` only); ``wc_*``: its subset size, Adam iterations,
    learning rate and batch size.
    """
    if pipeline not in PIPELINES:
        raise ConversionError(f"calibration pipeline must be one of {sorted(PIPELINES)}, got {pipeline!r}")
    if wc and pipeline != "advanced":
        raise ConversionError(f"calibration pipeline {pipeline!r}: wc=True (weight calibration) belongs to "
                              "the advanced pipeline (method calib-advanced)")
    steps = ("weights", *PIPELINES[pipeline]) if wc else PIPELINES[pipeline]
    n_bc = min(len(calib), samples or len(calib))
    n_sim = max(n_bc, min(len(calib), wc_samples) if "weights" in steps else 0)
    names = relu_names(ann)
    rec = record_ann(ann, calib, names, per_channel=per_channel, keep=n_sim)  # the only ANN pass
    theta = thresholds_from_record(ann, rec, timesteps, mode=threshold, rounding="round")
    snn = to_snn(ann, theta, timesteps=timesteps, shift="v0")
    fixed = frozenset((getattr(ann, "meta", {}) or {}).get("fixed_weights", ()))
    budget = {"samples": wc_samples, "iters": wc_iters, "lr": wc_lr, "batch": wc_batch, "fixed": fixed}
    notes = {}
    replayed = fits_in_memory(snn, n_sim, timesteps)
    if replayed:  # layer at a time on the first n_sim samples (snncompile.convert.replay)
        x = calib.head(n_sim)
        sim = LayerwiseSim(snn, x, timesteps, calib.batch_size, calib.device)
    for name in names:
        with stage("layerwise_calibration"):
            if replayed:
                snn, layer_notes = _calibrate_replayed(sim, snn, rec.head, x, name, timesteps, steps, n_bc, budget)
            else:
                snn, layer_notes = _calibrate_layer(ann, snn, calib, name, timesteps, steps, samples, budget)
        notes[name] = [f"theta={threshold}, v0=theta/2", *layer_notes]
    if replayed and collecting():  # the final network's readout on x, for a caller that simulates them again
        offer(snn, calib, sim.outputs(snn))
    return with_meta(snn, getattr(ann, "meta", {}), notes=notes)
