"""Lava backend: lowered networks run on Lava's CPU simulator spike for spike like our simulator."""

from __future__ import annotations

import multiprocessing
import warnings

import numpy as np
import pytest
import torch
from snncompile.backends.lava import lower as lava_lower
from snncompile.backends.lava.backend import spike_exact_fraction
from snncompile.backends.lava.runner import run_lava
from snncompile.backends.lava.timing import Relay, origin, pipeline

from snncompile.errors import BackendError
from snncompile.evaluate import from_population_sim
from snncompile.lower import lower_populations
from snncompile.quantize import quantize
from snncompile.sim.popsim import simulate_populations
from tests.quantize.conftest import build_input_skip_snn, build_mlp_snn, build_residual_snn


def _graphs(build, n=4, seed=0):
    pop = lower_populations(build())
    x = np.random.default_rng(seed).uniform(0, 1, (n, *pop.shapes["x"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize(pop, x)
    return pop, q, x


@pytest.mark.parametrize("build", [build_mlp_snn, build_residual_snn, build_input_skip_snn])
def test_fixed_point_lava_equals_simulator_spike_for_spike(build):
    """The synchronous fixed-point simulator and Lava (through the timing pass) agree on every
    population of the compiled graph; Lava's run also counts its relays, exactly what they carry."""
    _, q, x = _graphs(build)
    ref = simulate_populations(q, x, 7, dtype="float64")
    got = run_lava(q, x, 7)
    ran = pipeline(q)
    a, b = from_population_sim(q, ref, None, "sim-int"), from_population_sim(ran, got, None, "lava-sim")
    assert spike_exact_fraction(a, b) == 1.0
    assert np.array_equal(ref.outputs.numpy(), got.outputs.numpy())  # every step of every sample
    assert {k: got.spikes[k] for k in ref.spikes} == ref.spikes
    relays = ran.of_type(Relay)
    want = {build_mlp_snn: [], build_residual_snn: ["r2.relay3"], build_input_skip_snn: ["x.src.relay1", "x.src.relay2"]}
    assert [r.name for r in relays] == want[build]
    for r in relays:  # a relay sends what its origin sent, one step later
        if origin(ran, r.name) == "x.src":  # the graded input: one message per non-zero value per step
            assert got.spikes[r.name] == float((q.nodes["x.src"].forward(torch.as_tensor(x)) != 0).sum() * 7)
        else:
            assert got.spikes[r.name] == ref.spikes[origin(ran, r.name)]
            assert np.array_equal(got.layer_spike_counts[r.name], ref.layer_spike_counts[origin(ran, r.name)])
    # synops: the same synapses driven, plus one identity synapse per relayed message
    assert sum(got.synops.values()) == sum(ref.synops.values()) + sum(got.spikes[r.name] for r in relays)
    assert set(b.ops.values()) - set(a.ops.values()) == ({"Relay"} if relays else set())


def test_float_lava_matches_float_simulator():
    pop, _, x = _graphs(build_residual_snn, n=3, seed=1)
    ref = simulate_populations(pop, x, 6, dtype="float64")
    got = run_lava(pop, x, 6)
    np.testing.assert_allclose(got.outputs.numpy(), ref.outputs.numpy(), rtol=1e-5, atol=1e-5)
    assert {k: v.tolist() for k, v in ref.layer_spike_counts.items()} == {
        k: got.layer_spike_counts[k].tolist() for k in ref.layer_spike_counts}


def test_error_during_run_stops_the_runtime(monkeypatch):
    _, q, x = _graphs(build_mlp_snn, n=2)
    real = lava_lower.build_network

    def failing(*args, **kwargs):
        net = real(*args, **kwargs)
        original = net.sink.run

        def run(*a, **k):
            original(*a, **k)
            raise RuntimeError("injected failure")

        net.sink.run = run
        return net

    monkeypatch.setattr(lava_lower, "build_network", failing)
    with pytest.raises(BackendError, match="injected failure"):
        run_lava(q, x, 5, chunk=1)
    assert multiprocessing.active_children() == []


def test_unknown_node_type_is_refused():
    from snncompile.ir import Graph, Input, Output
    from snncompile.ir.ops import ReLU

    g = Graph([Input("x", (), shape=(3,)), ReLU("r", ("x",)), Output("y", ("r",))])
    with pytest.raises(BackendError, match="no readout population"):
        lava_lower.build_network(g, np.zeros((1, 3)), 2, fixed=True)
