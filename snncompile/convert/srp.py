"""Residual membrane potential suppression, SRP (Hao et al. 2023).

Hao, Bu, Ding, Huang, Yu, "Reducing ANN-SNN Conversion Error through Residual Membrane
Potential", AAAI 2023, arXiv 2302.02091 (repo hzc1208/ANN2SNN_SRP). They split the error left
after quantization ("unevenness error": spikes arriving in an uneven order) into four cases and
show the dominant one is ANN output a = 0 while the SNN fires, r > 0. With v0 = theta/2 the
residual potential after t steps is

.. math:: v[t] = \\frac{\\theta}{2} + \\sum_{t' \\le t} z[t'] - n[t]\\,\\theta ,

and for a neuron that has fired (n >= 1) while its ANN output is 0 (sum z < theta/2 in the QCFS
view) this gives v[t] < theta/2 - theta + ... <= 0 (their Theorem 2: a non-positive residual
potential is the signature of that case). SRP therefore:

1. runs the converted SNN for tau extra "pre-steps" on the same input (simulator
   ``pre_steps``; outputs not counted, spikes counted as energy);
2. for every IF neuron stores the mask m = 1[v[tau] > 1e-3 theta];
3. resets every membrane to v0 = theta/2 and runs the T counted steps emitting m * n: neurons
   with a non-positive residual potential are suppressed for the rest of the run.

In our IR the conversion is Deng & Gu's (threshold balance + soft reset + v0 = theta/2) with
the MSE threshold of Li et al. for the target T and round quantization - the analogue of the
QCFS clip lambda with L = T levels that the paper's ANNs are trained with - and the graph
carries the simulator hints ``meta["pre_steps"] = tau`` and ``meta["srp_nodes"]`` (all IF
layers); the per-neuron mask is simulator state (``snncompile.sim.engine``), per input.
Latency is tau + T. The default is the paper's tau = 4 (its CIFAR setting; 8-14 on ImageNet);
``tau="auto"`` (an option, not the paper's) picks it from ``tau_candidates`` by the symmetric KL
divergence between SNN (at T) and ANN outputs on calibration samples, because on ANNs not trained
with QCFS a short pre-run can still be in its transient (deep neurons with negative bias look
silent) and then suppresses active neurons. The lowering turns the hints into the population
fields ``IFPop.srp_steps`` and ``Readout.pre_steps``, so the integer and Lava targets run SRP too.
"""

from __future__ import annotations

import torch

from snncompile.convert.adafire_search import symmetric_kl
from snncompile.convert.calib_set import CalibSet
from snncompile.convert.deng import deng_gu
from snncompile.convert.to_snn import with_meta
from snncompile.errors import ConversionError
from snncompile.ir import Graph
from snncompile.ir.neurons import IF
from snncompile.sim.simulate import simulate

__all__ = ["residual_potential"]


def _with_srp(snn: Graph, tau: int) -> Graph:
    g = snn.replace({})
    g.meta = {**snn.meta, "pre_steps": int(tau), "srp_nodes": [n.name for n in snn.of_type(IF)]}
    return g


def _pick_tau(ann: Graph, snn: Graph, calib: CalibSet, timesteps: int, candidates, samples: int) -> tuple[int, list]:
    x = calib.head(samples)
    logits = torch.cat([ann.run(xb).cpu() for xb in calib.batches(samples, desc="ANN logits")])
    kl = []
    for tau in candidates:
        res = simulate(_with_srp(snn, tau), x, timesteps, batch_size=calib.batch_size, device=calib.device)
        kl.append(symmetric_kl(res.outputs[-1].reshape(len(x), -1), logits.reshape(len(x), -1)))
    return int(candidates[min(range(len(kl)), key=kl.__getitem__)]), kl


def residual_potential(ann: Graph, calib: CalibSet, timesteps: int, *, tau: int | str = 4,
                       tau_candidates=(4, 8, 16), threshold: str = "mse", percentile: float = 99.99,
                       per_channel: bool = False, samples: int = 128) -> Graph:
    """Deng & Gu conversion plus SRP with ``tau`` pre-steps (see module doc)."""
    if tau != "auto" and (not isinstance(tau, int) or tau < 1):
        raise ConversionError(f"srp: tau (pre-steps) must be 'auto' or an int >= 1, got {tau!r}")
    snn = deng_gu(ann, calib, timesteps, threshold=threshold, percentile=percentile, per_channel=per_channel)
    how = f"tau={tau}"
    if tau == "auto":
        tau, kl = _pick_tau(ann, snn, calib, timesteps, tuple(tau_candidates), samples)
        how = f"tau={tau} (auto; KL by tau {tuple(tau_candidates)}: {', '.join(f'{v:.3g}' for v in kl)})"
    out = _with_srp(snn, tau)
    notes = {n: [*snn.meta["notes"][n], f"SRP: {how} pre-steps, suppress if v[tau] <= 1e-3 theta"]
             for n in out.meta["srp_nodes"]}
    return with_meta(out, notes=notes)
