"""Quantization pass: float population graph -> integer population graph for a hardware profile.

Scales (per population, per output channel where thresholds are per channel):

* IF population P with float threshold theta: membrane units sigma_P = 2**(act_shift) * vth / theta
  with ``vth = 2**(membrane_bits - 1 - headroom_bits - vth_shift)`` (4096 on Loihi 2), so that
  ``theta_eff = vth << 6`` sits ``headroom_bits`` below the 24-bit saturation; ``vth`` is lowered
  by powers of two for burst neurons (``max_spikes`` N: log2 N more bits of room) and where the
  per-step bias would exceed the bias format (``_vth``).
* Readout R: sigma_R = a power of two placing its largest weight mantissa near the top of the range.
* Source: ``x_int = round(x * s_in)`` with ``s_in = (2**input_bits - 1) / max|x|`` over calibration data.

A connection from S (payload unit u_S: 1/s_in for the source, 1 spike otherwise) into P carries the
float weight W' (thresholds already folded in); its integer weight is
``W' * sigma_P / (u_S^-1 * 2**act_shift)`` for IF targets (input is shifted by 6 on the chip) and
``W' * sigma_R / u_S^-1`` for the readout, encoded as mantissa << exponent. Biases and v0 are scaled
by sigma_P. Adds and Concats need no extra care: every connection gets the scale of its target.
Where a convolution into P would need a negative weight exponent (Lava's Conv has no exponent), P's
input shift is lowered below 6 instead (our IF neuron takes the shift as a parameter), which keeps
the convolution's 8-bit resolution.

Mean-compensated rounding (``compensate=True``, the default): rounding each weight to its nearest
mantissa leaves every target neuron an input error ``sum_j E_ij s_j`` per step (``E`` the rounding
error of the integer-domain weights, ``s`` the source's payload) whose mean over the data,
``r_i = sum_j E_ij s_bar_j``, adds up over the row: it dominates wherever a population sums large
payloads whose weights nearly cancel (a relu-tree difference ``v - u`` of a max pool, logits that
vary little around a large common value). Each row instead rounds some weights to their other
neighbouring mantissa (never an exact or zero weight, never out of range), those closest to half a
step first, as many as bring ``|r_i|`` to its least, then in ``REFINE_PASSES`` more passes the one
weight whose move leaves ``|r_i|`` least, so each weight stays within one step of its value and the
row's mean error nearly vanishes. ``s_bar`` is the mean payload on the calibration
data: the quantized input's for the source, the float population graph's spike count per step (a
run of ``timesteps`` steps on up to ``CORRECTION_SAMPLES`` samples) for IF populations; a
convolution uses the mean over output positions of each kernel tap's input. Unlike a bias
correction (Nagel et al. 2019, 4.2), this keeps a silent input silent: with no payload the row adds
nothing, as in the float network. On the 3-D + dilated pooling test model
(tests/frontend/test_onnx_pool_snn.py) sim-int's agreement with sim goes from 86 % to 95.5 %; the
per-sample part ``E (s - s_bar)`` and the flooring of negative-exponent dense sums remain.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from snncompile.errors import DataError
from snncompile.ir import Graph
from snncompile.ir.arrays import channel_view, expand
from snncompile.ir.populations import ConvConn, DenseConn, IFPop, Readout, Source
from snncompile.quantize.numbers import _stats, quantize_bias, quantize_weights
from snncompile.quantize.profile import LOIHI2, HardwareProfile

__all__ = ["CORRECTION_SAMPLES", "CORRECTION_TIMESTEPS", "quantize"]

CORRECTION_SAMPLES = 256  # calibration samples the compensated rounding's mean payloads are measured on
CORRECTION_TIMESTEPS = 16  # steps of that run when neither ``timesteps`` nor ``pop.meta["timesteps"]`` says
REFINE_PASSES = 3  # single moves per row after the first pass (module docstring)


def quantize(pop: Graph, calib_x: np.ndarray, *, profile: HardwareProfile = LOIHI2, timesteps: int | None = None,
             compensate: bool = True) -> Graph:
    """Integer population graph; ``g.meta["quantization"]`` lists per-layer formats and losses.

    ``compensate`` rounds each row of weights so that its mean error on the calibration data nearly
    vanishes (module docstring), with mean payloads measured on ``calib_x`` over ``timesteps`` steps
    (default ``pop.meta["timesteps"]``, else ``CORRECTION_TIMESTEPS``), the T the network will run."""
    x = np.asarray(calib_x, np.float64)
    if x.size == 0 or not np.isfinite(x).all():
        raise DataError("calibration data: empty or not finite; cannot choose the input scale")
    signed = bool(x.min() < 0)
    xmax = float(np.abs(x).max()) or 1.0
    s_in = (2 ** (profile.input_bits - signed) - 1) / xmax
    steps = int(timesteps or pop.meta.get("timesteps") or CORRECTION_TIMESTEPS)
    sources = {n.name: dataclasses.replace(n, scale=s_in, bits=profile.input_bits, signed=signed, fixed=True)
               for n in pop.of_type(Source)}  # the input encoding x_int = round(x * s_in)
    mean = _mean_payloads(pop, x[:CORRECTION_SAMPLES], sources, steps) if compensate else None
    unit = {}  # population -> payload value of one LSB in its float units^-1 (the scale of its payload)
    sigma = {}  # population -> membrane / readout scale (array per channel or scalar)
    layers, new = [], {}
    for n in pop.nodes.values():
        if isinstance(n, Source):
            unit[n.name] = s_in
            new[n.name] = sources[n.name]
            layers.append({"name": n.name, "kind": "input", "scale": s_in, "bits": profile.input_bits})
        elif isinstance(n, (IFPop, Readout)):
            unit[n.name] = 1.0
            conns = [pop.nodes[c] for c in n.inputs]
            sigma[n.name] = _sigma(n, conns, unit, profile)
            shift = _act_shift(n, conns, sigma[n.name], unit, pop, profile)
            for c in conns:
                m = None if mean is None else _tap_means(c, mean[c.inputs[0]])
                new[c.name], info = _quantize_conn(c, n, sigma[n.name], unit[c.inputs[0]], pop, profile, shift, m)
                layers.append(info)
            new[n.name], info = _quantize_population(n, sigma[n.name], profile, shift)
            layers.append(info)
    g = pop.replace({k: v for k, v in new.items()})
    g.meta["quantization"] = {"profile": profile.name, "input_scale": s_in, "layers": layers,
                               "compensated_rounding": None if mean is None else {
                                   "timesteps": steps, "samples": int(min(len(x), CORRECTION_SAMPLES))}}
    g.meta["stage"] = "integer"
    g.meta["float32_exact"] = all(i.get("accum_bits", 0) < profile.accum_exact_bits for i in layers)
    return g


def _mean_payloads(pop: Graph, x: np.ndarray, sources: dict, steps: int) -> dict[str, np.ndarray]:
    """Mean payload per step of every population that emits (per neuron, shaped like it): the quantized
    input's mean for the Source, the float run's spike counts per step (pre-steps included) for IF."""
    from snncompile.sim.popsim import simulate_populations  # the simulator imports the IR, not this module

    res = simulate_populations(pop, x, steps)  # float32: a mean needs no more
    mean = {k: v / (len(x) * (res.pre_steps + steps)) for k, v in res.payload_sums.items()}
    for name, q in sources.items():  # the quantized Source nodes
        mean[name] = q.forward(torch.as_tensor(x)).mean(0).numpy()
    return mean


def _tap_means(c, mean: np.ndarray) -> np.ndarray:
    """The mean payload each weight of connection ``c`` multiplies, shaped like its weight: the source's
    mean per input for a dense matrix (every row alike); for a convolution, per output channel and tap,
    the mean over output positions of the input that tap reads (zero in the padding)."""
    m = torch.as_tensor(np.asarray(mean, np.float64))
    w = np.asarray(c.weight)
    if isinstance(c, DenseConn):
        return np.broadcast_to(m.reshape(1, -1).numpy(), w.shape)
    o, cg, kh, kw = w.shape
    cols = F.unfold(m[None], (kh, kw), dilation=c.dilation, padding=c.padding, stride=c.stride)[0].mean(1)
    per_group = cols.reshape(c.groups, cg, kh, kw).numpy()  # input channels of group g: g*cg .. (g+1)*cg - 1
    return np.repeat(per_group, o // c.groups, axis=0)


def _compensate(q, real: np.ndarray, m: np.ndarray, profile: HardwareProfile):
    """``q`` (nearest rounding of ``real``) with some weights of each row moved to their other neighbouring
    mantissa so that the row's mean error ``sum_j (q_j - real_j) m_j`` is least (module docstring)."""
    mixed = bool(real.min() < 0 < real.max())
    lo, hi, step = profile.weight_range(mixed)
    unit = 2.0**q.exp
    rows = real.shape[0]
    w, mant, mm = real.reshape(rows, -1), q.mant.reshape(rows, -1).astype(np.float64), m.reshape(rows, -1)
    gain = step * unit * np.abs(mm)  # what moving a weight takes off |r|

    def candidates(mant):
        err = mant * unit - w
        r = (err * mm).sum(1, keepdims=True)  # each row's mean error
        flip = mant - np.sign(err) * step  # the other neighbour of each weight
        cand = ((w != 0) & (err != 0) & (flip >= lo) & (flip <= hi) & (mm != 0)
                & (np.sign(err * mm) == np.sign(r)))  # moving it reduces |r|
        return err, np.abs(r[:, 0]), flip, cand

    err, r, flip, cand = candidates(mant)
    order = np.argsort(np.where(cand, -np.abs(err), np.inf), axis=1, kind="stable")  # nearest half a step first
    done = np.concatenate([np.zeros((rows, 1)), np.cumsum(np.take_along_axis(np.where(cand, gain, 0.0), order, 1), 1)], 1)
    k = np.argmin(np.abs(r[:, None] - done), axis=1)  # how many of them to move
    moved = np.zeros_like(cand)
    np.put_along_axis(moved, order, np.arange(w.shape[1])[None] < k[:, None], 1)
    mant = np.where(moved & cand, flip, mant)
    at = np.arange(rows)
    for _ in range(REFINE_PASSES):  # then, per pass, the one move per row that leaves |r| least
        err, r, flip, cand = candidates(mant)
        left = np.where(cand, np.abs(r[:, None] - gain), np.inf)
        j = left.argmin(1)
        ok = left[at, j] < r
        mant[at[ok], j[ok]] = flip[at[ok], j[ok]]
    return _stats(real, mant.reshape(q.mant.shape), q.exp, q.clipped)


