"""Plain threshold-balanced conversion (methods "max", "percentile", "mse").

Diehl et al. 2015 ("max"), Rueckauer et al. 2017 ("percentile", default p = 99.99) and the MSE
threshold search of Li et al. 2021 (arXiv 2106.06984, "mse"): every ReLU becomes an IF neuron
with soft reset, v0 = 0 and threshold theta_l from :mod:`snncompile.convert.thresholds`; the
weights are untouched (the IF output y = n*theta carries the scale, which is equivalent to
normalizing W_l by theta_{l-1}/theta_l with unit thresholds). With v0 = 0 the rate is the
floor quantization r = theta/T * clip(floor(a T/theta), 0, T), which is what "mse" optimizes.
"""

from __future__ import annotations

import numpy as np

from snncompile.convert.activations import AnnRecord, collect_activations
from snncompile.convert.calib_set import CalibSet
from snncompile.convert.thresholds import threshold_from_stats
from snncompile.convert.to_snn import relu_names, to_snn, with_meta
from snncompile.ir import Graph

__all__ = ["layer_thresholds", "threshold_balance", "thresholds_from_record"]


def layer_thresholds(ann: Graph, calib: CalibSet, timesteps: int, *, mode: str = "max",
                     percentile: float = 99.99, per_channel: bool = False, rounding: str = "floor",
                     max_spikes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """theta per ReLU of ``ann`` from one streaming pass over the calibration set."""
    names = relu_names(ann)
    stats = collect_activations(ann, calib, names, per_channel=per_channel,
                                **({"reservoir": 0} if mode == "max" else {}))  # max: no subsample needed
    return _thresholds(ann, stats, names, timesteps, mode, percentile, rounding, max_spikes or {})


def thresholds_from_record(ann: Graph, rec: AnnRecord, timesteps: int, *, mode: str = "max",
                           percentile: float = 99.99, rounding: str = "floor") -> dict[str, np.ndarray]:
    """:func:`layer_thresholds` from statistics already gathered by :func:`record_ann`."""
    return _thresholds(ann, rec.stats, list(rec.stats), timesteps, mode, percentile, rounding, {})


def _thresholds(ann, stats, names, timesteps, mode, percentile, rounding, max_spikes) -> dict[str, np.ndarray]:
    return {n: threshold_from_stats(n, stats[n], mode, timesteps=timesteps, max_spikes=max_spikes.get(n, 1),
                                    percentile=percentile, rounding=rounding,
                                    max_value=ann.nodes[n].max_value)
            for n in names}


def threshold_balance(ann: Graph, calib: CalibSet, timesteps: int, *, mode: str = "max",
                      percentile: float = 99.99, per_channel: bool = False) -> Graph:
    """ReLU -> IF(theta_l, v0 = 0, N = 1) with theta_l chosen by ``mode`` (see module doc)."""
    theta = layer_thresholds(ann, calib, timesteps, mode=mode, percentile=percentile, per_channel=per_channel)
    snn = to_snn(ann, theta, timesteps=timesteps, shift="none")
    note = f"theta={mode}" + (f" p={percentile}" if mode == "percentile" else "")
    return with_meta(snn, notes={n: [note] for n in theta})
