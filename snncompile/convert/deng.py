"""Optimal conversion (Deng & Gu 2021): threshold balancing + soft reset + shift.

Deng, Gu, "Optimal Conversion of Conventional Artificial Neural Networks to Spiking Neural
Networks", ICLR 2021, arXiv 2103.00476. Their layer-wise error analysis (Sec. 3-4) shows that
with soft reset (reset by subtraction, which keeps the residue) and threshold theta_l matched to
the activation range, a T-step IF neuron computes the floor quantization of the activation,
r = theta/T * clip(floor(aT/theta), 0, T), whose error is biased by -theta/(2T). Adding
theta/(2T) to the input of every step (their "shift", eq. 11) centres it:

.. math:: r = \\frac{\\theta}{T}\\, \\mathrm{clip}\\Big(\\Big\\lfloor \\frac{aT}{\\theta} + \\frac12
          \\Big\\rfloor, 0, T\\Big)

halving the worst-case quantization error. Implemented as ``v0 = theta/2`` (``shift="v0"``,
default: the whole shift charge at t = 0, which gives exactly the round quantization above
for constant input) or as the per-step current ``bias = theta/(2T)`` (``shift="bias"``, the
paper's form; only exact at t = T). theta_l comes from threshold balancing on calibration data
(default: the 99.99th percentile, a robust maximum; any mode of
:mod:`snncompile.convert.thresholds`).
"""

from __future__ import annotations

from snncompile.convert.balance import layer_thresholds
from snncompile.convert.calib_set import CalibSet
from snncompile.convert.to_snn import to_snn, with_meta
from snncompile.errors import ConversionError
from snncompile.ir import Graph

__all__ = ["deng_gu"]


def deng_gu(ann: Graph, calib: CalibSet, timesteps: int, *, threshold: str = "percentile",
            percentile: float = 99.99, per_channel: bool = False, shift: str = "v0") -> Graph:
    """ReLU -> IF(theta_l, soft reset) with the theta/(2T) shift (see module doc)."""
    if shift not in ("v0", "bias"):
        raise ConversionError(f"deng: shift must be 'v0' or 'bias', got {shift!r}")
    theta = layer_thresholds(ann, calib, timesteps, mode=threshold, percentile=percentile,
                             per_channel=per_channel, rounding="round")
    snn = to_snn(ann, theta, timesteps=timesteps, shift=shift)
    note = f"theta={threshold}, shift theta/(2T) as {'v0=theta/2' if shift == 'v0' else 'per-step bias'}"
    return with_meta(snn, getattr(ann, "meta", {}), notes={n: [note] for n in theta})
