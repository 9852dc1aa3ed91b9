"""Threshold balancing: choose each IF layer's threshold theta from ANN activation statistics.

Modes (a = ReLU activations on the calibration set, per layer or per channel):

* ``max`` (Diehl et al. 2015): theta = max a.
* ``percentile`` (Rueckauer et al. 2017): theta = the p-th percentile of a (default 99.99).
* ``mse`` (Li et al. 2021, arXiv 2106.06984, eq. 9): the clip value minimizing the expected
  error of the T-step quantization an IF neuron with N spikes per step applies,

  .. math:: \\theta^* = \\arg\\min_{\\theta \\in G} \\mathbb{E}\\,\\big\\|a - Q_T(a; \\theta)\\big\\|^2,
     \\quad Q_T(a; \\theta) = \\frac{\\theta}{T}\\,\\mathrm{clip}\\big(\\lfloor aT/\\theta + \\delta\\rfloor,
     0, NT\\big)

  over the grid G = (max a / N) * {0.05, 0.06, ..., 1.0}; delta = 0 (``floor``, v0 = 0) or 1/2
  (``round``, v0 = theta/2).

Clipped activations (``max_value`` c finite, e.g. ReLU6): the SNN's largest output N*theta must
not exceed c, so theta = min(theta, c / N); for N = 1 that is min(theta, c) and the neuron
saturates at theta (a rate of one spike per step). Dead layers or channels (no positive
activation on the calibration set) would get theta = 0; a dead channel gets the largest threshold
of its layer's live channels (a tiny one would scale its incoming weights far above the others'
and, through the shared weight exponent of the integer hardware, zero the live channels' weights),
a dead layer ``DEAD_THETA``; either with a warning naming the layer.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from snncompile.convert.activations import LayerStats
from snncompile.errors import ConversionError

__all__ = ["DEAD_THETA", "MODES", "clip_quantize", "threshold_from_stats"]

DEAD_THETA = 1e-3
MODES = ("max", "percentile", "mse")
_GRID = torch.linspace(0.05, 1.0, 96)


def clip_quantize(a: torch.Tensor, theta: torch.Tensor, timesteps: int, max_spikes: int = 1,
                  rounding: str = "floor") -> torch.Tensor:
    """Q_T(a; theta) of the module doc (theta broadcasts against a)."""
    shift = 0.5 if rounding == "round" else 0.0
    levels = torch.floor(a * timesteps / theta + shift).clamp(0, max_spikes * timesteps)
    return levels * theta / timesteps


def _mse_threshold(st: LayerStats, timesteps: int, max_spikes: int, rounding: str) -> torch.Tensor:
    top = st.max.clamp_min(0) / max_spikes  # (C,)
    cand = _GRID.view(-1, 1, 1) * top.view(1, -1, 1)  # (G, C, 1)
    a = st.sample.unsqueeze(0)  # (1, C, k)
    at = a * timesteps
    err = torch.cat([_quantization_error(a, at, c, timesteps, max_spikes, rounding)
                     for c in cand.clamp_min(1e-12).split(_GRID_CHUNK)])  # (G, C)
    return cand[err.argmin(0), torch.arange(cand.shape[1]), 0]


_GRID_CHUNK = 32  # candidates per pass: (chunk, C, k) temporaries instead of (96, C, k)


def _quantization_error(a: torch.Tensor, at: torch.Tensor, theta: torch.Tensor, timesteps: int, max_spikes: int,
                        rounding: str) -> torch.Tensor:
    """mean_k (a - Q_T(a; theta))^2 for a (1, C, k), at = a * T and theta (g, C, 1): clip_quantize's
    operations, in place on one temporary (the same values as the one-pass formula)."""
    q = torch.div(at, theta)
    if rounding == "round":
        q.add_(0.5)
    q.floor_().clamp_(0, max_spikes * timesteps).mul_(theta).div_(timesteps)
    return q.neg_().add_(a).pow_(2).mean(-1)


def _percentile(st: LayerStats, p: float) -> torch.Tensor:
    if not 0.0 < p <= 100.0:
        raise ConversionError(f"percentile must be in (0, 100], got {p}")
    return torch.quantile(st.sample, p / 100.0, dim=1)


def threshold_from_stats(name: str, st: LayerStats, mode: str, *, timesteps: int, max_spikes: int = 1,
                         percentile: float = 99.99, rounding: str = "floor",
                         max_value: float = math.inf) -> np.ndarray:
    """Threshold of layer ``name`` as float32, shape () per layer or (C,) per channel."""
    if not torch.isfinite(st.max).all():
        raise ConversionError(f"{name} (IF): activations on the calibration set contain NaN or Inf (float32 "
                              f"overflow in the ANN); check the model for huge weights or biases")
    if mode == "max":
        theta = st.max.clone()
    elif mode == "percentile":
        theta = _percentile(st, percentile)
    elif mode == "mse":
        theta = _mse_threshold(st, timesteps, max_spikes, rounding)
    else:
        raise ConversionError(f"{name}: unknown threshold mode {mode!r}; choose from {MODES}")
    dead = ~(theta > 0)
    if dead.any():
        what = "layer" if theta.numel() == 1 else f"{int(dead.sum())} of {theta.numel()} channels of layer"
        fill = float(theta[~dead].max()) if not dead.all() else DEAD_THETA
        warnings.warn(f"{name} (IF): {what} never active on the calibration set; threshold set to {fill:g}"
                      f"{'' if dead.all() else ' (the largest of the live channels)'}", stacklevel=3)
        theta = torch.where(dead, torch.full_like(theta, fill), theta)
    if math.isfinite(max_value):
        theta = theta.clamp(max=max_value / max_spikes)
    arr = theta.numpy().astype(np.float32)
    return arr.reshape(()) if arr.size == 1 and st.sample.shape[0] == 1 else arr
