"""The main job: ONNX -> SNN -> (integer) -> target run -> report, as one function of a RunConfig."""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from snncompile.backends import get_backend, targets
from snncompile.data import Dataset, check_against, load_npz
from snncompile.energy import load_constants
from snncompile.errors import DataError
from snncompile.evaluate import (
    Evaluation,
    ann_correct,
    ann_macs,
    from_float_sim,
    from_population_sim,
    input_macs,
)
from snncompile.interrupts import checkpoint
from snncompile.ir import IF, Graph
from snncompile.report import build_report
from snncompile.safeio import clean

__all__ = [
    "TARGETS",
    "Compiled",
    "RunConfig",
    "RunResult",
    "compile_model",
    "evaluate",
    "run",
    "shard_of",
]

log = logging.getLogger("snncompile")
TARGETS = targets()  # every registered backend (snncompile.backends.BACKENDS)


@dataclass
class RunConfig:
    model: Path
    data: Path
    target: str = "sim"
    calib: Path | None = None
    method: str | None = None  # None: searched (snncompile.search)
    timesteps: int | None = None  # None: searched; compile_model sets the chosen T here for the rest of the run
    calib_samples: int = 256
    samples: int | None = None
    seed: int = 0
    device: str = "cpu"
    energy: str = "horowitz45nm"
    batch_size: int = 256
    progress: bool = True
    method_options: dict = field(default_factory=dict)
    shard: tuple[int, int] | None = None  # (i, n): evaluate the i-th of n contiguous slices of the samples
    objective: str | None = None  # --optimize energy|latency|accuracy (None: energy when anything is searched)
    max_drop: float = 1.0  # --max-drop: accuracy budget of the search, points below the ANN on validation data
    # --early-exit iat|precision|both: each sample stops at its exit step; off: never; None: searched (with
    # without and with each of search.SEARCHED_EXIT_RULES) where a search for energy or latency runs and the target can stop
    # samples early (Supports.early_exit), else off
    early_exit: str | None = None
    exit_metric: str = "entropy"  # --exit-metric
    exit_max_error: float = 0.002  # --exit-max-error
    validation: Path | None = None  # --validation: held-out samples for the search and early exit


@dataclass
class RunResult:
    report: dict
    ann: Graph
    snn: Graph
    pop_float: Graph | None = None
    pop_int: Graph | None = None
    scatter: dict = field(default_factory=dict)
    backend: object = None  # the target's Backend: writes its own files, checks the run


@dataclass
class Compiled:
    """Everything compiled once per run and shared by every shard's evaluation."""

    ann: Graph
    snn: Graph
    pop_float: Graph | None
    pop_int: Graph | None
    method: str
    energy: dict
    timing: dict
    evals: Dataset  # all samples to evaluate (before sharding)
    search: dict | None = None  # the report's ``search`` section when method or T was searched


VALIDATION_SAMPLES = 1000  # at most: the search's validation split, after the calibration samples
MIN_VALIDATION = 100  # fewer samples after the calibration ones: the calibration set itself is split


def _searching(cfg: RunConfig) -> bool:
    return cfg.method is None or cfg.timesteps is None


def _held_out(cfg: RunConfig) -> bool:
    """The run reads validation samples: the search's, or (from --validation) a fixed run's early-exit
    calibration samples."""
    return _searching(cfg) or (cfg.validation is not None and cfg.early_exit not in (None, "off"))


