r"""IFSoft: integrate-and-fire neuron with reset by subtraction and optional burst (graded) spikes.

Lava has no soft-reset IF neuron (its ``LIF`` resets to zero); ANN->SNN conversion needs one.
This module holds the Process and its two CPU ProcessModels. It imports only numpy and Lava:
Lava's model discovery executes every ``.py`` file in this directory as a standalone module.

Time-window schedule
--------------------
Lava's step counter ``t`` starts at 1. With period ``T`` and offset ``d`` (the population's depth,
see ``docs/lava_internals.md``), window ``k >= 0`` of the population is the steps
``t = d + k*T + 1 .. d + k*T + T``. At the first step of a window, i.e. when
``(t - 1 - d) % T == 0`` and ``t - 1 >= d``, the membrane is set to ``v0`` *before* that step's input
is integrated. While ``t - 1 < d`` the neuron holds ``v = v0``, ignores its input and bias, and
sends 0. A value a RingBuffer source emits at step ``t`` reaches a population at depth ``d`` at
step ``t + d``; so if the source holds sample ``k`` during steps ``k*T + 1 .. k*T + T``, the
population at depth ``d`` (with ``offset = d``) integrates exactly sample ``k``'s ``T`` steps in
its window ``k``, starting from ``v0``: no cross-sample contamination.

Update per step inside a window (``N = max_spikes``)
----------------------------------------------------
This is the IR's one IF update, ``snncompile.ir.neurons.if_step``, written again in numpy because
this module runs inside Lava without torch; tests/backends/test_if_arithmetic.py checks the two
agree bit for bit on random integers.

``fixed_pt`` (bit-accurate style, all integer, int64 intermediates, vectorized):

.. math::

    v &\leftarrow \mathrm{sat}\big(v + (a_{in} \ll s_a) + (b_m \ll b_e)\big),
        \qquad \mathrm{sat}(x) = \mathrm{clip}(x, -v_{max}, v_{max}) \\
    \theta &= v_{th} \ll s_{th} \\
    n &= \mathrm{clip}(\lfloor v / \theta \rfloor, 0, N) \qquad (N = 1:\ n = [v \ge \theta]) \\
    v &\leftarrow v - n\,\theta, \qquad s_{out} = n

``b_m << b_e`` is an arithmetic right shift (floor) when ``b_e < 0``. ``s_a = act_shift``,
``s_th = vth_shift`` and ``v_max`` are the population's (Loihi 2: 6, 6 and 2^23 - 1, the bounds of
Lava's bit-accurate LIF, ``proc/lif/models.py`` ``AbstractPyLifModelFixed``: a signed 24-bit
register). As in that model the synaptic input is shifted left (MSB alignment) and the bias is not,
so ``v``, ``v0`` and ``b_m << b_e`` are in membrane units (1/64 of an input unit on Loihi 2) and
``vth`` is in input units.

``floating_pt`` (float64, no shifts, no saturation):
``v += a_in + b_m * 2**b_e; n = clip(floor(v / vth), 0, N); v -= n * vth; s_out = n``.

Residual membrane potential suppression (SRP, Hao et al. 2023), when ``srp_steps = tau >= 1``
----------------------------------------------------------------------------------------------
At window phase ``tau`` (``(t - 1 - d) % T == tau``), before that step's input, the neuron stores
``m = [v > srp_level]`` and sets ``v = v0``; from then to the end of the window it sends ``m * n``
while its membrane still subtracts ``n * theta`` (suppressed neurons keep integrating). The
window is then ``tau`` pre-steps plus the counted steps, ``T = tau + T_counted``. ``srp_level`` is
an integer in ``fixed_pt`` (membrane units), so both models compare exactly.

``s_out`` carries the count ``n`` as a graded payload (int32 in ``fixed_pt``); with ``N = 1`` it is
0/1. Connect it to ``Dense``/``Conv`` with ``num_message_bits > 0`` when ``N > 1``: with
``num_message_bits = 0`` they treat every nonzero payload as one spike.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

__all__ = ["ACT_SHIFT", "VTH_SHIFT", "V_MAX", "IFSoft", "PyIFSoftModelFixed", "PyIFSoftModelFloat"]

# Defaults only: the lowering passes every population's own act_shift, vth_shift and v_max (the hardware
# profile's, snncompile.quantize.profile.LOIHI2, which tests/backends/test_if_arithmetic.py checks these equal).
V_MAX = 2**23 - 1  # signed 24-bit membrane, saturating (Lava's LIF clips v the same way)
ACT_SHIFT = 6  # synaptic input is MSB-aligned by 6 bits before it is added to v
VTH_SHIFT = 6  # threshold mantissa is MSB-aligned by 6 bits


class IFSoft(AbstractProcess):
    """Soft-reset (reset by subtraction) integrate-and-fire population with optional bursts.

    Args:
        shape: population shape, e.g. ``(C,)`` or Lava's ``(X, Y, C)``.
        vth: threshold mantissa, > 0; scalar or broadcastable to ``shape``. ``fixed_pt``: int,
            at most 2**17 - 1 (theta = vth << 6 must fit the 24-bit membrane).
        bias_mant: bias mantissa added every step of a window; broadcastable to ``shape``.
        bias_exp: bias exponent, one int for the population.
        v0: membrane value at the start of every window (membrane units, not shifted);
            broadcastable to ``shape``. ``fixed_pt``: int within +-(2**23 - 1).
        max_spikes: ``N``, largest spike count per step; 1 = binary spikes, > 1 = graded payload.
        period: ``T`` >= 1, window length in steps.
        offset: ``d`` >= 0, steps before the first window (the population's depth).
        act_shift: left shift of the synaptic input in ``fixed_pt`` (6 on Loihi; the quantizer
            lowers it for a population whose convolution weights would need a negative exponent).
        n_windows: number of windows whose counts are recorded in ``counts``.
        fanout: synapses each neuron drives (its outgoing connections' non-zero weights),
            broadcastable to ``shape``: a step's synaptic operations are ``sum(n * fanout)``.
        per_step: record ``counts`` per step of each window (early exit), else per window.
        srp_steps: SRP pre-steps ``tau`` (0: none), ``< period``; see the module docstring.
        srp_level: SRP residual-potential level (membrane units), broadcastable to ``shape``.

    Vars: ``v`` (membrane), ``vth``, ``bias_mant``, ``v0``, ``srp_level``, ``srp_mask`` (all
    ``shape``), ``bias_exp`` ``(1,)``,
    ``counts`` ``(n_windows, period if per_step else 1, 2)``: the population's payload sum (spike
    count) and synaptic operations in each step of each window (``per_step``) or summed over each
    window, so per-sample (and per-step) counts are read once at the end of a streamed run with
    ``2 * n_windows`` (``2 * n_windows * period``) elements, however large the population.
    Ports: ``a_in`` (InPort, ``shape``), ``s_out`` (OutPort, ``shape``, payload ``n``).
    ``fixed_pt`` casts the Var values to int32 (truncating), so pass integers for it.
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        vth: float | np.ndarray,
        period: int,
        bias_mant: float | np.ndarray = 0,
        bias_exp: int = 0,
        v0: float | np.ndarray = 0,
        max_spikes: int = 1,
        offset: int = 0,
        act_shift: int = ACT_SHIFT,
        vth_shift: int = VTH_SHIFT,
        v_max: int = V_MAX,
        n_windows: int = 1,
        srp_steps: int = 0,
        srp_level: float | np.ndarray = 0,
        fanout: float | np.ndarray = 0,
        per_step: bool = False,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        super().__init__(
            shape=shape,
            max_spikes=max_spikes,
            period=period,
            offset=offset,
            act_shift=act_shift,
            vth_shift=vth_shift,
            v_max=v_max,
            n_windows=n_windows,
            srp_steps=srp_steps,
            per_step=bool(per_step),
            name=name,
            log_config=log_config,
        )
        label = f"IFSoft {self.name!r}"
        shape = tuple(int(s) for s in shape)
        vth = _broadcast(label, "vth", vth, shape)
        bias_mant = _broadcast(label, "bias_mant", bias_mant, shape)
        v0 = _broadcast(label, "v0", v0, shape)
        _check_schedule(label, max_spikes=max_spikes, period=period, offset=offset)
        if np.any(vth <= 0):
            raise ValueError(f"{label}: vth must be > 0, got min {vth.min()}")
        if not 0 < int(v_max) <= V_MAX:
            raise ValueError(f"{label}: v_max must be in (0, 2**23 - 1], got {v_max}")
        if np.any(np.abs(v0) > v_max):
            raise ValueError(f"{label}: |v0| must be <= v_max = {v_max}, got max {np.abs(v0).max()}")
        if int(bias_exp) != bias_exp:
            raise ValueError(f"{label}: bias_exp must be an integer, got {bias_exp}")
        if int(srp_steps) != srp_steps or not 0 <= srp_steps < period:
            raise ValueError(f"{label}: srp_steps must be an integer in [0, period), got {srp_steps}")

        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.v = Var(shape=shape, init=v0.copy())
        self.vth = Var(shape=shape, init=vth)
        self.bias_mant = Var(shape=shape, init=bias_mant)
        self.bias_exp = Var(shape=(1,), init=int(bias_exp))
        self.v0 = Var(shape=shape, init=v0)
        self.srp_level = Var(shape=shape, init=_broadcast(label, "srp_level", srp_level, shape))
        self.srp_mask = Var(shape=shape, init=1)  # SRP mask of the current window (1 before it is set)
        self.fanout = Var(shape=shape, init=_broadcast(label, "fanout", fanout, shape))
        self.counts = Var(shape=(max(int(n_windows), 1), int(period) if per_step else 1, 2), init=0)


def _broadcast(label: str, field: str, value, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value)
    try:
        return np.broadcast_to(arr, shape).copy()
    except ValueError:
        raise ValueError(f"{label}: {field} of shape {arr.shape} does not broadcast to {shape}") from None


def _check_schedule(label: str, *, max_spikes: int, period: int, offset: int) -> None:
    for field, value, low in (("max_spikes", max_spikes, 1), ("period", period, 1), ("offset", offset, 0)):
        if int(value) != value or value < low:
            raise ValueError(f"{label}: {field} must be an integer >= {low}, got {value}")


class _IFSoftModel(PyLoihiProcessModel):
    """Schedule shared by both models; subclasses define ``_integrate`` (update + spikes)."""

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._n_max = int(self.proc_params["max_spikes"])
        self._period = int(self.proc_params["period"])
        self._offset = int(self.proc_params["offset"])
        self._shift = int(self.proc_params.get("act_shift", ACT_SHIFT))
        self._vth_shift = int(self.proc_params.get("vth_shift", VTH_SHIFT))  # the population's, not a constant
        self._v_max = int(self.proc_params.get("v_max", V_MAX))
        self._srp = int(self.proc_params.get("srp_steps", 0))
        self._per_step = bool(self.proc_params.get("per_step", False))

    def run_spk(self) -> None:
        a_in = self.a_in.recv()  # always drain the channel, also before the first window
        phase = self.time_step - 1 - self._offset
        if phase < 0:
            self.s_out.send(np.zeros_like(self.v))
            return
        k = phase % self._period
        if k == 0:
            self.v[:] = self.v0
        if self._srp and k == self._srp:
            self.srp_mask[:] = self.v > self.srp_level
            self.v[:] = self.v0
        n = self._integrate(a_in)
        if self._srp and k >= self._srp:
            n = n * self.srp_mask
        window = phase // self._period
        if window < self.counts.shape[0]:  # payload sum and synops, in step k of the window or summed over it
            c = self.counts[window, k if self._per_step else 0]
            c[0] += n.sum()
            c[1] += np.vdot(n, self.fanout)
        self.s_out.send(n)


@implements(proc=IFSoft, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyIFSoftModelFixed(_IFSoftModel):
    """Integer IFSoft: 24-bit saturating membrane, input and threshold shifted left by 6."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=3)
    v0: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    srp_level: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    srp_mask: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)
    fanout: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=52)

    def _integrate(self, a_in: np.ndarray) -> np.ndarray:
        exp = int(self.bias_exp.item())
        bias = self.bias_mant.astype(np.int64)
        bias = bias << exp if exp >= 0 else bias >> -exp
        v = self.v.astype(np.int64) + (a_in.astype(np.int64) << self._shift) + bias
        v = np.clip(v, -self._v_max, self._v_max)
        theta = self.vth.astype(np.int64) << self._vth_shift
        n = np.clip(v // theta, 0, self._n_max)
        self.v[:] = v - n * theta
        return n.astype(np.int32)


@implements(proc=IFSoft, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyIFSoftModelFloat(_IFSoftModel):
    """Float IFSoft: same update in float64 without shifts or saturation."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, float)
    v0: np.ndarray = LavaPyType(np.ndarray, float)
    srp_level: np.ndarray = LavaPyType(np.ndarray, float)
    srp_mask: np.ndarray = LavaPyType(np.ndarray, float)
    fanout: np.ndarray = LavaPyType(np.ndarray, float)
    counts: np.ndarray = LavaPyType(np.ndarray, float)

    def _integrate(self, a_in: np.ndarray) -> np.ndarray:
        v = self.v + a_in + self.bias_mant * 2.0 ** self.bias_exp.item()
        n = np.clip(np.floor(v / self.vth), 0, self._n_max)
        self.v[:] = v - n * self.vth
        return n
