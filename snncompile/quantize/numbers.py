"""Mantissa/exponent encodings of weights and biases for a hardware profile."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from snncompile.quantize.profile import HardwareProfile

__all__ = ["QuantizationWarning", "QuantizedArray", "quantize_bias", "quantize_weights"]


class QuantizationWarning(UserWarning):
    """A value that does not fit its integer format: the layer is named and the trade-off stated."""


@dataclass(frozen=True)
class QuantizedArray:
    """``mant * 2**exp`` approximates the real array; stats describe what was lost."""

    mant: np.ndarray  # int64
    exp: int
    clipped: int  # values that saturated at the mantissa range
    zeroed: int  # non-zero values that rounded to 0
    rel_error: float  # ||q - w|| / ||w||
    bits: int  # magnitude bits actually used by the largest mantissa (sign extra)

    @property
    def value(self) -> np.ndarray:
        return self.mant.astype(np.float64) * 2.0**self.exp


def _stats(w: np.ndarray, mant: np.ndarray, exp: int, clipped: int) -> QuantizedArray:
    q = mant * 2.0**exp
    norm = float(np.linalg.norm(w))
    return QuantizedArray(
        mant=mant.astype(np.int64), exp=exp, clipped=clipped, zeroed=int(((w != 0) & (mant == 0)).sum()),
        rel_error=float(np.linalg.norm(q - w) / norm) if norm else 0.0,
        bits=math.ceil(math.log2(float(np.abs(mant).max()) + 1)) if mant.size else 0)


def quantize_weights(w: np.ndarray, profile: HardwareProfile, *, name: str,
                     allow_negative_exp: bool = True) -> QuantizedArray:
    """Shared-exponent weight mantissas: the smallest exponent whose mantissas fit (max resolution).

    Mixed-sign matrices use even mantissas (Lava truncates their LSB). Warns (QuantizationWarning)
    naming ``name`` when weights clip at the largest exponent, when the exponent would have to be
    below the profile's minimum, or when the dynamic range exceeds 2**15 and the small weights that
    vanish cost more than 1 % relative error (tiny weights of trained layers usually cost far less).
    """
    w = np.asarray(w, np.float64)
    mixed = bool(w.min() < 0 < w.max()) if w.size else False
    lo, hi, step = profile.weight_range(mixed)
    amax = float(np.abs(w).max()) if w.size else 0.0
    if amax == 0.0:
        return _stats(w, np.zeros(w.shape, np.int64), 0, 0)
    exp = math.ceil(math.log2(amax / hi))
    low_exp = profile.weight_exp_min if allow_negative_exp else 0
    if exp > profile.weight_exp_max:
        warnings.warn(f"{name}: weights up to {amax:.4g} need weight_exp {exp} > {profile.weight_exp_max}; "
                      f"the largest are clipped to {hi} << {profile.weight_exp_max}", QuantizationWarning, 3)
    wanted, exp = exp, min(max(exp, low_exp), profile.weight_exp_max)
    raw = np.round(w / 2.0**exp / step) * step
    mant = np.clip(raw, lo, hi)
    q = _stats(w, mant, exp, int((mant != raw).sum()))
    if wanted < low_exp and q.rel_error > 0.01:
        warnings.warn(f"{name}: weights are small (max {amax:.4g}) and would need weight_exp {wanted} < "
                      f"{low_exp}; using {low_exp}, {q.bits}-bit mantissas, relative error {q.rel_error:.3f}",
                      QuantizationWarning, 3)
    nz = np.abs(w[w != 0])
    if nz.size and amax / nz.min() > 2**15 and q.rel_error > 0.01:
        warnings.warn(f"{name}: weight dynamic range {amax / nz.min():.3g} exceeds 2**15; with an "
                      f"{profile.weight_bits}-bit mantissa {q.zeroed} of {nz.size} non-zero weights round to 0, "
                      f"relative error {q.rel_error:.3f} (kept the largest weights exact instead)",
                      QuantizationWarning, 3)
    return q


def quantize_bias(b: np.ndarray, profile: HardwareProfile, *, name: str) -> QuantizedArray:
    """Per-neuron bias as a signed mantissa and one unsigned exponent (the smallest that fits)."""
    b = np.asarray(b, np.float64)
    top = profile.bias_mant_max
    amax = float(np.abs(b).max()) if b.size else 0.0
    exp = 0 if amax <= top else math.ceil(math.log2(amax / top))
    if exp > profile.bias_exp_max:
        warnings.warn(f"{name}: bias up to {amax:.4g} exceeds {top} << {profile.bias_exp_max}; clipped",
                      QuantizationWarning, 3)
        exp = profile.bias_exp_max
    raw = np.round(b / 2.0**exp)
    mant = np.clip(raw, -top, top)
    return _stats(b, mant, exp, int((mant != raw).sum()))
