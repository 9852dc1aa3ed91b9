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

Deployment (``--early-exit RULE``): :class:`ExitPolicy` holds a calibrated rule (the CLI's names:
``iat`` = the authors' rule, ``precision``, ``both``); :func:`calibrate_policy` simulates the SNN on
samples (the pipeline's: the ``--validation`` samples when given, else the calibration ones; see
``snncompile.search``) and calibrates it against
the ANN's predictions, :func:`policy_from_outputs` does it from a readout already simulated; :meth:`ExitPolicy.exit_steps`
applies it to any readout over time (float simulator, fixed-point simulator, Lava's recorded
readout), and :func:`counts_to_exit` sums a per-step trace of counts up to each sample's exit step
(a mask ``t < pre_steps + t*``, no loop over samples). Because the exit at step t depends only on
the readout up to t, masking a full run equals stopping each sample at its exit step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from snncompile.errors import DataError
from snncompile.sim.result import SimResult

__all__ = ["EXIT_METRICS", "EXIT_RULES", "EarlyExit", "ExitPolicy", "calibrate_exit_thresholds", "calibrate_policy",
           "check_rule", "counts_to_exit", "early_exit", "exit_scores", "exit_steps", "policy_from_outputs",
           "policy_from_run", "predictions_at"]

# --early-exit RULE -> the threshold rule of calibrate_exit_thresholds
EXIT_RULES = {"iat": "authors", "precision": "precision", "both": "both"}
EXIT_METRICS = ("entropy", "confidence")


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
    return _scores(result.outputs, metric)


def _scores(outputs: torch.Tensor, metric: str) -> torch.Tensor:
    """(T, N) scores of a readout over time ``outputs`` (T, N, *K): ``outputs[t-1]`` = partial sum / t."""
    T, N = outputs.shape[0], outputs.shape[1]
    t = torch.arange(1, T + 1, dtype=torch.float32).view(-1, 1, 1)
    z = torch.as_tensor(outputs, dtype=torch.float32).reshape(T, N, -1) * t
    logp = torch.log_softmax(z, -1)
    if metric == "entropy":
        h = -(logp.exp() * logp).sum(-1) / math.log(z.shape[-1])
        return 1.0 - h
    if metric == "confidence":
        return logp.max(-1).values.exp()
    raise DataError(f"IAT metric must be 'entropy' or 'confidence', got {metric!r}")


def early_exit(result: SimResult, thresholds, *, metric: str = "entropy") -> EarlyExit:
    """Apply per-step thresholds ``lambda_t`` (length >= 1; the last one repeats up to T)."""
    steps = exit_steps(result.outputs, thresholds, metric)
    return EarlyExit(steps, predictions_at(result.outputs, steps), result.spikes_until(steps))


def predictions_at(outputs: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """(N,) int64: each sample's predicted class at its own counted step ``steps[i]`` in 1..T of a
    readout over time ``outputs`` (T, N, *K)."""
    pred = outputs.reshape(outputs.shape[0], outputs.shape[1], -1).argmax(-1)
    return pred.gather(0, (steps - 1).view(1, -1))[0]


def exit_steps(outputs: torch.Tensor, thresholds, metric: str = "entropy") -> torch.Tensor:
    """(N,) int64 exit step t* in 1..T of every sample: the first t with s_t > lambda_t, else T.

    ``outputs`` (T, N, *K) is a readout over time (``outputs[t-1]`` = its sum over the first t
    counted steps / t); ``thresholds`` lambda_1.. (the last one repeats up to T)."""
    thr = torch.as_tensor(np.asarray(thresholds, dtype=np.float32)).reshape(-1)
    if thr.numel() == 0:
        raise DataError("IAT thresholds are empty")
    T = outputs.shape[0]
    thr = torch.cat([thr[:T], thr[-1:].expand(max(T - thr.numel(), 0))])
    passed = _scores(outputs, metric) > thr.view(-1, 1)
    passed[-1] = True
    return passed.to(torch.int8).argmax(0).to(torch.int64) + 1  # first step that passes


def counts_to_exit(trace: dict[str, torch.Tensor], steps: torch.Tensor, pre_steps: int) -> dict[str, torch.Tensor]:
    """Per layer, the (2,) totals over samples of (spikes, synops) each sample emitted up to its exit step.

    ``trace[l]`` is (pre_steps + T, N, 2) per step and sample, as :class:`SimResult` records it; a
    sample exiting at t* counts its pre-steps and its first t* counted steps."""
    out = {}
    for k, v in trace.items():
        mask = torch.arange(v.shape[0]).view(-1, 1) < (pre_steps + torch.as_tensor(steps)).view(1, -1)
        out[k] = (v.double() * mask.unsqueeze(-1)).sum(dim=(0, 1))
    return out


@dataclass(frozen=True)
class ExitPolicy:
    """A deployable early-exit rule: per-step thresholds on the readout's confidence.

    ``rule`` is the CLI's name (:data:`EXIT_RULES`), ``metric`` the score (entropy or confidence),
    ``max_error`` the precision guard's bound, ``thresholds`` lambda_1..lambda_T, ``calibration``
    what they were calibrated on."""

    rule: str
    metric: str
    max_error: float
    thresholds: tuple[float, ...]
    calibration: str = ""

    def exit_steps(self, outputs: torch.Tensor) -> torch.Tensor:
        return exit_steps(outputs, self.thresholds, self.metric)

    def as_dict(self) -> dict:
        return {"rule": self.rule, "metric": self.metric, "max_error": self.max_error,
                "thresholds": [float(v) for v in self.thresholds], "calibration": self.calibration}

    @classmethod
    def from_dict(cls, d) -> ExitPolicy:
        """The policy :meth:`as_dict` wrote (a graph's ``meta["early_exit"]``, an artifact's manifest),
        checked: DataError for anything else."""
        if not isinstance(d, dict):
            raise DataError(f"expected an object, got {type(d).__name__}")
        check_rule(d.get("rule"), d.get("metric"), d.get("max_error"))
        thr = d.get("thresholds")
        if not isinstance(thr, (list, tuple)) or not thr or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in thr):
            raise DataError("thresholds: expected a non-empty list of finite numbers")
        cal = d.get("calibration", "")
        return cls(d["rule"], d["metric"], float(d["max_error"]), tuple(float(v) for v in thr),
                   cal if isinstance(cal, str) else "")


def check_rule(rule: str, metric: str = "entropy", max_error: float = 0.002) -> None:
    """DataError for an unknown rule or metric, or a max_error outside [0, 1]."""
    if not isinstance(rule, str) or rule not in EXIT_RULES:
        raise DataError(f"--early-exit {rule!r}: choose one of {', '.join(EXIT_RULES)}")
    if not isinstance(metric, str) or metric not in EXIT_METRICS:
        raise DataError(f"--exit-metric {metric!r}: choose one of {', '.join(EXIT_METRICS)}")
    if isinstance(max_error, bool) or not isinstance(max_error, (int, float)) or not 0 <= max_error <= 1:  # NaN too
        raise DataError(f"--exit-max-error {max_error!r}: expected a fraction in [0, 1]")


def policy_from_run(result: SimResult, reference, rule: str, *, metric: str = "entropy", max_error: float = 0.002,
                    calibration: str = "") -> ExitPolicy:
    """The policy ``rule`` calibrated on a run ``result`` against ``reference`` labels (N,)."""
    return policy_from_outputs(result.outputs, reference, rule, metric=metric, max_error=max_error,
                               calibration=calibration)


def policy_from_outputs(outputs: torch.Tensor, reference, rule: str, *, metric: str = "entropy",
                        max_error: float = 0.002, calibration: str = "") -> ExitPolicy:
    """The policy ``rule`` calibrated on a readout over time ``outputs`` (T, N, *K) against ``reference`` (N,)."""
    check_rule(rule, metric, max_error)
    lam = _thresholds(outputs, reference, metric, EXIT_RULES[rule], max_error)
    return ExitPolicy(rule, metric, float(max_error), tuple(lam), calibration)


def calibrate_policy(snn, ann, calib_x, timesteps: int, rule: str, *, metric: str = "entropy",
                     max_error: float = 0.002, batch_size: int = 256, device: str = "cpu",
                     calibration: str = "", result=None) -> ExitPolicy:
    """Simulate ``snn`` (float) for ``timesteps`` on ``calib_x`` and calibrate ``rule`` against the ANN's
    predictions on the same samples (no labels needed). ``result``: that simulation where the caller
    has it (for ``timesteps`` steps; only its ``outputs`` are read, e.g.
    :func:`snncompile.convert.kept_outputs.calibration_run`)."""
    from snncompile.evaluate import ann_predictions
    from snncompile.sim.simulate import simulate

    check_rule(rule, metric, max_error)
    x = np.asarray(calib_x, dtype=np.float32)
    ref = ann_predictions(ann, x, batch_size)
    res = simulate(snn, x, timesteps, batch_size=batch_size, device=device) if result is None else result
    if res.timesteps != timesteps or res.num_samples != len(x):
        raise ValueError(f"calibrate_policy: result has {res.num_samples} samples x {res.timesteps} steps, "
                         f"need {len(x)} x {timesteps}")
    return policy_from_run(res, ref, rule, metric=metric, max_error=max_error, calibration=calibration)


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
    return _thresholds(result.outputs, reference, metric, rule, max_error)


def _thresholds(outputs: torch.Tensor, reference, metric: str, rule: str, max_error: float) -> list[float]:
    ref = torch.as_tensor(np.asarray(reference), dtype=torch.int64).view(1, -1)
    correct = (outputs.reshape(outputs.shape[0], outputs.shape[1], -1).argmax(-1) == ref).double()
    scores = _scores(outputs, metric).double()
    if rule not in ("authors", "precision", "both"):
        raise DataError(f"IAT threshold rule must be 'both', 'precision' or 'authors', got {rule!r}")
    lam = _authors_rule(scores, correct, metric) if rule != "precision" else torch.zeros(scores.shape[0])
    if rule != "authors":
        lam = torch.maximum(lam.double(), _precision_rule(scores, correct, max_error))
    return [float(v) for v in lam]
