"""The accuracy-energy frontier: convert candidates (method x T), score each on validation data and
deploy the best one for an objective within an accuracy budget (issue 19).

``search(ann, calib_x, val_x, val_y, energy, objective=..., max_drop=...)`` converts the ANN with
every candidate method for every T of :data:`TIMESTEPS` (``method`` or ``timesteps`` fixes that
dimension), simulates each SNN on the validation samples and measures its top-1 accuracy, spikes,
synaptic operations and energy per sample (:func:`snncompile.energy.estimate` with the chosen
constants; neuron updates = neurons x (pre-steps + T), as in the report). The validation samples must not be the
evaluation data: the pipeline takes them from ``--validation``, else from the calibration source, after
the calibration samples.

Budget: a candidate is *within budget* when its accuracy drop below the ANN on the validation samples
plus one standard error of that drop is at most ``max_drop`` points. The drop is paired (the same
samples): with b samples only the ANN classifies correctly and c only the SNN, drop = (b - c)/n and
se = sqrt(((b + c)/n - drop^2)/n). The margin keeps a candidate that meets the budget by the luck of
a few validation samples from being deployed: on mnist_cnn (244 validation samples), calib-light T=1
is 0.82 points below the ANN on validation (b = 3, c = 1; se 0.82) and 1.8 points below it on the test
set. Without labels, accuracy is agreement with the ANN's predictions (the ANN scores 100 %).
Objectives:

* ``energy``: the within-budget candidate with the least energy per sample;
* ``latency``: the within-budget candidate with the fewest steps per sample (pre-steps + T);
* ``accuracy``: the most accurate candidate (the budget is not used).

Ties go to the more accurate, then the cheaper, then the faster candidate, then the earlier method of
the list. When no candidate is within budget, the most accurate one is deployed with a warning.

Shared work: the ANN's pass over the calibration set is recorded once for all candidates
(:func:`snncompile.convert.activations.shared_ann_pass`); a method whose conversion does not depend
on T (:data:`T_INDEPENDENT`) is converted and simulated once at the largest T, every smaller T read
from that run (:meth:`snncompile.sim.SimResult.truncated`); a conversion identical to one already
simulated at the same T (every array the simulator reads, :func:`_network_key`; on mnist_qcfs adafire
and adafire+ch convert to calib-light's network) reads that network's runs. The other candidates are converted T by T,
smallest first, and for ``energy`` and ``latency`` a candidate that cannot win is not converted
(listed in ``skipped`` with the reason): with ``latency``, any T above the fewest steps within budget
so far; with ``energy``, the larger T of a method whose energy at a smaller T already exceeds the
cheapest candidate within budget so far, on the premise, measured on every method and example model,
that a method's energy per sample grows with T (more steps, more spikes). With early exit as a
dimension (``exit_searched``) the pruning reads each T's full-T candidate, for which that premise holds;
an exit candidate's energy hardly grows with T (the samples exit at similar steps), so pruning on it would
convert nearly everything (on mnist_resnet 112 candidates, 635 s at load 9), and pruning on the full-T
candidate alone misses a larger T whose network is accurate enough to exit early (mnist_resnet with
``exit_on_validation``: adafire T = 4 is 10 points below the ANN, T = 16 with exit ``precision`` within
budget at 3.0x less energy than the ANN, cheaper than every candidate within budget at T <= 8). So a method whose exit candidates at T are cheaper than the
best within budget (or one of whose candidates is that best) is also converted at the next T, up to twice
the smallest T at which any candidate met the budget. ``exhaustive=True`` converts every candidate. Each candidate's conversion starts from
the same seeds as a fixed run's (``torch.manual_seed(seed)``, ``np.random.seed(seed)``), so the
deployed SNN is the one ``--method M -T N`` builds.

Early exit (``early_exit={"rule", "metric", "max_error"}``, the CLI's ``--early-exit``): every candidate
is scored on the validation samples with each sample stopped at its exit step: accuracy at the exit step,
spikes and synops to it, neuron updates over pre-steps + the mean exit step; ``latency`` ranks by that
mean (and prunes nothing, since a larger T may exit sooner on average). Where its exit thresholds are
calibrated (against the ANN's predictions, :func:`snncompile.sim.early_exit.policy_from_outputs`):

* by default on the calibration samples (each candidate is simulated there too, except the rows its conversion
  already simulated the final network on: :mod:`snncompile.convert.kept_outputs`), as the deployed run does;
* with ``exit_on_validation`` (the CLI's ``--validation``: held-out data the ANN was not trained on) on
  the validation run itself, scored cross-fitted: the validation samples are dealt into
  :data:`EXIT_FOLDS` folds (sample i to fold i mod folds) and each fold exits by the thresholds calibrated
  on the other folds (no sample is scored by thresholds fitted to it); the deployed policy is the one
  calibrated on all of them. No calibration-set simulation is needed.

Why both: the conversion is fitted to the calibration samples, so the SNN agrees with the ANN there more
than on new inputs and thresholds calibrated there come out lax (mnist_resnet adafire T = 8: 100 %
agreement on the calibration samples, 98.3 % on the test samples; exit ``both`` calibrated there scores
94.3 % on the test samples, calibrated on held-out test-split samples 95.7 %, the ANN 95.5 %). But the
default validation split is the rest of the calibration file, training samples the example ANNs were
fitted to, on which the SNNs also agree with the ANNs more than on new inputs: calibrated and
cross-fitted there, candidates looked within budget that lost 1.3-1.8 points on the test samples
(mnist_cnn, mnist_relu6, mnist_qcfs), while the lax calibration-sample thresholds, scored on that split,
kept the search from them (docs/methods.md, "Choosing method and T").
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from snncompile.energy import estimate
from snncompile.errors import CompileError, DataError
from snncompile.ir import Graph
from snncompile.ir.graph import simulated_digest

__all__ = ["OBJECTIVES", "SEARCHED_EXIT_RULES", "SEARCH_METHODS", "TIMESTEPS", "T_INDEPENDENT", "Candidate", "SearchResult", "check_budget",
           "search"]

log = logging.getLogger("snncompile")

OBJECTIVES = ("energy", "latency", "accuracy")
TIMESTEPS = (1, 2, 4, 8, 16, 32, 64)
# The methods searched by default: those that were ever on the accuracy-energy frontier of the example
# models (docs/methods.md, "Choosing method and T"); the others (max, percentile, mse, deng, srp) never
# were, at any T in TIMESTEPS, and --method still selects any of them. adafire+ch (adafire with per-channel
# thresholds) is searched too: on mnist_resnet it is within 1 point of the ANN from T = 4
# (docs/methods.md, adafire); the energy pruning skips its larger T once it costs more than the
# cheapest candidate within budget.
SEARCH_METHODS = ("calib-light", "calib-light+pc", "adafire", "adafire+ch")
# the early-exit rules the default search scores next to the full T (docs/methods.md); they read the validation
# run every candidate has anyway
SEARCHED_EXIT_RULES = ("iat", "precision", "both")
# early-exit candidates are scored by cross-fitting over this many folds of the validation samples (module doc)
EXIT_FOLDS = 4
T_INDEPENDENT = frozenset({"max", "percentile"})  # thresholds from the activation distribution alone


@dataclass
class Candidate:
    """One converted SNN scored on the validation samples (counts and energy per sample)."""

    method: str
    timesteps: int
    accuracy: float  # validation top-1 accuracy (or agreement with the ANN without labels)
    spikes: float
    synops: float
    energy: float  # joules per sample under the run's energy constants
    steps: int  # pre-steps + T: the latency in steps
    seconds: float  # this candidate's conversion and validation simulation (shared runs split evenly)
    drop: float = 0.0  # ANN minus candidate validation accuracy (paired, same samples), fraction
    drop_se: float = 0.0  # standard error of ``drop`` (paired per-sample differences)
    within_budget: bool = False
    convert_seconds: float = 0.0  # the conversion's part of ``seconds``
    snn: Graph | None = field(default=None, repr=False, compare=False)
    mean_steps: float | None = None  # with early exit: mean exit step (1..T) on the validation samples
    policy: dict | None = field(default=None, repr=False, compare=False)  # its calibrated exit policy
    early_exit: str | None = None  # the exit rule this candidate is scored with (None: the full T)

    @property
    def latency(self) -> float:
        """Steps per sample: pre-steps + T, or pre-steps + the mean exit step with early exit."""
        return self.steps if self.mean_steps is None else self.steps - self.timesteps + self.mean_steps

    def as_dict(self) -> dict:
        return {"method": self.method, "timesteps": self.timesteps, "accuracy": self.accuracy,
                "spikes_per_sample": self.spikes, "synops_per_sample": self.synops,
                "joules_per_sample": self.energy, "steps": self.steps, "seconds": round(self.seconds, 4),
                "drop_points": 100 * self.drop, "drop_se_points": 100 * self.drop_se,
                "within_budget": self.within_budget, "early_exit": self.early_exit,
                **({} if self.mean_steps is None else {"mean_steps": self.mean_steps})}


@dataclass
class SearchResult:
    """The candidates of one search and the one chosen."""

    objective: str
    max_drop: float  # points
    ann_accuracy: float  # on the validation samples (1.0 = agreement reference without labels)
    ann_energy: float  # joules per sample
    reference: str  # "labels" or "ann": what validation accuracy is measured against
    validation: str  # where the validation samples came from
    samples: int  # validation samples
    fixed: dict  # {"method": str | None, "timesteps": int | None}: the dimensions not searched
    chosen: Candidate
    candidates: list[Candidate]
    seconds: float
    skipped: list[dict] = field(default_factory=list)  # {"method", "timesteps", "reason"}: not converted
    early_exit: dict | None = None  # {"rule", "metric", "max_error", "searched", "folds", "calibration"}: how the candidates were scored

    @property
    def in_budget(self) -> bool:
        return self.chosen.within_budget

    def as_report(self) -> dict:
        """The report's ``search`` section (schema: report_schema.json, docs/report-schema.md)."""
        return {"objective": self.objective, "max_drop": self.max_drop, "reference": self.reference,
                "validation": self.validation, "validation_samples": self.samples,
                "ann_accuracy": self.ann_accuracy, "ann_joules_per_sample": self.ann_energy,
                "fixed": dict(self.fixed), "in_budget": self.in_budget,
                "chosen": self.chosen.as_dict(), "candidates": [c.as_dict() for c in self.candidates],
                "skipped": [dict(k) for k in self.skipped], "seconds": round(self.seconds, 4),
                "early_exit": None if self.early_exit is None else dict(self.early_exit)}


