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

Cost (issue 21): each Adam step runs the block forward and its weight gradient on one batch; the
loss's gradient w.r.t. z is computed directly in place (:class:`_RateLossGrad`), the optimizer step
is torch's Adam arithmetic without its bookkeeping (:class:`_Adam`; its square root skips the CPU's
slow path for zero and subnormal second moments), a block that is one Conv2d/Linear on fixed inputs
gets its weight gradient from the backward kernel directly instead of through autograd
(:class:`_DirectGrad`), the cosine schedule is replayed once per (lr, iters), and the block's nodes
that no trained weight feeds (pools, reshapes) run once on the cached set. All of these give bitwise
the weights of the plain autograd + ``torch.optim.Adam`` loop (tests/convert/test_methods.py).

Early fallback (``patience``, not exact): every ``check_every`` steps (default: a twelfth of the
schedule, at least 25: 25 of calib-wc+pc's 300, 416 of the authors' 5000) the loss on the whole cached
set is measured, and when it has not been below its start at any of the first ``patience`` checks
(3: a quarter of a schedule of 300 steps or more) the layer keeps its original weights without running
the rest of the schedule - what the end of the schedule decides for such layers on the example models,
e.g. the analog-input layers of mnist_mlp and mnist_cnn, where the straight-through gradient raises
the loss. It is a heuristic: a layer whose loss falls below its start only late in the cosine schedule
keeps weights the whole schedule would have changed. On the examples that happens once in 7 models x
7 T: mnist_mlp's second layer at T = 64 (0.2067 -> 0.2040 over the whole schedule, not below 0.2067 at
any of the first ten checks), and that SNN classifies the 1000 test samples exactly as the one
calibrated over the whole schedule (97.1 %); the other 48 convert to bitwise the same SNN.
``patience=None`` runs every step.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch
import torch.nn.functional as F

from snncompile.convert.calib_set import CalibSet
from snncompile.ir import Conv2d, Graph, Linear
from snncompile.ir.arrays import per_channel
from snncompile.ir.neurons import IF
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
    x, pad = node.pad_input(x)
    return F.conv2d(x, w, b, node.stride, pad, node.dilation, node.groups)


