"""--early-exit as deployed: exit steps by the rules' formulas, counts to the exit step, evaluations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from snncompile import load_onnx
from snncompile.convert import convert
from snncompile.data import load_npz
from snncompile.errors import DataError
from snncompile.evaluate import from_float_sim
from snncompile.sim import simulate, synaptic_paths
from snncompile.sim.early_exit import (
    ExitPolicy,
    check_rule,
    counts_to_exit,
    exit_scores,
    exit_steps,
    policy_from_run,
)
from snncompile.sim.result import SimResult

ROOT = Path(__file__).resolve().parents[2]


def _readout(sums: np.ndarray) -> torch.Tensor:
    """outputs[t-1] = (partial sum over the first t steps) / t, from per-step sums (T, N, K)."""
    cum = np.cumsum(sums, axis=0)
    return torch.as_tensor(cum / np.arange(1, len(sums) + 1).reshape(-1, 1, 1), dtype=torch.float32)


def _entropy_score(z: np.ndarray) -> np.ndarray:
    """1 - H(softmax z) / log K over the last axis, in float64 (the paper's normalized entropy)."""
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    h = -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)
    return 1.0 - h / math.log(z.shape[-1])


def test_exit_steps_are_the_first_step_over_the_threshold_by_hand():
    # 3 classes, 4 samples, T = 5; per-step readout increments chosen so the margins grow at different speeds
    inc = np.zeros((5, 4, 3))
    inc[:, 0, 0] = 6.0  # confident at once
    inc[:, 1, 1] = [0.5, 0.5, 3.0, 3.0, 3.0]  # confident from t = 3 on
    inc[:, 2, 2] = 0.2  # never very confident
    inc[:, 3] = [[0.1, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 2.0, 0.0], [0.0, 2.0, 0.0], [0.0, 2.0, 0.0]]
    out = _readout(inc)
    lam = [0.9, 0.8, 0.7, 0.95, 0.95]
    z = np.cumsum(inc, axis=0)  # the partial sums the rule scores
    s = _entropy_score(z)
    want = [next((t + 1 for t in range(5) if s[t, i] > lam[t]), 5) for i in range(4)]
    got = exit_steps(out, lam, "entropy").tolist()
    assert got == want
    assert got[0] == 1 and got[2] == 5 and 1 < got[1] < 5  # the hand-built cases cover early, late, never
    # confidence: max softmax probability
    p = np.exp(z - z.max(-1, keepdims=True))
    conf = (p / p.sum(-1, keepdims=True)).max(-1)
    want_c = [next((t + 1 for t in range(5) if conf[t, i] > 0.9), 5) for i in range(4)]
    assert exit_steps(out, [0.9], "confidence").tolist() == want_c


def test_iat_and_precision_policies_follow_their_formulas():
    """The CLI's rules calibrated on a hand-built calibration readout: iat = the authors'
    lambda_t = 0.6 + 0.4 exp(min_t e_t - e_t) (e_t: mean normalized entropy of the samples right at t),
    precision = the lowest threshold letting at most max_error of the exiting samples be wrong."""
    rng = np.random.default_rng(0)
    inc = rng.normal(0, 1, (4, 50, 3)) + np.linspace(0, 2, 4).reshape(-1, 1, 1) * np.eye(3)[rng.integers(0, 3, 50)]
    out = _readout(inc)
    res = SimResult(out, 4, 0, "fc", {}, {}, 0, "analog", 0.0)
    ref = inc.sum(0).argmax(-1)  # the labels: the prediction at T
    z = np.cumsum(inc, axis=0)
    e = 1.0 - _entropy_score(z)
    right = z.argmax(-1) == ref
    e_mean = np.array([e[t][right[t]].mean() for t in range(4)])
    iat = policy_from_run(res, ref, "iat")
    np.testing.assert_allclose(iat.thresholds, 0.6 + 0.4 * np.exp(e_mean.min() - e_mean), rtol=1e-5)
    prec = policy_from_run(res, ref, "precision", max_error=0.1)
    s = exit_scores(res).double().numpy()  # the scores the rule saw (float32; e above is float64)
    np.testing.assert_allclose(s, 1.0 - e, atol=1e-6)
    for t, lam in enumerate(prec.thresholds):
        exits = s[t] > lam
        assert (~right[t][exits]).mean() <= 0.1 + 1e-9 if exits.any() else lam == 1.0
        # the lowest such threshold: one more sample (the next most confident) breaks the bound or nobody is left
        rest = np.sort(s[t][~exits])[::-1]
        if len(rest) and lam < 1.0:
            more = s[t] >= rest[0]
            assert (~right[t][more]).mean() > 0.1
    both = policy_from_run(res, ref, "both", max_error=0.1)
    np.testing.assert_allclose(both.thresholds, np.maximum(iat.thresholds, prec.thresholds), rtol=1e-6)


