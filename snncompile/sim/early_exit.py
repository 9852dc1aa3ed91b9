"""Input-aware adaptive timesteps (IAT, AdaFire; repo bic-L/burst-ann2snn) as an evaluation policy.

The network is simulated once for T steps; for each sample the policy picks the first counted
step t at which the readout is confident enough and reads the prediction there, so easy inputs
stop early. With ``z_t = sum_{t' <= t} o[t']`` the partial readout sum and
``p_t = softmax(z_t)`` over K classes, the score is

.. math::
    s_t = 1 - H(p_t) / \\log K \\;\\text{("entropy")} \\quad\\text{or}\\quad
    s_t = \\max_k p_t[k] \\;\\text{("confidence")},

and a sample exits at ``t* = min{t : s_t > \\lambda_t}`` (or T). Thresholds are calibrated on a
run over calibration data against reference labels (e.g. the ANN's predictions) by one of
three rules:

* ``"authors"`` - the authors' heuristic: with ``e_t`` the mean normalized entropy at step t of
  the samples whose prediction at t is correct, ``\\lambda_t = 0.6 + 0.4 \\exp(\\min_t e_t - e_t)``.
  It does not look at how often early exits are wrong and can stop during the transient of
  deep networks (on our residual example it costs 17 points).
* ``"precision"`` - ``\\lambda_t`` is the lowest threshold such that, among calibration samples
  with ``s_t > \\lambda_t``, at most a fraction ``max_error`` disagree with the reference at
  step t (1.0, nobody exits, when no threshold qualifies).
* ``"both"`` (default) - the larger of the two, per step: the authors' thresholds, raised where
  they would let more than ``max_error`` wrong exits through.

Energy accounting uses the per-sample, per-step spike trace: a sample that exits at t* costs the
spikes emitted up to t* (pre-steps included), see :meth:`SimResult.spikes_until`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from snncompile.errors import DataError
from snncompile.sim.result import SimResult

__all__ = ["EarlyExit", "calibrate_exit_thresholds", "early_exit", "exit_scores"]


@dataclass
class EarlyExit:
    """Per-sample exit steps and what they cost."""

    exit_step: torch.Tensor  # (N,) int64 in 1..T
    predictions: torch.Tensor  # (N,) int64, read at the exit step
    spikes: torch.Tensor  # (N,) float64, spikes emitted up to the exit step

    @property
    def mean_timesteps(self) -> float:
        return float(self.exit_step.double().mean())

    @property
    def mean_spikes(self) -> float:
        return float(self.spikes.mean())

    def accuracy(self, y) -> float:
        y = torch.as_tensor(np.asarray(y), dtype=torch.int64)
        return float((self.predictions == y).double().mean())


def exit_scores(result: SimResult, metric: str = "entropy") -> torch.Tensor:
    """(T, N) score s_t of every sample after every counted step (see module doc)."""
    t = torch.arange(1, result.timesteps + 1, dtype=torch.float32).view(-1, 1, 1)
    z = result.outputs.reshape(result.timesteps, result.num_samples, -1) * t
    logp = torch.log_softmax(z, -1)
    if metric == "entropy":
        h = -(logp.exp() * logp).sum(-1) / math.log(z.shape[-1])
        return 1.0 - h
    if metric == "confidence":
        return logp.max(-1).values.exp()
    raise DataError(f"IAT metric must be 'entropy' or 'confidence', got {metric!r}")


def early_exit(result: SimResult, thresholds, *, metric: str = "entropy") -> EarlyExit:
    """Apply per-step thresholds ``lambda_t`` (length >= 1; the last one repeats up to T)."""
    thr = torch.as_tensor(np.asarray(thresholds, dtype=np.float32)).reshape(-1)
    if thr.numel() == 0:
        raise DataError("IAT thresholds are empty")
    T = result.timesteps
    thr = torch.cat([thr[:T], thr[-1:].expand(max(T - thr.numel(), 0))])
    passed = exit_scores(result, metric) > thr.view(-1, 1)
    passed[-1] = True
    exit_idx = passed.to(torch.int8).argmax(0)  # first step that passes
    preds = result.predictions().gather(0, exit_idx.view(1, -1))[0]
    steps = exit_idx + 1
    return EarlyExit(steps, preds, result.spikes_until(steps))


def _authors_rule(scores: torch.Tensor, correct: torch.Tensor, metric: str) -> torch.Tensor:
    entropy = 1.0 - scores if metric == "entropy" else scores
    count = correct.sum(1)
    mean = torch.where(count > 0, (entropy * correct).sum(1) / count.clamp_min(1), torch.ones_like(count))
    lam = 0.6 + 0.4 * torch.exp(mean.min() - mean)
    return torch.where(count > 0, lam, torch.ones_like(lam))


def _precision_rule(scores: torch.Tensor, correct: torch.Tensor, max_error: float) -> torch.Tensor:
    lam = torch.ones(scores.shape[0], dtype=torch.float64)
    n = scores.shape[1]
    for t in range(scores.shape[0]):  # a loop over time steps; each line works on all samples
        s, order = torch.sort(scores[t], descending=True)
        err = torch.cumsum(1.0 - correct[t][order], 0) / torch.arange(1, n + 1, dtype=torch.float64)
        ok = torch.nonzero(err <= max_error)
        if ok.numel():
            k = int(ok[-1]) + 1  # the k most confident samples may exit
            lam[t] = float(s[k]) if k < n else float(s[-1]) - 1e-6
    return lam


def calibrate_exit_thresholds(result: SimResult, reference, *, metric: str = "entropy", rule: str = "both",
                              max_error: float = 0.002) -> list[float]:
    """Thresholds lambda_t from a calibration run; ``reference`` (N,) labels or ANN predictions."""
    ref = torch.as_tensor(np.asarray(reference), dtype=torch.int64).view(1, -1)
    correct = (result.predictions() == ref).double()
    scores = exit_scores(result, metric).double()
    if rule not in ("authors", "precision", "both"):
        raise DataError(f"IAT threshold rule must be 'both', 'precision' or 'authors', got {rule!r}")
    lam = _authors_rule(scores, correct, metric) if rule != "precision" else torch.zeros(scores.shape[0])
    if rule != "authors":
        lam = torch.maximum(lam.double(), _precision_rule(scores, correct, max_error))
    return [float(v) for v in lam]
