"""IFSoft and Passthrough on Lava's CPU simulator against numpy references of their equations.

Each process is driven by ``RingBuffer source -> Dense(identity, graded) -> proc -> RingBuffer
sink``; Dense delays by one step, so the process receives column ``t - 2`` of the source data at
lava step ``t`` (and 0 at step 1). ``fixed_pt`` must match bit for bit; ``floating_pt`` within
``1e-9`` (spike counts are integers, so in practice exactly).

The references are written differently from the models on purpose: a burst is repeated
subtraction of theta (at most N times) instead of a floor division, and shifts are products.
"""

from __future__ import annotations

import numpy as np
import pytest
from snncompile.backends.lava import compat as lava_compat
from snncompile.backends.lava.procs import IFSoft, Passthrough

lava_compat.apply()

from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.dense.process import Dense
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source

V_LIM = 2**23 - 1


# ---------------------------------------------------------------- references (loop over time only)
def ifsoft_reference(a_in, *, vth, bias, v0, n_max, period, offset, fixed):
    """Spike counts (steps, n) and final v of IFSoft for input ``a_in[t-1]`` received at step t.

    ``bias`` is the effective per-step bias (already bias_mant * 2**bias_exp, floored if fixed).
    """
    scale = 64 if fixed else 1
    theta = vth * scale
    v = v0.copy()
    out = np.zeros(a_in.shape, dtype=v.dtype)
    for t in range(1, a_in.shape[0] + 1):
        if t - 1 < offset:
            continue
        if (t - 1 - offset) % period == 0:
            v = v0.copy()
        v = v + scale * a_in[t - 1] + bias
        if fixed:
            v = np.minimum(np.maximum(v, -V_LIM), V_LIM)
            n = np.zeros_like(v)
            for _ in range(n_max):
                fire = v >= theta
                v = v - fire * theta
                n = n + fire
        else:
            n = np.clip(np.floor(v / theta), 0, n_max)
            v = v - n * theta
        out[t - 1] = n
    return out, v


def passthrough_reference(a_in, *, bias, offset):
    out = a_in + bias
    out[:offset] = 0
    return out


def received(data: np.ndarray) -> np.ndarray:
    """What a process behind one Dense(identity) receives: source column t-2 at step t, as (steps, n)."""
    shifted = np.zeros_like(data)
    shifted[:, 1:] = data[:, :-1]
    return shifted.T


# ---------------------------------------------------------------- Lava harness
def drive(proc, data: np.ndarray, tag: str, *, read_v: bool = False):
    """Run source(data) -> Dense(identity, graded) -> proc -> sink for data.shape[1] steps."""
    n, steps = data.shape
    src = Source(data=data)
    eye = np.eye(n, dtype=np.int32 if tag == "fixed_pt" else float)
    dense = Dense(weights=eye, num_message_bits=24)
    sink = Sink(shape=(n,), buffer=steps)
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(proc.a_in)
    proc.s_out.connect(sink.a_in)
    try:
        src.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag=tag))
        out = sink.data.get().T
        v = proc.v.get() if read_v else None
    finally:
        lava_compat.stop(src)
    return out, v


def random_case(rng, n, n_max):
    vth = rng.integers(1, 40, size=n)
    bias_mant = rng.integers(-30, 30, size=n)
    v0 = rng.integers(-500, 2000, size=n)
    return {"vth": vth, "bias_mant": bias_mant, "v0": v0, "max_spikes": n_max}


PERIOD, OFFSET = 7, 2
STEPS = OFFSET + 3 * PERIOD + 2  # three full windows and the start of a fourth