def _sigma(n, conns, unit, profile: HardwareProfile):
    if isinstance(n, IFPop):
        return _vth(n, profile) * 2.0**profile.vth_shift / np.asarray(n.theta, np.float64)
    wmax = max(float(np.abs(c.weight).max()) / unit[c.inputs[0]] for c in conns) or 1.0
    return 2.0 ** math.floor(math.log2(2 ** (profile.weight_bits + 4) / wmax))


VTH_MIN = 16  # smallest threshold mantissa _vth picks: the membrane keeps 1/1024 of a threshold


def _vth(n: IFPop, profile: HardwareProfile) -> int:
    """The population's threshold mantissa: the profile's default (``headroom_bits`` free above the
    threshold), lowered by a power of two where the membrane needs more room (a burst neuron can
    hold up to ``max_spikes`` thresholds before it fires) or the per-step bias would not fit the
    bias format (``bias_mant_max << bias_exp_max``)."""
    top = 2 ** (profile.membrane_bits - 1 - profile.headroom_bits - profile.vth_shift)
    limits = [top / 2 ** math.ceil(math.log2(max(int(n.max_spikes), 1)))]
    theta = np.abs(np.asarray(n.theta, np.float64))
    bias = np.abs(np.asarray(n.bias, np.float64))
    if bias.size and np.any(bias > 0):
        per_theta = bias / channel_view(theta, bias.ndim) if theta.ndim and bias.ndim else bias / theta
        fit = profile.bias_mant_max * 2.0**profile.bias_exp_max / (float(per_theta.max()) * 2.0**profile.vth_shift)
        limits.append(fit)
    vth = min(limits)
    return int(top if vth >= top else max(VTH_MIN, 2 ** math.floor(math.log2(vth))))


