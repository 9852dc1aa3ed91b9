"""The calibration set: validated samples, batching and the progress bar every method shares."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from snncompile.errors import ConversionError, DataError
from snncompile.ir import Graph

__all__ = ["CalibSet", "make_calib_set"]


@dataclass(frozen=True)
class CalibSet:
    """Calibration samples (N, *input_shape) float32 on CPU, plus how to iterate them."""

    x: torch.Tensor
    batch_size: int
    progress: bool
    device: torch.device
    index: torch.Tensor | None = None  # (N,) int64: the rows of the given calibration array, in this order

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def head(self, n: int | None) -> torch.Tensor:
        """The first ``n`` samples (all when ``n`` is None); the set is already shuffled."""
        return self.x if n is None else self.x[:n]

    def batches(self, n: int | None = None, desc: str = "calibrate") -> Iterator[torch.Tensor]:
        """Batches of the first ``n`` samples, on ``device``, with a tqdm bar."""
        x = self.head(n)
        starts = range(0, x.shape[0], self.batch_size)
        for s in tqdm(starts, desc=desc, disable=not self.progress, leave=False):
            yield x[s:s + self.batch_size].to(self.device)


def make_calib_set(graph: Graph, calib_x, *, calib_samples: int | None = None, batch_size: int = 256,
                   progress: bool = True, device: str | torch.device = "cpu", seed: int = 0) -> CalibSet:
    """Validate ``calib_x`` against the graph input; keep ``calib_samples`` random samples.

    One sample is enough; zero raises ConversionError("calibration set is empty").
    """
    x = calib_x if isinstance(calib_x, torch.Tensor) else torch.as_tensor(np.asarray(calib_x, np.float32))
    x = x.detach().to("cpu", torch.float32)
    want = graph.shapes[graph.input.name]
    if x.dim() == len(want) + 1 and x.shape[0] == 0:
        raise ConversionError(f"{graph.input.name} (Input): calibration set is empty")
    if x.dim() != len(want) + 1 or tuple(x.shape[1:]) != tuple(want):
        raise DataError(f"{graph.input.name} (Input): calibration data must have shape "
                        f"(N, {', '.join(map(str, want))}), got {tuple(x.shape)}")
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    if calib_samples is not None:
        if calib_samples < 1:
            raise DataError(f"calib_samples must be >= 1, got {calib_samples}")
        order = order[:calib_samples]
    return CalibSet(x[order].contiguous(), batch_size, progress, torch.device(device), order)
