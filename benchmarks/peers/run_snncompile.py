"""snncompile on the peer protocol: one compile-and-simulate run per (model, method, target, T).

Conversion in snncompile is tuned for the T it is given, so every T of the grid is its own run;
accuracy and spikes at T come from that run's report. Every method of
``snncompile.convert.METHODS`` runs on the float simulator (target ``sim``); the default method
also runs on the fixed-point simulator (``sim-int``).

Runs go through ``snncompile.pipeline.compile_model`` and ``evaluate`` (the two halves of
``pipeline.run``, the function the CLI calls) in one process: a CLI call per run would spend most
of its time importing torch and drawing report plots (about 8 s a run here, hundreds of runs). The
default method is compiled once per T, with its integer lowering, and evaluated on both targets.
One real CLI call per model (default method, T=8) checks that the CLI gives the same numbers; the
check is stored with the results.

Timing: batch size 100, ``torch.set_num_threads(P.THREADS)``. The default method's us per
sample-step comes from a timing-only run of ``snncompile.simulate`` on that method's own network
at T_max (``time_simulator``; median of 3, wall and CPU time); the other modes show their T_max
run's ``timing.simulate_s`` (``simulate_int_s`` for sim-int) over samples x T_max, measured while
other jobs shared the machine, which includes snncompile's own per-step counters.

Early exit (``--early-exit iat|precision|both``, :mod:`snncompile.sim.early_exit`): every float-simulator
run is also scored with each rule of ``snncompile.search.SEARCHED_EXIT_RULES``, as its own mode
(``<method> exit <rule>``). The same SNN is simulated once more on the calibration samples, each rule's
thresholds are calibrated there against the ANN's predictions, and the test run is read with each
sample stopped at its exit step: accuracy at the exit step, spikes and synops per sample counted to
it, and the mean exit step (``snncompile.search._with_exit``, the scoring of the default search and
of a deployed ``--early-exit`` run; no extra test simulation). The full-T modes are unchanged.

Run with the product venv: ``.venv/bin/python benchmarks/peers/run_snncompile.py``.
``PEERS_REUSE=1`` keeps run reports already in results/snncompile_runs/ (default: rerun);
``PEERS_METHODS`` limits the methods (comma list).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path

import protocol as P
import torch

CLI = P.ROOT / ".venv" / "bin" / "snncompile"
DATA, CALIB = P.EXAMPLES / "data" / "mnist_test.npz", P.EXAMPLES / "data" / "mnist_calib.npz"


def _methods() -> tuple[list[str], str]:
    from snncompile.convert import DEFAULT_METHOD, METHODS

    wanted = [m for m in os.environ.get("PEERS_METHODS", "").split(",") if m]
    return [m for m in METHODS if not wanted or m in wanted], DEFAULT_METHOD


def _cache(model: str, method: str, target: str, T: int) -> Path:
    return P.results_dir() / "snncompile_runs" / model / f"{target}_{method}_T{T}.json"


def _net_path(model: str) -> Path:
    """The default method's network at T_max, saved by its accuracy run for the timing passes."""
    return P.results_dir() / "snncompile_runs" / model / f"timing_net_T{P.t_grid()[-1]}.pkl"


_COMPILED: dict = {}  # (model, method, T) -> the last compiled network, shared by its sim and sim-int runs


def _run(model: str, method: str, target: str, T: int) -> dict:
    """The report of one run (cached), or {"error": ...} when snncompile refused or failed.

    The default method is compiled once per (model, T) with its integer lowering, and that one
    compilation is evaluated on both targets (``sim`` reads only the float network)."""
    import pickle

    from snncompile.errors import CompileError
    from snncompile.pipeline import RunConfig, compile_model, evaluate, shard_of

    cache = _cache(model, method, target, T)
    if os.environ.get("PEERS_REUSE") == "1" and cache.exists():
        return json.loads(cache.read_text())
    n_test, n_calib = P.n_samples()
    cfg = RunConfig(
        model=P.EXAMPLES / f"{model}.onnx",
        data=DATA,
        target=target,
        calib=CALIB,
        method=method,
        timesteps=T,
        calib_samples=n_calib,
        samples=n_test,
        batch_size=P.BATCH,
        progress=False,
    )
    t0 = time.time()
    default = method == _methods()[1]
    try:
        key = (model, method, T)
        if key not in _COMPILED:
            _COMPILED.clear()
            _COMPILED[key] = compile_model(dataclasses.replace(cfg, target="sim-int" if default else target))
        with _recording(_COMPILED[key].snn) as runs:
            result = evaluate(_COMPILED[key], cfg, shard_of(_COMPILED[key].evals, None))
        report = result.report
        if target == "sim":
            report["early_exit_modes"] = _exit_modes(_COMPILED[key], runs[0], T)
        if default and target == "sim" and T == P.t_grid()[-1]:
            _net_path(model).parent.mkdir(parents=True, exist_ok=True)
            _net_path(model).write_bytes(pickle.dumps(result.snn))
    except CompileError as err:
        report = {"error": f"{type(err).__name__}: {err}"}
    report["wall_s"] = round(time.time() - t0, 1)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(report, default=float))
    return report


