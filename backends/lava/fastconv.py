"""A faster drop-in for Lava 0.10.0's ``lava.proc.conv.utils.conv``, the function every Conv
process model (``PyConvModelFixed``/``PyConvModelFloat``) calls once per time step.

Lava's version computes ``F.conv2d`` in float32 on tensors built with the legacy
``torch.FloatTensor(ndarray)`` constructor from transposed (non-contiguous) arrays, outside
``torch.no_grad()``; on a 16 -> 32 channel 3x3 convolution of a 28x28 map it takes about 14 ms per
call here. :func:`conv` does the same computation - the same layout transposes, the same spatial
flip of the kernel, the same float32 ``F.conv2d`` and the same cast back to the weight's dtype - on
contiguous float32 copies under ``no_grad``: about 0.6 ms, with identical results on integer data
(tested against Lava's function in tests/backends/test_lava_fastconv.py, and by the spike-exact
Lava tests); it is used for integer runs only (see :func:`install`).

:func:`install` swaps it into ``lava.proc.conv.utils`` (``lava.proc.conv.models`` calls
``utils.conv`` through the module, so the swap reaches it). Lava forks its process models after the swap, so the children
run the fast version.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["conv", "install", "installed", "original"]

_ORIGINAL = None
_PARENT = os.getpid()  # the process that installs; Lava's process models run in its forks


def conv(input_: np.ndarray, weight: np.ndarray, kernel_size, stride, padding, dilation, groups) -> np.ndarray:
    """Lava's convolution: ``input_`` (X, Y, C) and ``weight`` (O, kX, kY, C/groups), parameters in XY
    order; returns (X', Y', O) in ``weight.dtype``. ``kernel_size`` is implied by ``weight``."""
    if os.getpid() != _PARENT and torch.get_num_threads() != 1:
        # in a Lava process: one thread, since there are many processes per core already, and an
        # OpenMP pool inherited through fork() (the parent ran torch before Lava forked) deadlocks on
        # its first parallel region
        torch.set_num_threads(1)
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(input_).transpose(2, 1, 0), dtype=np.float32))
    w = torch.from_numpy(np.ascontiguousarray(np.asarray(weight)[:, ::-1, ::-1].transpose(0, 3, 2, 1),
                                              dtype=np.float32))
    with torch.no_grad():
        out = F.conv2d(x[None], w, stride=[int(v) for v in stride[::-1]], padding=[int(v) for v in padding[::-1]],
                       dilation=[int(v) for v in dilation[::-1]], groups=int(groups))
    return out[0].numpy().transpose(2, 1, 0).astype(weight.dtype)


def install(fixed: bool = True) -> bool:
    """Use :func:`conv` in Lava's Conv models for an integer (``fixed_pt``) run, Lava's own function
    otherwise (idempotent). Returns whether the fast version is in place.

    Only integer runs get it: on integers (sums below 2**24) both versions give the exact sums, while
    on floats the two float32 convolutions may round differently in the last bit (their memory
    layouts differ), and the ``floating_pt`` target promises Lava's own arithmetic.
    ``SNNCOMPILE_LAVA_FASTCONV=0`` keeps Lava's function everywhere."""
    global _ORIGINAL, _PARENT
    from lava.proc.conv import utils

    _PARENT = os.getpid()
    if _ORIGINAL is None and utils.conv is not conv:
        _ORIGINAL = utils.conv
    use = fixed and os.environ.get("SNNCOMPILE_LAVA_FASTCONV", "1") != "0"
    utils.conv = conv if use else _ORIGINAL
    return use


def installed() -> bool:
    from lava.proc.conv import utils

    return utils.conv is conv


def original():
    """Lava's own function (for tests), whether or not :func:`install` ran."""
    from lava.proc.conv import utils

    return _ORIGINAL if _ORIGINAL is not None else utils.conv
