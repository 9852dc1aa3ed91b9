"""IAT early-exit policy on a hand-made simulation result."""

import math

import numpy as np
import pytest
import torch

from snncompile.sim import early_exit
from snncompile.sim.early_exit import calibrate_exit_thresholds, exit_scores
from snncompile.sim.result import SimResult


def result(outputs, spikes_per_step):
    """outputs (T, N, K); spikes_per_step (steps, N) for a single layer 'l'."""
    sp = torch.as_tensor(spikes_per_step, dtype=torch.float32)
    trace = {"l": torch.stack([sp, 2 * sp], -1)}
    pre = sp.shape[0] - outputs.shape[0]
    return SimResult(torch.as_tensor(outputs, dtype=torch.float32), outputs.shape[0], pre, "fc",
                     {"l": 4}, trace, 0, "analog", 1.0)


def test_exit_at_first_confident_step():
    # sample 0: confident from t=1 (large margin); sample 1: uniform until t=3
    T = 4
    out = np.zeros((T, 2, 3), np.float32)
    out[:, 0, 1] = 20.0
    out[2:, 1, 2] = 30.0
    spikes = np.array([[1, 1], [2, 0], [3, 5], [4, 6], [5, 7]])  # 1 pre-step + 4 counted
    res = result(out, spikes)
    ee = early_exit(res, [0.9], metric="entropy")
    assert ee.exit_step.tolist() == [1, 3]
    assert ee.predictions.tolist() == [1, 2]
    # spikes up to the exit step, pre-step included: sample 0: 1 + 2; sample 1: 1 + 0 + 5 + 6
    assert ee.spikes.tolist() == [3.0, 12.0]
    assert ee.mean_timesteps == 2.0
    assert ee.accuracy([1, 0]) == 0.5
    # a threshold nobody passes: everyone runs to T
    assert early_exit(res, [1.1]).exit_step.tolist() == [4, 4]


def test_scores_and_calibrated_thresholds():
    out = np.zeros((2, 1, 4), np.float32)  # uniform output: normalized entropy 1, score 0
    s = exit_scores(result(out, np.zeros((2, 1))), "entropy")
    assert torch.allclose(s, torch.zeros_like(s), atol=1e-6)
    c = exit_scores(result(out, np.zeros((2, 1))), "confidence")
    assert torch.allclose(c, torch.full_like(c, 0.25))
    # calibrated lambda_t = 0.6 + 0.4 exp(min e - e_t); the step with the lowest entropy gets 1.0
    out = np.zeros((3, 2, 2), np.float32)
    out[:, :, 0] = [[0.5, 0.5], [1.0, 1.0], [3.0, 3.0]]
    lam = calibrate_exit_thresholds(result(out, np.zeros((3, 2))), [0, 0], rule="authors")
    assert lam[-1] == pytest.approx(1.0)
    assert lam[0] < lam[1] < lam[2]
    assert all(0.6 < v <= 1.0 for v in lam) and not any(math.isnan(v) for v in lam)


def test_precision_rule_bounds_early_exit_errors():
    """4 samples, 1 step; scores rise with the margin. Sample 1 (second most confident) is wrong."""
    out = np.zeros((1, 4, 2), np.float32)
    out[0, :, 0] = [4.0, 3.0, 2.0, 1.0]
    res = result(out, np.zeros((1, 4)))
    s = exit_scores(res, "entropy")[0]
    # with max_error 0: only sample 0 may exit -> threshold = score of sample 1
    lam = calibrate_exit_thresholds(res, [0, 1, 0, 0], rule="precision", max_error=0.0)
    assert lam[0] == pytest.approx(float(s[1]))
    # max_error 0.5: the 4 most confident have 1/4 wrong -> everyone may exit
    lam = calibrate_exit_thresholds(res, [0, 1, 0, 0], rule="precision", max_error=0.5)
    assert lam[0] < float(s[3])
    # all wrong: nobody may exit
    assert calibrate_exit_thresholds(res, [1, 1, 1, 1], rule="precision")[0] == 1.0
    # "both" never lowers the authors' thresholds
    both = calibrate_exit_thresholds(res, [0, 1, 0, 0])[0]
    assert both >= calibrate_exit_thresholds(res, [0, 1, 0, 0], rule="authors")[0]
