"""quantize: integer formats of the Loihi 2 profile, warnings, and accuracy against the float graph."""

from __future__ import annotations

import numpy as np
import pytest

from snncompile.ir.populations import ConvConn, DenseConn, IFPop, Readout
from snncompile.lower import lower_populations
from snncompile.quantize import LOIHI2, QuantizationWarning, quantize, quantize_weights
from snncompile.sim.popsim import simulate_populations
from tests.quantize.conftest import build_mlp_snn, build_residual_snn


@pytest.fixture(scope="module")
def quantized():
    pop = lower_populations(build_residual_snn())
    x = np.random.default_rng(0).uniform(0, 1, (32, *pop.shapes["x"]))
    return pop, quantize(pop, x), x


def test_every_value_fits_its_bit_width(quantized):
    _, q, _ = quantized
    p = LOIHI2
    for n in q.nodes.values():
        if isinstance(n, (DenseConn, ConvConn)):
            m = n.weight
            assert np.array_equal(m, np.round(m)) and m.min() >= -256 and m.max() <= 255, n.name
            if m.min() < 0 < m.max():
                assert np.all(m % 2 == 0), f"{n.name}: mixed-sign mantissas must be even (Lava drops the LSB)"
            assert p.weight_exp_min <= n.weight_exp <= p.weight_exp_max
            if isinstance(n, ConvConn):
                assert n.weight_exp >= 0
        if isinstance(n, (IFPop, Readout)):
            assert np.abs(n.bias).max() <= p.bias_mant_max and 0 <= n.bias_exp <= p.bias_exp_max, n.name
        if isinstance(n, IFPop):
            assert 1 <= n.theta.min() and n.theta.max() <= p.vth_max and np.array_equal(n.theta, np.round(n.theta))
            assert np.abs(n.v0).max() <= p.v_max and 0 <= n.shift <= p.act_shift


def test_quantized_network_tracks_float(quantized):
    pop, q, x = quantized
    f, i = simulate_populations(pop, x, 32, dtype="float64"), simulate_populations(q, x, 32)
    assert (f.predictions() == i.predictions()).mean() >= 0.95
    for name, s in f.spikes.items():
        assert abs(i.spikes[name] - s) <= 0.05 * s + 20, name
    assert q.meta["float32_exact"]
    j = simulate_populations(q, x, 32, dtype="float64")  # float32 carrying is exact: same numbers
    assert np.array_equal(i.outputs.numpy(), j.outputs.numpy()) and i.spikes == j.spikes


def test_weights_with_huge_dynamic_range_warn_naming_the_layer():
    w = np.concatenate([[1.0, -0.5, 1e-6], np.full(5000, 1e-3)])[None, :]
    with pytest.warns(QuantizationWarning, match=r"fc7: weight dynamic range .* exceeds 2\*\*15"):
        q = quantize_weights(w, LOIHI2, name="fc7")
    assert q.zeroed == 5001 and q.mant[0, 0] != 0 and q.rel_error > 0.01


def test_negligible_tiny_weights_do_not_warn():
    import warnings

    w = np.array([[1.0, 1e-6, -0.5, 3e-7]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = quantize_weights(w, LOIHI2, name="fc8")
    assert q.zeroed == 2 and q.rel_error < 1e-5


def test_weights_too_large_for_the_exponent_clip_with_warning():
    with pytest.warns(QuantizationWarning, match="big: weights up to .* clipped"):
        q = quantize_weights(np.array([1e9, -1.0]), LOIHI2, name="big")
    assert q.clipped == 1 and q.exp == LOIHI2.weight_exp_max


def test_mantissa_uses_the_full_range():
    w = np.random.default_rng(0).normal(size=(50, 40))
    q = quantize_weights(w, LOIHI2, name="w")
    assert q.bits == 8 and q.rel_error < 0.01
    np.testing.assert_allclose(q.value, w, atol=2.0 ** q.exp)


def test_mlp_quantization_reports_every_layer():
    pop = lower_populations(build_mlp_snn())
    q = quantize(pop, np.random.default_rng(0).uniform(0, 1, (8, 1, 6, 6)))
    names = [layer["name"] for layer in q.meta["quantization"]["layers"]]
    assert names == ["x.src", "x.src->r1", "r1", "r1->l2.readout", "l2.readout"]
    assert q.nodes["x.src->r1"].weight_exp < 0  # Dense takes negative exponents (right shift)


def test_block_kernel_fast_path_is_exact():
    """A pool folded into a conv (kernel constant on stride-aligned blocks) runs as sum-pool + small conv."""
    import torch

    from snncompile.ir.populations import ConvConn

    rng = np.random.default_rng(0)
    w = np.repeat(np.repeat(rng.integers(-100, 100, (8, 4, 3, 3)).astype(float), 2, 2), 2, 3)
    c = ConvConn("c", ("x",), weight=w, stride=(2, 2), padding=(2, 2), fixed=True, weight_exp=2)
    x = torch.randint(0, 3, (5, 4, 12, 10)).float()
    direct = torch.nn.functional.conv2d(x, torch.tensor(w * 4, dtype=torch.float32), None, 2, (2, 2))
    assert c._block((4, 12, 10)) == 2 and torch.equal(c.forward(x), direct)
    odd = ConvConn("d", ("x",), weight=w, stride=(2, 2), padding=(2, 2), fixed=True)
    assert odd._block((4, 11, 10)) == 0  # a partial block at the edge: no fast path


def test_large_per_step_bias_lowers_vth_instead_of_clipping():
    """A bias of several thresholds per step (seen on AdaFire's low-T ResNet: it clipped at 4095 << 7 and cost
    20 pt) fits once the threshold mantissa is lowered; the integer network then matches the float one."""
    import warnings

    g = build_mlp_snn()
    r1 = g.nodes["r1"]
    bias = np.linspace(-3.0, 3.0, 20).astype(np.float32) * r1.theta  # -3 .. +3 thresholds per step
    g = g.replace({"r1": r1.__class__(**{**r1.__dict__, "bias": bias})})
    pop = lower_populations(g)
    x = np.random.default_rng(1).uniform(0, 1, (64, *pop.shapes["x"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", QuantizationWarning)  # no bias clipping warning
        q = quantize(pop, x)
    info = {i["name"]: i for i in q.meta["quantization"]["layers"]}
    ifs = [n for n in q.nodes.values() if isinstance(n, IFPop)]
    assert info[ifs[0].name]["bias_clipped"] == 0 and info[ifs[0].name]["vth"] < 4096
    f, i = simulate_populations(pop, x, 16, dtype="float64"), simulate_populations(q, x, 16)
    assert (f.predictions() == i.predictions()).mean() >= 0.95
    assert abs(i.spikes[ifs[0].name] - f.spikes[ifs[0].name]) <= 0.02 * f.spikes[ifs[0].name]


def test_burst_populations_get_membrane_room_for_their_spikes():
    """vth is lowered by log2(N) bits for a burst population (N = 4: 4096 -> 1024); binary ones keep 4096."""
    pop = lower_populations(build_residual_snn(burst=4))
    q = quantize(pop, np.random.default_rng(0).uniform(0, 1, (16, *pop.shapes["x"])))
    vth = {i["name"]: i["vth"] for i in q.meta["quantization"]["layers"] if i["kind"] == "if"}
    bursts = {n.name: n.max_spikes for n in pop.nodes.values() if isinstance(n, IFPop)}
    assert {vth[k] for k, n in bursts.items() if n == 4} <= {1024, 512, 256} and 4 in bursts.values()
    assert {vth[k] for k, n in bursts.items() if n == 1} <= {4096, 2048, 1024}
