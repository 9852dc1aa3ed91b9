"""Graph boundary, activation and structural operators."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from snncompile.errors import DataError
from snncompile.ir.node import Node, Shape, cached

__all__ = ["PROBABILITY_OUTPUTS", "Add", "Concat", "Flatten", "Input", "LogSoftmax", "Output", "Permute", "ReLU",
           "Reshape", "Sigmoid", "Softmax", "add_all"]


def add_all(xs) -> torch.Tensor:
    """Elementwise sum of equally shaped tensors (the inputs of an Add, or the connections of a population)."""
    if len(xs) == 1:
        return xs[0]
    out = xs[0] + xs[1]
    for x in xs[2:]:  # into the fresh sum, in the same order: (a + b) + c
        out = out.add_(x) if x.shape == out.shape and x.dtype == out.dtype else out + x
    return out


@dataclass(frozen=True, eq=False)
class Input(Node):
    """The network input, ``shape`` per sample (the batch axis is implicit and dynamic).

    With a *source layout* (``source_shape`` and ``source_perm`` non-empty) the model's data has
    per-sample shape ``source_shape`` and the network reads it reordered once, as it enters:

    .. math:: x_{net} = \\mathrm{reshape}(\\mathrm{transpose}(x_{src}, p), \\mathrm{shape}), \\quad p = \\mathrm{source\\_perm}

    (e.g. a TensorFlow export's NHWC image, ``source_perm = (2, 0, 1)``, read as the NCHW tensor its
    first Conv takes: the frontend folds the input Transpose here instead of keeping a Permute node).
    The graph, the simulators and the backends take ``shape``; :meth:`to_network` converts the
    model's data, which the CLI's data loading does for ``--data``/``--calib``.
    """

    shape: tuple[int, ...] = ()
    source_shape: tuple[int, ...] = ()
    source_perm: tuple[int, ...] = ()
    arity = 0
    op = "Input"

    def infer_shape(self) -> Shape:
        if any(d < 1 for d in self.shape):
            raise self._shape_error(f"every dimension must be >= 1, got {self.shape}")
        if (self.source_shape or self.source_perm) and (
                sorted(self.source_perm) != list(range(len(self.source_shape)))
                or any(d < 1 for d in self.source_shape)
                or math.prod(self.source_shape) != math.prod(self.shape)):
            raise self._shape_error(f"source layout {self.source_shape} with perm {self.source_perm} "
                                    f"does not map onto the input shape {self.shape}")
        return tuple(self.shape)

    @property
    def data_shape(self) -> Shape:
        """Per-sample shape of the model's data: ``source_shape`` when a layout was folded, else ``shape``."""
        return tuple(self.source_shape) if self.source_perm else tuple(self.shape)

    def to_network(self, x):
        """The model's data (N, *data_shape), numpy or torch, in the network's layout (N, *shape)."""
        if not self.source_perm:
            return x
        if tuple(x.shape[1:]) != tuple(self.source_shape):
            raise DataError(f"{self.name} (Input): expected data of shape (N, {', '.join(map(str, self.source_shape))}) "
                            f"(the model's layout), got {tuple(x.shape)}")
        axes = (0, *(p + 1 for p in self.source_perm))
        if isinstance(x, torch.Tensor):
            return x.permute(axes).reshape(x.shape[0], *self.shape)
        return np.ascontiguousarray(np.transpose(np.asarray(x), axes)).reshape(x.shape[0], *self.shape)


@dataclass(frozen=True, eq=False)
class Output(Node):
    """A graph output: :math:`y = x` (marks the tensor the network returns)."""

    op = "Output"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass(frozen=True, eq=False)
class ReLU(Node):
    """Rectifier, optionally clipped: :math:`y = \\min(\\max(x, 0), m)` with ``m = max_value``.

    ONNX ``Relu`` is ``m = inf``; ``Clip(0, c)`` (e.g. ReLU6) is ``m = c``.
    """

    max_value: float = math.inf
    source_op: str = "Relu"  # the ONNX operator it came from, for reports
    op = "ReLU"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, self.max_value) if math.isfinite(self.max_value) else x.clamp_min(0.0)


