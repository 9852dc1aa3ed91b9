"""IF dynamics of the simulator against hand-computed sequences and the IR's IF.step.

Graphs are tiny: Input -> IF -> Output, so the readout integrates the IF output y = n*theta and
``outputs[t-1] * t / theta`` is the cumulative spike count after t steps.
"""

import numpy as np
import pytest
import torch

from snncompile.ir import IF, Graph, Input, Linear, Output
from snncompile.sim import simulate

F32 = np.float32


def if_graph(theta, v0, n=1, bias=0.0, size=1):
    return Graph([
        Input("x", (), shape=(size,)),
        IF("if", ("x",), theta=np.array(theta, F32), v0=np.array(v0, F32), bias=np.array(bias, F32), max_spikes=n),
        Output("out", ("if",)),
    ])


def spike_train(res):
    """(T,) spikes per step of the single neuron of sample 0."""
    return res.trace["if"][:, 0, 0].numpy()


def test_soft_reset_hand_sequence():
    # theta = 1, v0 = 0, x = 0.375 per step:
    # v: .375, .75, 1.125 -> fire -> .125, .5, .875, 1.25 -> fire -> .25, .625
    res = simulate(if_graph(1.0, 0.0), np.array([[0.375]], F32), 7)
    assert spike_train(res).tolist() == [0, 0, 1, 0, 0, 1, 0]
    expected = np.array([0, 0, 1, 1, 1, 2, 2]) / np.arange(1, 8)
    np.testing.assert_allclose(res.outputs[:, 0, 0].numpy(), expected, rtol=0, atol=1e-7)
    assert res.spikes == {"if": 2.0}


def test_soft_reset_keeps_residue_with_shift():
    # theta = 0.5, v0 = 0.25, x = 0.375: v: .625 -> fire -> .125, .5 -> fire -> 0, .375, .75 -> fire -> .25
    res = simulate(if_graph(0.5, 0.25), np.array([[0.375]], F32), 5)
    assert spike_train(res).tolist() == [1, 1, 0, 1, 1]


def test_burst_neuron_hand_sequence():
    # theta = 0.5, N = 3, x = 1.25: v 1.25 -> n=2 -> .25; 1.5 -> n=3 -> 0; 1.25 -> 2 -> .25; 1.5 -> 3 -> 0
    res = simulate(if_graph(0.5, 0.0, n=3), np.array([[1.25]], F32), 4)
    assert spike_train(res).tolist() == [2, 3, 2, 3]
    assert res.spikes["if"] == 10.0
    # saturation: x = 2 exceeds N*theta = 1.5 per step; n is clamped at 3, the residue grows
    res = simulate(if_graph(0.5, 0.0, n=3), np.array([[2.0]], F32), 3)
    assert spike_train(res).tolist() == [3, 3, 3]


def test_per_step_bias_current():
    # theta = 1, x = 0.25 plus bias 0.25 per step: spikes every 2nd step
    res = simulate(if_graph(1.0, 0.0, bias=0.25), np.array([[0.25]], F32), 4)
    assert spike_train(res).tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("theta", [1.0, 0.75])
@pytest.mark.parametrize("T", [4, 8, 16])
def test_shift_gives_exact_round_quantization(theta, T):
    """v0 = theta/2, constant input a: rate after T steps = theta/T * clip(round(aT/theta), 0, T)."""
    a = np.random.default_rng(T).uniform(-0.5 * theta, 1.5 * theta, 4000).astype(F32)
    frac = (a * T / theta + 0.5) % 1.0
    a = a[(frac > 1e-3) & (frac < 1 - 1e-3)]  # no .5 ties: round is unambiguous there
    res = simulate(if_graph(theta, theta / 2, size=a.size), a[None], T)
    expected = theta / T * np.clip(np.round(a.astype(np.float64) * T / theta), 0, T)
    np.testing.assert_allclose(res.outputs[-1, 0].numpy(), expected, rtol=0, atol=1e-6)


def test_matches_ir_if_step_reference():
    """Two-layer SNN with per-channel theta, per-neuron v0 and burst: simulator vs IF.step loop."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.5, (5, 4)).astype(F32)
    if1 = IF("if1", ("x",), theta=np.array(0.3, F32), v0=np.array(0.15, F32), bias=np.array(0.0, F32))
    if2 = IF("if2", ("fc",), theta=rng.uniform(0.2, 0.6, 5).astype(F32), v0=rng.uniform(0, 0.3, 5).astype(F32),
             bias=rng.normal(0, 0.05, 5).astype(F32), max_spikes=2)
    g = Graph([Input("x", (), shape=(4,)), if1, Linear("fc", ("if1",), w, rng.normal(0, 0.1, 5).astype(F32)),
               if2, Output("out", ("if2",))])
    x = torch.tensor(rng.uniform(0, 1, (6, 4)).astype(F32))
    T = 10
    res = simulate(g, x, T)
    v1, v2, acc = if1.init_state(x), None, 0
    for t in range(T):
        n1, v1 = if1.step(x, v1)
        z = g.nodes["fc"].forward(n1 * 0.3)
        v2 = if2.init_state(z) if v2 is None else v2
        n2, v2 = if2.step(z, v2)
        acc = acc + n2 * torch.as_tensor(if2.theta)
        torch.testing.assert_close(res.outputs[t], acc / (t + 1), rtol=0, atol=1e-6)
        assert torch.equal(res.trace["if2"][t, :, 0], n2.sum(1))
