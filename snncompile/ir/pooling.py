"""Pooling operators: AvgPool2d, MaxPool2d, GlobalAvgPool."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from snncompile.ir.linear import conv_out_size
from snncompile.ir.node import Node, Shape

__all__ = ["AvgPool2d", "GlobalAvgPool", "MaxPool2d", "tiled_sum"]


@dataclass(frozen=True, eq=False)
class _Pool2d(Node):
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # (top, left, bottom, right)

    def infer_shape(self, x: Shape) -> Shape:
        if len(x) != 3:
            raise self._shape_error(f"expected input (C, H, W), got {x}")
        t, l, b, r = self.padding
        h = conv_out_size(x[1], self.kernel[0], self.stride[0], t, b)
        w = conv_out_size(x[2], self.kernel[1], self.stride[1], l, r)
        if h < 1 or w < 1:
            raise self._shape_error(f"kernel {self.kernel} larger than padded input {x[1:]}")
        return (x[0], h, w)

    def _padded(self, x: torch.Tensor, value: float) -> torch.Tensor:
        t, l, b, r = self.padding
        return F.pad(x, (l, r, t, b), value=value) if any(self.padding) else x


def tiled_sum(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """Sum over non-overlapping kh x kw windows (stride == kernel, no padding, ragged edge dropped as
    avg_pool2d's floor mode does) as sums of strided slices, rows then columns: the same numbers as
    ``avg_pool2d(x, k, divisor_override=1)`` for integers, several times faster than torch's CPU
    pooling on NCHW tensors. Always a new tensor."""
    h, w = (x.shape[-2] // kh) * kh, (x.shape[-1] // kw) * kw
    rows = x[..., 0:h:kh, :w]
    for i in range(1, kh):
        rows = rows + x[..., i:h:kh, :w]
    out = rows[..., 0::kw]
    for j in range(1, kw):
        out = out + rows[..., j::kw]
    return out.clone() if kh * kw == 1 else out


@dataclass(frozen=True, eq=False)
class AvgPool2d(_Pool2d):
    """Average over each window: :math:`y[c,i,j] = \\frac{1}{n_{ij}} \\sum_{p,q} x_{pad}[c, i s_0 + p, j s_1 + q]`.

    ``n_ij`` is ``kH*kW`` when ``count_include_pad`` else the number of non-padding elements.
    """

    count_include_pad: bool = False
    op = "AvgPool2d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel
        if self.stride == self.kernel and not any(self.padding) and kh * kw <= 16:
            return tiled_sum(x, kh, kw).mul_(1.0 / (kh * kw))
        s = F.avg_pool2d(self._padded(x, 0.0), self.kernel, self.stride)
        if self.count_include_pad or not any(self.padding):
            return s
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        return s / F.avg_pool2d(self._padded(ones, 0.0), self.kernel, self.stride)


@dataclass(frozen=True, eq=False)
class MaxPool2d(_Pool2d):
    """Maximum over each window: :math:`y[c,i,j] = \\max_{p,q} x_{pad}[c, i s_0 + p, j s_1 + q]` (pad = -inf)."""

    op = "MaxPool2d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self._padded(x, float("-inf")), self.kernel, self.stride)


@dataclass(frozen=True, eq=False)
class GlobalAvgPool(Node):
    """Mean over all spatial positions: :math:`y[c,1,1] = \\frac{1}{HW} \\sum_{i,j} x[c,i,j]`."""

    op = "GlobalAvgPool"

    def infer_shape(self, x: Shape) -> Shape:
        if len(x) < 2:
            raise self._shape_error(f"expected input (C, H, W), got {x}")
        return (x[0],) + (1,) * (len(x) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
