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
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from snncompile.errors import DataError
from snncompile.ir import Graph
from snncompile.ir.arrays import channel_view, expand
from snncompile.ir.populations import ConvConn, DenseConn, IFPop, Readout, Source
from snncompile.quantize.numbers import quantize_bias, quantize_weights
from snncompile.quantize.profile import LOIHI2, HardwareProfile

__all__ = ["quantize"]


def quantize(pop: Graph, calib_x: np.ndarray, *, profile: HardwareProfile = LOIHI2) -> Graph:
    """Integer population graph; ``g.meta["quantization"]`` lists per-layer formats and losses."""
    x = np.asarray(calib_x, np.float64)
    if x.size == 0 or not np.isfinite(x).all():
        raise DataError("calibration data: empty or not finite; cannot choose the input scale")
    signed = bool(x.min() < 0)
    xmax = float(np.abs(x).max()) or 1.0
    s_in = (2 ** (profile.input_bits - signed) - 1) / xmax
    unit = {}  # population -> payload value of one LSB in its float units^-1 (the scale of its payload)
    sigma = {}  # population -> membrane / readout scale (array per channel or scalar)
    layers, new = [], {}
    for n in pop.nodes.values():
        if isinstance(n, Source):
            unit[n.name] = s_in
            new[n.name] = dataclasses.replace(n, scale=s_in, bits=profile.input_bits, signed=signed, fixed=True)
            layers.append({"name": n.name, "kind": "input", "scale": s_in, "bits": profile.input_bits})
        elif isinstance(n, (IFPop, Readout)):
            unit[n.name] = 1.0
            conns = [pop.nodes[c] for c in n.inputs]
            sigma[n.name] = _sigma(n, conns, unit, profile)
            shift = _act_shift(n, conns, sigma[n.name], unit, pop, profile)
            for c in conns:
                qc, info = _quantize_conn(c, n, sigma[n.name], unit[c.inputs[0]], pop, profile, shift)
                new[c.name] = qc
                layers.append(info)
            new[n.name], info = _quantize_population(n, sigma[n.name], profile, shift)
            layers.append(info)
    g = pop.replace({k: v for k, v in new.items()})
    g.meta["quantization"] = {"profile": profile.name, "input_scale": s_in, "layers": layers}
    g.meta["stage"] = "integer"
    g.meta["float32_exact"] = all(i.get("accum_bits", 0) < profile.accum_exact_bits for i in layers)
    return g


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


def _quantize_conn(c, target, sig, src_unit: float, pop: Graph, profile: HardwareProfile, act_shift: int):
    real = _real(c, target, sig, src_unit, pop, act_shift)
    q = quantize_weights(real, profile, name=c.name, allow_negative_exp=isinstance(c, DenseConn))
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
