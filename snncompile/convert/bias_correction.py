"""Bias correction (BC) and potential correction (PC) of one IF layer (Li et al. 2021).

Li, Deng, Dong, Gong, Gu, "A Free Lunch From ANN: Towards Efficient, Accurate Spiking Neural
Networks Calibration", ICML 2021, arXiv 2106.06984, Sec. 4.2. With a_l the ANN activation and
r_l the SNN rate of layer l *given the already converted SNN before it*, on calibration data:

.. math::
    e_l = \\mathbb{E}_x[a_l - r_l] \\quad (\\text{per neuron}),

* BC: the layer's per-step input current gets ``b_l += mean_{H,W} e_l`` (per channel), the
  expected output error becomes ~0 because a constant extra current b raises the rate by b.
* PC: the initial membrane gets ``v0_l += T e_l`` (per neuron): the same correction delivered as
  charge at t = 0, which also fixes errors that differ across spatial positions.

Where the correction lives: in the IF node's own ``bias`` (per-step current, per channel) and
``v0`` fields, not in the producing Conv2d/Linear bias. The two are equivalent when that layer
feeds only this IF, but the IF field is also right when the producer is an Add (residual) or a
BatchNorm, leaves the shared ANN weights untouched, and maps to the per-neuron bias current of
neuromorphic cores; a backend may fold it into the preceding layer's bias.
"""

from __future__ import annotations

import numpy as np
import torch

from snncompile.convert.calib_set import CalibSet
from snncompile.convert.replay import LayerwiseSim
from snncompile.convert.to_snn import update_if
from snncompile.ir import Graph
from snncompile.ir.arrays import expand
from snncompile.sim.rates import RateProbe, prefix_graph

__all__ = ["correct_bias", "correct_potential", "layer_error", "replay_error", "with_bias", "with_potential"]


def layer_error(ann: Graph, snn: Graph, calib: CalibSet, name: str, timesteps: int,
                samples: int | None = None) -> torch.Tensor:
    """e_l = mean over calibration samples of a_l - r_l, shape = layer's per-sample shape."""
    probe = RateProbe(snn, [name], calib.device)
    ann_prefix = prefix_graph(ann, [name])
    total, count = torch.zeros(snn.shapes[name], dtype=torch.float64), 0
    for xb in calib.batches(samples, desc=f"calibrating {name}"):
        a = ann_prefix.run(xb)
        r = probe(xb, timesteps)[name]
        total += (a - r).double().sum(0).cpu()
        count += xb.shape[0]
    return (total / count).float()


def replay_error(sim: LayerwiseSim, snn: Graph, name: str, ann_act: torch.Tensor) -> torch.Tensor:
    """e_l as :func:`layer_error`, on the samples of a layer-at-a-time simulation whose layers before
    ``name`` are already emitted; ``ann_act`` (n, *shape) the ANN activations of its first n samples."""
    r = sim.rates(snn, snn.nodes[name])[: ann_act.shape[0]]
    return ((ann_act - r).double().sum(0) / ann_act.shape[0]).float()


def _channel_mean(e: torch.Tensor) -> torch.Tensor:
    return e.mean(dim=tuple(range(1, e.dim()))) if e.dim() > 1 else e


def correct_bias(ann: Graph, snn: Graph, calib: CalibSet, name: str, timesteps: int,
                 samples: int | None = None) -> tuple[Graph, float]:
    """BC on IF ``name``; returns the new SNN and mean |delta b|."""
    return with_bias(snn, name, layer_error(ann, snn, calib, name, timesteps, samples))


def correct_potential(ann: Graph, snn: Graph, calib: CalibSet, name: str, timesteps: int,
                      samples: int | None = None) -> tuple[Graph, float]:
    """PC on IF ``name``: per-neuron v0 += T e_l; returns the new SNN and mean |delta v0|."""
    return with_potential(snn, name, layer_error(ann, snn, calib, name, timesteps, samples), timesteps)


def with_bias(snn: Graph, name: str, error: torch.Tensor) -> tuple[Graph, float]:
    """BC from a measured e_l: b += mean_{H,W} e_l; the new SNN and mean |delta b|."""
    delta = _channel_mean(error).numpy()
    node = snn.nodes[name]
    bias = np.asarray(node.bias, np.float32) + delta.astype(np.float32)
    return update_if(snn, name, bias=bias), float(np.abs(delta).mean())


def with_potential(snn: Graph, name: str, error: torch.Tensor, timesteps: int) -> tuple[Graph, float]:
    """PC from a measured e_l: v0 += T e_l per neuron; the new SNN and mean |delta v0|."""
    delta = timesteps * error.numpy()
    node = snn.nodes[name]
    v0 = expand(node.v0, snn.shapes[name], np.float32)
    return update_if(snn, name, v0=v0 + delta.astype(np.float32)), float(np.abs(delta).mean())

