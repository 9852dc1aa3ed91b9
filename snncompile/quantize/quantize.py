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

Bias correction (``bias_correction=True``, the default; the empirical bias correction of Nagel et al.
2019, "Data-free quantization through weight equalization and bias correction", section 4.2): rounding
the weights of a connection c into P to mantissas changes P's input by ``E_c s`` every step, where
``E_c`` is the rounding error of the integer-domain weights and ``s`` the source's payload. Its
systematic part, ``E_c`` applied to the mean payload ``s_bar`` of the source on the calibration data,
is subtracted from P's per-step bias (per neuron: ``b' = b*sigma_P - sum_c (E_c s_bar) << shift`` for
IF targets, ``b' = b*sigma_R - sum_c E_c s_bar`` for the readout), then the bias is quantized as
before. ``s_bar`` is the quantized input's mean for the source and the float population graph's mean
payload per step (a run of ``timesteps`` steps on up to ``CORRECTION_SAMPLES`` calibration samples)
for IF populations. What it removes is the error of the mean, which dominates wherever a population
sums large payloads whose float weights nearly cancel (a relu-tree difference ``v - u`` of a max
pool, logits that vary little around a large common value): on the 3-D + dilated pooling test model
(tests/frontend/test_onnx_pool_snn.py) sim-int's agreement with sim goes from 86 % to 94 %. The
remaining per-sample part ``E_c (s - s_bar)`` and the flooring of negative-exponent dense sums are
not corrected.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from snncompile.errors import DataError
from snncompile.ir import Graph
from snncompile.ir.arrays import channel_view, expand
from snncompile.ir.populations import ConvConn, DenseConn, IFPop, Readout, Source
from snncompile.quantize.numbers import quantize_bias, quantize_weights
from snncompile.quantize.profile import LOIHI2, HardwareProfile

__all__ = ["CORRECTION_SAMPLES", "CORRECTION_TIMESTEPS", "quantize"]

CORRECTION_SAMPLES = 256  # calibration samples the bias correction's mean payloads are measured on
CORRECTION_TIMESTEPS = 16  # steps of that run when neither ``timesteps`` nor ``pop.meta["timesteps"]`` says


def quantize(pop: Graph, calib_x: np.ndarray, *, profile: HardwareProfile = LOIHI2, timesteps: int | None = None,
             bias_correction: bool = True) -> Graph:
    """Integer population graph; ``g.meta["quantization"]`` lists per-layer formats and losses.

    ``bias_correction`` folds the mean effect of weight rounding into the biases (module docstring),
    measured on ``calib_x`` over ``timesteps`` steps (default ``pop.meta["timesteps"]``, else
    ``CORRECTION_TIMESTEPS``), the T the network will run."""
    x = np.asarray(calib_x, np.float64)
    if x.size == 0 or not np.isfinite(x).all():
        raise DataError("calibration data: empty or not finite; cannot choose the input scale")
    signed = bool(x.min() < 0)
    xmax = float(np.abs(x).max()) or 1.0
    s_in = (2 ** (profile.input_bits - signed) - 1) / xmax
    steps = int(timesteps or pop.meta.get("timesteps") or CORRECTION_TIMESTEPS)
    mean = _mean_payloads(pop, x[:CORRECTION_SAMPLES], s_in, profile, signed, steps) if bias_correction else None
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
            drift = None  # per neuron: the mean input error of the rounded weights, in the connections' units
            for c in conns:
                qc, info, err = _quantize_conn(c, n, sigma[n.name], unit[c.inputs[0]], pop, profile, shift)
                new[c.name] = qc
                layers.append(info)
                if mean is not None:
                    d = _apply(c, err, mean[c.inputs[0]])
                    drift = d if drift is None else drift + d
            new[n.name], info = _quantize_population(n, sigma[n.name], profile, shift, drift, pop.shapes[n.name])
            layers.append(info)
    g = pop.replace({k: v for k, v in new.items()})
    g.meta["quantization"] = {"profile": profile.name, "input_scale": s_in, "layers": layers,
                               "bias_correction": None if mean is None else {
                                   "timesteps": steps, "samples": int(min(len(x), CORRECTION_SAMPLES))}}
    g.meta["stage"] = "integer"
    g.meta["float32_exact"] = all(i.get("accum_bits", 0) < profile.accum_exact_bits for i in layers)
    return g


def _mean_payloads(pop: Graph, x: np.ndarray, s_in: float, profile: HardwareProfile, signed: bool,
                   steps: int) -> dict[str, np.ndarray]:
    """Mean payload per step of every population that emits (per neuron, shaped like it): the quantized
    input's mean for the Source, the float run's spike counts per step (pre-steps included) for IF."""
    from snncompile.sim.popsim import simulate_populations  # the simulator imports the IR, not this module

    res = simulate_populations(pop, x, steps)  # float32: a mean needs no more
    mean = {k: v / (len(x) * (res.pre_steps + steps)) for k, v in res.payload_sums.items()}
    for n in pop.of_type(Source):
        q = dataclasses.replace(n, scale=s_in, bits=profile.input_bits, signed=signed, fixed=True)
        mean[n.name] = q.forward(torch.as_tensor(x)).mean(0).numpy()
    return mean


def _apply(c, err: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Connection ``c`` with weights ``err`` (real, no rounding) applied to one payload ``mean``."""
    lin = dataclasses.replace(c, weight=err, weight_exp=0, fixed=False)
    return lin.forward(torch.as_tensor(mean, dtype=torch.float64)[None])[0].numpy()


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
    return dataclasses.replace(c, weight=q.mant.astype(np.float64), weight_exp=q.exp, fixed=True), info, q.value - real


def _accum_bound(q, c) -> float:
    """Largest |sum| one output can receive per unit payload: max over outputs of sum |w| (with exponent)."""
    m = np.abs(q.mant).astype(np.float64) * 2.0**q.exp
    return float(m.reshape(m.shape[0], -1).sum(1).max()) if m.size else 0.0


def _quantize_population(n, sig, profile: HardwareProfile, act_shift: int, drift=None, shape=()):
    """The population's integer threshold, bias and v0; ``drift`` (per neuron, or None) is the mean input
    error of its rounded weights, subtracted from the bias (bias correction, module docstring)."""
    sig_arr = np.asarray(sig, np.float64)  # scalar or per channel; channel_view leaves a scalar as it is
    bias = np.asarray(n.bias, np.float64) * channel_view(sig_arr, np.ndim(n.bias))
    if drift is not None and np.any(drift):
        bias, drift = expand(bias, shape).reshape(shape[0], -1), drift.reshape(shape[0], -1)
        if len(shape) > 1 and np.all(bias == bias[:, :1]):  # a bias constant within each channel stays per
            bias, drift = bias[:, 0], drift.mean(1)  # channel, corrected by the channel's mean (NIR needs it)
        bias = (bias - drift * 2.0**act_shift).reshape(-1 if bias.ndim == 1 else shape)
    qb = quantize_bias(bias, profile, name=n.name)
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
