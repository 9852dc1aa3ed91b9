"""--early-exit on Lava: the rule read on Lava's recorded integer readout gives the fixed-point
simulator's exit steps and predictions, and the per-step spikes and synops Lava's processes record
give the simulator's counts to each sample's exit step, step by step and sample by sample (Lava itself
runs every sample for the full window)."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from snncompile.backends.lava.backend import LavaBackend, exit_checks
from snncompile.backends.lava.runner import run_lava
from snncompile.backends.lava.timing import Relay, origin, pipeline

from snncompile.evaluate import from_population_sim
from snncompile.ir import IF
from snncompile.ir.populations import IFPop
from snncompile.lower import lower_populations
from snncompile.quantize import quantize
from snncompile.sim.early_exit import ExitPolicy, counts_to_exit, exit_scores
from snncompile.sim.popsim import simulate_populations
from snncompile.sim.result import SimResult
from tests.quantize.conftest import build_input_skip_snn, build_mlp_snn, build_residual_snn

T = 7


def _burst_residual():
    return build_residual_snn(burst=3)


def _srp_mlp():
    snn = build_mlp_snn()
    snn.meta.update(pre_steps=2, srp_nodes=[n.name for n in snn.of_type(IF)])
    return snn


def _with_policy(build, n=12, seed=3):
    """The quantized graph with an exit policy at the median score of each step (about half of the samples
    exit at each step), its inputs, and the fixed-point simulator's run with a per-step trace."""
    pop = lower_populations(build())
    x = np.random.default_rng(seed).uniform(0, 1, (n, *pop.shapes["x"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize(pop, x)
    full = simulate_populations(q, x, T, trace=True)
    scores = exit_scores(SimResult(full.outputs, T, 0, "y", {}, {}, 0, "analog", 0.0)).double().numpy()
    q.meta["early_exit"] = ExitPolicy("iat", "entropy", 0.0, tuple(np.median(scores, axis=1))).as_dict()
    return q, x, full


def _per_sample_to_exit(trace, steps, pre):
    """(N, 2) per layer: each sample's (spikes, synops) up to its own exit step, one sample at a time."""
    return {k: np.stack([counts_to_exit({k: v[:, i:i + 1]}, steps[i:i + 1], pre)[k].numpy() for i in range(len(steps))])
            for k, v in trace.items()}


@pytest.mark.parametrize("build", [build_mlp_snn, build_residual_snn, build_input_skip_snn, _burst_residual,
                                   _srp_mlp])
def test_lava_counts_to_the_exit_step_equal_the_simulators(build):
    q, x, full = _with_policy(build)
    got = run_lava(q, x, T)  # the graph carries a policy: per-step counts are recorded
    ran = pipeline(q)
    pre = full.pre_steps
    # the per-step trace: every spiking process Lava ran (relays too), shaped as the simulator's
    assert set(got.trace) == {k for k, v in ran.nodes.items() if isinstance(v, (IFPop, Relay))}
    for k, tr in full.trace.items():  # step t of Lava's window k is step t of sample k: equal step by step
        assert got.trace[k].shape == (pre + T, len(x), 2)
        assert torch.equal(got.trace[k], tr.double()), k
    for r in ran.of_type(Relay):  # a relay sends its origin's payload, one step later, to its own fan-out
        o = origin(ran, r.name)
        if o in full.trace:
            assert torch.equal(got.trace[r.name][..., 0], full.trace[o][..., 0].double())
        else:  # the graded input: one message per non-zero value, every step of the window
            nz = (q.nodes[o].forward(torch.as_tensor(x)) != 0).reshape(len(x), -1).sum(1).double()
            assert torch.equal(got.trace[r.name][..., 0], nz.expand(pre + T, -1))
    # the window totals the trace sums to are the run's counts
    for k, tr in got.trace.items():
        assert float(tr[..., 0].sum()) == got.spikes[k] and float(tr[..., 1].sum()) == got.synops[k]
        assert np.array_equal(tr[..., 0].sum(0).numpy(), got.layer_spike_counts[k])

    sim = from_population_sim(q, full, None, "sim-int")
    lava = from_population_sim(ran, got, None, "lava-sim")
    assert sim.exit_counts == lava.exit_counts == "exit_step"
    assert np.array_equal(sim.exit_steps, lava.exit_steps) and np.array_equal(sim.predictions, lava.predictions)
    assert 1 <= sim.exit_steps.min() < sim.exit_steps.max()  # the samples stop at different steps
    for k in sim.spikes:  # per layer, counted to the exit steps: exactly the simulator's
        assert (lava.spikes[k], lava.synops[k]) == (sim.spikes[k], sim.synops[k]), k
    a = _per_sample_to_exit(full.trace, torch.as_tensor(sim.exit_steps), pre)
    b = _per_sample_to_exit(got.trace, torch.as_tensor(lava.exit_steps), pre)
    for k in a:  # and sample by sample
        assert np.array_equal(a[k], b[k]), k
    assert sum(lava.spikes.values()) < sum(got.spikes.values())  # fewer than Lava's full window
    assert exit_checks(sim, lava) == {"exit_steps_equal": True, "exit_counts_equal": True, "ran_full_window": True}


def test_float_lava_target_counts_to_the_exit_step_like_the_float_population_simulator():
    """lava-sim-float's evaluation: its reference (the float population simulator) counts to the exit steps
    too, and Lava's floating_pt counts equal it."""
    q, x, _ = _with_policy(build_residual_snn, n=6)
    pop = lower_populations(build_residual_snn())
    pop.meta["early_exit"] = q.meta["early_exit"]
    evals, cfg = SimpleNamespace(x=x, y=None), SimpleNamespace(timesteps=T, batch_size=256, progress=False)
    ev, info = LavaBackend(fixed=False).evaluate(pop, evals, cfg, reference=None)
    assert ev.exit_counts == "exit_step" and info["lava"]["select_tag"] == "floating_pt"
    assert info["lava"]["exact_samples"] == len(x)
    assert {k: info["lava"][k] for k in ("exit_steps_equal", "exit_counts_equal", "ran_full_window")} == {
        "exit_steps_equal": True, "exit_counts_equal": True, "ran_full_window": True}


def test_per_window_counts_without_trace_are_the_same_run():
    """Without a policy (or with trace=False) the processes record one (spikes, synops) per window: the same
    totals and per-sample counts, no trace, and an exit policy then counts the full window."""
    q, x, _ = _with_policy(build_residual_snn, n=5)
    per_step, per_window = run_lava(q, x, T), run_lava(q, x, T, trace=False)
    assert per_window.trace == {} and per_step.trace
    assert per_window.spikes == per_step.spikes and per_window.synops == per_step.synops
    assert {k: v.tolist() for k, v in per_window.layer_spike_counts.items()} == {
        k: v.tolist() for k, v in per_step.layer_spike_counts.items()}
    ev = from_population_sim(pipeline(q), per_window, None, "lava-sim")
    assert ev.exit_counts == "full_window" and ev.spikes == per_window.spikes
    plain = q.replace()
    plain.meta = {k: v for k, v in q.meta.items() if k != "early_exit"}
    assert run_lava(plain, x[:2], T).trace == {}  # no policy: per window by default
