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
  (``round``, v0 = theta/2). The argmin is that of the error evaluated in float32 on the subsample;
  candidates that a float64 bound from the sorted subsample shows cannot attain it are not
  evaluated (the same threshold, bitwise, for a few of the 96 evaluations).

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
    theta = cand.clamp_min(1e-12)
    a = st.sample.unsqueeze(0)  # (1, C, k)
    at = a * timesteps
    cols = torch.arange(cand.shape[1])
    rows = _contenders(st, theta[..., 0], timesteps, max_spikes, rounding)
    if rows is None:  # every candidate through the float32 error
        buf = a.new_empty(min(_GRID_CHUNK, len(theta)), *a.shape[1:])
        err = torch.cat([_quantization_error(a, at, c, timesteps, max_spikes, rounding, buf[:len(c)])
                         for c in theta.split(_GRID_CHUNK)])  # (G, C)
        return cand[err.argmin(0), cols, 0]
    err = _quantization_error(a, at, theta[rows, cols], timesteps, max_spikes, rounding)  # (R, C)
    return cand[rows[err.argmin(0), cols], cols, 0]


_GRID_CHUNK = 32  # candidates per pass: (chunk, C, k) temporaries instead of (96, C, k)


def _quantization_error(a: torch.Tensor, at: torch.Tensor, theta: torch.Tensor, timesteps: int, max_spikes: int,
                        rounding: str, out: torch.Tensor | None = None) -> torch.Tensor:
    """mean_k (a - Q_T(a; theta))^2 for a (1, C, k), at = a * T and theta (g, C, 1) in float32:
    clip_quantize's values, bitwise, in place on one (g, C, k) temporary (``out`` if given: a fresh
    one per call costs more than the arithmetic). For T a power of two, fl(n * fl(theta / T)) =
    fl(fl(n * theta) / T) (scaling by 2^-j is exact), and fl(q - a) = -fl(a - q) has the same square."""
    q = torch.div(at, theta, out=out)
    if rounding == "round":
        q.add_(0.5)
    q.floor_().clamp_(0, max_spikes * timesteps)
    if timesteps & (timesteps - 1) == 0:
        q.mul_(theta / timesteps)
    else:
        q.mul_(theta).div_(timesteps)
    return q.sub_(a).pow_(2).mean(-1)


_U = 2.0 ** -24  # unit roundoff of float32


def _contenders(st: LayerStats, theta: torch.Tensor, timesteps: int, max_spikes: int,
                rounding: str) -> torch.Tensor | None:
    """Indices (R, C) of the candidates theta (G, C) whose float32 error, as :func:`_quantization_error`
    computes it, can be the smallest of their channel (in ascending order; a channel with fewer than R
    repeats its last), or None: fewer than 2 values a channel, no live channel, a live channel's largest
    activation outside [1e-6, 1e6] (no margin analysis there), a sample too large for the summation bound,
    or more than half of the candidates left.

    Bounds on the sum of the float32 terms, in float64 from the sorted sample and its prefix sums
    (computed once per sample): the float32 level floor(fl(fl(aT)/theta) + delta) is monotone in a and
    equals the exact level floor(aT/theta + delta) outside a window of relative width 4u(m + 1) around
    each level boundary m (u = 2^-24), and the float32 error of a term at level value c is within
    8u (a - c)^2 + 4u c^2 of (a - c)^2 (:func:`_level_bounds`, :func:`_tail_bounds`). Any order of summing
    k non-negative terms is within gamma_{k-1} = (k-1)u / (1 - (k-1)u) of their sum, so a candidate
    whose lower bound exceeds some candidate's upper bound (times 1 + 8u, for the division by k)
    cannot be the argmin, nor tie with it: dropping it changes nothing."""
    c, k = st.sample.shape
    levels = max_spikes * timesteps
    live = st.max > 0
    if k < 2 or (k - 1) * _U >= 0.5 or not live.any() or \
            not bool(((st.max[live] >= 1e-6) & (st.max[live] <= 1e6)).all()):
        return None  # (k - 1) u >= 1/2: gamma_{k-1} is no bound there (a sample of 2^23 + 1 values or more)
    g = theta.shape[0]
    h = theta.double().T.contiguous() / timesteps  # (C, G): the level spacing
    delta = 0.5 if rounding == "round" else 0.0
    gamma = (k - 1) * _U / (1 - (k - 1) * _U)
    stats = _sorted_sample(st)
    lo, hi = _tail_bounds(*stats, h, levels, delta)

    def left(lo, hi):
        alive = lo.clamp_min(0) * (1 - gamma) <= (hi * (1 + gamma)).min(1, keepdim=True).values * (1 + 8 * _U)
        alive[~live] = False  # a dead channel's candidates are all the same: the first one
        alive[~live, 0] = True
        count = alive.sum(1)
        order = (torch.arange(g) + g * (~alive)).argsort(1)  # alive first, ascending
        return order.gather(1, torch.minimum(torch.arange(g), (count - 1).unsqueeze(1))), int(count.max())

    rows, r = left(lo, hi)
    if levels * 128 <= k and r > 1:  # tight bounds for those left: a binary search per level costs ~60 terms
        rows = rows[:, :r]
        lo2, hi2 = _level_bounds(*stats, h.gather(1, rows), levels, delta)
        rows, r = left(lo.scatter(1, rows, torch.maximum(lo.gather(1, rows), lo2)),
                       hi.scatter(1, rows, torch.minimum(hi.gather(1, rows), hi2)))
    if r > g // 2:
        return None
    return rows[:, :max(r, 2 if c == 1 else 1)].T  # one output in all: a threaded sum would split the row


