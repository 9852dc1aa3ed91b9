"""ANN -> SNN conversion: ``convert(graph, calib_x, method, timesteps) -> SNN graph``.

Methods (one module each, dispatched through ``METHODS``; equations, papers and our deviations
in docs/methods.md):

========================  ===================================================================
``max``                   threshold = max activation, v0 = 0 (Diehl et al. 2015)
``percentile``            threshold = 99.99th percentile, v0 = 0 (Rueckauer et al. 2017)
``mse``                   threshold minimizing the T-step clip-floor MSE (Li et al. 2021)
``deng``                  threshold balance + soft reset + theta/(2T) shift (arXiv 2103.00476)
``calib-light``           MSE threshold + shift, then bias correction (2106.06984, light)
``calib-advanced``        MSE threshold + shift, then potential correction; ``wc=True``: weight
                          calibration (the paper's budget) first (2106.06984, advanced)
``calib-light+pc``        ours: calib-light, then potential correction
``calib-wc+pc``           ours: calib-advanced with ``wc=True`` on a small budget (300 iterations)
``srp``                   deng + residual membrane potential suppression, tau pre-steps (2302.02091)
``adafire``               burst neurons, SSC, bias correction, IAT thresholds (burst-ann2snn)
``adafire+ch``            adafire with per-channel thresholds (``per_channel=True``, as the authors)
========================  ===================================================================

The returned graph has every ReLU replaced by an IF node of the same name and carries in
``snn.meta`` (the Graph's free-form dict; ``Graph.replace`` copies it shallowly):

* ``method``, ``timesteps``, ``options``: what was asked;
* ``conversion_log``: one dict per converted node, ``{node, from_op, to, theta, max_spikes,
  notes}`` - every Softmax/LogSoftmax/Sigmoid dropped from the output (the argmax is kept) and
  input/output quantizer dropped, every ReLU -> IF (a quantized activation's notes say that its
  threshold is its ceiling), every MaxPool2d rewrite, and the readout (the node feeding the
  Output: a non-spiking membrane integrator);
* simulator hints: ``pre_steps`` and ``srp_nodes`` (srp); ``iat`` exit thresholds (adafire).
* ``timing``: seconds per stage of the conversion (:func:`snncompile.convert.stages.timing_meta`).
"""

from __future__ import annotations

import inspect
import logging
import math
import time

import numpy as np
import torch

from snncompile.convert.adafire import adafire
from snncompile.convert.balance import threshold_balance
from snncompile.convert.calib_set import make_calib_set
from snncompile.convert.calibration import snn_calibration
from snncompile.convert.deng import deng_gu
from snncompile.convert.maxpool import rewrite_maxpool
from snncompile.convert.srp import residual_potential
from snncompile.convert.stages import recording, timing_meta
from snncompile.convert.to_snn import drop_boundary_ops, relu_names, with_meta
from snncompile.errors import ConversionError
from snncompile.ir import Graph
from snncompile.ir.neurons import IF

__all__ = ["DEFAULT_METHOD", "METHODS", "convert"]


def _partial(fn, **fixed):
    def run(ann, calib, timesteps, **options):
        return fn(ann, calib, timesteps, **fixed, **options)

    run.__doc__, run.target, run.fixed = fn.__doc__, fn, fixed
    return run


def _check_options(method: str, options: dict) -> None:
    fn = METHODS[method]
    target, fixed = getattr(fn, "target", fn), getattr(fn, "fixed", {})
    params = inspect.signature(target).parameters
    allowed = [k for k, p in params.items() if p.kind is p.KEYWORD_ONLY and k not in fixed]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConversionError(f"method {method!r}: unknown option(s) {', '.join(unknown)}; "
                              f"it takes {', '.join(allowed) or 'none'}")


