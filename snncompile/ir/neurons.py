"""Spiking neuron nodes of the SNN IR."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from snncompile.ir.arrays import layout_error, per_channel
from snncompile.ir.node import Node, Shape

__all__ = ["IF", "if_step"]


def if_step(v: torch.Tensor, x: torch.Tensor, theta: torch.Tensor, bias: torch.Tensor | None, max_spikes: int,
            *, gain: float = 1.0, v_max: float | None = None) -> tuple[torch.Tensor, int]:
    """The soft-reset IF update, in place on ``v``: the one definition, float and fixed point.

    .. math::
        v &\\leftarrow \\mathrm{clip}(v + g\\,x + b,\\ -v_{max},\\ v_{max}) \\\\
        n &= \\mathrm{clamp}(\\lfloor v / \\theta \\rfloor, 0, N) \\quad (N = 1:\\ n = [v \\ge \\theta]) \\\\
        v &\\leftarrow v - n\\,\\theta

    Float (the SNN's ``IF``, the simulator, the conversion's replay, float populations): ``g = 1``,
    no clip. Fixed point (Loihi-style integer populations, integers carried in float tensors):
    ``g = 2**act_shift``, ``theta = vth << vth_shift``, ``b = bias_mant << bias_exp`` and
    ``v_max = 2**(membrane_bits - 1) - 1``, the hardware profile's constants that quantization
    writes into each ``IFPop`` (:mod:`snncompile.quantize.profile`); every step is then exact. The
    Lava ``IFSoft`` process computes the same in int64 numpy (it runs inside Lava, without torch);
    tests/backends/test_if_arithmetic.py checks it against this function on random integers.

    ``theta`` and ``bias`` broadcast against ``v`` (:func:`snncompile.ir.arrays.per_channel`);
    ``bias=None`` adds none. Returns the spike counts ``n`` (``v``'s dtype) and the number of
    membrane values the clip changed (0 without ``v_max``).
    """
    if gain == 1.0:
        v.add_(x)
    else:
        v.add_(x, alpha=gain)
    if bias is not None:
        v.add_(bias)
    saturated = 0
    if v_max is not None and max(-float(v.min()), float(v.max())) > v_max:
        saturated = int((v.abs() > v_max).sum())
        v.clamp_(-v_max, v_max)
    if max_spikes == 1:
        n = (v >= theta).to(v.dtype)
    else:
        n = torch.div(v, theta).floor_().clamp_(0, max_spikes)
    v.addcmul_(n, theta, value=-1.0)
    return n, saturated


@dataclass(frozen=True, eq=False)
class IF(Node):
    """Integrate-and-fire neuron with soft reset (reset by subtraction), one update per time step.

    .. math::
        v[t] &= v[t-1] + x[t] + b \\\\
        n[t] &= \\mathrm{clamp}(\\lfloor v[t] / \\theta \\rfloor, 0, N) \\\\
        v[t] &\\leftarrow v[t] - n[t]\\,\\theta \\\\
        y[t] &= n[t]\\,\\theta

    with ``v[0] = v0``. ``N = max_spikes``: 1 is the usual binary neuron (``n = [v >= theta]``),
    ``N > 1`` a burst (adaptive-firing) neuron that emits a graded spike of size n. The output
    carries the threshold (``y = n*theta``) so that the next layer keeps the ANN's weights; its
    average over T steps approximates the ANN activation ``clip(a, 0, N*theta)``.

    ``theta``, ``bias`` are per channel (shape (C,)) or scalar (shape ()); ``v0`` is scalar, per
    channel, or per neuron (the full sample shape). Units: those of the layer input x.
    ``max_value`` and ``source_op`` record the ANN activation this neuron replaced.
    """

    theta: np.ndarray  # (C,) or () float32, threshold
    v0: np.ndarray  # (), (C,) or sample shape, float32, initial membrane potential
    bias: np.ndarray  # (C,) or () float32, current added every step
    max_spikes: int = 1  # N
    max_value: float = math.inf  # clip of the replaced ANN activation
    source_op: str = "Relu"
    op = "IF"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_spikes < 1:
            raise self._shape_error(f"max_spikes must be >= 1, got {self.max_spikes}")

    def infer_shape(self, x: Shape) -> Shape:
        for field in ("theta", "bias", "v0"):
            why = layout_error(getattr(self, field), x)
            if why:
                raise self._shape_error(f"{field}: {why}")
        return x

    def init_state(self, x: torch.Tensor) -> torch.Tensor:
        """Initial membrane for a batch shaped like ``x``."""
        return torch.zeros_like(x) + per_channel(self.v0, x)

    def step(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step on a batch (:func:`if_step`); returns the spike counts n and the new membrane
        (``v`` itself is left unchanged)."""
        v = v.clone()
        n, _ = if_step(v, x, per_channel(self.theta, x), per_channel(self.bias, x), self.max_spikes)
        return n, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The T -> infinity rate of a constant input: ``clip(x + b, 0, N*theta)``."""
        theta = per_channel(self.theta, x)
        return torch.minimum((x + per_channel(self.bias, x)).clamp_min(0.0), self.max_spikes * theta)