def _act_shift(n, conns, sig, unit, pop: Graph, profile: HardwareProfile) -> int:
    """The IF target's input shift: the profile's, lowered where a convolution would need a negative
    weight exponent (Lava's Conv has none), so its weights keep their 8-bit resolution."""
    if not isinstance(n, IFPop):
        return 0
    _, hi, _ = profile.weight_range(True)
    need = [math.ceil(math.log2(float(np.abs(_real(c, n, sig, unit[c.inputs[0]], pop, profile.act_shift)).max())
                                 / hi)) for c in conns if isinstance(c, ConvConn) and np.any(c.weight)]
    return max(0, profile.act_shift + min([0, *need]))


def _real(c, target, sig, src_unit: float, pop: Graph, act_shift: int) -> np.ndarray:
    """The real-valued integer-domain weights of connection c into target (see module docstring)."""
    shift = 2.0**act_shift if isinstance(target, IFPop) else 1.0
    w = np.asarray(c.weight, np.float64)
    if isinstance(c, ConvConn):
        return w * channel_view(np.asarray(sig, np.float64), 4) / (shift * src_unit)  # a scalar sig broadcasts as is
    else:
        out_shape = pop.shapes[c.name]
        per_row = expand(sig, out_shape).reshape(-1, 1)
        real = w * per_row / (shift * src_unit)
    return real