METHODS = {
    "max": _partial(threshold_balance, mode="max"),
    "percentile": _partial(threshold_balance, mode="percentile"),
    "mse": _partial(threshold_balance, mode="mse"),
    "deng": deng_gu,
    "calib-light": _partial(snn_calibration, pipeline="light", wc=False),
    "calib-advanced": _partial(snn_calibration, pipeline="advanced"),
    "calib-light+pc": _partial(snn_calibration, pipeline="light+pc", wc=False),
    "calib-wc+pc": _partial(snn_calibration, pipeline="advanced", wc=True, wc_samples=128, wc_iters=300, wc_lr=1e-4),
    "srp": residual_potential,
    "adafire": adafire,
    "adafire+ch": _partial(adafire, per_channel=True),
}
DEFAULT_METHOD = "adafire"  # closest to the ANN at T <= 8 on the CNN examples (docs/benchmarks.md)


def _theta_repr(theta: np.ndarray) -> float | list[float]:
    return float(theta) if theta.ndim == 0 else [float(v) for v in theta.reshape(-1)]


def _log(ann: Graph, snn: Graph) -> list[dict]:
    notes, quant = snn.meta.get("notes", {}), snn.meta.get("quant_notes", {})
    log = list(ann.meta.get("output_log", [])) + list(ann.meta.get("maxpool_log", []))
    for node in snn.of_type(IF):
        to = "IF" if node.max_spikes == 1 else f"IF burst (max {node.max_spikes} spikes/step)"
        clip = f", clip {node.max_value:g}" if math.isfinite(node.max_value) else ""
        log.append({"node": node.name, "from_op": f"ReLU ({node.source_op}{clip})", "to": to,
                    "theta": _theta_repr(node.theta), "max_spikes": node.max_spikes,
                    "notes": "; ".join([*quant.get(node.name, []), *notes.get(node.name, [])])})
    for out in snn.outputs:
        src = snn.nodes[out.inputs[0]]
        log.append({"node": src.name, "from_op": src.op, "to": "readout: membrane integrator",
                    "theta": None, "max_spikes": None, "notes": "non-spiking; output = accumulated input / t"})
    return log


def convert(graph: Graph, calib_x, method: str = DEFAULT_METHOD, timesteps: int = 16, *,
            calib_samples: int | None = None, batch_size: int = 256, progress: bool = True,
            maxpool: str | None = None, device: str | torch.device = "cpu", **options) -> Graph:
    """Convert the ANN ``graph`` into an SNN graph tuned for ``timesteps`` steps.

    ``calib_x``: calibration inputs (N, *input_shape), N >= 1; ``calib_samples`` keeps a random
    subset of them. ``maxpool``: None (relu-tree when exact, else an error), "relu-tree" or
    "avg" (see :mod:`snncompile.convert.maxpool`). ``options`` go to the method (see its
    docstring, e.g. ``percentile=99.9``, ``per_channel=True``, ``tau=8``, ``budget=2``).
    The input graph is not modified.
    """
    if method not in METHODS:
        raise ConversionError(f"unknown conversion method {method!r}; choose from {', '.join(METHODS)}")
    if int(timesteps) < 1:
        raise ConversionError(f"timesteps must be >= 1, got {timesteps}")
    _check_options(method, options)
    t_start = time.perf_counter()
    ann = rewrite_maxpool(drop_boundary_ops(graph), mode=maxpool)
    if not relu_names(ann) and method != "max":
        # nothing to spike: every method reduces to the plain conversion (the readout is the whole model)
        logging.getLogger("snncompile").info("%s: no ReLU/Clip activation, so no spiking layer; the non-spiking "
                                             "readout computes the whole model (method %s has nothing to tune)",
                                             graph.name, method)
        method, options = "max", {}
    calib = make_calib_set(ann, calib_x, calib_samples=calib_samples, batch_size=batch_size,
                           progress=progress, device=device)
    t_method = time.perf_counter()
    with recording() as stages:
        snn = METHODS[method](ann, calib, int(timesteps), **options)
    snn = with_meta(snn, method=method, timesteps=int(timesteps), options=dict(options))
    snn.meta["conversion_log"] = _log(ann, snn)
    snn.meta["timing"] = timing_meta(t_start, t_method, time.perf_counter(), stages)
    return snn

