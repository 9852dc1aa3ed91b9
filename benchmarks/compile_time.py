"""Compile time: every conversion method's cost in simulations of the calibration set, and where it goes.

Usage (from the repository root; ``make bench-compile``)::

    python benchmarks/compile_time.py                          # all example models and methods, writes docs/
    python benchmarks/compile_time.py --models mnist_resnet --methods adafire --no-write
    python benchmarks/compile_time.py --json out.json          # also dump the raw rows
    python benchmarks/compile_time.py --baseline before.json   # add the ratios of an earlier run (e.g. an
                                                               # older checkout run with PYTHONPATH=<it>)

For each example model and method: ``convert`` at T (default 32) on the first 256 bundled
calibration samples, then - right after, in the same process - one float simulation of those 256
samples for T steps (``snncompile.sim.simulate``, batch 256, the method's own network without
pre-steps). The ratio convert seconds / simulation seconds is the conversion's cost in
simulations of the calibration set; it is robust to a busy machine where absolute seconds are
not. One torch thread for both (set before torch starts). The best of ``--repeats`` conversions
counts.

Profile (``--profile``, on by default): the work a conversion did, counted by wrapping the
simulator entry points - whole-network simulations (``simulate``'s batches), the replayed and
forked runs and the layer-at-a-time passes of :mod:`snncompile.convert.replay`, and ANN passes -
each as samples x steps and as *full-simulation equivalents*: samples x steps x neurons simulated
/ (256 x T x neurons of the network), so 1.0 is one simulation of the calibration set. Also the
per-stage seconds the conversion recorded in ``snn.meta["timing"]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

import snncompile  # noqa: E402
from snncompile.benchdoc import MODELS, machine, write_section  # noqa: E402
from snncompile.convert import DEFAULT_METHOD, METHODS, convert  # noqa: E402
from snncompile.ir import IF, Graph  # noqa: E402
from snncompile.sim import simulate  # noqa: E402


class Counter:
    """Counts simulator work during a conversion by wrapping the entry points (see module doc)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, int, int, float]] = []  # (kind, samples, steps, neurons, seconds)
        self.active = False
        self._wrap()

    def _add(self, kind, samples, steps, neurons, t0):
        if self.active:
            self.rows.append((kind, int(samples), int(steps), int(neurons), time.perf_counter() - t0))

    def _wrap(self) -> None:
        sim_mod = sys.modules["snncompile.sim.simulate"]
        rates_mod = sys.modules["snncompile.sim.rates"]
        run_batch = sim_mod.run_batch

        def counted_batch(prog, x, timesteps, *, pre_steps=0, **kw):
            t0 = time.perf_counter()
            out = run_batch(prog, x, timesteps, pre_steps=pre_steps, **kw)
            n = sum(int(ly.counter.shape[1]) for ly in prog.layers)
            self._add("sim", x.shape[0], timesteps + pre_steps, n, t0)  # whole network or prefix: see summary
            return out

        sim_mod.run_batch = counted_batch
        rates_mod.run_batch = counted_batch
        graph_run = Graph.run

        def counted_run(graph, x, **kw):
            t0 = time.perf_counter()
            out = graph_run(graph, x, **kw)
            self._add("ann", len(x), 1, 0, t0)
            return out

        Graph.run = counted_run
        try:
            replay = sys.modules.get("snncompile.convert.replay") or __import__(
                "snncompile.convert.replay", fromlist=["_run"])
        except ImportError:  # an older checkout without partial simulation
            return
        run = replay._run

        def counted_replay(net, snn, x, timesteps, fork, replayed, record=False):
            t0 = time.perf_counter()
            out = run(net, snn, x, timesteps, fork, replayed, record)
            k = len(fork[1]) if fork else 1
            n = sum(int(np.prod(snn.shapes[s])) for s in out[1])
            self._add("forked" if fork else "recorded", k * x.shape[0], timesteps, n, t0)
            return out

        replay._run = counted_replay
        layer_pass = replay.LayerwiseSim._pass

        def counted_pass(sim, snn, node, emit):
            t0 = time.perf_counter()
            out = layer_pass(sim, snn, node, emit)
            n = sum(c.shape[0] for c in sim.chunks)
            self._add("layer pass", n, sim.T, int(np.prod(snn.shapes[node.name])), t0)
            return out

        replay.LayerwiseSim._pass = counted_pass

    neurons = 0

    def summary(self, calib_n: int, timesteps: int) -> dict:
        out = defaultdict(lambda: {"calls": 0, "sample_steps": 0, "full_eq": 0.0, "seconds": 0.0})
        for kind, samples, steps, neurons, secs in self.rows:
            if kind == "sim":
                kind = "simulate" if neurons >= self.neurons else "prefix"
            d = out[kind]
            d["calls"] += 1
            d["sample_steps"] += samples * steps
            d["full_eq"] += samples * steps * neurons / (calib_n * timesteps * max(self.neurons, 1))
            d["seconds"] += secs
        return dict(out)


def neurons_of(snn) -> int:
    return sum(int(np.prod(snn.shapes[n.name])) for n in snn.of_type(IF))