@contextlib.contextmanager
def _recording(snn):
    """Keep the SimResults of ``snncompile.sim.simulate`` on ``snn`` while ``evaluate`` runs (its float
    simulation of the test samples, with the per-step trace the exit counts read)."""
    from snncompile import sim

    runs, plain = [], sim.simulate

    def simulate(graph, *args, **kwargs):
        res = plain(graph, *args, **kwargs)
        if graph is snn:
            runs.append(res)
        return res

    sim.simulate = simulate
    try:
        yield runs
    finally:
        sim.simulate = plain


def _exit_modes(compiled, res, T: int) -> dict:
    """The float test run ``res`` scored with each early-exit rule: thresholds calibrated on one simulation of
    the calibration samples against the ANN's predictions (entropy score, the CLI's default max error)."""
    from snncompile.evaluate import ann_predictions
    from snncompile.pipeline import RunConfig
    from snncompile.search import SEARCHED_EXIT_RULES, _with_exit
    from snncompile.sim import simulate

    t0 = time.time()
    calib_x, _, y = P.load_data()
    defaults = RunConfig(model=Path(), data=Path())
    opts = {"metric": defaults.exit_metric, "max_error": defaults.exit_max_error}
    cal = simulate(compiled.snn, calib_x, T, batch_size=P.BATCH)
    exits = (opts, ann_predictions(compiled.ann, calib_x, P.BATCH))
    out = {}
    for rule in SEARCHED_EXIT_RULES:
        pred, mean_steps, policy, spikes, synops = _with_exit(res, cal, exits, rule)
        out[rule] = {
            "accuracy": float((pred == y[: len(pred)]).mean()),
            "spikes_per_sample": spikes,
            "synops_per_sample": synops,
            "mean_steps": mean_steps,
            "policy": policy,
        }
    return {"rules": out, "wall_s": round(time.time() - t0, 1), **opts}


