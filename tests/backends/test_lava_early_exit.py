"""--early-exit on Lava: the rule read on Lava's recorded integer readout gives the fixed-point
simulator's exit steps and predictions; Lava's counts are the full window's, the simulator's stop
at each exit step."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from snncompile.backends.lava.runner import run_lava

from snncompile.evaluate import from_population_sim
from snncompile.lower import lower_populations
from snncompile.quantize import quantize
from snncompile.sim.early_exit import ExitPolicy, exit_scores
from snncompile.sim.popsim import simulate_populations
from snncompile.sim.result import SimResult
from tests.quantize.conftest import build_mlp_snn, build_residual_snn

T = 7


@pytest.mark.parametrize("build", [build_mlp_snn, build_residual_snn])
def test_fixed_point_simulator_and_lava_agree_on_exit_steps(build):
    pop = lower_populations(build())
    x = np.random.default_rng(3).uniform(0, 1, (12, *pop.shapes["x"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize(pop, x)
    full = simulate_populations(q, x, T, trace=True)
    # thresholds at the median score of each step: about half of the samples exit at each step
    scores = exit_scores(SimResult(full.outputs, T, 0, "y", {}, {}, 0, "analog", 0.0)).double().numpy()
    q.meta["early_exit"] = ExitPolicy("iat", "entropy", 0.0, tuple(np.median(scores, axis=1))).as_dict()
    got = run_lava(q, x, T)
    sim = from_population_sim(q, full, None, "sim-int")
    lava = from_population_sim(q, got, None, "lava-sim")
    assert np.array_equal(sim.exit_steps, lava.exit_steps)
    assert np.array_equal(sim.predictions, lava.predictions)
    assert 1 <= sim.exit_steps.min() < sim.exit_steps.max()  # the samples stop at different steps
    assert sim.exit_counts == "exit_step" and lava.exit_counts == "full_window"
    # Lava's counts are its full window (equal to the simulator's full run); the simulator's stop early
    plain = q.replace()
    plain.meta = {k: v for k, v in q.meta.items() if k != "early_exit"}
    base = from_population_sim(plain, full, None, "sim-int")
    assert base.exit_steps is None
    assert {k: lava.spikes[k] for k in base.spikes} == base.spikes
    assert sum(sim.spikes.values()) < sum(base.spikes.values())
    for k, tr in full.trace.items():  # counted to each sample's exit step, sample by sample
        want = sum(float(tr[: sim.exit_steps[i], i, 0].sum()) for i in range(len(x)))
        assert sim.spikes.get(k, want) == pytest.approx(want, rel=1e-12)
