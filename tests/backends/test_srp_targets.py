"""SRP (Hao et al. 2023) on the integer targets: population IR, fixed-point simulator, Lava, artifact, exports.

References: the float SNN simulator (``snncompile.sim``, whose SRP follows the authors' ``MPLayer``)
for the float population graph, and our fixed-point simulator for Lava's ``fixed_pt`` run (spike for
spike, every output step). Graphs: the hand-built MLP and residual SNNs of ``tests.quantize.conftest``
with every IF layer flagged for SRP after ``TAU`` pre-steps.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
from snncompile.backends.lava.backend import spike_exact_fraction
from snncompile.backends.lava.runner import run_lava
from snncompile.backends.lava.timing import Relay, origin, pipeline
from snncompile.backends.netx import write_netx
from snncompile.backends.nir import to_nir

from snncompile.artifact import load_artifact, save_artifact
from snncompile.errors import BackendError
from snncompile.evaluate import from_population_sim
from snncompile.ir import IF, Graph
from snncompile.ir.populations import IFPop, Readout
from snncompile.lower import lower_populations
from snncompile.quantize import quantize
from snncompile.sim import simulate
from snncompile.sim.popsim import simulate_populations
from tests.quantize.conftest import build_mlp_snn, build_residual_snn

TAU, T = 3, 5


def _srp(build) -> Graph:
    snn = build()
    snn.meta.update(pre_steps=TAU, srp_nodes=[n.name for n in snn.of_type(IF)])
    return snn


@functools.cache
def _graphs(build, n=4, seed=0):
    snn = _srp(build)
    pop = lower_populations(snn)
    x = np.random.default_rng(seed).uniform(0, 1, (n, *pop.shapes["x"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return snn, pop, quantize(pop, x), x


def _without_srp(g: Graph) -> Graph:
    """The same graph and schedule (pre-steps + T) with the suppression switched off."""
    return g.replace({n.name: dataclasses.replace(n, srp_steps=0) for n in g.of_type(IFPop)})


@pytest.mark.parametrize("build", [build_mlp_snn, build_residual_snn])
def test_lowering_carries_srp_as_node_fields(build):
    _, pop, q, _ = _graphs(build)
    for g in (pop, q):
        assert {n.name: n.srp_steps for n in g.of_type(IFPop)} == {n.name: TAU for n in build().of_type(IF)}
        assert [n.pre_steps for n in g.of_type(Readout)] == [TAU]
    r1 = q.nodes["r1"]
    assert np.array_equal(r1.srp_level(), np.floor(1e-3 * r1.theta * 2.0**r1.vth_shift))


@pytest.mark.parametrize("build", [build_mlp_snn, build_residual_snn])
def test_float_population_srp_equals_the_float_snn_simulator(build):
    snn, pop, _, x = _graphs(build)
    ref = simulate(snn, x.astype(np.float32), T)
    got = simulate_populations(pop, x, T, dtype="float64")
    np.testing.assert_allclose(got.outputs.numpy(), ref.outputs.numpy(), atol=1e-5)
    assert got.spikes == ref.spikes  # pre-step spikes included on both sides
    assert got.pre_steps == ref.pre_steps == TAU


@pytest.mark.parametrize("build", [build_mlp_snn, build_residual_snn])
def test_fixed_point_srp_suppresses_and_lava_matches_it_spike_for_spike(build):
    _, _, q, x = _graphs(build)
    ref = simulate_populations(q, x, T, dtype="float64")
    plain = simulate_populations(_without_srp(q), x, T, dtype="float64")
    assert ref.spikes != plain.spikes
    if build is build_residual_snn:  # there the masks silence neurons in every layer
        assert all(ref.spikes[k] < plain.spikes[k] for k in ref.spikes)
    got = run_lava(q, x, T)
    a, b = from_population_sim(q, ref, None, "sim-int"), from_population_sim(q, got, None, "lava-sim")
    assert spike_exact_fraction(a, b) == 1.0
    assert a.latency_steps == b.latency_steps == TAU + T
    assert np.array_equal(ref.outputs.numpy(), got.outputs.numpy())  # every counted step of every sample
    assert {k: got.spikes[k] for k in ref.spikes} == ref.spikes and got.pre_steps == TAU
    relays = pipeline(q).of_type(Relay)  # Lava's run also counts its delay relays (the residual skip)
    assert len(relays) == (0 if build is build_mlp_snn else 1)
    assert all(got.spikes[r.name] == ref.spikes[origin(pipeline(q), r.name)] for r in relays)
    assert sum(got.synops.values()) == sum(ref.synops.values()) + sum(got.spikes[r.name] for r in relays)


def test_float_lava_runs_srp_like_the_float_population_simulator():
    _, pop, _, x = _graphs(build_mlp_snn)
    ref = simulate_populations(pop, x, T, dtype="float64")
    got = run_lava(pop, x, T)
    np.testing.assert_allclose(got.outputs.numpy(), ref.outputs.numpy(), rtol=1e-6, atol=1e-9)
    assert {k: v.tolist() for k, v in ref.layer_spike_counts.items()} == {
        k: got.layer_spike_counts[k].tolist() for k in ref.layer_spike_counts}


def test_artifact_round_trips_srp(tmp_path):
    _, _, q, x = _graphs(build_residual_snn)
    save_artifact(q, tmp_path)
    back, _ = load_artifact(tmp_path)
    assert [(n.name, n.srp_steps) for n in back.of_type(IFPop)] == [(n.name, n.srp_steps) for n in q.of_type(IFPop)]
    a, b = (simulate_populations(g, x, T, dtype="float64") for g in (q, back))
    assert np.array_equal(a.outputs.numpy(), b.outputs.numpy()) and a.spikes == b.spikes


def test_nir_and_netx_refuse_srp_by_name(tmp_path):
    _, pop, q, _ = _graphs(build_mlp_snn)
    with pytest.raises(BackendError, match=r"^r1 \(IF\): SRP suppression after 3 pre-steps"):
        to_nir(pop)
    with pytest.raises(BackendError, match=r"^r1 \(IF\): SRP suppression after 3 pre-steps"):
        write_netx(q, tmp_path / "m.net")


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("model,T,bound", [("mnist_mlp", 8, 0.005), ("mnist_qcfs", 4, 0.003)])
def test_srp_on_the_examples_keeps_the_float_accuracy_in_integers_and_on_lava(model, T, bound):
    """srp with the paper's tau = 4: the fixed-point accuracy on the 1000 bundled test samples is within
    ``bound`` of the float simulator's (measured: mnist_mlp equal; mnist_qcfs, the QCFS-trained CNN with
    L = 4, 97.8 % float vs 98.0 % integer), and Lava runs the integer network spike for spike (first 24
    samples)."""
    from snncompile import load_onnx
    from snncompile.convert import convert

    if not (EXAMPLES / f"{model}.onnx").exists():
        pytest.skip(f"examples/{model}.onnx not present")
    test, calib = np.load(EXAMPLES / "data" / "mnist_test.npz"), np.load(EXAMPLES / "data" / "mnist_calib.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = convert(load_onnx(EXAMPLES / f"{model}.onnx"), calib["x"][:256], "srp", T, progress=False)
        q = quantize(lower_populations(snn), calib["x"][:256])
    assert snn.meta["pre_steps"] == 4
    f = simulate(snn, test["x"], T).accuracy_vs_t(test["y"])[-1]
    i = simulate_populations(q, test["x"], T).accuracy_vs_t(test["y"])[-1]
    assert abs(i - f) <= bound, (f, i)
    x = test["x"][:24]
    ref, got = simulate_populations(q, x, T, dtype="float64"), run_lava(q, x, T)
    assert spike_exact_fraction(from_population_sim(q, ref, None, "sim-int"),
                                from_population_sim(q, got, None, "lava-sim")) == 1.0
