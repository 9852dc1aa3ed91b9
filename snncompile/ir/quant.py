"""Quantized activations: the quantized clipped ReLU (QCFS, ONNX QuantizeLinear -> DequantizeLinear),
and the ANN-only integer Quantize and Floor they are recognized from."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from snncompile.ir.arrays import layout_error, per_channel
from snncompile.ir.node import Node, Shape
from snncompile.ir.ops import ReLU

__all__ = ["Clamp", "Floor", "QuantClip", "Quantize"]

ROUNDINGS = ("floor", "half_even")


def _round(u: torch.Tensor, rounding: str) -> torch.Tensor:
    return torch.floor(u) if rounding == "floor" else torch.round(u)  # torch.round: half to even


def _t(v, x: torch.Tensor) -> torch.Tensor:
    """A scalar or a per-channel/per-neuron parameter as a tensor of ``x``'s dtype broadcasting against it."""
    return per_channel(v, x) if isinstance(v, np.ndarray) else torch.tensor(v, dtype=x.dtype, device=x.device)


def _check_params(node: Node, x: Shape, *fields: str) -> None:
    """Each field is a scalar, per channel (``(C,)``, C = x[0]) or per neuron (shape ``x``): ir.arrays' rule."""
    for f in fields:
        why = layout_error(getattr(node, f), x)
        if why:
            raise node._shape_error(f"{f}: {why}")


@dataclass(frozen=True, eq=False)
class QuantClip(ReLU):
    """Clipped ReLU with ``L = levels`` uniform levels and ceiling ``lam = L * s`` (``s = scale``):

    .. math:: y = s \\cdot \\mathrm{clip}\\big(R(x / s + \\varphi),\\; lo,\\; L\\big)

    with ``R`` = floor or round half to even (``rounding``) and ``phi = offset``.

    * QCFS (Bu et al., ICLR 2022): :math:`h(x) = \\frac{\\lambda}{L}\\,\\mathrm{clip}(\\lfloor x L/\\lambda +
      \\tfrac12\\rfloor, 0, L)`: ``s = lam / L``, ``phi = 1/2``, ``R = floor``, ``lo = 0``.
    * ONNX QuantizeLinear -> DequantizeLinear (scale s, zero point zp, integer range [qmin, qmax]):
      ``R`` = round half to even, ``phi = 0``, ``lo = qmin - zp``, ``L = qmax - zp`` (saturation).

    ``scale``, ``levels`` and ``lo`` are scalars or, for a per-axis ONNX quantizer (a scale and zero
    point per channel), numpy arrays per channel (``(C,)``) or per neuron (the sample shape), broadcast
    by :mod:`snncompile.ir.arrays`' rule: each channel c is its own clipped ReLU with ``L[c]`` levels and
    ceiling ``lam[c] = L[c] * s[c]``. ``lam`` has the parameters' shape; ``max_value`` (the ReLU ceiling)
    is the largest ``lam``. The spiking conversion needs no threshold search: an IF neuron with
    ``theta = lam`` and ``v0 = theta / 2`` (per channel where lam is; QCFS's analysis: at T = L steps the
    SNN follows the ANN); a negative range (``lo < 0``) is dropped there (the neuron floors at the zero
    point).
    """

    scale: float | np.ndarray = 1.0
    levels: int | np.ndarray = 1
    lo: int | np.ndarray = 0
    offset: float = 0.0
    rounding: str = "floor"
    op = "QuantClip"

    def __post_init__(self) -> None:
        super().__post_init__()
        s, lv, lo = (np.asarray(v) for v in (self.scale, self.levels, self.lo))
        if not (np.all(s > 0) and np.isfinite(s).all()) or np.any(lv < 1) or np.any(lo > 0):
            raise self._shape_error(f"needs scale > 0, levels >= 1, lo <= 0; got {self.scale}, {self.levels}, "
                                    f"{self.lo}")
        if self.rounding not in ROUNDINGS:
            raise self._shape_error(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        object.__setattr__(self, "max_value", float(np.max(lv * s.astype(np.float64))))

    @property
    def per_channel(self) -> bool:
        """Whether any of scale, levels, lo is an array (a per-axis quantizer)."""
        return any(isinstance(v, np.ndarray) for v in (self.scale, self.levels, self.lo))

    @property
    def lam(self) -> float | np.ndarray:
        """The ceiling ``L * s``: a float, or an array of the parameters' broadcast shape."""
        if not self.per_channel:
            return self.max_value
        return np.asarray(self.levels) * np.asarray(self.scale, np.float64)

    def levels_text(self) -> str:
        """``L`` for reports: ``4``, or ``59 to 231`` when it differs across channels."""
        lv = np.asarray(self.levels)
        return str(int(lv.min())) if lv.min() == lv.max() else f"{int(lv.min())} to {int(lv.max())}"

    def infer_shape(self, x: Shape) -> Shape:
        _check_params(self, x, "scale", "levels", "lo")
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = _t(self.scale, x)
        u = x / s + self.offset if self.offset else x / s
        u = _round(u, self.rounding)
        if not self.per_channel:
            return u.clamp_(self.lo, self.levels) * s
        return torch.minimum(torch.maximum(u, _t(self.lo, x)), _t(self.levels, x)) * s


@dataclass(frozen=True, eq=False)
class Quantize(Node):
    """ONNX QuantizeLinear whose integer output is used as such (ANN reference only):

    .. math:: q = \\mathrm{clip}(\\mathrm{round}(x / s) + zp,\\; q_{min},\\; q_{max})

    (round half to even). ``scale`` and ``zero_point`` are scalars or (per-axis quantization) numpy
    arrays per channel or per neuron (:mod:`snncompile.ir.arrays`). Followed by a matching
    DequantizeLinear it becomes a :class:`QuantClip`.
    """

    scale: float | np.ndarray = 1.0
    zero_point: int | np.ndarray = 0
    qmin: int = 0
    qmax: int = 255
    op = "Quantize"

    def infer_shape(self, x: Shape) -> Shape:
        _check_params(self, x, "scale", "zero_point")
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zp = _t(self.zero_point, x) if isinstance(self.zero_point, np.ndarray) else self.zero_point
        return (torch.round(x / _t(self.scale, x)) + zp).clamp_(self.qmin, self.qmax)


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