def _level_bounds(srt, p1, p2, h, levels, delta) -> tuple[torch.Tensor, torch.Tensor]:
    """Tight bounds: one binary search per level boundary gives every level's count and sum, hence the
    exact-arithmetic error E; the elements in a boundary's window (counted) may take the neighbouring
    level."""
    c, k = srt.shape
    g = h.shape[1]
    h = h.unsqueeze(-1)
    m = torch.arange(1, levels + 1, dtype=torch.float64)  # level boundaries m = 1..M
    b, w = (m - delta) * h, 4 * _U * (m + 1) * h  # (C, G, M): boundary and window half-width
    lo = torch.searchsorted(srt, (b - w).view(c, -1))  # (C, G M): the elements surely below level m
    amb = _window_counts(srt, lo, (b + w).view(c, -1)).view(c, g, levels)  # ... and those in m's window
    lo = lo.view(c, g, levels)
    sum_p1 = p1.gather(1, lo.view(c, -1)).view(c, g, levels).sum(-1)  # (C, G)
    sum_j = (lo.double() * (2 * m - 1)).sum(-1)
    swap = (amb * (h * (h * abs(1 - 2 * delta) + 2 * w) + 32 * _U * h * h)).sum(-1)  # window terms' other level
    h = h.squeeze(-1)
    top, p1t, p2t = levels * h, p1[:, -1:], p2[:, -1:]
    # E = sum_i (a_i - c(level_i))^2 with c(m) = m h, by levels (Abel summation over the boundaries)
    sq_levels = top * top * k - h * h * sum_j  # sum_i c(level_i)^2
    e = p2t - 2 * top * p1t + 2 * h * sum_p1 + sq_levels
    size = p2t + 2 * top * p1t + 2 * h * sum_p1 + top * top * k + h * h * sum_j
    bound = (8 * _U * (e.clamp_min(0) + swap) + 4 * _U * sq_levels + swap
             + 4 * (k + levels + 16) * 2.0 ** -53 * size + k * 2.0 ** -120)
    return e - bound, e + bound


def _tail_bounds(srt, p1, p2, h, levels, delta) -> tuple[torch.Tensor, torch.Tensor]:
    """Loose bounds for many levels (N T): two binary searches per candidate. The terms surely at level 0
    (a^2) and surely clipped at level M ((a - M h)^2) are summed exactly; each term in between lies in
    [0, (max(delta, 1 - delta) h + 8u (M + 1) h)^2]."""
    k = srt.shape[1]
    top, p1t, p2t = levels * h, p1[:, -1:], p2[:, -1:]
    j1 = torch.searchsorted(srt, (1 - delta - 8 * _U) * h)  # below the window of boundary 1
    j2 = torch.searchsorted(srt, (levels - delta + 4 * _U * (levels + 1)) * h, side="right")
    head = p2.gather(1, j1)
    clipped = k - j2
    tail = p2t - p2.gather(1, j2) - 2 * top * (p1t - p1.gather(1, j2)) + top * top * clipped
    near = (max(delta, 1 - delta) + 8 * _U * (levels + 1)) * h
    f64 = 4 * (k + 16) * 2.0 ** -53 * (p2t + 2 * top * p1t + top * top * k) + k * 2.0 ** -120
    rounding = _U * head + 8 * _U * tail.clamp_min(0) + 4 * _U * top * top * clipped + f64
    return (head + tail - rounding,
            head + tail + rounding + (j2 - j1) * near * near * (1 + 4 * _U))


def _window_counts(srt: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """#{i >= lo : srt_i <= hi} per query, as float64; only the windows holding an element are searched."""
    k = srt.shape[1]
    hit = (lo < k) & (srt.gather(1, lo.clamp(max=k - 1)) <= hi)
    count = torch.zeros(lo.shape, dtype=torch.float64)
    if srt.shape[0] == 1:
        count[hit] = (torch.searchsorted(srt[0], hi[hit], side="right") - lo[hit]).double()
    elif hit.any():
        count = torch.where(hit, torch.searchsorted(srt, hi, side="right") - lo, 0).double()
    return count


def _sorted_sample(st: LayerStats) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sample sorted per channel in float64 and its prefix sums of a and a^2 (C, k + 1), kept on the
    stats while their sample is the same tensor (every burst size N and T of a layer reuses them)."""
    if st.sorted_cache is None or st.sorted_cache[0] is not st.sample:
        srt = st.sample.double().sort(1).values
        zero = srt.new_zeros(srt.shape[0], 1)
        st.sorted_cache = (st.sample, srt, torch.cat([zero, srt.cumsum(1)], 1),
                           torch.cat([zero, (srt * srt).cumsum(1)], 1))
    return st.sorted_cache[1:]


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