def check_budget(objective: str, max_drop: float) -> None:
    """DataError for an objective not in :data:`OBJECTIVES` or a ``max_drop`` that is not a finite number of
    points in [0, 100] (the pipeline checks its options with it before any work, :func:`search` again)."""
    if objective not in OBJECTIVES:
        raise DataError(f"--optimize {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    if isinstance(max_drop, bool) or not (isinstance(max_drop, (int, float)) and math.isfinite(max_drop)
                                          and 0 <= max_drop <= 100):
        raise DataError(f"--max-drop {max_drop!r}: expected points of accuracy, a finite number in [0, 100]")


def _check(objective: str, max_drop: float, methods: Sequence[str], grid: Sequence[int]) -> None:
    from snncompile.convert import METHODS

    check_budget(objective, max_drop)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise DataError(f"unknown conversion method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if not grid or any(int(t) < 1 for t in grid):
        raise DataError(f"timesteps must be >= 1, got {tuple(grid)}")


def search(ann: Graph, calib_x, val_x, val_y, energy: dict, *, objective: str = "energy", max_drop: float = 1.0,
           method: str | None = None, timesteps: int | None = None, methods: Sequence[str] = SEARCH_METHODS,
           grid: Sequence[int] = TIMESTEPS, adapt: Callable[[str, dict], tuple[str, dict]] | None = None,
           options: dict | None = None, seed: int = 0, batch_size: int = 256, device: str = "cpu",
           progress: bool = True, validation: str = "validation samples", exhaustive: bool = False,
           early_exit: dict | None = None, exit_searched: bool = False,
           exit_on_validation: bool = False) -> SearchResult:
    """Convert and score every candidate; return them all and the chosen one (see module doc).

    ``method``/``timesteps`` fix that dimension (None: search ``methods``/``grid``). ``adapt(m, opts)``
    returns the (method, options) a target can carry (e.g. :func:`snncompile.convert.for_target.
    method_for_target`) or raises CompileError when it cannot carry ``m``: such a searched method is
    left out, a fixed one raises. ``options`` go to a fixed ``method`` only. ``val_y`` None: the
    accuracy is agreement with the ANN's predictions. The chosen candidate's ``snn`` is the SNN to deploy
    (the others' are released as soon as they cannot be chosen). ``early_exit``: score with early exit
    (see module doc); the chosen candidate's ``policy`` is then its calibrated exit policy. ``exit_searched``:
    early exit is a dimension of the search: every (method, T) is scored both for the full T and with
    each rule of :data:`SEARCHED_EXIT_RULES` (``early_exit`` gives metric and max_error), all read from the
    same validation run. ``exit_on_validation``: the exit thresholds are calibrated on the validation samples
    and scored cross-fitted (held-out validation data, the CLI's --validation), else on the calibration
    samples (see module doc).
    """
    from snncompile.convert.activations import shared_ann_pass
    from snncompile.evaluate import ann_macs, ann_predictions, input_macs

    methods = (method,) if method is not None else tuple(dict.fromkeys(methods))
    grid = (int(timesteps),) if timesteps is not None else tuple(sorted({int(t) for t in grid}))
    _check(objective, max_drop, methods, grid)
    t_start = time.perf_counter()
    plans = _plans(methods, method, adapt, options or {})
    if not plans:
        raise DataError(f"no conversion method can be searched: {', '.join(methods)} are all refused by the target")
    val_x = np.asarray(val_x, dtype=np.float32)
    ann_pred = ann_predictions(ann, val_x, batch_size)
    exits = None
    if early_exit is not None:
        from snncompile.sim.early_exit import check_rule

        check_rule(early_exit["rule"], early_exit["metric"], early_exit["max_error"])
        rules = SEARCHED_EXIT_RULES if exit_searched else (early_exit["rule"],)
        exits = ({**early_exit, "rule": ", ".join(rules), "rules": rules, "searched": bool(exit_searched),
                  "folds": min(EXIT_FOLDS, len(val_x)) if exit_on_validation else None,
                  "calibration": f"{len(val_x)} validation samples" if exit_on_validation else
                  f"{len(calib_x)} calibration samples"},
                 ann_pred if exit_on_validation else ann_predictions(ann, np.asarray(calib_x, np.float32), batch_size))
    if val_y is None:
        ref, reference, ann_acc = ann_pred, "ann", 1.0
    else:
        ref, reference = np.asarray(val_y).astype(np.int64), "labels"
        ann_acc = float((ann_pred == ref).mean())
    # per sample, for every candidate's estimate; input_macs: the analog input's layers, MACs once per sample
    macs = {"ann_macs": float(ann_macs(ann)), "input_macs": float(input_macs(ann))}
    ann_energy = estimate(energy, **macs, synops=0.0, spikes=0.0, neuron_updates=0.0)["ann_joules_per_sample"]
    ann_ok = ann_pred == ref
    candidates: list[Candidate] = []
    skipped: list[dict] = []
    bar = tqdm(total=len(plans) * len(grid), desc="search (method x T)", disable=not progress, leave=False)
    # T-independent methods first (one run each serves every T), then the others T by T, smallest first,
    # so that the best candidate within budget so far can rule out the larger T of the others
    jobs = [(m, o, max(grid)) for m, o in plans if m in T_INDEPENDENT]
    jobs += [(m, o, T) for T in grid for m, o in plans if m not in T_INDEPENDENT]
    last: dict[str, list[Candidate]] = {}  # each method's candidates at its largest T so far
    runs: dict = {}  # (T, network) -> its validation (and calibration) runs: identical conversions simulate once
    with shared_ann_pass():
        for m, opts, T in jobs:
            why = None if exhaustive or (exits and objective == "latency") else \
                _prune(objective, m, T, last.get(m), candidates)
            if why is not None:
                skipped.append({"method": m, "timesteps": T, "reason": why})
                bar.update(1)
                continue
            bar.set_postfix_str(f"{m} T={T}")
            reads = [t for t in grid if t <= T] if m in T_INDEPENDENT else [T]
            for variants in _score(ann, calib_x, val_x, ref, ann_ok, energy, macs, m, opts, T, reads, seed,
                                   batch_size, device, exits, runs):
                for c in variants:
                    c.within_budget = c.drop + c.drop_se <= max_drop / 100.0 + 1e-9
                    candidates.append(c)
                last[m] = variants  # the energy pruning reads the full-T candidate and the exit ones
                bar.update(1)
            _release(candidates, objective, [m for m, _ in plans])
    bar.close()
    chosen = _choose(candidates, objective, [m for m, _ in plans])
    for c in candidates:
        if c is not chosen:
            c.snn = None
    if objective != "accuracy" and not chosen.within_budget:
        warnings.warn(f"no candidate is within --max-drop {max_drop:g} points of the ANN's validation accuracy "
                      f"({100 * ann_acc:.2f} %); deploying the most accurate one: {chosen.method} T={chosen.timesteps}"
                      f" ({100 * chosen.accuracy:.2f} %)", stacklevel=2)
    order = {m: i for i, (m, _) in enumerate(plans)}
    candidates.sort(key=lambda c: (order[c.method], c.timesteps, c.early_exit is not None))
    return SearchResult(objective, float(max_drop), ann_acc, ann_energy, reference, validation, len(val_x),
                        {"method": method, "timesteps": None if timesteps is None else int(timesteps)},
                        chosen, candidates, time.perf_counter() - t_start, skipped,
                        None if exits is None else {k: v for k, v in exits[0].items() if k != "rules"})


def _plans(methods, fixed, adapt, options) -> list[tuple[str, dict]]:
    """(method, options) per candidate method as the target can carry it; refused searched methods dropped."""
    out = []
    for m in methods:
        opts = dict(options) if m == fixed else {}
        if adapt is None:
            out.append((m, opts))
            continue
        try:
            out.append(adapt(m, opts))
        except CompileError as e:
            if m == fixed:
                raise
            log.info("search: method %s left out (%s)", m, e)
    return out


def _score(ann, calib_x, val_x, ref, ann_ok, energy, macs, method, opts, T, reads, seed, batch_size,
           device, exits=None, runs: dict | None = None) -> list[Candidate]:
    """Convert for T, simulate the validation samples once, read every T in ``reads`` from that run: one list
    of candidates per T (the full-T candidate and/or the early-exit one).
    ``macs``: the ANN's and the analog input's MACs per sample (``estimate``'s ann_macs, input_macs).
    ``exits`` = (early-exit options, the ANN's predictions on the samples the exit thresholds are calibrated
    on: ``val_x`` when the options have ``folds``, else ``calib_x``, which is then simulated too, but for the rows the
    conversion kept: :func:`snncompile.convert.kept_outputs.calibration_run`): score with
    early exit (:func:`_with_exit`), and also without it when the options say ``searched``. ``runs``: the
    runs of the networks already simulated at this T (:func:`_network_key`); a conversion identical to one
    of them reads its runs instead of simulating again (e.g. mnist_qcfs, where adafire and adafire+ch convert to calib-light's network)."""
    from snncompile.convert import convert
    from snncompile.convert.kept_outputs import calibration_run, keep_outputs
    from snncompile.sim import simulate

    torch.manual_seed(seed)
    np.random.seed(seed)
    t0 = time.perf_counter()
    calibrated = exits is not None and not exits[0]["folds"]  # exit thresholds from a calibration-set run
    # the rows of calib_x the conversion simulated its final network on, collected only for that run
    with keep_outputs() if calibrated else nullcontext() as kept:
        snn = convert(ann, calib_x, method=method, timesteps=T, progress=False, device=device, **opts)
    t1 = time.perf_counter()
    key = None if runs is None else (T, _network_key(snn))
    if key is not None and key in runs:
        res, cal = runs[key]
    else:
        res = simulate(snn, val_x, T, batch_size=batch_size, device=device)
        cal = calibration_run(snn, calib_x, T, kept, batch_size=batch_size, device=device) if calibrated else None
        if key is not None:  # only this T's runs are kept (the jobs go T by T)
            for k in [k for k in runs if k[0] != T]:
                del runs[k]
            runs[key] = (res, cal)
    share, conv_share = (time.perf_counter() - t0) / len(reads), (t1 - t0) / len(reads)
    neurons = sum(res.neurons.values())
    out = []
    for t in reads:
        r = res if t == T else res.truncated(t)
        g = snn if t == T else _at(snn, t)
        scored = []
        if exits is None or exits[0].get("searched"):
            scored.append((r.predictions()[-1].numpy(), None, None, r.total_spikes_per_sample(),
                           r.total_synops_per_sample()))
        if exits is not None:
            c = None if cal is None else cal if t == T else cal.truncated(t)
            scored += [_with_exit(r, c, exits, rule) for rule in exits[0]["rules"]]
        variants = []
        for pred, mean_steps, policy, spikes, synops in scored:
            ok = pred == ref
            drop, se = _paired_drop(ann_ok, ok)
            run_steps = r.pre_steps + (t if mean_steps is None else mean_steps)
            e = estimate(energy, **macs, synops=synops, spikes=spikes, neuron_updates=neurons * run_steps)
            variants.append(Candidate(method, t, float(ok.mean()), spikes, synops, e["snn_joules_per_sample"],
                                      r.pre_steps + t, share / len(scored), drop=drop, drop_se=se,
                                      convert_seconds=conv_share / len(scored), snn=g, mean_steps=mean_steps,
                                      policy=policy, early_exit=None if policy is None else policy["rule"]))
        out.append(variants)
    return out


def _network_key(snn: Graph) -> str:
    """:func:`snncompile.ir.graph.simulated_digest`: everything the simulator reads from ``snn``."""
    return simulated_digest(snn)


def _with_exit(r, cal, exits, rule: str) -> tuple[np.ndarray, float, dict, float, float]:
    """A validation run ``r`` scored with early exit: (predictions at the exit steps, mean exit step, policy,
    spikes and synops per sample counted to the exit steps).

    Without ``folds`` in the options, the policy is calibrated on the calibration run ``cal`` against the
    ANN's predictions ``exits[1]`` there. With them (``cal`` None), the deployed policy is calibrated on
    the whole validation run against the ANN's predictions ``exits[1]``, and the scores are cross-fitted:
    the samples are dealt into ``folds`` (sample i to fold i mod folds) and each fold exits by the policy
    calibrated on the other folds, so no sample is scored by thresholds fitted to it (see the module doc)."""
    from snncompile.sim.early_exit import counts_to_exit, policy_from_outputs, predictions_at

    opts, ref = exits
    kw = {"metric": opts["metric"], "max_error": opts["max_error"]}
    n, k = r.num_samples, opts["folds"]
    policy = policy_from_outputs((r if cal is None else cal).outputs, ref, rule, **kw,
                                 calibration=opts["calibration"])
    if cal is not None or k < 2:  # calibrated elsewhere, or one sample: nothing to hold out
        steps = policy.exit_steps(r.outputs)
    else:
        steps = torch.empty(n, dtype=torch.int64)
        fold = torch.arange(n) % k
        for f in range(k):
            held, rest = fold == f, fold != f
            fitted = policy_from_outputs(r.outputs[:, rest], ref[rest.numpy()], rule, **kw)
            steps[held] = fitted.exit_steps(r.outputs[:, held])
    pred = predictions_at(r.outputs, steps).numpy()
    c = counts_to_exit(r.trace, steps, r.pre_steps)
    return (pred, float(steps.double().mean()), policy.as_dict(), sum(float(v[0]) for v in c.values()) / n,
            sum(float(v[1]) for v in c.values()) / n)


def _paired_drop(ann_ok: np.ndarray, snn_ok: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of d_i = ann_ok_i - snn_ok_i over the validation samples: with b samples
    only the ANN classifies correctly and c only the SNN, drop = (b - c)/n and
    se = sqrt(((b + c)/n - drop^2) / n)."""
    n = len(ann_ok)
    b, c = int((ann_ok & ~snn_ok).sum()), int((~ann_ok & snn_ok).sum())
    drop = (b - c) / n
    return drop, math.sqrt(max((b + c) / n - drop * drop, 0.0) / n)


def _prune(objective: str, method: str, T: int, prev: list[Candidate] | None, done: list[Candidate]) -> str | None:
    """Why (method, T) need not be converted, or None. ``prev``: this method's candidates at its largest T
    so far (the full-T one first, where it was scored). With the candidates within budget so far: ``latency``: one with fewer
    steps exists (steps >= T); ``energy``: this method's full-T energy at a smaller T already exceeds the
    cheapest one's, or the cheapest is one of its candidates there (its energy per sample grows with T:
    more steps, more spikes), unless it was scored with early exit, T is at most twice the smallest T within
    budget, and the cheapest is one of its candidates at the smaller T or one of its exit candidates there is
    cheaper (an exit candidate's energy does not grow with T, and a network converted for more steps may
    exit sooner; see the module doc). Where only exit candidates were scored (a fixed ``--early-exit`` rule)
    that bound is the only one. ``accuracy`` converts everything."""
    ok = [c for c in done if c.within_budget]
    if not ok or objective == "accuracy":
        return None
    if objective == "latency":
        best = min(ok, key=lambda c: c.latency)
        return f"{best.method} T={best.timesteps} meets the budget in {best.steps} steps" if best.steps < T else None
    best = min(ok, key=lambda c: c.energy)
    if prev is None:
        return None
    full = prev[0]
    first = min(c.timesteps for c in ok)  # the smallest T within budget: the exit extension's bound
    exits = [c for c in prev if c.early_exit is not None]
    here = any(c is best for c in prev)  # the cheapest within budget is one of this method's candidates at T
    extend = T <= 2 * first and bool(exits) and (here or any(c.energy < best.energy for c in exits))
    if extend or (full.early_exit is None and full.energy < best.energy):
        return None
    if here:
        return f"{method} met the budget at T={full.timesteps}, and its energy grows with T"
    if full.energy < best.energy:  # only exit candidates were scored (a fixed --early-exit rule)
        return (f"{method} at T={full.timesteps} exits early at {full.energy:.3e} J < {best.energy:.3e} J, but "
                f"T > 2 x {first}, the smallest T within budget")
    return (f"{method} at T={full.timesteps} already costs {full.energy:.3e} J >= {best.energy:.3e} J of "
            f"{best.method} T={best.timesteps} within budget, and energy grows with T" +
            ("" if T <= 2 * first else f" (early exit: T > 2 x {first}, the smallest T within budget)"))


def _at(snn: Graph, T: int) -> Graph:
    """A T-independent conversion deployed for ``T`` steps: the same graph, its meta saying T."""
    g = snn.replace()
    g.meta = {**snn.meta, "timesteps": int(T)}
    return g


def _release(cands: list[Candidate], objective: str, methods: list[str]) -> None:
    """Drop the SNN of every candidate that can no longer be chosen: the choice over more candidates is
    the best within budget so far or the most accurate so far (the fallback), whichever applies."""
    pool = [c for c in cands if c.within_budget]
    keep = {id(_choose(cands, "accuracy", methods))} | ({id(_choose(pool, objective, methods))} if pool else set())
    for c in cands:
        if id(c) not in keep:
            c.snn = None


def _choose(cands: list[Candidate], objective: str, methods: list[str]) -> Candidate:
    order = {m: i for i, m in enumerate(methods)}

    def accuracy_key(c):
        return (-c.accuracy, c.energy, c.latency, order[c.method], c.timesteps, c.early_exit is not None)

    pool = [c for c in cands if c.within_budget]
    if objective == "accuracy" or not pool:
        return min(cands, key=accuracy_key)
    if objective == "energy":
        return min(pool, key=lambda c: (c.energy, -c.accuracy, c.latency, order[c.method], c.timesteps,
                                        c.early_exit is not None))
    return min(pool, key=lambda c: (c.latency, -c.accuracy, c.energy, order[c.method], c.timesteps,
                                    c.early_exit is not None))
