"""Loading and checking evaluation/calibration data (``.npz`` with ``x`` and optional ``y``)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snncompile.errors import DataError

__all__ = ["Dataset", "check_against", "load_npz"]

EXPECTED = "an .npz file with array 'x' (N, *input_shape), float, and optionally 'y' (N,) integer class labels"


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # (N, *shape) float32
    y: np.ndarray | None  # (N,) int64
    source: str

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, start: int, stop: int | None) -> Dataset:
        y = None if self.y is None else self.y[start:stop]
        return Dataset(self.x[start:stop], y, f"{self.source}[{start}:{'' if stop is None else stop}]")


def load_npz(path: str | Path) -> Dataset:
    """Read ``path``; raises DataError (one line) when it is missing, unreadable or malformed."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file; expected {EXPECTED}")
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{p}: not a readable .npz file ({type(e).__name__}: {e}); expected {EXPECTED}") from None
    if "x" not in arrays:
        raise DataError(f"{p}: has arrays {sorted(arrays)} but no 'x'; expected {EXPECTED}")
    x, y = arrays["x"], arrays.get("y")
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{p}: 'x' has shape {x.shape}; expected (N>0, *input_shape)")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DataError(f"{p}: 'x' has dtype {x.dtype}; expected a float or integer array")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise DataError(f"{p}: 'x' contains {bad} NaN/Inf values")
    if y is not None:
        if y.ndim != 1 or y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{p}: 'y' has shape {y.shape} dtype {y.dtype}; expected ({x.shape[0]},) integers")
        y = y.astype(np.int64)
    return Dataset(x, y, str(p))


def check_against(data: Dataset, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Raise DataError if the data does not fit the model's input shape or label range."""
    if tuple(data.x.shape[1:]) != tuple(input_shape):
        raise DataError(f"{data.source}: 'x' has per-sample shape {tuple(data.x.shape[1:])}, the model's input "
                        f"expects {tuple(input_shape)}")
    if data.y is not None and len(data.y) and (data.y.min() < 0 or data.y.max() >= num_classes):
        raise DataError(f"{data.source}: labels 'y' span [{data.y.min()}, {data.y.max()}], the model has "
                        f"{num_classes} outputs (expected 0..{num_classes - 1})")