def bench(model: str, methods, calib, T: int, repeats: int, counter: Counter | None) -> list[dict]:
    ann = snncompile.load_onnx(ROOT / "examples" / f"{model}.onnx")
    rows = []
    for method in methods:
        best = None
        for rep in range(repeats):
            if counter:
                counter.rows.clear()
                counter.active = rep == 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                snn = convert(ann, calib, method, T, progress=False)
                conv = time.perf_counter() - t0
            if counter:
                counter.active = False
                if rep == 0:
                    counter.neurons = neurons_of(snn)
                    work = counter.summary(len(calib), T)
            t0 = time.perf_counter()
            simulate(snn, calib, T, batch_size=256, pre_steps=0)
            sim = time.perf_counter() - t0
            if best is None or conv / sim < best["ratio"]:
                best = {"model": model, "method": method, "convert_s": conv, "sim_s": sim, "ratio": conv / sim,
                        "timing": snn.meta.get("timing")}
        if counter:
            best["work"] = work
        rows.append(best)
        print(f"{model:17s} {method:15s} convert {best['convert_s']:6.2f} s  simulate {best['sim_s']:5.2f} s  "
              f"ratio {best['ratio']:5.2f}", flush=True)
    return rows


KINDS = (("simulate", "whole-network simulations"), ("prefix", "prefix simulations"),
         ("recorded", "recorded runs (replay)"), ("forked", "forked runs (candidates on the batch axis)"),
         ("layer pass", "layer-at-a-time passes"))


def _work_cell(work: dict, kind: str) -> str:
    d = work.get(kind)
    if not d:
        return "-"
    return f"{d['calls']} / {d['sample_steps'] / 1e3:.0f}k / {d['full_eq']:.2f}"


def markdown(rows: list[dict], args, baseline: dict, minutes: float) -> str:
    T = args.T
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["model"], r["method"]): r for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = [f"## Compile time (conversion cost), T = {T}", "",
             f"`python benchmarks/compile_time.py` ({machine()}; OMP_NUM_THREADS=1, 1 torch thread; "
             f"{minutes:.1f} min). Per example model and method: seconds of `convert` at T = {T} on 256 bundled "
             f"calibration samples, and its ratio to one float simulation of those 256 samples for T steps "
             f"(`snncompile.simulate`, batch 256, measured right after in the same process; the ratio is what "
             f"the targets are stated in, since other jobs share the machine). Best of {args.repeats}. "
             + ("`before`: the same ratio from " + baseline.get("_label", "an earlier run") + "." if baseline else ""),
             "", "| model | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for m in models:
        cells = []
        for meth in methods:
            r = by.get((m, meth))
            if r is None:
                cells.append("-")
                continue
            cell = f"{r['convert_s']:.1f} s, **{r['ratio']:.2f}**"
            b = baseline.get(f"{m}/{meth}")
            if b:
                cell += f" (before {b['ratio']:.2f})"
            cells.append(cell)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    worst = max(rows, key=lambda r: r["ratio"])
    over = [f"{r['model']}/{r['method']} {r['ratio']:.2f}" for r in rows if r["ratio"] > 4]
    lines += ["", f"Largest ratio: {worst['model']} / {worst['method']} = {worst['ratio']:.2f}. "
              + (f"Above the target of 4: {', '.join(over)}." if over else "Every conversion is within 4 simulations.")]
    prof = [r for r in rows if r.get("work") is not None and r["model"] == args.profile_model]
    if prof:
        lines += ["", f"### Profile: {args.profile_model}, T = {T}", "",
                  "What each conversion simulated, as calls / samples x steps / full-simulation equivalents "
                  "(samples x steps x neurons simulated over 256 x T x all IF neurons: 1.00 is one simulation "
                  "of the calibration set; the layer-at-a-time passes count the IF layer's neurons, their "
                  "synaptic input is computed once per layer). `ANN` counts forward passes (batches).", "",
                  "| method | " + " | ".join(k[1] for k in KINDS) + " | ANN passes | convert s | ratio |",
                  "|---|" + "---:|" * (len(KINDS) + 3)]
        for r in prof:
            w = r["work"]
            lines.append(f"| {r['method']} | " + " | ".join(_work_cell(w, k) for k, _ in KINDS)
                         + f" | {w.get('ann', {}).get('calls', 0)} | {r['convert_s']:.2f} | {r['ratio']:.2f} |")
        lines += ["", "Seconds per stage (`snn.meta[\"timing\"]`, best run; `other` = building graphs, "
                  "thresholds, bookkeeping):", "",
                  "| method | stages | other | convert |", "|---|---|---:|---:|"]
        for r in prof:
            t = r.get("timing") or {}
            st = ", ".join(f"{k} {v:.2f}" for k, v in (t.get("stages") or {}).items())
            lines.append(f"| {r['method']} | {st or '-'} | {t.get('other_s', 0):.2f} | "
                         f"{t.get('convert_s', r['convert_s']):.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-T", type=int, default=32)
    p.add_argument("--models", nargs="*", default=MODELS)
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--profile-model", default="mnist_resnet")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--json", help="write the raw rows here")
    p.add_argument("--baseline", help="rows (--json) of an earlier run, shown as 'before'")
    p.add_argument("--baseline-label", default="an earlier run")
    args = p.parse_args()
    torch.set_num_threads(1)
    calib = np.load(ROOT / "examples" / "data" / "mnist_calib.npz")["x"][:256]
    counter = None if args.no_profile else Counter()
    t0 = time.perf_counter()
    rows = []
    for model in args.models:
        rows += bench(model, args.methods, calib, args.T, args.repeats,
                      counter if model == args.profile_model else None)
    minutes = (time.perf_counter() - t0) / 60
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    baseline = {}
    if args.baseline:
        baseline = {f"{r['model']}/{r['method']}": r for r in json.loads(Path(args.baseline).read_text())}
        baseline["_label"] = args.baseline_label
    if not args.no_write:
        write_section("compile-time", markdown(rows, args, baseline, minutes))
    print(f"default method {DEFAULT_METHOD}; {minutes:.1f} min")


if __name__ == "__main__":
    main()