def _split(cfg: RunConfig, data: Dataset) -> tuple[Dataset, Dataset, Dataset | None]:
    """(evaluated, calibration, validation) samples; validation never overlaps the evaluated samples: the
    first VALIDATION_SAMPLES of --validation (the search scores there and early exit calibrates there), else
    (for the search only) those after the calibration samples in their source (see :func:`_validation`)."""
    if cfg.validation is not None:
        evals, calib, _ = _split_calib(cfg, data)
        val = load_npz(cfg.validation, limit=VALIDATION_SAMPLES)
        val = val.take(0, min(len(val), VALIDATION_SAMPLES))  # a folder of samples is read whole
        if len(val) < MIN_VALIDATION:
            warnings.warn(f"--validation {val.source}: only {len(val)} samples (fewer than {MIN_VALIDATION}); "
                          f"the search's accuracy drops are that noisy", stacklevel=2)
        log.info("%s on %d samples of --validation (%s)", "search: validating" if _searching(cfg) else
                 "early exit: calibrating the exit thresholds", len(val), val.source)
        return evals, calib, val
    evals, calib, rest = _split_calib(cfg, data, VALIDATION_SAMPLES if _searching(cfg) else 0)
    return (evals, calib, None) if rest is None else (evals, *_validation(calib, rest))


