"""How a node's parameter array meets the neurons it belongs to: the one broadcasting rule of the IR.

Neuron parameters (``theta``, ``bias``, ``v0``, SRP levels, scales) are stored scalar (shape ``()``),
per channel (shape ``(C,)``, the channel being the *first* per-sample axis) or per neuron (the full
per-sample shape). numpy and torch line a 1-D array up with the *last* axis, so a per-channel array
is first viewed as ``(C, 1, ..., 1)``:

.. math:: \\mathrm{view}(p)[c, i, j, \\ldots] = p[c]

A per-sample shape of one axis, ``(C,)``, needs no view. Every module that broadcasts a parameter
(simulators, lowering, quantization, conversion passes, backends) goes through these functions.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["channel_view", "expand", "layout_error", "per_channel"]


def channel_view(arr, ndim: int):
    """``arr`` (numpy array or tensor) viewed to broadcast against a per-sample array of ``ndim`` axes:
    ``(C,)`` becomes ``(C, 1, ..., 1)``; scalars and full arrays are returned as they are."""
    return arr.reshape(-1, *([1] * (ndim - 1))) if arr.ndim == 1 and ndim > 1 else arr


def layout_error(arr, shape: tuple[int, ...]) -> str | None:
    """Why ``arr`` breaks the rule for a per-sample ``shape``, or None when it is a scalar, per channel
    (``(C,)``, ``C = shape[0]``) or per neuron (``shape``)."""
    a, shape = np.shape(arr), tuple(shape)
    if len(a) == 0 or a == shape or (len(a) == 1 and shape and a[0] == shape[0]):
        return None
    return f"shape {a} is neither per channel nor per neuron for input {shape}"


def expand(arr, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """A scalar, per-channel or full array as a new full per-neuron numpy array of ``shape``
    (``dtype=None`` keeps the array's own)."""
    a = np.asarray(arr, dtype)
    return np.broadcast_to(channel_view(a, len(shape)), tuple(shape)).copy()


def per_channel(arr: np.ndarray | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``arr`` as a tensor like the batched ``x`` (B, *sample shape) that broadcasts against it:
    per channel ``(1, C, 1, ..., 1)``, per neuron ``(1, *sample shape)``, a scalar as it is."""
    t = channel_view(torch.as_tensor(arr, dtype=x.dtype, device=x.device), x.dim() - 1)
    return t.unsqueeze(0) if t.dim() == x.dim() - 1 else t
