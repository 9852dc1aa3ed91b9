"""The converted network's readout on the calibration samples its conversion already simulated.

AdaFire's bias correction and the calib-* methods end with the final network simulated layer at a time
on their first ``samples`` calibration samples (:class:`snncompile.convert.replay.LayerwiseSim`, 128 by
default); its readout there is bitwise what :func:`snncompile.simulate` gives on those samples (checked
for every example model by tests/convert/test_kept_outputs.py). A caller that simulates the converted
network on the whole calibration set again - the search's exit calibration, the pipeline's
``--early-exit`` - reads those rows instead and simulates only the others::

    with keep_outputs() as kept:
        snn = convert(ann, calib_x, method="adafire", timesteps=8)
    res = calibration_run(snn, calib_x, 8, kept)   # the outputs of simulate(snn, calib_x, 8)

A kept readout is used only for the network it was simulated with (:func:`snncompile.ir.graph.content_digest`
of the converted graph) and only where its samples are the given rows of ``calib_x`` (compared
bitwise); otherwise, and outside ``keep_outputs``, everything is simulated. A result with kept rows
carries the readout only (``outputs``; no spike or synop counts): it is for exit thresholds, which read
nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import torch

from snncompile.convert.calib_set import CalibSet
from snncompile.ir import Graph
from snncompile.ir.graph import content_digest

__all__ = ["calibration_run", "entry", "keep_outputs", "offer", "wanted"]

# network digest -> (rows of the caller's calib_x, those samples, readout (T, n, *out))
_KEPT: ContextVar[dict | None] = ContextVar("snncompile_kept_outputs", default=None)


@contextmanager
def keep_outputs() -> Iterator[dict]:
    """Collect, while active, the readouts conversions simulated on calibration samples (module doc)."""
    kept: dict = {}
    token = _KEPT.set(kept)
    try:
        yield kept
    finally:
        _KEPT.reset(token)


def wanted() -> bool:
    """Whether a caller collects readouts (a conversion computes one only then)."""
    return _KEPT.get() is not None


def entry(snn: Graph, rows: torch.Tensor, x: torch.Tensor, outputs: torch.Tensor) -> dict:
    """A kept readout: ``outputs`` (T, n, ...) of ``snn`` on the samples ``x`` (n, ...), which are the rows
    ``rows`` (n,) of the calibration array :func:`calibration_run` will be given."""
    return {content_digest(snn): (rows, x, outputs.detach().cpu())}


def offer(snn: Graph, calib: CalibSet, outputs: torch.Tensor) -> None:
    """Keep ``outputs`` (T, n, ...), the readout of ``snn`` on ``calib.head(n)``, for the caller."""
    kept = _KEPT.get()
    if kept is None:
        return
    n = int(outputs.shape[1])
    rows = torch.arange(n) if calib.index is None else calib.index[:n].clone()
    kept.update(entry(snn, rows, calib.head(n).clone(), outputs))


def calibration_run(snn: Graph, calib_x, timesteps: int, kept: dict | None = None, *, batch_size: int = 256,
                    device: str | torch.device = "cpu"):
    """``simulate(snn, calib_x, timesteps).outputs`` as a :class:`snncompile.sim.SimResult` (readout only),
    the rows a conversion kept for this network (``kept``, from :func:`keep_outputs`) read instead of
    simulated. The kept entry is used up."""
    from snncompile.sim import simulate
    from snncompile.sim.result import SimResult

    x = torch.as_tensor(np.asarray(calib_x, dtype=np.float32))
    hit = kept.pop(content_digest(snn), None) if kept else None
    if hit is not None:
        rows, xs, head = hit
        if rows.numel() and (int(rows.max()) >= len(x) or not torch.equal(x[rows], xs)):
            hit = None  # another calibration array than the conversion's
    if hit is None:
        return simulate(snn, x, timesteps, batch_size=batch_size, device=device)
    rest = torch.ones(len(x), dtype=torch.bool)
    rest[rows] = False
    readout = snn.nodes[snn.outputs[0].inputs[0]].name
    shape = (timesteps, len(x), *snn.shapes[readout])
    outputs = torch.empty(shape)
    outputs[:, rows] = head.reshape(timesteps, len(rows), *shape[2:])
    pre, coding, wall = 0, "analog", 0.0
    if rest.any():
        res = simulate(snn, x[rest], timesteps, batch_size=batch_size, device=device)
        outputs[:, rest] = res.outputs.reshape(timesteps, int(rest.sum()), *shape[2:])
        pre, coding, wall = res.pre_steps, res.input_coding, res.wall_s
    return SimResult(outputs, timesteps, pre, readout, {}, {}, 0, coding, wall)