def _quantize_conn(c, target, sig, src_unit: float, pop: Graph, profile: HardwareProfile, act_shift: int,
                   tap_means: np.ndarray | None = None):
    real = _real(c, target, sig, src_unit, pop, act_shift)
    q = quantize_weights(real, profile, name=c.name, allow_negative_exp=isinstance(c, DenseConn))
    if tap_means is not None and real.size:
        q = _compensate(q, real, tap_means, profile)
    src = pop.nodes[c.inputs[0]]
    max_payload = int(src.max_spikes) if isinstance(src, IFPop) else 2**profile.input_bits - 1  # else: the Source
    bound = _accum_bound(q, c) * max_payload
    info = {"name": c.name, "kind": "dense" if isinstance(c, DenseConn) else "conv", "weight_exp": q.exp,
            "weight_bits": q.bits, "clipped": q.clipped, "zeroed": q.zeroed, "rel_error": q.rel_error,
            "synapses": int((q.mant != 0).sum()), "accum_bits": math.ceil(math.log2(bound + 1))}
    return dataclasses.replace(c, weight=q.mant.astype(np.float64), weight_exp=q.exp, fixed=True), info


def _accum_bound(q, c) -> float:
    """Largest |sum| one output can receive per unit payload: max over outputs of sum |w| (with exponent)."""
    m = np.abs(q.mant).astype(np.float64) * 2.0**q.exp
    return float(m.reshape(m.shape[0], -1).sum(1).max()) if m.size else 0.0


def _quantize_population(n, sig, profile: HardwareProfile, act_shift: int):
    sig_arr = np.asarray(sig, np.float64)  # scalar or per channel; channel_view leaves a scalar as it is
    qb = quantize_bias(np.asarray(n.bias, np.float64) * channel_view(sig_arr, np.ndim(n.bias)), profile, name=n.name)
    info = {"name": n.name, "kind": "readout" if isinstance(n, Readout) else "if", "bias_exp": qb.exp,
            "bias_clipped": qb.clipped, "bias_rel_error": qb.rel_error}
    if isinstance(n, Readout):
        info["scale"] = float(sig)
        return dataclasses.replace(n, bias=qb.mant.astype(np.float64), bias_exp=qb.exp, scale=float(sig),
                                   fixed=True), info
    vth = np.round(np.asarray(n.theta, np.float64) * sig / 2.0**profile.vth_shift)
    v0 = np.round(np.asarray(n.v0, np.float64) * channel_view(sig_arr, np.ndim(n.v0)))  # per channel if either is
    v0 = np.clip(v0, -profile.v_max, profile.v_max)
    info.update(vth=int(vth.max()), sigma=float(np.max(sig)), act_shift=act_shift)
    return dataclasses.replace(n, theta=vth, bias=qb.mant.astype(np.float64), bias_exp=qb.exp, v0=v0,
                               fixed=True, v_max=profile.v_max, shift=act_shift,
                               vth_shift=profile.vth_shift), info