@pytest.mark.parametrize("n_max", [1, 4])
def test_ifsoft_fixed_matches_reference(n_max):
    """Binary and burst, per-neuron vth and v0, negative biases, bias_exp, saturation both ways."""
    rng = np.random.default_rng(n_max)
    n = 12
    case = random_case(rng, n, n_max)
    bias_exp = 2
    data = rng.integers(-40, 80, size=(n, STEPS)).astype(np.int32)
    data[0, :] = 2**18  # 2**18 << 6 = 2**24: saturates at +(2**23 - 1) every step
    data[1, :] = -(2**18)  # saturates at -(2**23 - 1), never fires
    case["vth"][0] = 2**17 - 1  # largest threshold mantissa: theta = 2**23 - 64
    proc = IFSoft(shape=(n,), bias_exp=bias_exp, period=PERIOD, offset=OFFSET, **case)
    out, v = drive(proc, data, "fixed_pt", read_v=True)
    ref, v_ref = ifsoft_reference(
        received(data).astype(np.int64),
        vth=case["vth"].astype(np.int64),
        bias=case["bias_mant"].astype(np.int64) * 2**bias_exp,
        v0=case["v0"].astype(np.int64),
        n_max=n_max,
        period=PERIOD,
        offset=OFFSET,
        fixed=True,
    )
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(v, v_ref)
    assert out[:OFFSET].sum() == 0 and out.max() == n_max
    assert np.all(out[OFFSET:, 0] == 1) and np.all(out[:, 1] == 0)


