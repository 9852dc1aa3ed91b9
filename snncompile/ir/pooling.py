"""Pooling operators: AvgPool2d, MaxPool2d (windows of dilated taps), GlobalAvgPool.

1-D and 3-D pooling are 2-D pools over reshaped views (see ``snncompile.frontend.onnx_ops._pool``), so
everything downstream (max-pool rewrite, lowering, simulators, backends) knows only these."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from snncompile.ir.linear import conv_out_size
from snncompile.ir.node import Node, Shape

__all__ = ["AvgPool2d", "GlobalAvgPool", "MaxPool2d", "tiled_sum"]


@dataclass(frozen=True, eq=False)
class _Pool2d(Node):
    """A window of ``kernel`` taps ``dilation`` apart, moved by ``stride`` over the padded input."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # (top, left, bottom, right)
    dilation: tuple[int, int] = (1, 1)  # spacing of the taps along (H, W)

    def infer_shape(self, x: Shape) -> Shape:
        if len(x) != 3:
            raise self._shape_error(f"expected input (C, H, W), got {x}")
        t, l, b, r = self.padding
        h = conv_out_size(x[1], self.kernel[0], self.stride[0], t, b, self.dilation[0])
        w = conv_out_size(x[2], self.kernel[1], self.stride[1], l, r, self.dilation[1])
        if h < 1 or w < 1:
            raise self._shape_error(f"kernel {self.kernel} (dilation {self.dilation}) larger than padded input "
                                    f"{x[1:]}")
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
    """Average over each window:

    .. math:: y[c,i,j] = \\frac{1}{n_{ij}} \\sum_{p<k_0,\\, q<k_1}
              x_{pad}[c,\\; i s_0 + p d_0,\\; j s_1 + q d_1]

    with ``x_pad`` zero-padded. ``n_ij`` counts the window's taps that lie on the input, or with
    ``count_include_pad`` on the input or its padding except the last ``uncounted`` (bottom, right)
    rows/columns of the end padding (the part ceil mode adds: torch's and onnxruntime's divisor).
    """

    count_include_pad: bool = False
    uncounted: tuple[int, int] = (0, 0)  # (bottom, right): end padding never counted in n_ij
    op = "AvgPool2d"

    def infer_shape(self, x: Shape) -> Shape:
        if any(u < 0 or u > e for u, e in zip(self.uncounted, self.padding[2:])):
            raise self._shape_error(f"uncounted={self.uncounted} not within the end padding {self.padding[2:]}")
        return super().infer_shape(x)

    def _mean(self, x: torch.Tensor) -> torch.Tensor:
        """The plain window mean of an already padded (N, C, H, W) tensor (every tap counted)."""
        if self.dilation == (1, 1):
            return F.avg_pool2d(x, self.kernel, self.stride)
        kh, kw = self.kernel
        ones = x.new_full((1, 1, kh, kw), 1.0 / (kh * kw))
        n, c = x.shape[:2]
        y = F.conv2d(x.reshape(n * c, 1, *x.shape[2:]), ones, None, self.stride, 0, self.dilation)
        return y.reshape(n, c, *y.shape[2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel
        plain = not any(self.padding) and self.dilation == (1, 1)
        if plain and self.stride == self.kernel and kh * kw <= 16:
            return tiled_sum(x, kh, kw).mul_(1.0 / (kh * kw))
        s = self._mean(self._padded(x, 0.0))
        if not any(self.padding) or (self.count_include_pad and not any(self.uncounted)):
            return s
        return s / self._counted_share(x)

    def _counted_share(self, x: torch.Tensor) -> torch.Tensor:
        """``n_ij / (k_0 k_1)``: the window mean of a 0/1 mask over the padded input marking counted taps."""
        t, l, b, r = self.padding
        h, w = x.shape[2:]
        mask = x.new_zeros((1, 1, h + t + b, w + l + r))
        if self.count_include_pad:
            mask[..., : h + t + b - self.uncounted[0], : w + l + r - self.uncounted[1]] = 1.0
        else:
            mask[..., t : t + h, l : l + w] = 1.0
        return self._mean(mask)


@dataclass(frozen=True, eq=False)
class MaxPool2d(_Pool2d):
    """Maximum over each window: :math:`y[c,i,j] = \\max_{p,q} x_{pad}[c, i s_0 + p d_0, j s_1 + q d_1]`
    (pad = -inf)."""

    op = "MaxPool2d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self._padded(x, float("-inf")), self.kernel, self.stride, 0, self.dilation)


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