def _block_values(snn: Graph, block: list[str], inputs: dict[str, torch.Tensor],
                  weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    vals = dict(inputs)
    for n in block:
        node = snn.nodes[n]
        args = [vals[i] for i in node.inputs]
        vals[n] = _weighted(node, args[0], weights[n]) if n in weights else node.forward(*args)
    return vals


def _block_forward(snn: Graph, block: list[str], inputs: dict[str, torch.Tensor],
                   weights: dict[str, torch.Tensor]) -> torch.Tensor:
    return _block_values(snn, block, inputs, weights)[block[-1]]


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


class _RateLossGrad:
    """d loss / d z of the training loss ``sum((r_hat(z) - target)**2) / n``, computed directly.

    Bitwise the gradient ``loss.backward()`` gives through :func:`rate_approx` (checked by
    tests/convert/test_methods.py): the same products and quotients in the same order (pow ->
    (1/n)(2 g), then / T, * theta, the clamp's zeroing, / theta, * T), with two exact shortcuts -
    the straight-through value ``u + (floor(u) - u)`` equals ``floor(u)`` for every finite u outside
    (-1, 0) (the difference is exact: Sterbenz, or -u on [0, 1)) and inside it both are negative,
    where the clamp gives 0 and no gradient either way;
    and on those integers the clamp's pass-through test ``0 <= u <= NT`` is ``-1/2 < u < NT + 1/2``,
    one fused ``hardtanh_backward``. In place in two buffers kept across the Adam steps instead of a
    dozen fresh tensors and autograd nodes per step."""

    def __init__(self, node: IF, timesteps: int, params: tuple):
        self.theta, self.v0, self.bias = params
        self.T, self.top = timesteps, node.max_spikes * timesteps
        self.buf: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # u, g, 2 (1/n) for z's shape

    def __call__(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.buf is None or self.buf[0].shape != z.shape:
            self.buf = (torch.empty_like(z), torch.empty_like(z), self.scale(z))
        u, g, k = self.buf
        torch.add(z, self.bias, out=u)
        u.mul_(self.T).add_(self.v0).div_(self.theta).floor_()           # floor((v0 + T (z + b)) / theta)
        torch.clamp(u, 0, self.top, out=g)
        g.mul_(self.theta).div_(self.T).sub_(target)                     # r_hat - target
        g.mul_(k)                                                        # d(sum g^2 / n) = (1/n) (2 g)
        g.div_(self.T).mul_(self.theta)                                  # back through / T, * theta
        torch.ops.aten.hardtanh_backward.grad_input(g, u, -0.5, self.top + 0.5, grad_input=g)   # the clamp
        return g.div_(self.theta).mul_(self.T)                           # ... / theta, * T

    @staticmethod
    def scale(z: torch.Tensor) -> torch.Tensor:
        """2 (1/n) as one factor: bitwise (2 g) (1/n), since doubling is exact (the same real product
        2 g (1/n) rounded once either way)."""
        return 2.0 * (torch.ones((), dtype=z.dtype) / z.shape[0])


def _fixed_part(snn: Graph, block: list[str], trainable: list[str]) -> list[str]:
    """Block nodes whose value does not depend on a trained weight (pools, reshapes, fixed
    convs on the sources): computed once on the cached set instead of at every Adam step."""
    moving = set(trainable)
    for n in block:
        if any(i in moving for i in snn.nodes[n].inputs):
            moving.add(n)
    return [n for n in block if n not in moving]


class _DirectGrad:
    """The block output and weight gradient of a block that is one trained Conv2d/Linear on fixed
    inputs once its weight-independent nodes (pools before it) ran on the cached set; a block with an
    Add or a Concat, or with a node after the trained one (a pool, BatchNorm or reshape before the IF
    layer), takes autograd:
    the forward and the weight part of the backward that autograd would run (Linear: ``dz^T x``;
    Conv2d: ``aten.convolution_backward``), called directly - bitwise ``torch.autograd.grad``'s
    (tests/convert/test_methods.py) without recording a graph at every step."""

    def __init__(self, node: Conv2d | Linear, x: torch.Tensor):
        self.node, self.x = node, x
        self.b = torch.as_tensor(node.bias, dtype=x.dtype, device=x.device)
        if isinstance(node, Conv2d):  # an asymmetric padding applied to the cached input once
            self.x, pad = node.pad_input(x)
            self.pad = list(pad)
            self.stride, self.dilation = [int(i) for i in node.stride], [int(i) for i in node.dilation]

    @classmethod
    def of(cls, snn: Graph, block: list[str], trainable: list[str], inputs: dict[str, torch.Tensor]):
        """The direct path for ``block`` (the nodes left after the fixed part), or None (autograd)."""
        if len(block) != 1 or trainable != block:
            return None
        node = snn.nodes[block[0]]
        return cls(node, inputs[node.inputs[0]]) if len(node.inputs) == 1 and node.inputs[0] in inputs else None

    def __call__(self, idx: torch.Tensor, w: torch.Tensor, dloss, target: torch.Tensor) -> list[torch.Tensor]:
        """[d loss / d w] on the samples ``idx``; ``dloss(z, target[idx])`` gives d loss / d z of the block
        output z."""
        x, node = self.x[idx], self.node
        if isinstance(node, Linear):
            return [dloss(F.linear(x, w, self.b), target[idx]).t().mm(x)]
        z = F.conv2d(x, w, self.b, self.stride, self.pad, self.dilation, node.groups)
        return [torch.ops.aten.convolution_backward(dloss(z, target[idx]), x, w, [w.shape[0]], self.stride, self.pad,
                                                    self.dilation, False, [0, 0], node.groups,
                                                    [False, True, False])[1]]


@functools.lru_cache(maxsize=16)
def adam_lrs(lr: float, iters: int) -> tuple[float, ...]:
    """The learning rate of each of ``iters`` Adam steps under torch's CosineAnnealingLR(T_max=iters)
    (its recursive form, replayed on a stand-in optimizer so the floats are the scheduler's; replayed
    once per (lr, iters): every layer's calibration uses the same schedule)."""
    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(dummy, T_max=iters)
    out = []
    for _ in range(iters):
        out.append(dummy.param_groups[0]["lr"])
        dummy.step()
        sched.step()
    return tuple(out)


class _Adam:
    """torch.optim.Adam's single-tensor step (betas 0.9, 0.999, eps 1e-8, no weight decay) with the
    learning rate given per step: the same tensor operations in the same order (bitwise equal,
    tests/convert/test_methods.py), without the optimizer's per-step bookkeeping.

    One exact shortcut: the square root of ``v`` is taken of ``max(v, floor)``. The CPU's square root
    of 0 (a weight whose gradient has been 0 at every step, e.g. fed by a pixel that is 0 on every
    calibration sample) or of a subnormal costs 20-60 times that of a normal number, and for every
    ``v < floor`` both ``sqrt(v) / sqrt(bc2)`` and ``sqrt(floor) / sqrt(bc2)`` are below half a unit
    in the last place of ``eps`` (``floor`` is chosen so), so ``... + eps`` rounds to ``eps`` either
    way: the same denominators bitwise."""

    def __init__(self, params: list[torch.Tensor], beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.params, self.b1, self.b2, self.eps, self.step_n = params, beta1, beta2, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.denom = [torch.empty_like(p) for p in params]
        self.floor = [_sqrt_floor(p.dtype, beta2, eps) for p in params]

    def step(self, grads: list[torch.Tensor], lr: float) -> None:
        self.step_n += 1
        step = float(self.step_n)
        bc1, bc2 = 1 - self.b1 ** step, 1 - self.b2 ** step
        step_size, bc2_sqrt = lr / bc1, bc2 ** 0.5
        for p, g, m, v, d, lo in zip(self.params, grads, self.m, self.v, self.denom, self.floor):
            m.lerp_(g, 1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            root = torch.sqrt(v, out=d) if lo is None else torch.clamp(v, min=lo, out=d).sqrt_()
            denom = root.div_(bc2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)


def _sqrt_floor(dtype: torch.dtype, beta2: float, eps: float) -> float | None:
    """The ``floor`` of :class:`_Adam`: a normal number whose root, over the smallest ``sqrt(bc2)``
    (step 1: ``sqrt(1 - beta2)``), is a quarter of half a unit in the last place of ``eps``; None
    when that would not be a normal number (then plain ``sqrt``)."""
    info = torch.finfo(dtype)
    half_ulp = float(np.spacing(np.asarray(eps, dtype=torch.empty((), dtype=dtype).numpy().dtype))) / 2
    lo = (half_ulp / 4 * (1 - beta2) ** 0.5) ** 2
    return lo if lo >= info.tiny else None


def calibrate_weights(ann: Graph, snn: Graph, calib: CalibSet, name: str, timesteps: int, *,
                      samples: int = 256, iters: int = 300, lr: float = 1e-4, batch: int = 32,
                      fixed: frozenset[str] = frozenset(), seed: int = 0,
                      check_every: int | None = None, patience: int | None = 3,
                      cached: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None
                      ) -> tuple[Graph, tuple[float, float]]:
    """WC of IF ``name``; returns the new SNN and the loss (before, after) on the cached set.

    ``check_every``/``patience``: the early fallback of the module doc (``check_every=None``: every
    ``max(25, iters // 12)`` steps; ``patience=None``: off).
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
    fixed_part = _fixed_part(snn, block, trainable)
    if fixed_part:  # the weight-independent nodes once, on the whole cached set
        with torch.no_grad():
            pre = _block_values(snn, fixed_part, inputs, {})
        used = {i for n in block if n not in fixed_part for i in snn.nodes[n].inputs}
        inputs = {k: v for k, v in pre.items() if k in used}
        block = [n for n in block if n not in fixed_part]

    def output(idx: torch.Tensor) -> torch.Tensor:
        return _block_forward(snn, block, {s: v[idx] for s, v in inputs.items()}, weights)

    def loss_on(idx: torch.Tensor) -> float:
        with torch.no_grad():
            return float((rate_approx(output(idx), node, timesteps, params) - target[idx]).pow(2).sum() / idx.numel())

    gen = torch.Generator().manual_seed(seed)
    everything = torch.arange(target.shape[0])
    trained = list(weights.values())
    opt = _Adam(trained)
    dloss = _RateLossGrad(node, timesteps, params)
    direct = _DirectGrad.of(snn, block, trainable, inputs)
    before = loss_on(everything)
    every = max(25, iters // 12) if check_every is None else check_every
    rising = 0  # consecutive checks, from the start, at which the loss on the cached set was not below ``before``
    with torch.no_grad():
        for step, lr_t in enumerate(adam_lrs(lr, iters), 1):
            idx = torch.randperm(target.shape[0], generator=gen)[:batch]
            if direct is not None:
                grads = direct(idx, trained[0], dloss, target)
            else:
                with torch.enable_grad():
                    z = output(idx)
                grads = list(torch.autograd.grad(z, trained, dloss(z, target[idx])))
            opt.step(grads, lr_t)
            if patience and rising is not None and step % every == 0 and step < iters:
                rising = rising + 1 if not loss_on(everything) < before else None
                if rising == patience:  # no better than the original weights at every check: keep them
                    return snn, (before, before)
    after = loss_on(everything)
    if not after < before:  # the rate approximation can disagree with the data; keep the old weights
        return snn, (before, before)
    new = {n: dataclasses.replace(snn.nodes[n], weight=w.detach().numpy().astype(np.float32))
           for n, w in weights.items()}
    out = snn.replace(new)
    out.meta = dict(getattr(snn, "meta", {}) or {})
    return out, (before, after)