def test_ifsoft_reads_threshold_shift_and_membrane_bound_from_its_population():
    """vth_shift and v_max are parameters (the population's), not the profile's constants 6 and 2**23-1:
    with vth_shift=2, vth=5 the threshold is 20 membrane units; with v_max=100 the membrane saturates at 100."""
    n = 2
    data = np.zeros((n, 10), np.int32)
    data[0, :] = 1  # + (1 << 6) = 64 per step at threshold 20: fires 3 times per step (burst N=4), keeps 4
    data[1, :] = 10  # + 640 per step, saturates at v_max = 100 before firing (threshold 5 << 2 = 20)
    proc = IFSoft(shape=(n,), vth=5, period=100, vth_shift=2, v_max=100, max_spikes=4)
    out, v = drive(proc, data, "fixed_pt", read_v=True)
    want, vv = [], 0
    for _ in range(9):  # neuron 0 by hand: v += 64, n = min(v // 20, 4), v -= 20 n
        vv += 64
        want.append(min(vv // 20, 4))
        vv -= 20 * want[-1]
    assert out[1:, 0].tolist() == want and want[:5] == [3, 3, 3, 3, 4]
    assert out[1:, 1].tolist() == [4] * 9 and v[1] == 100 - 4 * 20


def test_ifsoft_fixed_negative_bias_exp_floors():
    """bias_mant << bias_exp with bias_exp < 0 is an arithmetic right shift: -5 >> 1 = -3."""
    n = 4
    bias_mant = np.array([-5, 5, -1, 7])
    data = np.zeros((n, 12), np.int32)
    proc = IFSoft(shape=(n,), vth=1, bias_mant=bias_mant, bias_exp=-1, v0=0, period=100)
    _, v = drive(proc, data, "fixed_pt", read_v=True)
    np.testing.assert_array_equal(v, 12 * np.array([-3, 2, -1, 3]))


@pytest.mark.parametrize("n_max", [1, 3])
def test_ifsoft_float_matches_reference(n_max):
    rng = np.random.default_rng(10 + n_max)
    n = 10
    vth = rng.uniform(0.3, 2.0, size=n)
    bias = rng.uniform(-0.2, 0.2, size=n)
    v0 = rng.uniform(-0.5, 1.0, size=n)
    data = rng.uniform(-1.0, 2.5, size=(n, STEPS))
    proc = IFSoft(
        shape=(n,),
        vth=vth,
        bias_mant=bias * 2,
        bias_exp=-1,
        v0=v0,
        max_spikes=n_max,
        period=PERIOD,
        offset=OFFSET,
    )
    out, v = drive(proc, data, "floating_pt", read_v=True)
    ref, v_ref = ifsoft_reference(
        received(data), vth=vth, bias=bias, v0=v0, n_max=n_max, period=PERIOD, offset=OFFSET, fixed=False
    )
    np.testing.assert_allclose(out, ref, atol=1e-9)
    np.testing.assert_allclose(v, v_ref, atol=1e-9)
    assert out.sum() > 0


@pytest.mark.parametrize("tag", ["fixed_pt", "floating_pt"])
def test_passthrough_matches_reference(tag):
    rng = np.random.default_rng(3)
    n, steps, offset = 6, 10, 3
    data = rng.integers(-1000, 1000, size=(n, steps)).astype(np.int32 if tag == "fixed_pt" else float)
    bias_mant = rng.integers(-50, 50, size=n)
    proc = Passthrough(shape=(n,), bias_mant=bias_mant, bias_exp=3, offset=offset)
    out, _ = drive(proc, data, tag)
    ref = passthrough_reference(received(data).astype(np.int64), bias=bias_mant * 8, offset=offset)
    np.testing.assert_array_equal(out, ref)


def test_delay_and_windows_keep_samples_apart():
    """source -> Dense -> IFSoft(depth 1) -> Dense -> Passthrough(depth 2) -> sink, 3 samples of T steps.

    Sample k is held by the source during steps kT+1..kT+T. A value emitted at step t reaches
    depth d at step t + d, so with offset = depth each window sees exactly one sample, and the
    readout of window k equals a fresh single-sample run (no state carried over).
    """
    T, n_in, n_out, samples = 6, 5, 3, 3
    rng = np.random.default_rng(7)
    x = rng.integers(0, 10, size=(n_in, samples))
    data = np.repeat(x, T, axis=1).astype(np.int32)
    data = np.concatenate([data, np.zeros((n_in, 2), np.int32)], axis=1)  # flush the 2-step latency
    # Even weights: Dense fixed_pt drops the LSB of mixed-sign 8-bit weights (docs/lava_internals.md).
    w1 = 2 * rng.integers(-10, 20, size=(n_in, n_in))
    w2 = 2 * rng.integers(-15, 15, size=(n_out, n_in))
    vth, v0, bias = rng.integers(100, 300, size=n_in), rng.integers(0, 6000, size=n_in), 40
    src = Source(data=data)
    d1 = Dense(weights=w1, num_message_bits=24)
    neurons = IFSoft(shape=(n_in,), vth=vth, v0=v0, bias_mant=bias, max_spikes=2, period=T, offset=1)
    d2 = Dense(weights=w2, num_message_bits=24)
    readout = Passthrough(shape=(n_out,), bias_mant=-3, offset=2)
    sink = Sink(shape=(n_out,), buffer=data.shape[1])
    src.s_out.connect(d1.s_in)
    d1.a_out.connect(neurons.a_in)
    neurons.s_out.connect(d2.s_in)
    d2.a_out.connect(readout.a_in)
    readout.s_out.connect(sink.a_in)
    try:
        src.run(condition=RunSteps(num_steps=data.shape[1]), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = sink.data.get()
    finally:
        lava_compat.stop(src)

    assert np.all(out[:, :2] == 0)  # readout silent before its first window (t - 1 < 2)
    counts = []
    for k in range(samples):
        a_in = np.tile(w1 @ x[:, k], (T, 1)).astype(np.int64)  # one sample, fresh from v0
        spikes, _ = ifsoft_reference(a_in, vth=vth, bias=bias, v0=v0, n_max=2, period=T, offset=0, fixed=True)
        window = out[:, 2 + k * T : 2 + (k + 1) * T]  # lava steps kT+3 .. kT+T+2
        np.testing.assert_array_equal(window.sum(axis=1), w2 @ spikes.sum(axis=0) - 3 * T)
        counts.append(spikes.sum(axis=0))
    assert len({tuple(c) for c in counts}) == samples  # the samples really differ
    assert 0 < np.mean(np.concatenate(counts)) < 2 * T  # and the neurons are not saturated


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vth": 0}, "vth must be > 0"),
        ({"vth": np.ones(3)}, r"vth of shape \(3,\) does not broadcast to \(4,\)"),
        ({"vth": 1, "period": 0}, "period must be an integer >= 1"),
        ({"vth": 1, "max_spikes": 0}, "max_spikes must be an integer >= 1"),
        ({"vth": 1, "offset": -1}, "offset must be an integer >= 0"),
        ({"vth": 1, "v0": 2**23}, "v0"),
    ],
)
def test_ifsoft_rejects_bad_parameters(kwargs, match):
    kwargs = {"period": 5, **kwargs}
    with pytest.raises(ValueError, match=match) as info:
        IFSoft(shape=(4,), name="layer3", **kwargs)
    assert "IFSoft 'layer3'" in str(info.value)


def test_passthrough_rejects_bad_parameters():
    with pytest.raises(ValueError, match="Passthrough 'out'.*offset"):
        Passthrough(shape=(2,), offset=-2, name="out")
    with pytest.raises(ValueError, match="bias_mant of shape"):
        Passthrough(shape=(2,), bias_mant=np.zeros(3), name="out")
