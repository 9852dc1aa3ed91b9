"""Quantized activations: the quantized clipped ReLU (QCFS, ONNX QuantizeLinear -> DequantizeLinear),
and the ANN-only integer Quantize and Floor they are recognized from."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from snncompile.ir.node import Node
from snncompile.ir.ops import ReLU

__all__ = ["Clamp", "Floor", "QuantClip", "Quantize"]

ROUNDINGS = ("floor", "half_even")


def _round(u: torch.Tensor, rounding: str) -> torch.Tensor:
    return torch.floor(u) if rounding == "floor" else torch.round(u)  # torch.round: half to even


@dataclass(frozen=True, eq=False)
class QuantClip(ReLU):
    """Clipped ReLU with ``L = levels`` uniform levels and ceiling ``lam = L * s`` (``s = scale``):

    .. math:: y = s \\cdot \\mathrm{clip}\\big(R(x / s + \\varphi),\\; lo,\\; L\\big)

    with ``R`` = floor or round half to even (``rounding``) and ``phi = offset``.

    * QCFS (Bu et al., ICLR 2022): :math:`h(x) = \\frac{\\lambda}{L}\\,\\mathrm{clip}(\\lfloor x L/\\lambda +
      \\tfrac12\\rfloor, 0, L)`: ``s = lam / L``, ``phi = 1/2``, ``R = floor``, ``lo = 0``.
    * ONNX QuantizeLinear -> DequantizeLinear (scale s, zero point zp, integer range [qmin, qmax]):
      ``R`` = round half to even, ``phi = 0``, ``lo = qmin - zp``, ``L = qmax - zp`` (saturation).

    ``max_value`` (the ReLU ceiling) is ``lam``. The spiking conversion needs no threshold search:
    an IF neuron with ``theta = lam`` and ``v0 = theta / 2`` (QCFS's analysis: at T = L steps the SNN
    follows the ANN); a negative range (``lo < 0``) is dropped there (the neuron floors at the zero
    point).
    """

    scale: float = 1.0
    levels: int = 1
    lo: int = 0
    offset: float = 0.0
    rounding: str = "floor"
    op = "QuantClip"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.scale > 0 and math.isfinite(self.scale)) or self.levels < 1 or self.lo > 0:
            raise self._shape_error(f"needs scale > 0, levels >= 1, lo <= 0; got {self.scale}, {self.levels}, "
                                    f"{self.lo}")
        if self.rounding not in ROUNDINGS:
            raise self._shape_error(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        object.__setattr__(self, "max_value", float(self.levels * self.scale))

    @property
    def lam(self) -> float:
        return self.max_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.tensor(self.scale, dtype=x.dtype, device=x.device)
        u = x / s + self.offset if self.offset else x / s
        return _round(u, self.rounding).clamp_(self.lo, self.levels) * s


@dataclass(frozen=True, eq=False)
class Quantize(Node):
    """ONNX QuantizeLinear whose integer output is used as such (ANN reference only):

    .. math:: q = \\mathrm{clip}(\\mathrm{round}(x / s) + zp,\\; q_{min},\\; q_{max})

    (round half to even). Followed by a matching DequantizeLinear it becomes a :class:`QuantClip`.
    """

    scale: float = 1.0
    zero_point: int = 0
    qmin: int = 0
    qmax: int = 255
    op = "Quantize"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.tensor(self.scale, dtype=x.dtype, device=x.device)
        return (torch.round(x / s) + self.zero_point).clamp_(self.qmin, self.qmax)


@dataclass(frozen=True, eq=False)
class Floor(Node):
    """:math:`y = \\lfloor x \\rfloor` (ANN reference only; a QCFS chain around it becomes a QuantClip)."""

    op = "Floor"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x)


@dataclass(frozen=True, eq=False)
class Clamp(Node):
    """:math:`y = \\min(\\max(x, lo), hi)` with ``lo = -inf`` (no floor: not a spiking neuron; ANN reference
    only, unless it is part of a QCFS chain). Clips with a finite floor import as shifted ReLUs."""

    lo: float = -math.inf
    hi: float = math.inf
    op = "Clamp"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(None if math.isinf(self.lo) else self.lo, None if math.isinf(self.hi) else self.hi)