def _validation(calib: Dataset, rest: Dataset) -> tuple[Dataset, Dataset]:
    """(calibration, validation): the samples after the calibration ones when there are at least
    MIN_VALIDATION of them, else the last quarter of the calibration samples (the first three quarters
    calibrate, for every candidate and the deployed SNN alike)."""
    if len(rest) >= MIN_VALIDATION:
        log.info("search: validating on %d samples after the %d calibration samples (%s)", len(rest), len(calib),
                 rest.source)
        return calib, rest
    if len(calib) < 2:
        warnings.warn(f"search: only {len(calib)} calibration sample and {len(rest)} after it; the candidates are "
                      f"scored on the calibration sample itself (pass --calib with more samples)", stacklevel=3)
        return calib, calib
    k = max(1, len(calib) // 4)
    fit, val = calib.take(0, len(calib) - k), calib.take(len(calib) - k, len(calib))
    warnings.warn(f"search: only {len(rest)} samples follow the {len(calib)} calibration samples in their source "
                  f"(fewer than {MIN_VALIDATION}); the last {k} of them validate ({val.source}) and the first "
                  f"{len(fit)} calibrate; pass --calib with more samples for a separate validation split",
                  stacklevel=3)
    return fit, val


def _split_calib(cfg: RunConfig, data: Dataset, extra: int = 0) -> tuple[Dataset, Dataset, Dataset | None]:
    """(evaluated, calibration, up to ``extra`` samples after the calibration ones in their source; None
    without ``extra``): the calibration source is read once for both."""
    n_eval = len(data) if cfg.samples is None else min(cfg.samples, len(data))
    if cfg.samples is not None and cfg.samples > len(data) and cfg.calib is not None:
        warnings.warn(f"--samples {cfg.samples}: {data.source} holds only {len(data)} samples; evaluating "
                      f"{len(data)}", stacklevel=2)
    evals = data.take(0, n_eval)
    if cfg.calib is not None:
        source, start = load_npz(cfg.calib, limit=cfg.calib_samples + extra), 0
        calib = source.take(0, cfg.calib_samples)
    else:
        if n_eval >= len(data):
            raise DataError(f"{data.source}: all {len(data)} samples are evaluated, none is left for calibration; "
                            f"pass --calib FILE or --samples N < {len(data)}")
        source, start = data, n_eval
        calib = data.take(n_eval, n_eval + cfg.calib_samples)
        log.info("calibrating on %d samples of %s disjoint from the %d evaluated (%s)", len(calib), data.source,
                 n_eval, calib.source)
    end = start + len(calib)
    return evals, calib, source.take(end, min(len(source), end + extra)) if extra else None


def shard_of(evals: Dataset, shard: tuple[int, int] | None) -> Dataset:
    """The i-th of n contiguous slices of the evaluated samples (all of them without a shard)."""
    if shard is None:
        return evals
    i, n = shard
    if not 0 <= i < n or n > len(evals):
        raise DataError(f"--shard {i}/{n}: need 0 <= i < n <= {len(evals)} (the number of evaluated samples)")
    return evals.take(i * len(evals) // n, (i + 1) * len(evals) // n)


def _check_config(cfg: RunConfig) -> None:
    """Reject option values before any work (the CLI's argparse only checks types)."""
    if cfg.target not in targets():
        raise DataError(f"unknown target {cfg.target!r}; choose one of {', '.join(targets())}")
    if cfg.samples is not None and cfg.samples < 1:
        raise DataError(f"--samples must be >= 1, got {cfg.samples}")
    for flag, v in (("--timesteps", cfg.timesteps), ("--calib-samples", cfg.calib_samples),
                    ("--batch-size", cfg.batch_size)):
        if v is not None and v < 1:
            raise DataError(f"{flag} must be >= 1, got {v}")
    from snncompile.search import check_budget

    check_budget("energy" if cfg.objective is None else cfg.objective, cfg.max_drop)  # None: energy if searched
    if cfg.early_exit is not None:
        from snncompile.sim.early_exit import check_rule

        check_rule(cfg.early_exit if cfg.early_exit != "off" else "both", cfg.exit_metric, cfg.exit_max_error)
        if cfg.early_exit != "off" and not get_backend(cfg.target).supports.early_exit:
            raise DataError(f"--early-exit {cfg.early_exit}: the {cfg.target} export carries no exit rule (the "
                            f"exported network runs all T steps); leave --early-exit out for this target")
    if cfg.validation is not None:
        if not _held_out(cfg):
            raise DataError("--validation: nothing reads it here (-T and --method fix the conversion and no "
                            "--early-exit rule is given); the search scores on it and early exit calibrates on it")
        if Path(cfg.validation).resolve() == Path(cfg.data).resolve():
            raise DataError(f"--validation {clean(cfg.validation)} is the evaluation data (--data): validation "
                            f"must be held out from the samples evaluated")
        if cfg.calib is not None and Path(cfg.validation).resolve() == Path(cfg.calib).resolve():
            raise DataError(f"--validation {clean(cfg.validation)} is the calibration data (--calib): validation "
                            f"must be held out from the samples calibrated on (leave --validation out to validate "
                            f"on the samples after --calib-samples in that file)")
    if not 0 <= cfg.seed < 2**32:
        raise DataError(f"--seed must be in [0, 2**32), got {cfg.seed}")
    try:
        dev = torch.device(cfg.device)
    except RuntimeError:
        raise DataError(f"--device {cfg.device!r}: not a torch device (cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"--device {cfg.device}: CUDA is not available (no GPU, or torch built without CUDA); "
                        f"use --device cpu")


def compile_model(cfg: RunConfig) -> Compiled:
    """Load, check, convert and (for non-float targets) lower and quantize; no evaluation."""
    from snncompile import load_onnx
    from snncompile.convert import DEFAULT_METHOD, convert
    from snncompile.convert.for_target import method_for_target
    from snncompile.convert.kept_outputs import keep_outputs
    from snncompile.lower import lower_populations
    from snncompile.quantize import quantize
    from snncompile.quantize.profile import LOIHI2

    _check_config(cfg)
    if cfg.objective is None and cfg.method is None and cfg.timesteps is None:
        log.info("no --optimize, -T or --method: searching method x T for the least energy per sample within "
                 "--max-drop %g points of the ANN's validation accuracy (--optimize energy); -T N --method M "
                 "convert once", cfg.max_drop)
    backend = get_backend(cfg.target)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    energy = load_constants(cfg.energy)
    t_load = time.perf_counter()
    ann = load_onnx(cfg.model)
    need = None if cfg.samples is None else cfg.samples + (0 if cfg.calib is not None else cfg.calib_samples + (
        VALIDATION_SAMPLES if _searching(cfg) and cfg.validation is None else 0))
    data = load_npz(cfg.data, limit=need)
    k = int(np.prod(ann.shapes[ann.outputs[0].name]))
    check_against(data, ann.input.data_shape, k)  # the model's layout (before a folded input Transpose)
    evals, calib, val = _split(cfg, data)
    check_against(calib, ann.input.data_shape, k)
    if val is not None:
        check_against(val, ann.input.data_shape, k)
    if ann.input.source_perm:
        log.info("input: the model's samples %s are read as %s (its input Transpose, axes %s, folded into the "
                 "input: the samples are reordered once as they are loaded)", ann.input.source_shape,
                 ann.input.shape, ann.input.source_perm)
        evals, calib, val = (None if d is None else d.in_layout(ann.input) for d in (evals, calib, val))
    if not backend.integer:  # integer targets say so when their input encoding clips (_warn_input_clipping)
        _warn_input_range(calib, evals)
    load_s = time.perf_counter() - t_load
    # the conversion hears the target: e.g. no burst neurons for a format that carries binary spikes only
    found, kept = None, None
    if _searching(cfg):
        found = _search(cfg, ann, calib, val, energy, backend)
        cfg.timesteps = found.chosen.timesteps  # the rest of the run (quantization, evaluation) at the chosen T
        snn, method = found.chosen.snn, found.chosen.method
        timing = {"search_s": found.seconds, "convert_s": found.chosen.convert_seconds}
        cfg.early_exit = found.chosen.early_exit  # the rule the chosen candidate was scored with, or None
    else:
        cfg.early_exit = None if cfg.early_exit == "off" else cfg.early_exit
        if cfg.objective is not None:
            log.info("--optimize %s: -T and --method fix both dimensions, nothing to search", cfg.objective)
        method, options = method_for_target(cfg.target, backend.supports, cfg.method or DEFAULT_METHOD,
                                            cfg.method_options)
        t0 = time.perf_counter()
        # what --early-exit's calibration-set run can read instead of simulating (only that run reads it)
        with keep_outputs() if cfg.early_exit is not None and val is None else nullcontext() as kept:
            snn = convert(ann, calib.x, method=method, timesteps=cfg.timesteps, progress=cfg.progress, **options)
        timing = {"convert_s": time.perf_counter() - t0}
    timing = {"load_s": load_s, **timing}
    timing.update({f"convert_{k}_s": v for k, v in snn.meta.get("timing", {}).get("stages", {}).items()})
    if cfg.early_exit is not None:
        t0 = time.perf_counter()
        snn.meta = {**snn.meta, "early_exit": _exit_policy(cfg, snn, ann, calib, val, found, kept)}
        timing["early_exit_calibration_s"] = time.perf_counter() - t0
    pop_float = pop_int = None
    checkpoint()
    if backend.graph != "snn":  # population targets; the integer graph is their fixed-point reference
        t0 = time.perf_counter()
        pop_float = lower_populations(snn)
        timing["lower_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        pop_int = quantize(pop_float, calib.x, profile=backend.profile or LOIHI2, timesteps=cfg.timesteps)
        pop_int.meta["timesteps"] = cfg.timesteps
        if cfg.early_exit is not None:  # every target's evaluation reads the policy from its graph
            pop_float.meta["early_exit"] = pop_int.meta["early_exit"] = snn.meta["early_exit"]
        timing["quantize_s"] = time.perf_counter() - t0
    return Compiled(ann, snn, pop_float, pop_int, snn.meta.get("method", method), energy, timing, evals,
                    None if found is None else found.as_report())


def _exit_policy(cfg: RunConfig, snn: Graph, ann: Graph, calib: Dataset, val: Dataset | None, found,
                 kept: dict | None = None) -> dict:
    """--early-exit: the search's policy for the candidate it chose, else the policy calibrated on the
    --validation samples ``val`` when given, or on the calibration samples (reading the rows the conversion
    simulated, ``kept``: snncompile.convert.kept_outputs); all against the ANN's predictions (why the two
    sources: snncompile.search's module doc)."""
    from snncompile.convert.kept_outputs import calibration_run
    from snncompile.sim.early_exit import calibrate_policy

    if found is not None and found.chosen.policy is not None:
        folds = (found.early_exit or {}).get("folds")  # None: calibrated on the calibration samples
        if folds is None:
            on = f"{len(calib)} calibration samples {calib.source}, against the ANN's predictions"
        else:
            how = (f"the search scored it {folds}-fold cross-fitted" if folds > 1 else
                   "one sample: the search scored it on the sample it was calibrated on")
            on = f"{found.samples} validation samples {val.source}, against the ANN's predictions ({how})"
        d = {**found.chosen.policy, "calibration": on}
    else:
        on, what = (calib, "calibration") if val is None else (val, "validation")
        run = calibration_run(snn, on.x, cfg.timesteps, kept if val is None else None, batch_size=cfg.batch_size,
                              device=cfg.device)
        d = calibrate_policy(snn, ann, on.x, cfg.timesteps, cfg.early_exit, metric=cfg.exit_metric,
                             max_error=cfg.exit_max_error, batch_size=cfg.batch_size,
                             device=cfg.device, result=run).as_dict()
        d = {**d, "calibration": f"{len(on)} {what} samples {on.source}, against the ANN's predictions"}
    log.info("early exit %s (%s, max error %g): thresholds %s", d["rule"], d["metric"], d["max_error"],
             ", ".join(f"{v:.3f}" for v in d["thresholds"]))
    return d


def _search(cfg: RunConfig, ann: Graph, calib: Dataset, val: Dataset, energy: dict, backend):
    """Search method and/or T (snncompile.search) on the validation split; the chosen candidate keeps its SNN."""
    from snncompile.convert.for_target import method_for_target
    from snncompile.search import SEARCHED_EXIT_RULES, search

    objective = cfg.objective or "energy"
    searched = cfg.early_exit is None and objective != "accuracy" and backend.supports.early_exit
    rule = SEARCHED_EXIT_RULES[-1] if searched else None if cfg.early_exit == "off" else cfg.early_exit
    if searched:
        log.info("search: every candidate is scored for the full T and with early exit %s (--early-exit off: "
                 "never exit early)", ", ".join(SEARCHED_EXIT_RULES))
    found = search(ann, calib.x, val.x, val.y, energy, objective=objective, max_drop=cfg.max_drop,
                   method=cfg.method, timesteps=cfg.timesteps, options=cfg.method_options, seed=cfg.seed,
                   adapt=lambda m, o: method_for_target(cfg.target, backend.supports, m, o),
                   batch_size=cfg.batch_size, device=cfg.device, progress=cfg.progress,
                   validation=f"{len(val)} samples {val.source} (calibration: {calib.source})",
                   early_exit=None if rule is None else {
                       "rule": rule, "metric": cfg.exit_metric, "max_error": cfg.exit_max_error},
                   exit_searched=searched, exit_on_validation=cfg.validation is not None)
    c = found.chosen
    ratio = found.ann_energy / c.energy if c.energy else float("inf")
    log.info("search (%s, --max-drop %g): %s T=%d%s, validation accuracy %.2f %% (ANN %.2f %%), %.3e J/sample "
             "(ANN/SNN = %.2fx), %d candidates in %.1f s", objective, cfg.max_drop, c.method, c.timesteps,
             "" if c.early_exit is None else f" with early exit {c.early_exit} (mean {c.mean_steps:.2f} steps)",
             100 * c.accuracy, 100 * found.ann_accuracy, c.energy, ratio, len(found.candidates), found.seconds)
    return found


def run(cfg: RunConfig) -> RunResult:
    """Compile ``cfg.model`` for ``cfg.target``, evaluate on ``cfg.data`` (or its shard) and build the report."""
    compiled = compile_model(cfg)
    return evaluate(compiled, cfg, shard_of(compiled.evals, cfg.shard))


def evaluate(c: Compiled, cfg: RunConfig, evals: Dataset) -> RunResult:
    """Run the compiled network on ``evals`` on the float simulator and the target; build the report."""
    from snncompile.sim import simulate, synaptic_paths

    timing = dict(c.timing)
    checkpoint()
    t1 = time.perf_counter()
    ann_ok = ann_correct(c.ann, evals.x, evals.y, cfg.batch_size)
    timing["ann_s"] = time.perf_counter() - t1
    log.info("ANN accuracy on %d samples: %s", len(evals), _fmt(None if ann_ok is None else ann_ok / len(evals)))
    t1 = time.perf_counter()
    res = simulate(c.snn, evals.x, cfg.timesteps, batch_size=cfg.batch_size, device=cfg.device, progress=cfg.progress)
    float_ev = from_float_sim(c.snn, res, evals.y, synaptic_paths(c.snn))
    timing["simulate_s"] = time.perf_counter() - t1
    log.info("SNN accuracy (float simulator, T=%d): %s%s", cfg.timesteps, _fmt(float_ev.accuracy), _exit_note(float_ev))
    backend = get_backend(cfg.target)
    out = RunResult(report={}, ann=c.ann, snn=c.snn, pop_float=c.pop_float, pop_int=c.pop_int,
                    scatter=_scatter(c.ann, c.snn, evals.x[:32], cfg.timesteps), backend=backend)
    if backend.graph == "snn":
        main, extra = backend.evaluate(c.snn, evals, cfg, reference=float_ev)
        int_ev = None
    else:
        main, int_ev, extra = _integer_and_backend(cfg, backend, out, evals, timing)
    out.report = build_report(
        model=str(cfg.model), target=cfg.target, method=c.method, seed=cfg.seed, ann_correct=ann_ok, main=main,
        float_ev=float_ev, int_ev=int_ev, ann_macs=ann_macs(c.ann), input_macs=input_macs(c.ann),
        energy_constants=c.energy,
        conversion=list(c.snn.meta.get("conversion_log", [])), timing=timing,
        extra={**extra, **({"search": c.search} if c.search is not None else {})},
        shard=None if cfg.shard is None else f"{cfg.shard[0]}/{cfg.shard[1]}")
    return out


def _exit_note(ev: Evaluation) -> str:
    if ev.exit_steps is None:
        return ""
    return f" at the early-exit steps (mean {float(np.mean(ev.exit_steps)):.2f} steps)"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def _integer_and_backend(cfg: RunConfig, backend, out: RunResult, evals: Dataset, timing: dict):
    """The fixed-point simulation (every population target's reference), then the target's own run."""
    from snncompile.sim.popsim import simulate_populations

    t1 = time.perf_counter()
    checkpoint()
    ires = simulate_populations(out.pop_int, evals.x, cfg.timesteps, batch_size=cfg.batch_size, progress=cfg.progress,
                                trace=cfg.early_exit is not None)  # early exit counts to each sample's exit step
    int_ev = from_population_sim(out.pop_int, ires, evals.y, "fixed-point simulator")
    timing["simulate_int_s"] = time.perf_counter() - t1
    log.info("SNN accuracy (fixed-point simulator, T=%d): %s%s", cfg.timesteps, _fmt(int_ev.accuracy),
             _exit_note(int_ev))
    _warn_saturations(int_ev, out.pop_int)
    _warn_input_clipping(out.pop_int, evals.x)
    extra = {"quantization": out.pop_int.meta["quantization"]}
    t2 = time.perf_counter()
    checkpoint()
    graph = out.pop_int if backend.integer else out.pop_float
    main, bextra = backend.evaluate(graph, evals, cfg, reference=int_ev)
    if main is not int_ev:
        timing[f"{cfg.target}_s"] = time.perf_counter() - t2
    extra.update(bextra)
    if isinstance(main, Evaluation) and graph is out.pop_int and not main.saturations:
        main.saturations = dict(int_ev.saturations)  # Lava does not count them; its run is the same integers
    return (main if isinstance(main, Evaluation) else int_ev), int_ev, extra


def _warn_input_clipping(pop: Graph, x) -> None:
    """Evaluation inputs beyond the range the integer input encoding was calibrated for get clipped: say so."""
    from snncompile.ir.populations import Source
    from snncompile.quantize.numbers import QuantizationWarning

    src = next(n for n in pop.nodes.values() if isinstance(n, Source))
    hi = (2 ** (src.bits - src.signed) - 1) / src.scale
    lo = -hi if src.signed else 0.0
    x_lo, x_hi = _span(x)
    if x_lo < lo - 0.5 / src.scale or x_hi > hi + 0.5 / src.scale:
        why = "" if src.signed else " (unsigned: the calibration data have no negative values)"
        warnings.warn(f"{src.name} (Source): evaluation inputs span [{x_lo:.4g}, {x_hi:.4g}], beyond the range "
                      f"[{lo:.4g}, {hi:.4g}] of the {src.bits}-bit input encoding chosen on the calibration "
                      f"data{why}; values outside it are clipped", QuantizationWarning, stacklevel=2)


def _span(x) -> tuple[float, float]:
    step = 1024  # in slices: x may be memory-mapped (data.Samples) and larger than memory
    spans = [(float(c.min()), float(c.max())) for c in (np.asarray(x[i:i + step]) for i in range(0, len(x), step))]
    return min(s[0] for s in spans), max(s[1] for s in spans)


def _warn_input_range(calib: Dataset, evals: Dataset) -> None:
    """Thresholds are calibrated on the calibration inputs: evaluation inputs far outside their range
    (e.g. 0-255 pixels against a [0, 1] calibration) drive every layer beyond what was calibrated."""
    (c_lo, c_hi), (e_lo, e_hi) = _span(calib.x), _span(evals.x)
    slack = 0.1 * max(c_hi - c_lo, 1e-12)
    if e_lo < c_lo - slack or e_hi > c_hi + slack:
        warnings.warn(f"evaluation inputs ({evals.source}) span [{e_lo:.4g}, {e_hi:.4g}], beyond the range "
                      f"[{c_lo:.4g}, {c_hi:.4g}] of the calibration inputs ({calib.source}) the thresholds were "
                      f"calibrated on; scale both the same way", stacklevel=2)


def _warn_saturations(ev: Evaluation, pop: Graph) -> None:
    """One warning per population whose membrane hit the profile's saturation bound in the integer run in a
    way that may have changed spikes; clips at the floor by neurons that stayed silent for the rest of the
    sample changed none (popsim's ``silent_saturations``) and are only logged."""
    from snncompile.quantize.numbers import QuantizationWarning

    for name, k in ev.saturations.items():
        quiet = ev.silent_saturations.get(name, 0)
        bound = getattr(pop.nodes[name], "v_max", None)
        if k > quiet:
            warnings.warn(f"{name} (IF): membrane saturated {k - quiet} times at +-{bound} in the fixed-point "
                          f"simulation (input per step far beyond the threshold); the charge beyond it is lost",
                          QuantizationWarning, stacklevel=2)
        if quiet:
            log.info("%s (IF): membrane held at the floor -%s %d times by neurons silent for the rest of the "
                     "sample: no spike changed (an unbounded membrane would only sit lower)", name, bound, quiet)


def _scatter(ann: Graph, snn: Graph, x: np.ndarray, T: int) -> dict:
    """ANN activation vs SNN rate x theta per IF layer on a few samples (for the SNN Toolbox-style plot)."""
    from snncompile.sim import mean_rates

    names = [n.name for n in snn.of_type(IF)]
    if not names:
        return {}
    _, acts = ann.run(x, record=True)
    rates = mean_rates(snn, torch.as_tensor(x), T, names)
    return {n: (acts[n].flatten().numpy(), rates[n].flatten().numpy()) for n in names if n in acts and n in rates}
