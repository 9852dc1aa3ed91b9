"""Weighted (synaptic) operators: Conv2d, Linear and the per-channel affine BatchNorm."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from snncompile.ir.arrays import channel_view
from snncompile.ir.node import Node, Shape, cached, param

__all__ = ["BatchNorm", "Conv2d", "Linear", "conv_out_size"]


def conv_out_size(size: int, k: int, stride: int, pad_begin: int, pad_end: int, dilation: int = 1,
                  ceil: bool = False) -> int:
    """Output length of a sliding window along one axis (ONNX/torch formula)."""
    span = size + pad_begin + pad_end - dilation * (k - 1) - 1
    return (-(-span // stride) if ceil else span // stride) + 1


@dataclass(frozen=True, eq=False)
class Conv2d(Node):
    """2-D convolution (cross-correlation), channels first.

    .. math:: y[o, i, j] = b[o] + \\sum_{c, p, q} W[o, c, p, q]\\,
              x_{pad}[g(o) \\cdot C_g + c,\\; i s_0 + p d_0,\\; j s_1 + q d_1]

    where ``x_pad`` is ``x`` zero-padded by ``padding`` and ``g(o)`` is the group of output o.
    """

    weight: np.ndarray  # (O, C/groups, kH, kW) float32
    bias: np.ndarray  # (O,) float32
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # (top, left, bottom, right), ONNX order
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    op = "Conv2d"

    def infer_shape(self, x: Shape) -> Shape:
        o, cg, kh, kw = self.weight.shape
        if len(x) != 3 or x[0] != cg * self.groups:
            raise self._shape_error(f"expected input (C={cg * self.groups}, H, W), got {x}")
        if o % self.groups:
            raise self._shape_error(f"{o} output channels do not divide into groups={self.groups}")
        t, l, b, r = self.padding
        h = conv_out_size(x[1], kh, self.stride[0], t, b, self.dilation[0])
        w = conv_out_size(x[2], kw, self.stride[1], l, r, self.dilation[1])
        if h < 1 or w < 1:
            raise self._shape_error(f"kernel {kh}x{kw} larger than padded input {x[1:]}")
        return (o, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = cached(self, "taps", None, self._signed_taps)
        if taps is not None:
            return self._select(x, taps)
        x, pad = self.pad_input(x)
        return F.conv2d(x, param(self, "weight", x), param(self, "bias", x), self.stride, pad,
                        self.dilation, self.groups)

    def _signed_taps(self) -> tuple[tuple[int, int, float], ...] | None:
        """((p, q, sign), ...) when the conv is depthwise, every channel has the same kernel of one or two
        taps of +-1 and the bias is 0 (the MaxPool rewrite's selections and differences), else None.
        Such a conv is computed from strided views of its input: a sum of at most two terms of +-x is
        rounded once in any order, so for finite inputs the result equals ``F.conv2d``'s (up to the sign
        of a zero), at a fraction of the cost of a depthwise convolution on the CPU (an inf or NaN at a
        zero-weight tap, which ``F.conv2d`` multiplies into a NaN, is not read here)."""
        w = self.weight
        if self.groups != w.shape[0] or w.shape[1] != 1 or self.bias.any() or not (w == w[:1]).all():
            return None
        p, q = np.nonzero(w[0, 0])
        signs = w[0, 0, p, q]
        if not 1 <= len(p) <= 2 or not np.isin(signs, (-1.0, 1.0)).all():
            return None
        return tuple((int(a), int(b), float(s)) for a, b, s in zip(p, q, signs))

    def _select(self, x: torch.Tensor, taps) -> torch.Tensor:
        t, l, b, r = self.padding
        if t or l or b or r:
            x = F.pad(x, (l, r, t, b))
        kh, kw = self.weight.shape[2:]
        (sh, sw), (dh, dw) = self.stride, self.dilation
        h = conv_out_size(x.shape[-2], kh, sh, 0, 0, dh)
        w = conv_out_size(x.shape[-1], kw, sw, 0, 0, dw)
        views = [x[..., p * dh: p * dh + sh * (h - 1) + 1: sh, q * dw: q * dw + sw * (w - 1) + 1: sw]
                 for p, q, _ in taps]
        if len(taps) == 1:
            return views[0].neg() if taps[0][2] < 0 else views[0].clone()
        (u, v), (su, sv) = views, (taps[0][2], taps[1][2])
        if su > 0:
            return torch.add(u, v) if sv > 0 else torch.sub(u, v)
        return torch.sub(v, u) if sv > 0 else torch.add(u, v).neg_()

    def pad_input(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(x, (top, left)) for ``F.conv2d``, which pads both sides alike: an asymmetric ``padding``
        is applied to ``x`` here instead, and the conv's own padding is then (0, 0)."""
        t, l, b, r = self.padding
        return (x, (t, l)) if (t, l) == (b, r) else (F.pad(x, (l, r, t, b)), (0, 0))


@dataclass(frozen=True, eq=False)
class Linear(Node):
    """Fully connected layer over the last axis: :math:`y = W x + b`."""

    weight: np.ndarray  # (O, I) float32
    bias: np.ndarray  # (O,) float32
    op = "Linear"

    def infer_shape(self, x: Shape) -> Shape:
        if len(x) < 1 or x[-1] != self.weight.shape[1]:
            raise self._shape_error(f"expected last dim {self.weight.shape[1]}, got shape {x}")
        return (*x[:-1], self.weight.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, param(self, "weight", x), param(self, "bias", x))


@dataclass(frozen=True, eq=False)
class BatchNorm(Node):
    """Per-channel affine map (an inference-mode batch norm that could not be folded).

    .. math:: y[c, \\ldots] = s[c]\\, x[c, \\ldots] + h[c], \\quad
              s = \\gamma / \\sqrt{\\sigma^2 + \\epsilon},\\; h = \\beta - \\mu s
    """

    scale: np.ndarray  # (C,) float32, s
    shift: np.ndarray  # (C,) float32, h
    op = "BatchNorm"

    def infer_shape(self, x: Shape) -> Shape:
        if len(x) < 1 or x[0] != self.scale.shape[0]:
            raise self._shape_error(f"expected {self.scale.shape[0]} channels, got shape {x}")
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nd = x.dim() - 1
        return x * channel_view(param(self, "scale", x), nd) + channel_view(param(self, "shift", x), nd)
