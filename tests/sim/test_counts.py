"""Spike, synop and input-MAC counts against hand computations; coding, pre-steps, SRP, devices."""

import numpy as np
import pytest
import torch

from snncompile.errors import DataError, GraphError
from snncompile.ir import IF, AvgPool2d, Conv2d, Flatten, Graph, Input, Linear, Output, ReLU
from snncompile.sim import simulate, synaptic_paths

F32 = np.float32


def scalar_if(name, src, theta=1.0, v0=0.0):
    return IF(name, (src,), theta=np.array(theta, F32), v0=np.array(v0, F32), bias=np.array(0.0, F32))


def linear_net():
    """x(3) -> fc1 (2x3, one zero weight) -> IF -> fc2 readout (4x2, one zero in column 1)."""
    w1 = np.array([[1, 0, 0], [0, 1, 0]], F32)
    w2 = np.array([[1, 1], [1, 0], [1, 1], [1, 1]], F32)
    return Graph([Input("x", (), shape=(3,)), Linear("fc1", ("x",), w1, np.zeros(2, F32)), scalar_if("if", "fc1"),
                  Linear("fc2", ("if",), w2, np.zeros(4, F32)), Output("out", ("fc2",))])


def test_synops_linear_hand_computation():
    # neuron 0 gets 1.0 per step (fires every step), neuron 1 gets 0.5 (every 2nd step)
    res = simulate(linear_net(), np.array([[1.0, 0.5, 7.0]], F32), 4)
    assert res.spikes == {"if": 6.0}  # 4 + 2
    assert synaptic_paths(linear_net())["if"].tolist() == [4.0, 3.0]  # non-zero outgoing weights
    assert res.synops == {"if": 4 * 4 + 2 * 3.0}
    assert res.input_macs == 6  # dense fc1 MACs, once per sample (analog input)
    assert res.neurons == {"if": 2}


def test_synops_conv_hand_computation():
    """IF on 1x4x4, every neuron fires every step, 3x3 conv (pad 1) to 2 channels feeds the readout.

    Fan-out: corner 4 taps, edge 6, interior 9, times 2 output channels.
    """
    big = Conv2d("c1", ("x",), np.zeros((1, 1, 3, 3), F32), np.array([5.0], F32), padding=(1, 1, 1, 1))
    c2 = Conv2d("c2", ("if",), np.ones((2, 1, 3, 3), F32), np.zeros(2, F32), padding=(1, 1, 1, 1))
    g = Graph([Input("x", (), shape=(1, 4, 4)), big, scalar_if("if", "c1"), c2, Flatten("f", ("c2",)),
               Output("out", ("f",))])
    T = 3
    res = simulate(g, np.zeros((2, 1, 4, 4), F32), T)
    per_step = 4 * 8 + 8 * 12 + 4 * 18
    assert res.spikes["if"] == 2 * T * 16
    assert res.synops["if"] == 2 * T * per_step
    assert res.synops_per_sample()["if"] == T * per_step


def test_synops_through_pool_counts_paths():
    """2x2 average pool then 1x1 conv to 3 channels: each neuron drives 3 synapses."""
    g = Graph([Input("x", (), shape=(1, 4, 4)), scalar_if("if", "x"), AvgPool2d("p", ("if",)),
               Conv2d("c", ("p",), np.ones((3, 1, 1, 1), F32), np.zeros(3, F32)), Flatten("f", ("c",)),
               Output("out", ("f",))])
    assert synaptic_paths(g)["if"].unique().tolist() == [3.0]
    res = simulate(g, np.full((1, 1, 4, 4), 2.0, F32), 2)  # 16 neurons x 2 steps
    assert res.synops["if"] == 16 * 2 * 3


def test_poisson_coding_counts_input_spikes():
    g = linear_net()
    x = np.full((100, 3), 0.25, F32)
    res = simulate(g, x, 20, input_coding="poisson", seed=3)
    rate = res.spikes["x"] / (100 * 20 * 3)
    assert abs(rate - 0.25) < 0.02
    # input fan-out: x0 -> 1 synapse, x1 -> 1, x2 -> 0 (zero column of fc1)
    trace = res.trace["x"]
    assert res.synops["x"] == pytest.approx(float(trace[..., 1].sum()))
    assert res.input_macs == 0
    again = simulate(g, x, 20, input_coding="poisson", seed=3)
    assert torch.equal(again.outputs, res.outputs)


def test_pre_steps_and_srp_mask():
    """theta = 1, v0 = 1.5, tau = 4 pre-steps, T = 4 counted steps.

    Neuron 0, x = -0.3: pre v 1.2 -> fire -> .2, -.1, -.4, -.7: residual <= 0 -> SRP mask 0.
    Neuron 1, x = +0.3: pre 1.8 -> fire -> .8, 1.1 -> fire -> .1, .4, .7: kept.
    SRP restarts both at v0 = 1.5: neuron 1 then fires at counted steps 1, 2 (rate 2/4); neuron 0
    would fire at step 1 but is suppressed. Without SRP the membrane carries over: neuron 0 stays
    negative, neuron 1 (from .7) fires at step 1 only.
    """
    g = Graph([Input("x", (), shape=(2,)), scalar_if("if", "x", 1.0, 1.5), Output("out", ("if",))])
    x = np.array([[-0.3, 0.3]], F32)
    plain = simulate(g, x, 4, pre_steps=4)
    assert plain.outputs[-1, 0].tolist() == [0.0, 0.25]
    g.meta = {"srp_nodes": ["if"], "pre_steps": 4}
    srp = simulate(g, x, 4)
    assert srp.pre_steps == 4
    assert srp.outputs[-1, 0].tolist() == [0.0, 0.5]
    assert srp.pre_spikes == plain.pre_spikes == {"if": 3.0}
    assert srp.spikes == {"if": 5.0}  # pre-step spikes are counted too
    assert srp.trace["if"].shape == (8, 1, 2)


def test_accuracy_vs_t_and_streaming_batches():
    g = linear_net()
    x = np.random.default_rng(0).uniform(0, 1, (37, 3)).astype(F32)
    full = simulate(g, x, 5, batch_size=256)
    small = simulate(g, x, 5, batch_size=8)
    torch.testing.assert_close(full.outputs, small.outputs)
    assert full.spikes == small.spikes
    y = full.predictions()[-1].numpy()
    acc = full.accuracy_vs_t(y)
    assert acc.shape == (5,) and acc[-1] == 1.0


def test_errors():
    g = linear_net()
    with pytest.raises(DataError, match="x \\(Input\\): expected data of shape"):
        simulate(g, np.zeros((2, 4), F32), 3)
    with pytest.raises(DataError, match="input_coding"):
        simulate(g, np.zeros((2, 3), F32), 3, input_coding="rate")
    ann = Graph([Input("x", (), shape=(3,)), ReLU("r", ("x",)), Output("o", ("r",))])
    with pytest.raises(GraphError, match="r \\(ReLU\\): analog activation"):
        simulate(ann, np.zeros((2, 3), F32), 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    g = linear_net()
    x = np.random.default_rng(1).uniform(0, 1, (64, 3)).astype(F32)
    cpu = simulate(g, x, 8)
    gpu = simulate(g, x, 8, device="cuda")
    torch.testing.assert_close(gpu.outputs, cpu.outputs)
    assert gpu.spikes == cpu.spikes and gpu.synops == cpu.synops
