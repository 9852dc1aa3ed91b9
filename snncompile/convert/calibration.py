"""SNN Calibration (Li et al. 2021): methods "calib-light" and "calib-advanced".

Li, Deng, Dong, Gong, Gu, "A Free Lunch From ANN: Towards Efficient, Accurate Spiking Neural
Networks Calibration", ICML 2021, arXiv 2106.06984 (repo yhhhli/SNN_Calibration).

1. Initial conversion: soft-reset IF, theta_l from the MSE search of eq. 9 for the target T
   (:mod:`snncompile.convert.thresholds`), v0 = theta/2 (the shift that turns floor into round).
   The search uses the round quantizer that the shifted neuron implements (the authors' code
   searches with floor; round is the consistent objective for v0 = theta/2).
2. Layer-wise calibration, l = 1..L in topological order; layer l is corrected given the SNN
   *with layers 1..l-1 already calibrated*, because conversion error propagates forward (their
   Theorem 1 decomposes the output error into per-layer terms):

   * "calib-light": bias correction then potential correction, each from a fresh measurement
     of e_l = E[a_l - r_l] (:mod:`snncompile.convert.bias_correction`);
   * "calib-advanced": weight calibration (:mod:`snncompile.convert.weight_calibration`), then
     potential correction.

The corrections live in the IF nodes' ``bias`` (per-step current) and ``v0`` fields; WC changes
the Conv2d/Linear weights of the block feeding the layer. Cost: one prefix simulation of T
steps on the calibration subset per correction and layer (+ the WC optimisation).
"""

from __future__ import annotations

from snncompile.convert.balance import layer_thresholds
from snncompile.convert.bias_correction import correct_bias, correct_potential
from snncompile.convert.calib_set import CalibSet
from snncompile.convert.to_snn import relu_names, to_snn, with_meta
from snncompile.convert.weight_calibration import calibrate_weights
from snncompile.errors import ConversionError
from snncompile.ir import Graph

__all__ = ["PIPELINES", "snn_calibration"]

PIPELINES = {"light": ("bias", "potential"), "advanced": ("weights", "potential")}


def _calibrate_layer(ann: Graph, snn: Graph, calib: CalibSet, name: str, timesteps: int, steps,
                     samples: int | None, wc: dict) -> tuple[Graph, list[str]]:
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


def snn_calibration(ann: Graph, calib: CalibSet, timesteps: int, *, pipeline: str = "light",
                    threshold: str = "mse", per_channel: bool = False, samples: int | None = 128,
                    wc_samples: int = 128, wc_iters: int = 300, wc_lr: float = 1e-4, wc_batch: int = 32) -> Graph:
    """Convert ``ann`` and calibrate it layer by layer for ``timesteps`` (see module doc).

    ``samples``: calibration samples used per BC/PC measurement (None = all);
    ``wc_*``: weight-calibration subset size, Adam iterations, learning rate and batch size.
    """
    if pipeline not in PIPELINES:
        raise ConversionError(f"calibration pipeline must be one of {sorted(PIPELINES)}, got {pipeline!r}")
    theta = layer_thresholds(ann, calib, timesteps, mode=threshold, per_channel=per_channel, rounding="round")
    snn = to_snn(ann, theta, timesteps=timesteps, shift="v0")
    fixed = frozenset((getattr(ann, "meta", {}) or {}).get("fixed_weights", ()))
    wc = {"samples": wc_samples, "iters": wc_iters, "lr": wc_lr, "batch": wc_batch, "fixed": fixed}
    notes = {}
    for name in relu_names(ann):
        snn, layer_notes = _calibrate_layer(ann, snn, calib, name, timesteps, PIPELINES[pipeline], samples, wc)
        notes[name] = [f"theta={threshold}, v0=theta/2", *layer_notes]
    return with_meta(snn, getattr(ann, "meta", {}), notes=notes)