@dataclass(frozen=True, eq=False)
class Add(Node):
    """Elementwise sum of equally shaped inputs: :math:`y = \\sum_k x_k`."""

    arity = None
    op = "Add"

    def infer_shape(self, *shapes: Shape) -> Shape:
        if len(shapes) < 2 or any(s != shapes[0] for s in shapes):
            raise self._shape_error(f"inputs must have equal shapes, got {list(shapes)}")
        return shapes[0]

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return add_all(xs)


@dataclass(frozen=True, eq=False)
class Concat(Node):
    """Concatenation along ``axis`` of the per-sample shape (0 = channels)."""

    axis: int = 0
    arity = None
    op = "Concat"

    def infer_shape(self, *shapes: Shape) -> Shape:
        first = shapes[0]
        rest_ok = all(
            len(s) == len(first) and all(a == b for i, (a, b) in enumerate(zip(s, first)) if i != self.axis)
            for s in shapes
        )
        if not 0 <= self.axis < len(first) or not rest_ok:
            raise self._shape_error(f"cannot concatenate {list(shapes)} on axis {self.axis}")
        return tuple(sum(s[i] for s in shapes) if i == self.axis else d for i, d in enumerate(first))

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.axis + 1)


@dataclass(frozen=True, eq=False)
class Flatten(Node):
    """Flatten every per-sample axis into one: ``(C, H, W) -> (C*H*W,)`` in C order."""

    op = "Flatten"

    def infer_shape(self, x: Shape) -> Shape:
        return (math.prod(x),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


@dataclass(frozen=True, eq=False)
class Reshape(Node):
    """Reshape each sample to ``shape`` (C order; the element count is unchanged)."""

    shape: tuple[int, ...] = ()
    op = "Reshape"

    def infer_shape(self, x: Shape) -> Shape:
        if math.prod(x) != math.prod(self.shape) or any(d < 1 for d in self.shape):
            raise self._shape_error(f"cannot reshape {x} to {self.shape}")
        return tuple(self.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


@dataclass(frozen=True, eq=False)
class Permute(Node):
    """Reorder each sample's elements (a Transpose, or a Transpose/Reshape chain, that moves data):

    .. math:: y[i] = \\mathrm{flat}(x)[\\mathrm{index}[i]]

    ``index`` has the output's per-sample shape and holds each output element's position in the
    C-order flattened input; it is a permutation of ``range(prod(input shape))``. A pure rewiring:
    on spike trains it is exact. The frontend folds it into a following Linear where it can.
    """

    index: np.ndarray  # int64, per-sample output shape
    op = "Permute"

    def infer_shape(self, x: Shape) -> Shape:
        if self.index.size != math.prod(x):
            raise self._shape_error(f"index of {self.index.size} elements for an input of shape {x}")
        return tuple(self.index.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = cached(self, "flat_index", x.device,
                       lambda: torch.as_tensor(np.asarray(self.index, np.int64).reshape(-1), device=x.device))
        return x.reshape(x.shape[0], -1)[:, index].reshape(x.shape[0], *self.index.shape)


@dataclass(frozen=True, eq=False)
class Softmax(Node):
    """Softmax over per-sample ``axis``: :math:`y_i = e^{x_i} / \\sum_j e^{x_j}`.

    ``flat`` (ONNX Softmax before version 13): over every axis from ``axis`` on, as one. Only on the
    network output, where it keeps the argmax: the ANN reference computes it, the spiking
    conversion drops it (its readout gives the logits).
    """

    axis: int = 0
    flat: bool = False
    op = "Softmax"

    def _apply(self, x: torch.Tensor, fn) -> torch.Tensor:
        if not self.flat:
            return fn(x, dim=self.axis + 1)
        lead = x.shape[: self.axis + 1]
        return fn(x.reshape(*lead, -1), dim=-1).reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x, torch.softmax)


@dataclass(frozen=True, eq=False)
class LogSoftmax(Softmax):
    """Log of :class:`Softmax`: :math:`y_i = x_i - \\log \\sum_j e^{x_j}` (network output only)."""

    op = "LogSoftmax"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x, torch.log_softmax)


@dataclass(frozen=True, eq=False)
class Sigmoid(Node):
    """Logistic function :math:`y = 1 / (1 + e^{-x})`, elementwise (network output only)."""

    op = "Sigmoid"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


PROBABILITY_OUTPUTS = (Softmax, LogSoftmax, Sigmoid)  # monotone per class: the argmax is that of their input
