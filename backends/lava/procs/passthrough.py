r"""Passthrough: stateless graded relay, used as the readout layer and as a delay relay.

It forwards its summed synaptic input plus a bias as a graded payload, one step at a time:

.. math::

    s_{out}[t] = a_{in}[t] + (b_m \ll b_e)     \quad \text{(fixed\_pt, int32)} \\
    s_{out}[t] = a_{in}[t] + b_m \cdot 2^{b_e} \quad \text{(floating\_pt, float64)}

and sends 0 while ``t - 1 < offset`` (Lava's step counter ``t`` starts at 1).

Why no shift by 6: IFSoft (and Lava's LIF) shift ``a_in`` left by 6 only to align it with their
24-bit membrane; a Passthrough has no membrane, so its output is in input units, the same units
as the ``Dense``/``Conv`` sums it receives. ``b_m << b_e`` is an arithmetic right shift when
``b_e < 0``. The sum is formed in int64 and cast to int32, i.e. it wraps modulo 2**32 like Dense's
int32 accumulator; nothing saturates.

Why only an offset and no period: the relay keeps no state, so there is nothing to reset between
windows. The offset matters because of the bias: before the relay's first window (its depth
``d``, see ``docs/lava_internals.md``) its input is still zero, but ``a_in + bias`` would already
emit the bias. Gating ``t - 1 < d`` keeps the output of window ``k`` (steps
``d + k*T + 1 .. d + k*T + T``) equal to exactly sample ``k``'s contribution.

Used as a readout at depth ``D``, the host sums the sink's record over each window; used as a
relay it delays a signal by one step per hop (see the delay formula in ``docs/lava_internals.md``).
This module imports only numpy, Lava and its sibling ``if_soft`` (numpy and Lava only; Lava executes every
file in this directory, each standalone, so the import is absolute).
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
from snncompile.backends.lava.procs.if_soft import _broadcast

__all__ = ["Passthrough", "PyPassthroughModelFixed", "PyPassthroughModelFloat"]


class Passthrough(AbstractProcess):
    """Stateless relay ``s_out = a_in + bias`` with graded output, silent before ``offset``.

    Args:
        shape: population shape.
        bias_mant: bias mantissa, broadcastable to ``shape`` (int for ``fixed_pt``).
        bias_exp: bias exponent, one int for the population.
        offset: ``d`` >= 0, number of initial steps that send 0 (the relay's depth).
        period, n_windows: windows of ``period`` steps after ``offset``; the payload sum and
            synaptic operations of each of the first ``n_windows`` are recorded in ``counts``.
        fanout: synapses each neuron drives, broadcastable to ``shape`` (a step's synaptic
            operations are ``sum(s_out * fanout)``; 0 for the readout).
        per_step: record ``counts`` per step of each window (early exit), else per window.

    Vars: ``bias_mant``, ``fanout`` (``shape``), ``bias_exp`` ``(1,)``,
    ``counts`` ``(n_windows, period if per_step else 1, 2)`` (payload sum, synops), as IFSoft's.
    Ports: ``a_in`` (InPort, ``shape``), ``s_out`` (OutPort, ``shape``, graded).
    """

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        bias_mant: float | np.ndarray = 0,
        bias_exp: int = 0,
        offset: int = 0,
        period: int = 1,
        n_windows: int = 1,
        fanout: float | np.ndarray = 0,
        per_step: bool = False,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        super().__init__(shape=shape, offset=offset, period=period, n_windows=n_windows,
                         per_step=bool(per_step), name=name, log_config=log_config)
        label = f"Passthrough {self.name!r}"
        shape = tuple(int(s) for s in shape)
        bias_mant = _broadcast(label, "bias_mant", bias_mant, shape)
        fanout = _broadcast(label, "fanout", fanout, shape)
        if int(period) != period or period < 1:
            raise ValueError(f"{label}: period must be an integer >= 1, got {period}")
        if int(offset) != offset or offset < 0:
            raise ValueError(f"{label}: offset must be an integer >= 0, got {offset}")
        if int(bias_exp) != bias_exp:
            raise ValueError(f"{label}: bias_exp must be an integer, got {bias_exp}")

        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.bias_mant = Var(shape=shape, init=bias_mant)
        self.bias_exp = Var(shape=(1,), init=int(bias_exp))
        self.fanout = Var(shape=shape, init=fanout)
        self.counts = Var(shape=(max(int(n_windows), 1), int(period) if per_step else 1, 2), init=0)



class _PassthroughModel(PyLoihiProcessModel):
    """Offset gate and counts shared by both models; subclasses define ``_forward``."""

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._offset = int(self.proc_params["offset"])
        self._period = int(self.proc_params.get("period", 1))
        self._per_step = bool(self.proc_params.get("per_step", False))

    def run_spk(self) -> None:
        a_in = self.a_in.recv()  # always drain the channel
        phase = self.time_step - 1 - self._offset
        if phase < 0:
            self.s_out.send(np.zeros_like(self.bias_mant))
            return
        s = self._forward(a_in)
        window = phase // self._period
        if window < self.counts.shape[0]:  # payload sum and synops, in step k of the window or summed over it
            c = self.counts[window, phase % self._period if self._per_step else 0]
            c[0] += s.sum()
            c[1] += np.vdot(s, self.fanout)
        self.s_out.send(s)


@implements(proc=Passthrough, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPassthroughModelFixed(_PassthroughModel):
    """Integer relay: ``a_in + (bias_mant << bias_exp)``, int64 sum wrapped to int32."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=3)
    fanout: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=32)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=52)

    def _forward(self, a_in: np.ndarray) -> np.ndarray:
        exp = int(self.bias_exp.item())
        bias = self.bias_mant.astype(np.int64)
        bias = bias << exp if exp >= 0 else bias >> -exp
        return (a_in.astype(np.int64) + bias).astype(np.int32)


@implements(proc=Passthrough, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyPassthroughModelFloat(_PassthroughModel):
    """Float relay: ``a_in + bias_mant * 2**bias_exp`` in float64."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, float)
    fanout: np.ndarray = LavaPyType(np.ndarray, float)
    counts: np.ndarray = LavaPyType(np.ndarray, float)

    def _forward(self, a_in: np.ndarray) -> np.ndarray:
        return a_in + self.bias_mant * 2.0 ** self.bias_exp.item()