def test_counts_to_exit_sum_each_sample_to_its_exit_step():
    trace = {"a": torch.arange(6 * 3 * 2, dtype=torch.float32).reshape(6, 3, 2),  # 2 pre-steps + T = 4
             "b": torch.ones(6, 3, 2)}
    steps = torch.tensor([1, 4, 2])
    got = counts_to_exit(trace, steps, pre_steps=2)
    for k, v in trace.items():
        want = sum(v[: 2 + int(steps[i]), i].double().sum(0) for i in range(3))
        assert torch.equal(got[k], want)


def test_check_rule_rejects_bad_options():
    for bad in (("authors",), ("iat", "entropyy"), ("precision", "entropy", 1.5), ("both", "entropy", True)):
        with pytest.raises(DataError):
            check_rule(*bad)


@pytest.fixture(scope="module")
def mlp_run():
    ann = load_onnx(ROOT / "examples" / "mnist_mlp.onnx")
    calib = load_npz(ROOT / "examples" / "data" / "mnist_calib.npz", limit=128)
    test = load_npz(ROOT / "examples" / "data" / "mnist_test.npz", limit=200)
    snn = convert(ann, calib.x, method="calib-light", timesteps=8, progress=False)
    res = simulate(snn, test.x, 8)
    return snn, res, test.y


def test_float_evaluation_stops_each_sample_at_its_exit_step(mlp_run):
    snn, res, y = mlp_run
    full = from_float_sim(snn, res, y, synaptic_paths(snn))
    policy = ExitPolicy("precision", "entropy", 0.01, tuple([0.995] * 8))
    snn.meta = {**snn.meta, "early_exit": policy.as_dict()}
    try:
        ev = from_float_sim(snn, res, y, synaptic_paths(snn))
    finally:
        snn.meta = {k: v for k, v in snn.meta.items() if k != "early_exit"}
    steps = ev.exit_steps
    assert 1 < steps.mean() < 8 and steps.min() == 1  # some stop early, not all at once
    preds = res.predictions().numpy()
    for i in range(len(y)):  # the reference, sample by sample
        assert ev.predictions[i] == preds[steps[i] - 1, i]
    assert ev.exit_correct == int(sum(preds[steps[i] - 1, i] == y[i] for i in range(len(y))))
    for k, tr in res.trace.items():
        want = sum(float(tr[: steps[i], i, 0].double().sum()) for i in range(len(y)))
        assert ev.spikes[k] == pytest.approx(want, rel=1e-12)
        assert ev.spikes[k] <= full.spikes[k] and ev.synops[k] <= full.synops[k]
    assert sum(ev.spikes.values()) < sum(full.spikes.values())
    assert ev.exit_counts == "exit_step" and ev.accuracy == ev.exit_correct / len(y)
    # full spike counts per sample stay those of the whole run (Lava's spike-for-spike check)
    assert all(np.array_equal(ev.per_sample_spikes[k], full.per_sample_spikes[k]) for k in full.per_sample_spikes)


def test_thresholds_nobody_passes_give_the_full_run(mlp_run):
    snn, res, y = mlp_run
    full = from_float_sim(snn, res, y, synaptic_paths(snn))
    snn.meta = {**snn.meta, "early_exit": ExitPolicy("iat", "entropy", 0.0, (1.0,)).as_dict()}
    try:
        ev = from_float_sim(snn, res, y, synaptic_paths(snn))
    finally:
        snn.meta = {k: v for k, v in snn.meta.items() if k != "early_exit"}
    assert (ev.exit_steps == 8).all() and ev.accuracy == full.accuracy
    assert ev.spikes == pytest.approx(full.spikes) and ev.synops == pytest.approx(full.synops)
