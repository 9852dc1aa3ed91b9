"""Population-level IR: what a neuromorphic core runs.

A population graph has one node per neuron population (``Source``, ``IFPop``, ``Readout``) and
one node per projection between populations (``DenseConn``, ``ConvConn``, each with exactly one
source population). A population sums every connection that feeds it.
Populations emit *payloads* (spike counts n, or input values), never ``n*theta``: the thresholds of
the float SNN are folded into the outgoing weights.

The graph is synchronous: in every step each population reads what its sources emit in the same
step (``snncompile.sim.popsim`` runs it so). A chip whose connections delay models that in its
backend: Lava delays each connection by one step, and its backend's pass
(``snncompile.backends.lava.timing``) adds delay relays so that Lava's run is this one shifted by
each population's depth.

The same node types serve the float graph (``fixed=False``: real weights and thresholds) and the
integer graph produced by quantization (``fixed=True``: integer mantissas and exponents, Loihi
semantics as stated in each docstring). Integers are carried in float64 tensors, which are exact
below 2**53; every operation below states its rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from snncompile.ir.arrays import per_channel
from snncompile.ir.linear import conv_out_size
from snncompile.ir.neurons import if_step
from snncompile.ir.node import Node, Shape, cached, param
from snncompile.ir.ops import add_all
from snncompile.ir.pooling import tiled_sum

__all__ = ["CONNECTIONS", "POPULATIONS", "SRP_EPS", "ConvConn", "DenseConn", "IFPop", "Readout", "Source",
           "identity_gain"]

SRP_EPS = 1e-3  # SRP keeps a neuron whose residual potential exceeds SRP_EPS * theta (Hao et al. 2023)


def _shift(a: torch.Tensor, exp: int) -> torch.Tensor:
    """``a << exp`` for exp >= 0, else the arithmetic right shift ``floor(a / 2**-exp)``."""
    return a * float(2**exp) if exp >= 0 else torch.floor(a / float(2**-exp))


def _scaled(node: Node, like: torch.Tensor, factor: float) -> torch.Tensor:
    """``node.weight * factor`` as a tensor like ``like`` (cached; a power-of-two factor is exact)."""
    return cached(node, "scaled", (like.dtype, like.device, factor), lambda: param(node, "weight", like) * factor)


def identity_gain(conn: Node) -> float | None:
    """c when connection ``conn`` is c times the identity on its source's payload, else None (cached).

    The one identity test of the population graph: a square matrix ``c * I`` (``DenseConn``; its
    ``out_shape`` may still reshape), or a 1x1 convolution with stride 1 and no padding whose
    kernel is ``c * I`` (``groups = 1``) or ``c`` in every channel (depthwise, ``groups = C``).
    Fixed point: ``c = mantissa * 2**weight_exp``."""
    return cached(conn, "identity_gain", None, lambda: _find_identity_gain(conn))


def _find_identity_gain(node: Node) -> float | None:
    w = np.asarray(node.weight)
    if w.ndim == 4:
        if w.shape[2:] != (1, 1) or node.stride != (1, 1) or node.padding != (0, 0) or node.dilation != (1, 1):
            return None
        if node.groups == w.shape[0] and w.shape[1] == 1 and node.groups > 1:  # depthwise: one weight per channel
            w = np.diag(w[:, 0, 0, 0])
        elif node.groups == 1:
            w = w[:, :, 0, 0]
        else:
            return None
    if w.ndim != 2 or w.shape[0] != w.shape[1] or not w.size:
        return None
    c = float(w[0, 0])
    if c == 0 or not np.array_equal(w, c * np.eye(w.shape[0])):
        return None
    return c * float(2**node.weight_exp) if node.fixed else c


def _gain(conn: Node) -> float | None:
    """:func:`identity_gain` where ``s * gain`` is the connection's exact result: always in float; in
    fixed point when the gain is an integer (a fractional one would be floored after the sum)."""
    gain = identity_gain(conn)
    return gain if gain is not None and (not conn.fixed or gain.is_integer()) else None


@dataclass(frozen=True, eq=False)
class Source(Node):
    """Input injection, the same every step of a sample.

    float: ``s = x``; fixed: ``s = clip(round(x * scale), -(2**(bits-1) - 1) or 0, 2**bits - 1)``
    (unsigned when ``signed`` is False), a graded payload.
    """

    scale: float = 1.0
    bits: int = 0  # 0: float input, no rounding
    signed: bool = False
    fixed: bool = False
    op = "Source"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fixed:
            return x
        hi = 2 ** (self.bits - (1 if self.signed else 0)) - 1
        return torch.round(x.double() * self.scale).clamp_(-hi if self.signed else 0, hi).to(x.dtype)


@dataclass(frozen=True, eq=False)
class DenseConn(Node):
    """All-to-all projection on the flattened source: ``a = (W @ flat(s)) * 2**weight_exp``.

    fixed: W is the integer mantissa; a positive exponent shifts left, a negative one floors the
    accumulated sum (Lava ``PyDenseModelBitAcc``).
    """

    weight: np.ndarray  # (prod(out_shape), prod(in_shape))
    out_shape: tuple[int, ...] = ()
    weight_exp: int = 0
    fixed: bool = False
    op = "Dense"

    def infer_shape(self, x: Shape) -> Shape:
        if math.prod(x) != self.weight.shape[1] or math.prod(self.out_shape) != self.weight.shape[0]:
            raise self._shape_error(f"weight {self.weight.shape} does not map {x} to {self.out_shape}")
        return tuple(self.out_shape)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        gain = _gain(self) if tuple(self.out_shape) == tuple(s.shape[1:]) else None
        if gain is not None:
            return s * gain
        left = self.fixed and self.weight_exp > 0  # a left shift of the sum = the same shift of every weight
        w = _scaled(self, s, float(2**self.weight_exp) if left else 1.0)
        a = s.reshape(s.shape[0], -1) @ w.T
        if self.fixed and self.weight_exp < 0:
            a = _shift(a, self.weight_exp)
        return a.reshape(s.shape[0], *self.out_shape)


@dataclass(frozen=True, eq=False)
class ConvConn(Node):
    """Convolutional projection: ``a = conv2d(s, W, stride, padding, dilation, groups) * 2**weight_exp``.

    Padding is symmetric (top=bottom, left=right) as Lava's Conv requires. fixed: integer mantissa;
    the exponent is applied to the weights before the convolution (Lava's Conv has no exponent, so
    the lowering passes ``W << weight_exp``; the exponent is never negative here).
    """

    weight: np.ndarray  # (O, C/groups, kH, kW)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)  # (rows, cols), both sides
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    weight_exp: int = 0
    fixed: bool = False
    op = "Conv"

    def infer_shape(self, x: Shape) -> Shape:
        o, cg, kh, kw = self.weight.shape
        if len(x) != 3 or x[0] != cg * self.groups:
            raise self._shape_error(f"expected input (C={cg * self.groups}, H, W), got {x}")
        h = conv_out_size(x[1], kh, self.stride[0], self.padding[0], self.padding[0], self.dilation[0])
        w = conv_out_size(x[2], kw, self.stride[1], self.padding[1], self.padding[1], self.dilation[1])
        return (o, h, w)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        gain = _gain(self)
        if gain is not None:
            return s * gain
        w = _scaled(self, s, float(2**self.weight_exp) if self.fixed else 1.0)
        k = self._block(tuple(s.shape[1:])) if self.fixed else 0
        if k:  # integer sums are exact in any order: pool first, then the k-times smaller kernel
            s = tiled_sum(s, k, k)
            w = w[:, :, ::k, ::k]
            return F.conv2d(s, w, None, 1, (self.padding[0] // k, self.padding[1] // k), 1, self.groups)
        return F.conv2d(s, w, None, self.stride, self.padding, self.dilation, self.groups)

    def _block(self, in_shape: tuple[int, ...]) -> int:
        """k > 1 when the kernel is constant on k x k blocks aligned with stride k (an average pool
        folded into a convolution by the lowering), so it equals sum-pool then a smaller conv."""
        return cached(self, "pool_block", in_shape, lambda: self._find_block(in_shape))

    def _find_block(self, in_shape: tuple[int, ...]) -> int:
        k, w = self.stride[0], np.asarray(self.weight)
        ok = (k > 1 and self.stride == (k, k) and self.dilation == (1, 1) and w.shape[2] % k == 0
              and w.shape[3] % k == 0 and self.padding[0] % k == 0 and self.padding[1] % k == 0
              and in_shape[1] % k == 0 and in_shape[2] % k == 0
              and np.array_equal(np.repeat(np.repeat(w[:, :, ::k, ::k], k, 2), k, 3), w))
        return k if ok else 0


@dataclass(frozen=True, eq=False)
class _Population(Node):
    arity = None

    def infer_shape(self, *shapes: Shape) -> Shape:
        if not shapes or any(s != shapes[0] for s in shapes):
            raise self._shape_error(f"incoming connections must have equal shapes, got {list(shapes)}")
        return shapes[0]

    total = staticmethod(add_all)


@dataclass(frozen=True, eq=False)
class IFPop(_Population):
    """Soft-reset integrate-and-fire population, one update per step (sum ``a`` of its inputs).

    float:  ``v += a + bias;  n = clamp(floor(v/theta), 0, N);  v -= n*theta``
    fixed (Loihi-style, integers): ``v = clip(v + (a << shift) + (bias << bias_exp), -v_max, v_max)``,
    ``theta_eff = theta << vth_shift``, ``n = clamp(floor(v/theta_eff), 0, N)``, ``v -= n*theta_eff``
    (``<<`` by a negative exponent floors, as Lava's arithmetic right shift).
    N = 1 gives ``n = [v >= theta_eff]``. Output: the payload n. ``v`` starts at ``v0`` every sample.
    Both are :func:`snncompile.ir.neurons.if_step`, the one IF update.
    ``theta`` is per channel (C,) or scalar; ``bias`` and ``v0`` per neuron (the full shape) or
    broadcastable. ``shift``, ``vth_shift`` and ``v_max`` are the hardware profile's
    (:mod:`snncompile.quantize.profile`: ``act_shift``, ``vth_shift``, ``v_max``), written by
    quantization (``shift`` lowered where a convolution needs it); the defaults are Loihi 2's.

    Residual membrane potential suppression, SRP (Hao et al. 2023, arXiv 2302.02091), when
    ``srp_steps = tau >= 1``: before step ``tau`` of a sample (0-based, i.e. after ``tau`` steps) the
    population stores the per-neuron mask ``m = [v > level]`` with ``level = SRP_EPS * theta``
    (fixed: ``floor(SRP_EPS * theta_eff)``, an integer, so the comparison is exact), and restarts
    from ``v = v0``; from then on it emits ``m * n``. The membrane still subtracts ``n * theta``:
    suppressed neurons keep integrating, they only stay silent (the authors' ``MPLayer``).
    """

    theta: np.ndarray
    bias: np.ndarray
    v0: np.ndarray
    bias_exp: int = 0
    max_spikes: int = 1
    fixed: bool = False
    v_max: int = 2**23 - 1
    shift: int = 6  # input shift: a << shift (the profile's act_shift, lowered by quantization if needed)
    vth_shift: int = 6  # theta_eff = theta << vth_shift
    srp_steps: int = 0  # tau, SRP pre-steps before the mask is set (0: no suppression)
    op = "IF"

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.srp_steps) != self.srp_steps or self.srp_steps < 0:
            raise self._shape_error(f"srp_steps must be an integer >= 0, got {self.srp_steps}")

    def srp_level(self) -> np.ndarray:
        """The SRP residual-potential level, shaped like ``theta`` (see the class docstring)."""
        theta = np.asarray(self.theta, np.float64)
        return np.floor(SRP_EPS * theta * 2.0**self.vth_shift) if self.fixed else SRP_EPS * theta

    def suppress(self, v: torch.Tensor) -> torch.Tensor:
        """SRP at the end of the pre-steps: returns the mask ``[v > level]``, restarts ``v`` at ``v0`` in place."""
        mask = (v > per_channel(self.srp_level(), v)).to(v.dtype)
        v.copy_(self.init_state(v))
        return mask

    def init_state(self, a: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(a) + per_channel(self.v0, a)

    def _constants(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(effective per-step bias, effective threshold) as tensors broadcasting against ``a`` (cached)."""
        def make() -> tuple[torch.Tensor, torch.Tensor]:
            b, th = per_channel(np.asarray(self.bias, np.float64), a), per_channel(np.asarray(self.theta, np.float64), a)
            if self.fixed:  # bias_mant << bias_exp (flooring when negative, as Lava) and vth << vth_shift
                b, th = _shift(b, self.bias_exp), th * float(2**self.vth_shift)
            return b, th

        return cached(self, "constants", (a.dtype, a.device, a.dim()), make)

    def step(self, a: torch.Tensor, v: torch.Tensor,
             mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One step for a batch (:func:`snncompile.ir.neurons.if_step` with this population's constants);
        updates ``v`` in place. Returns (n, v, saturation events in this step); with an SRP ``mask`` the
        emitted payload is ``mask * n`` (``v`` subtracts ``n * theta`` either way)."""
        bias, theta = self._constants(a)
        if self.fixed:
            n, saturated = if_step(v, a, theta, bias, self.max_spikes, gain=float(2**self.shift), v_max=self.v_max)
        else:
            n, saturated = if_step(v, a, theta, bias, self.max_spikes)
        return (n if mask is None else n.mul_(mask)), v, saturated


@dataclass(frozen=True, eq=False)
class Readout(_Population):
    """Non-spiking output population (membrane integrator read every step).

    Emits the graded value ``s = a + (bias << bias_exp)`` (float: ``a + bias``) every step; the
    network output after t counted steps is ``sum(s) / (t * scale)``, the average logit, where the
    first ``pre_steps`` steps of a sample (SRP's pre-steps) are run but not counted.
    """

    bias: np.ndarray
    bias_exp: int = 0
    scale: float = 1.0  # integer units per logit unit
    fixed: bool = False
    pre_steps: int = 0  # steps of each sample run before the counted ones (SRP's tau)
    op = "Readout"

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        a = self.total(xs)
        b = per_channel(self.bias, a)
        return a + (_shift(b, self.bias_exp) if self.fixed else b)  # << flooring when negative, as Lava


POPULATIONS = (Source, IFPop, Readout)
CONNECTIONS = (DenseConn, ConvConn)