def _cli_check(model: str, method: str, T: int = 8) -> dict:
    """One real CLI run; its accuracy and spikes next to the in-process run's."""
    n_test, n_calib = P.n_samples()
    out = P.results_dir() / "snncompile_runs" / "cli_out"
    cmd = [
        str(CLI),
        str(P.EXAMPLES / f"{model}.onnx"),
        "--target",
        "sim",
        "--data",
        str(DATA),
        "--calib",
        str(CALIB),
        "--calib-samples",
        str(n_calib),
        "--method",
        method,
        "-T",
        str(T),
        "--samples",
        str(n_test),
        "--batch-size",
        str(P.BATCH),
        "--out",
        str(out),
        "--force",
        "--json",
        "-q",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"T": T, "method": method, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    cache = _cache(model, method, "sim", T)
    cli = json.loads(proc.stdout)
    api = json.loads(cache.read_text()) if cache.exists() else _run(model, method, "sim", T)
    return {
        "T": T,
        "method": method,
        "cli_accuracy": cli["accuracy"]["snn"],
        "api_accuracy": api["accuracy"]["snn"],
        "cli_spikes": cli["spikes_per_sample"],
        "api_spikes": api["spikes_per_sample"],
    }


def _mode(model: str, method: str, target: str) -> dict:
    """Collect the cached runs of one mode on the T grid (None where a T was not run)."""
    name, grid = method if target == "sim" else f"{method} (sim-int)", P.t_grid()
    runs = [
        json.loads(p.read_text()) if (p := _cache(model, method, target, T)).exists() else None for T in grid
    ]
    err = next((r["error"] for r in runs if r is not None and "error" in r), None)
    done = [r for r in runs if r is not None and "error" not in r]
    if err is not None or not done:
        return P.error_record(name, RuntimeError(err or "not run"))
    conv, last = done[-1]["conversion"], done[-1]
    max_spikes = max((c.get("max_spikes") or 1) for c in conv)
    sim_s = last["timing"]["simulate_int_s" if target == "sim-int" else "simulate_s"]

    def col(f):
        return [None if r is None else f(r) for r in runs]

    missing = [T for T, r in zip(grid, runs) if r is None]
    notes = [] if max_spikes == 1 else [f"burst neurons, up to {max_spikes} spikes per step"]
    notes += [f"not run at T={','.join(map(str, missing))}"] if missing else []
    rec = P.mode_record(
        name,
        acc=col(lambda r: r["accuracy"]["snn"]),
        spikes=col(lambda r: r["spikes_per_sample"]),
        synops=col(lambda r: r["synops_per_sample"]),
        binary=max_spikes == 1,
        spiking_layers=[c["node"] for c in conv if str(c.get("to", "")).startswith("IF")],
        analog_layers=[],
        notes="; ".join(notes),
    )
    rec["in_run_us_per_sample_step"] = (
        1e6 * sim_s / (last["samples"] * last["timesteps"])
    )  # counters included
    rec["ann_accuracy"] = last["accuracy"]["ann"]
    rec["wall_s"] = sum(r["wall_s"] for r in done)
    return rec


def _exit_mode(model: str, method: str, rule: str) -> dict | None:
    """``<method> exit <rule>``: the float-simulator runs of ``method`` scored with early exit ``rule`` (None
    where no run of the method has them: runs cached before early exit was scored)."""
    grid = P.t_grid()
    runs = [json.loads(p.read_text()) if (p := _cache(model, method, "sim", T)).exists() else None for T in grid]
    runs = [None if r is None or "error" in r else r for r in runs]
    ex = [None if r is None else r.get("early_exit_modes", {}).get("rules", {}).get(rule) for r in runs]
    if not any(ex):
        return None
    done = [r for r, e in zip(runs, ex) if e is not None]
    conv = done[-1]["conversion"]
    max_spikes = max((c.get("max_spikes") or 1) for c in conv)
    opts = done[-1]["early_exit_modes"]

    def col(key):
        return [None if e is None else e[key] for e in ex]

    notes = [] if max_spikes == 1 else [f"burst neurons, up to {max_spikes} spikes per step"]
    missing = [T for T, e in zip(grid, ex) if e is None]
    notes += [f"not run at T={','.join(map(str, missing))}"] if missing else []
    rec = P.mode_record(
        f"{method} exit {rule}",
        acc=col("accuracy"),
        spikes=col("spikes_per_sample"),
        synops=col("synops_per_sample"),
        binary=max_spikes == 1,
        spiking_layers=[c["node"] for c in conv if str(c.get("to", "")).startswith("IF")],
        analog_layers=[],
        notes="; ".join(notes),
    )
    rec.update(method=method, early_exit=rule, exit_metric=opts["metric"], exit_max_error=opts["max_error"],
               mean_steps=col("mean_steps"))  # thresholds: in each run's report (snncompile_runs/)
    rec["exit_scoring_wall_s"] = sum(r["early_exit_modes"]["wall_s"] for r in done)  # shared by the rules
    return rec


def time_simulator(model: str, repeats: int = 3) -> dict[str, float]:
    """Timing-only run of the float simulator on the default method's own network at T_max (saved
    by its accuracy run; converted here if missing): one batch of 100 to T_max after an untimed
    warm-up, ``repeats`` times, the median (wall and process CPU time) in us per sample-step.
    Included, as in the CLI: the simulator's setup and its spike counters."""
    import pickle

    from snncompile import load_onnx, simulate
    from snncompile.convert import DEFAULT_METHOD, convert

    calib_x, x, _ = P.load_data()
    n, T = min(len(x), P.BATCH), P.t_grid()[-1]
    if _net_path(model).exists():
        snn = pickle.loads(_net_path(model).read_bytes())
    else:
        print(f"  snncompile {model}: converting for the timing run ({_net_path(model)} is missing)", flush=True)
        snn = convert(load_onnx(P.EXAMPLES / f"{model}.onnx"), calib_x[: P.n_samples()[1]], method=DEFAULT_METHOD,
                      timesteps=T, progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(P.THREADS)
    simulate(snn, x[: P.BATCH], 2, batch_size=P.BATCH)  # warm-up
    us = P.median_us(lambda: simulate(snn, x[:n], T, batch_size=P.BATCH), n * T, repeats)
    torch.set_num_threads(threads)
    return us


def collect(model: str, methods: list[str], default: str, started: float, check: dict | None) -> Path:
    modes = [_mode(model, m, "sim") for m in methods]
    timing = time_simulator(model, repeats=1)  # in-run: superseded by the timing pass
    for m in modes:
        if m["mode"] == default and m["status"] != "error":
            m["us_per_sample_step"], m["cpu_us_per_sample_step"] = timing["wall"], timing["cpu"]
    if default in methods:
        modes.append(_mode(model, default, "sim-int"))
    from snncompile.search import SEARCHED_EXIT_RULES

    modes += [r for m in methods for rule in SEARCHED_EXIT_RULES if (r := _exit_mode(model, m, rule)) is not None]
    ann = next((m["ann_accuracy"] for m in modes if m.get("ann_accuracy") is not None), None)
    from snncompile import __version__

    path = P.write_result(
        "snncompile", model, version=__version__, ann_accuracy=ann, modes=modes, started=started
    )
    doc = json.loads(path.read_text())
    doc.update(default_method=default, cli_check=check)
    path.write_text(json.dumps(doc, indent=1))
    return path


def _plan(methods: list[str], default: str) -> list[tuple[str, str, str, int]]:
    """(model, method, target, T) in priority order across models (for ``PEERS_BUDGET_S``): the
    default method on both targets at T = 8, 4, 16, 32, then the fast methods there, the rest of the
    T grid, and the slow methods. A default-method sim run is followed by its sim-int run, which
    reuses its compilation."""
    grid = P.t_grid()
    key_t = [T for T in (8, 4, 16, 32) if T in grid]
    other_t = [T for T in grid if T not in key_t]
    slow = ("calib-light", "calib-advanced", "adafire")
    fast = [m for m in methods if m not in slow and m != default]
    slow = [m for m in methods if m in slow and m != default]
    dflt = [(default, tg) for tg in ("sim", "sim-int")] if default in methods else []
    stages = [
        [(m, tg, T) for T in key_t for m, tg in dflt],
        [(m, "sim", T) for m in fast for T in key_t],
        [(m, tg, T) for T in other_t for m, tg in dflt],
        [(m, "sim", T) for m in fast for T in other_t],
        [(m, "sim", T) for m in slow for T in key_t + other_t],
    ]
    return [(model, m, tg, T) for st in stages for model in P.models() for m, tg, T in st]


def main() -> None:
    # Conversions and counting runs on 1 thread (same numbers; on a busy 2-core machine 2 OpenMP
    # threads mostly wait); time_simulator switches to P.THREADS.
    torch.set_num_threads(1)
    methods, default = _methods()
    if P.timing_only():
        from snncompile import __version__

        for model in P.models():
            rec = P.timing_record(default, time_simulator(model))
            path = P.write_result(
                "snncompile", model, version=__version__, ann_accuracy=None, modes=[rec], started=time.time()
            )
            print(f"  snncompile {model}: {P.describe(rec)}; wrote {path}", flush=True)
        return
    budget_s, t_start = float(os.environ.get("PEERS_BUDGET_S", "inf")), time.time()
    for model, method, target, T in _plan(methods, default):
        if time.time() - t_start > budget_s:
            print(f"  snncompile: budget of {budget_s:.0f} s spent, later runs left out", flush=True)
            break
        r = _run(model, method, target, T)
        print(
            f"  snncompile {model} {target} {method} T={T}: "
            + (
                r["error"]
                if "error" in r
                else f"acc {r['accuracy']['snn']:.4f}, spikes {r['spikes_per_sample']:.0f}, {r['wall_s']} s"
            ),
            flush=True,
        )
    for model in P.models():
        check = _cli_check(model, default) if default in methods and 8 in P.t_grid() else None
        print(f"snncompile {model}: wrote {collect(model, methods, default, t_start, check)}", flush=True)


if __name__ == "__main__":
    main()
