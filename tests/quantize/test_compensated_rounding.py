"""Mean-compensated weight rounding and the classification of membrane saturations (fixed point).

The max-pool model is the one of the bug report (tests/frontend/onnx_helpers.py ``pool_case``, also used by
tests/frontend/test_onnx_pool_snn.py: Relu -> 3-D MaxPool -> 3-D AveragePool -> Conv -> Relu -> dilated MaxPool
-> Gemm, logits centred on the data): its logits vary little
around a large common value, so the mean error of nearest rounding moves them; sim-int agreed with sim on 86 %
of the samples with nearest rounding, 95.5 % with the compensated rounding.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from snncompile.convert import convert
from snncompile.frontend.onnx import load_onnx
from snncompile.ir import Graph, Input, Output
from snncompile.ir.populations import ConvConn, DenseConn, IFPop, Readout, Source
from snncompile.lower import lower_populations
from snncompile.quantize import LOIHI2, quantize, quantize_weights
from snncompile.quantize.quantize import _compensate
from snncompile.sim.popsim import simulate_populations
from tests.frontend.onnx_helpers import pool_case


def test_maxpool_model_on_sim_int_follows_sim():
    model, x = pool_case()
    T = 32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pop = lower_populations(convert(load_onnx(model), x[200:], method="adafire", timesteps=T, progress=False))
        q = quantize(pop, x[200:], timesteps=T)
    f = simulate_populations(pop, x[:200], T).predictions()
    i = simulate_populations(q, x[:200], T)
    assert np.mean(i.predictions() == f) >= 0.9  # measured 0.955 (nearest rounding: 0.86)
    # every membrane clip of this run is a floor clip of a neuron that stays silent: none changed a spike
    assert sum(i.saturations.values()) > 0 and i.silent_saturations == i.saturations


@pytest.mark.parametrize("mixed", [True, False])
def test_compensation_cancels_each_rows_mean_error_within_one_step(mixed):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((40, 300)) * 37.0
    w = w if mixed else np.abs(w)
    w[:, :20] = 0.0  # zero weights stay zero
    w[:, 20:40] = np.round(w[:, 20:40] / 2) * 2  # exact mantissas (even, exponent 0) stay as they are
    m = rng.uniform(0, 3, w.shape)  # mean payload per weight (a convolution's differ per row)
    m[:, 290:] = 0  # inputs that never carry a payload
    near = quantize_weights(w, LOIHI2, name="w")
    comp = _compensate(near, w, m, LOIHI2)
    lo, hi, step = LOIHI2.weight_range(mixed)
    unit = 2.0**near.exp
    assert near.exp == comp.exp == 0
    assert comp.mant.min() >= lo and comp.mant.max() <= hi and np.all(comp.mant % step == 0)
    assert np.all(np.abs(comp.value - w) <= step * unit + 1e-9)  # the other neighbour at most
    assert np.array_equal(comp.mant[:, :40], near.mant[:, :40]) and np.array_equal(comp.mant[:, 290:], near.mant[:, 290:])
    before, after = np.abs(((near.value - w) * m).sum(1)), np.abs(((comp.value - w) * m).sum(1))
    assert np.all(after <= before) and after.max() <= step * unit * m.max()  # within one move of zero
    assert after.mean() < 0.01 * before.mean()  # measured 0.0013 (mixed signs), 0.0010 (one sign)


def test_compensation_changes_weights_only():
    """Biases, thresholds and initial potentials are those of nearest rounding: a silent input adds nothing."""
    from tests.quantize.conftest import build_residual_snn

    pop = lower_populations(build_residual_snn())
    x = np.random.default_rng(0).uniform(0, 1, (32, *pop.shapes["x"]))
    a, b = quantize(pop, x, compensate=False), quantize(pop, x, timesteps=16)
    changed = 0
    for n in a.nodes.values():
        m = b.nodes[n.name]
        if isinstance(n, (IFPop, Readout)):
            for f in ("theta", "bias", "v0", "bias_exp") if isinstance(n, IFPop) else ("bias", "bias_exp", "scale"):
                assert np.array_equal(getattr(n, f), getattr(m, f)), (n.name, f)
        elif isinstance(n, (DenseConn, ConvConn)):
            assert n.weight_exp == m.weight_exp and np.all(np.abs(n.weight - m.weight) <= 2)
            assert np.array_equal(n.weight == 0, m.weight == 0) or np.all(np.abs(m.weight[n.weight == 0]) <= 2)
            changed += int((n.weight != m.weight).sum())
    assert changed > 0
    assert b.meta["quantization"]["compensated_rounding"] == {"timesteps": 16, "samples": 32}
    assert a.meta["quantization"]["compensated_rounding"] is None


def _saturating_graph() -> Graph:
    """Integer graph, input (2,) = (100, 100) every step. C gets -6.5e6 per step (25 thresholds) and never
    fires. B gets the same, plus from step 4 on the bursts of A (8 spikes of weight 255 << 7, 16.7e6 per step):
    its membrane sits at the floor -v_max by then and climbs back, so it fires where an unbounded membrane
    (-3 * 6.5e6 by then) would fire later."""
    big = 2 ** 18  # theta_eff = 4096 << 6

    def pop(name, ins, theta, v0=0.0, n=1):
        return IFPop(name, ins, theta=np.array(theta), bias=np.zeros(1), v0=np.array(v0), max_spikes=n, fixed=True)

    def dense(name, src, w, exp):
        return DenseConn(name, (src,), weight=np.array([w], np.float64), out_shape=(1,), weight_exp=exp, fixed=True)

    return Graph([Input("x", (), shape=(2,)), Source("x.src", ("x",), scale=1.0, bits=8, fixed=True),
                  dense("x->a", "x.src", [0.0, 1.0], 0), pop("a", ("x->a",), 1.0, v0=-3 * 6400.0, n=8),
                  dense("x->b", "x.src", [-255.0, 0.0], 2), dense("a->b", "a", [255.0], 7),
                  pop("b", ("x->b", "a->b"), big // 64), dense("x->c", "x.src", [-255.0, 0.0], 2),
                  pop("c", ("x->c",), big // 64), dense("b->ro", "b", [1.0], 0), dense("c->ro", "c", [1.0], 0),
                  Readout("ro", ("b->ro", "c->ro"), bias=np.zeros(1), fixed=True), Output("y", ("ro",))], "sat")


def test_floor_clips_of_neurons_that_stay_silent_are_told_apart():
    r = simulate_populations(_saturating_graph(), np.full((3, 2), 100.0), 8)
    assert r.saturations["c"] == 3 * 7 and r.silent_saturations["c"] == r.saturations["c"]  # floor from step 2
    assert r.spikes["c"] == 0 and r.spikes["b"] > 0
    assert r.saturations["b"] > 0 and r.silent_saturations["b"] == 0
