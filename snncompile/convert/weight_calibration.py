"""Weight calibration (WC) of the synaptic block feeding one IF layer (Li et al. 2021).

Li et al., ICML 2021, arXiv 2106.06984, Sec. 4.3. The block of IF layer l is the linear
sub-graph between the previous spike sources (IF layers or the Input) and l: its Conv2d/Linear
weights W (plus fixed BatchNorm, pools, Add, Concat, reshapes). Since the block is affine, the
time-averaged input current of l is exactly z = block_W(r_in), with r_in the rates of the
sources in the already converted SNN. The IF rate is approximated by its constant-input value

.. math::
    \\hat r(z) = \\frac{\\theta}{T}\\, \\mathrm{clip}\\Big(\\Big\\lfloor \\frac{v_0 + T(z + b)}{\\theta}
    \\Big\\rfloor, 0, NT\\Big)

with the floor passed straight through in the backward pass, and W minimizes
``E || a_l - r_hat(block_W(r_in)) ||^2`` (a_l = ANN activation) with Adam and a cosine learning
rate schedule over a cached calibration subset. Weights named in ``fixed`` (e.g. the relu-tree
selection convs) are not trained. Biases stay as they are (BC/PC handle the mean error). If the
loss on the whole cached set did not drop, the original weights are kept.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from snncompile.convert.calib_set import CalibSet
from snncompile.ir import Conv2d, Graph, Linear
from snncompile.ir.neurons import IF, per_channel
from snncompile.ir.ops import Input
from snncompile.sim.rates import RateProbe, prefix_graph

__all__ = ["calibrate_weights", "rate_approx", "synaptic_block"]


def synaptic_block(snn: Graph, name: str) -> tuple[list[str], list[str]]:
    """(block nodes in topological order, source nodes) of IF ``name`` (see module doc)."""
    nodes, sources, stack = set(), set(), [snn.nodes[name].inputs[0]]
    while stack:
        n = stack.pop()
        node = snn.nodes[n]
        if isinstance(node, (IF, Input)):
            sources.add(n)
        elif n not in nodes:
            nodes.add(n)
            stack.extend(node.inputs)
    return [k for k in snn.nodes if k in nodes], [k for k in snn.nodes if k in sources]


def rate_approx(z: torch.Tensor, node: IF, timesteps: int, params: tuple | None = None) -> torch.Tensor:
    """r_hat(z) of the module doc, differentiable through a straight-through floor.

    ``params``: (theta, v0, bias) already viewed against ``z`` (:func:`_if_tensors`), so an
    optimisation loop does not convert the node's arrays at every step."""
    theta, v0, bias = params if params is not None else _if_tensors(node, z)
    u = (v0 + timesteps * (z + bias)) / theta
    u = u + (torch.floor(u) - u).detach()
    return u.clamp(0, node.max_spikes * timesteps) * theta / timesteps


def _if_tensors(node: IF, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return per_channel(node.theta, z), per_channel(node.v0, z), per_channel(node.bias, z)


def _weighted(node: Conv2d | Linear, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    b = torch.as_tensor(node.bias, dtype=x.dtype, device=x.device)
    if isinstance(node, Linear):
        return F.linear(x, w, b)
    t, l, bt, r = node.padding
    pad: tuple[int, int] | int = (t, l)
    if (t, l) != (bt, r):
        x, pad = F.pad(x, (l, r, t, bt)), 0
    return F.conv2d(x, w, b, node.stride, pad, node.dilation, node.groups)


def _block_forward(snn: Graph, block: list[str], inputs: dict[str, torch.Tensor],
                   weights: dict[str, torch.Tensor]) -> torch.Tensor:
    vals = dict(inputs)
    for n in block:
        node = snn.nodes[n]
        args = [vals[i] for i in node.inputs]
        vals[n] = _weighted(node, args[0], weights[n]) if n in weights else node.forward(*args)
    return vals[block[-1]]


def _cache(ann: Graph, snn: Graph, calib: CalibSet, name: str, sources: list[str], timesteps: int,
           samples: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    spiking = [s for s in sources if isinstance(snn.nodes[s], IF)]
    probe = RateProbe(snn, spiking, calib.device) if spiking else None
    ann_prefix = prefix_graph(ann, [name])
    ins: dict[str, list[torch.Tensor]] = {s: [] for s in sources}
    targets = []
    for xb in calib.batches(samples, desc=f"WC cache {name}"):
        rates = probe(xb, timesteps) if probe else {}
        for s in sources:
            ins[s].append(rates.get(s, xb))
        targets.append(ann_prefix.run(xb))
    return {s: torch.cat(v) for s, v in ins.items()}, torch.cat(targets)


def calibrate_weights(ann: Graph, snn: Graph, calib: CalibSet, name: str, timesteps: int, *,
                      samples: int = 256, iters: int = 300, lr: float = 1e-4, batch: int = 32,
                      fixed: frozenset[str] = frozenset(), seed: int = 0,
                      cached: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None
                      ) -> tuple[Graph, tuple[float, float]]:
    """WC of IF ``name``; returns the new SNN and the loss (before, after) on the cached set.

    ``cached``: (source rates, ANN targets) of the first ``samples`` samples when the caller already
    has them (the layer-at-a-time calibration), instead of simulating the prefix here."""
    block, sources = synaptic_block(snn, name)
    trainable = [n for n in block if isinstance(snn.nodes[n], (Conv2d, Linear)) and n not in fixed]
    if not trainable:
        return snn, (float("nan"), float("nan"))
    inputs, target = cached if cached is not None else _cache(ann, snn, calib, name, sources, timesteps, samples)
    node = snn.nodes[name]
    weights = {n: torch.tensor(np.asarray(snn.nodes[n].weight), requires_grad=True) for n in trainable}

    like = torch.zeros((1, *snn.shapes[name]))
    params = _if_tensors(node, like)

    def loss_on(idx: torch.Tensor) -> torch.Tensor:
        z = _block_forward(snn, block, {s: v[idx] for s, v in inputs.items()}, weights)
        return (rate_approx(z, node, timesteps, params) - target[idx]).pow(2).sum() / idx.numel()

    gen = torch.Generator().manual_seed(seed)
    everything = torch.arange(target.shape[0])
    opt = torch.optim.Adam(list(weights.values()), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iters)
    with torch.enable_grad():
        before = float(loss_on(everything).detach())
        for _ in range(iters):
            idx = torch.randperm(target.shape[0], generator=gen)[:batch]
            opt.zero_grad()
            loss_on(idx).backward()
            opt.step()
            sched.step()
        after = float(loss_on(everything).detach())
    if not after < before:  # the rate approximation can disagree with the data; keep the old weights
        return snn, (before, before)
    new = {n: dataclasses.replace(snn.nodes[n], weight=w.detach().numpy().astype(np.float32))
           for n, w in weights.items()}
    out = snn.replace(new)
    out.meta = dict(getattr(snn, "meta", {}) or {})
    return out, (before, after)
