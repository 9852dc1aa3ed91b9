"""The converted network's readout on the calibration samples its conversion already simulated.

AdaFire's bias correction and the calib-* methods end with the final network simulated layer at a time
(:class:`snncompile.convert.replay.LayerwiseSim`) on the first calibration samples they measure on (128 by
default; calib-* with weight calibration: ``max(samples, wc_samples)``), when those samples' spike trains
fit in memory (:func:`snncompile.convert.replay.fits_in_memory`) and, for AdaFire, with bias correction on.
On CPU that readout is bitwise what :func:`snncompile.simulate` gives on those samples
(tests/convert/test_kept_outputs.py checks the example models). A caller that simulates the converted
network on the whole calibration set again - the search's exit calibration, the pipeline's
``--early-exit`` - reads those rows instead and simulates only the others::

    with keep_outputs() as kept:
        snn = convert(ann, calib_x, method="adafire", timesteps=8)
    res = calibration_run(snn, calib_x, 8, kept)   # the outputs of simulate(snn, calib_x, 8)

A kept readout is used only for the network it was simulated with (everything the simulator reads:
:func:`snncompile.ir.graph.simulated_digest`), for the same T, on CPU for both (a GPU's convolution
algorithms may differ by batch shape, so there every row is simulated), and only where its samples are the
given rows of ``calib_x`` (compared bitwise); otherwise, and outside ``keep_outputs``, everything is
simulated. A result with kept rows carries the readout only (``outputs``; no spike or synop counts): it is
for exit thresholds, which read nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import torch

from snncompile.convert.calib_set import CalibSet
from snncompile.ir import Graph
from snncompile.ir.graph import simulated_digest

__all__ = ["calibration_run", "collecting", "keep_outputs", "kept_entry", "offer"]

# network digest -> (rows of the caller's calib_x, those samples, readout (T, n, *out), device simulated on)
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


def collecting() -> bool:
    """Whether a caller collects readouts (a conversion that must compute one does so only then)."""
    return _KEPT.get() is not None


def kept_entry(snn: Graph, calib: CalibSet, outputs: torch.Tensor, *, rows: str = "caller") -> dict:
    """A kept readout: ``outputs`` (T, n, ...) of ``snn`` on ``calib.head(n)``, simulated on ``calib.device``.
    ``rows``: which array :func:`calibration_run` will be given: "caller" (the array given to ``convert``,
    of which ``calib`` holds the rows ``calib.index``) or "calib" (``calib.x`` itself)."""
    n = int(outputs.shape[1])
    idx = torch.arange(n) if rows == "calib" or calib.index is None else calib.index[:n].clone()
    return {simulated_digest(snn): (idx, calib.head(n).clone(), outputs.detach().cpu(), torch.device(calib.device))}


def offer(snn: Graph, calib: CalibSet, outputs: torch.Tensor) -> None:
    """Keep ``outputs`` (T, n, ...), the readout of ``snn`` on ``calib.head(n)``, for the caller, if one
    collects (:func:`keep_outputs`)."""
    kept = _KEPT.get()
    if kept is not None:
        kept.update(kept_entry(snn, calib, outputs))


def calibration_run(snn: Graph, calib_x, timesteps: int, kept: dict | None = None, *, batch_size: int = 256,
                    device: str | torch.device = "cpu"):
    """``simulate(snn, calib_x, timesteps).outputs`` as a :class:`snncompile.sim.SimResult` (readout only),
    the rows a conversion kept for this network (``kept``, from :func:`keep_outputs`) read instead of
    simulated. The kept entry is used up."""
    from snncompile.sim import simulate
    from snncompile.sim.result import SimResult

    x = torch.as_tensor(np.asarray(calib_x, dtype=np.float32))
    hit = kept.pop(simulated_digest(snn), None) if kept else None
    if hit is not None:
        rows, xs, head, on = hit
        if (on.type != "cpu" or torch.device(device).type != "cpu" or head.shape[0] != timesteps
                or (rows.numel() and (int(rows.max()) >= len(x) or not torch.equal(x[rows], xs)))):
            hit = None  # a GPU, another T, or another calibration array than the conversion's
    if hit is None:
        return simulate(snn, x, timesteps, batch_size=batch_size, device=device)
    rest = torch.ones(len(x), dtype=torch.bool)
    rest[rows] = False
    readout = snn.nodes[snn.outputs[0].inputs[0]].name
    shape = (timesteps, len(x), *snn.shapes[readout])
    outputs = torch.empty(shape)
    outputs[:, rows] = head.reshape(timesteps, len(rows), *shape[2:])
    pre = int((getattr(snn, "meta", {}) or {}).get("pre_steps", 0))
    coding, wall = "analog", 0.0
    if rest.any():
        res = simulate(snn, x[rest], timesteps, batch_size=batch_size, device=device)
        outputs[:, rest] = res.outputs.reshape(timesteps, int(rest.sum()), *shape[2:])
        coding, wall = res.input_coding, res.wall_s
    return SimResult(outputs, timesteps, pre, readout, {}, {}, 0, coding, wall)
