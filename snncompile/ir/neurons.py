"""Spiking neuron nodes of the SNN IR."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from snncompile.ir.arrays import per_channel
from snncompile.ir.node import Node, Shape

__all__ = ["IF"]


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
            arr = getattr(self, field)
            if arr.ndim == 1 and len(x) >= 1 and arr.shape[0] != x[0]:
                raise self._shape_error(f"{field} has {arr.shape[0]} channels, input has shape {x}")
            if arr.ndim > 1 and tuple(arr.shape) != tuple(x):
                raise self._shape_error(f"{field} shape {arr.shape} does not match input {x}")
        return x

    def init_state(self, x: torch.Tensor) -> torch.Tensor:
        """Initial membrane for a batch shaped like ``x``."""
        return torch.zeros_like(x) + per_channel(self.v0, x)

    def step(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step on a batch; returns the spike counts n and the new membrane."""
        theta = per_channel(self.theta, x)
        v = v + x + per_channel(self.bias, x)
        if self.max_spikes == 1:
            n = (v >= theta).to(x.dtype)
        else:
            n = torch.floor(v / theta).clamp_(0, self.max_spikes)
        return n, v - n * theta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The T -> infinity rate of a constant input: ``clip(x + b, 0, N*theta)``."""
        theta = per_channel(self.theta, x)
        return torch.minimum((x + per_channel(self.bias, x)).clamp_min(0.0), self.max_spikes * theta)
