"""lower_populations (snncompile.lower): the population graph computes exactly what the SNN graph
computes, synchronously (no delay relays, no depths: those are the Lava backend's, tests/backends/test_lava_timing.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snncompile.ir import IF, AvgPool2d, Conv2d, Flatten, Graph, Input, Linear, Output
from snncompile.ir.populations import CONNECTIONS, POPULATIONS, ConvConn, DenseConn, Readout
from snncompile.lower import lower_populations
from snncompile.sim.popsim import simulate_populations
from tests.quantize.conftest import build_mlp_snn, build_residual_snn, reference_snn


@pytest.mark.parametrize("build, shape, steps, atol", [(build_residual_snn, (8, 2, 10, 12), 12, 1e-5),
                                                     (build_mlp_snn, (5, 1, 6, 6), 9, 1e-6)],
                         ids=["residual", "mlp"])
def test_lowering_matches_the_snn_spike_for_spike(build, shape, steps, atol):
    snn = build()
    pop = lower_populations(snn)
    x = np.random.default_rng(0).uniform(0, 1, shape)
    ref_out, ref_spikes = reference_snn(snn, x, steps)
    res = simulate_populations(pop, x, steps, dtype="float64")
    assert torch.allclose(res.outputs[-1].double(), ref_out, atol=atol)
    assert res.spikes == ref_spikes


def test_lowering_chooses_conv_for_conv_chains_and_dense_otherwise():
    pop = lower_populations(build_residual_snn())
    kinds = {n.name: type(n) for n in pop.nodes.values()}
    assert kinds["x.src->r1"] is ConvConn
    fold = pop.nodes["r1->r2"]  # AvgPool(2) then 3x3 conv pad 1 = one 6x6 conv, stride 2, pad 2
    assert isinstance(fold, ConvConn) and fold.weight.shape[2:] == (6, 6) and fold.stride == (2, 2)
    assert fold.padding == (2, 2)
    assert isinstance(pop.nodes["fc.readout"], Readout)
    assert all(isinstance(pop.nodes[i], DenseConn) for i in pop.nodes["fc.readout"].inputs)


def test_lowering_is_synchronous_no_relays_no_depth():
    """The residual skip r2 -> r4 spans two levels; the core graph connects r2 to r4 directly."""
    pop = lower_populations(build_residual_snn())
    assert "depth" not in pop.meta and pop.stage == "populations"
    assert all(isinstance(n, (*POPULATIONS, *CONNECTIONS)) or n.op in ("Input", "Output") for n in pop.nodes.values())
    assert not [n for n in pop.nodes.values() if n.op == "Relay"]
    assert sorted(pop.nodes["r4"].inputs) == ["r2->r4", "r3->r4"]
    assert pop.nodes["r2->r4"].inputs == ("r2",)


def test_synops_count_nonzero_synapses_per_spike():
    snn = build_mlp_snn()
    pop = lower_populations(snn)
    x = np.random.default_rng(3).uniform(0, 1, (4, 1, 6, 6))
    res = simulate_populations(pop, x, 5, dtype="float64")
    # every r1 spike drives the 7 readout synapses (no zero weights): synops = 7 * spikes
    assert res.synops["r1"] == 7 * res.spikes["r1"]


def test_dilated_avgpool_folds_into_a_conv_connection():
    """A 2x2 average pool with dilation 2 between two IF layers is a 3x3 window with 4 taps: one ConvConn,
    spike for spike the SNN graph's."""
    rng = np.random.default_rng(4)
    theta = np.full(3, 0.6, np.float32)
    nodes = [Input("x", (), shape=(2, 9, 9)),
             Conv2d("c", ("x",), rng.normal(0, 0.4, (3, 2, 3, 3)).astype(np.float32), np.zeros(3, np.float32),
                    padding=(1, 1, 1, 1)),
             IF("r", ("c",), theta=theta, v0=theta / 2, bias=np.zeros((), np.float32)),
             AvgPool2d("p", ("r",), kernel=(2, 2), stride=(2, 2), dilation=(2, 2)),
             Conv2d("c2", ("p",), rng.normal(0, 0.4, (3, 3, 1, 1)).astype(np.float32), np.zeros(3, np.float32)),
             IF("r2", ("c2",), theta=theta, v0=theta / 2, bias=np.zeros((), np.float32)),
             Flatten("f", ("r2",)), Linear("l", ("f",), rng.normal(0, 0.3, (4, 48)).astype(np.float32),
                                           np.zeros(4, np.float32)), Output("y", ("l",))]
    snn = Graph(nodes, "dilated")
    pop = lower_populations(snn)
    conn = pop.nodes["r->r2"]
    assert isinstance(conn, ConvConn) and conn.weight.shape[2:] == (3, 3) and conn.stride == (2, 2)
    assert np.count_nonzero(conn.weight[0, 0]) == 4  # the taps at 0 and 2 along each axis
    x = rng.uniform(0, 1, (6, 2, 9, 9))
    ref_out, ref_spikes = reference_snn(snn, x, 10)
    res = simulate_populations(pop, x, 10, dtype="float64")
    assert torch.allclose(res.outputs[-1].double(), ref_out, atol=1e-6)
    assert res.spikes == ref_spikes
