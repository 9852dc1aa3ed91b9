"""Accuracy vs timesteps of every conversion method on every example model, and simulator speed.

Usage (from the repository root)::

    python benchmarks/accuracy.py                      # the default models and every method, writes docs/
    python benchmarks/accuracy.py --models mnist_cnn --methods deng adafire --no-write

For each model: ANN accuracy on the bundled test set (1000 samples) and, per method and per T in
{1, 2, 4, 8, 16, 32}, one conversion for that T (calibrated on the 500 bundled calibration
samples) and one simulation of T steps: the fair protocol, every method at the T it was tuned
for. ``max`` and ``percentile`` do not depend on T (thresholds from the activation distribution
alone): they convert once and are read at every T of one run. Also spikes, synops and energy per
sample (horowitz45nm, the analog input's layers as MACs once per sample, as the compiler's search
counts them), conversion time, AdaFire's input-aware early exit at T = 8, and the simulator's
throughput against T ANN forward passes. Rewrites the "Accuracy vs timesteps" and "Simulator speed"
sections of docs/benchmarks.md (between their markers, leaving the rest of the file alone) and
docs/accuracy_vs_t.png.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snncompile import load_onnx
from snncompile.convert import METHODS, convert
from snncompile.energy import estimate, load_constants
from snncompile.evaluate import ann_macs, input_macs
from snncompile.ir import IF
from snncompile.sim import early_exit, simulate

TS = (1, 2, 4, 8, 16, 32)
# mnist_functional is mnist_cnn's trained network written with functional relu (same rows); the Keras
# exports are covered by their tests. Both are left out of the default run to keep it within ~30 min.
MODELS = ("mnist_mlp", "mnist_cnn", "mnist_relu6", "mnist_concat", "mnist_resnet", "mnist_qcfs")
CNN_MODELS = ("mnist_cnn", "mnist_relu6", "mnist_concat", "mnist_functional", "mnist_resnet", "mnist_qcfs")
T_INDEPENDENT = ("max", "percentile")  # thresholds from the activation distribution alone
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "accuracy_vs_t.png"
ENERGY = load_constants("horowitz45nm")


def load_data():
    test = np.load(ROOT / "examples" / "data" / "mnist_test.npz")
    calib = np.load(ROOT / "examples" / "data" / "mnist_calib.npz")
    return test["x"], test["y"], calib["x"]


def ann_accuracy(ann, x, y) -> float:
    pred = torch.cat([ann.run(x[i:i + 256]).argmax(-1) for i in range(0, len(x), 256)])
    return float((pred.numpy() == y).mean())


def _convert(ann, method, calib_x, T):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dead-channel notices; they are in the conversion log
        # adafire's IAT table (T = 8) reads the thresholds the conversion calibrates (iat=True, as the authors)
        opts = {"iat": True} if method == "adafire" and T == 8 else {}
        return convert(ann, calib_x, method, T, progress=False, **opts)


def run_method(ann, method, calib_x, x, y, ts=TS) -> dict:
    """Convert ``method`` for each T in ``ts`` and simulate T steps (a T-independent method: once, read at
    every T); accuracy, spikes, synops and energy per sample at each T, conversion seconds summed."""
    row = {"acc": {}, "spikes": {}, "synops": {}, "energy": {}, "convert_s": 0.0, "sim_s": 0.0, "pre_steps": 0}
    macs, in_macs = float(ann_macs(ann)), float(input_macs(ann))
    once = None
    for T in ts:
        t0 = time.perf_counter()
        if method in T_INDEPENDENT and once is not None:
            snn, res = once[0], once[1].truncated(T)
        else:
            snn = _convert(ann, method, calib_x, max(ts) if method in T_INDEPENDENT else T)
            row["convert_s"] += time.perf_counter() - t0
            res = simulate(snn, x, max(ts) if method in T_INDEPENDENT else T, batch_size=256)
            row["sim_s"] += res.wall_s
            if method in T_INDEPENDENT:
                once, res = (snn, res), res.truncated(T)
        row["acc"][T] = 100 * res.accuracy_vs_t(y)[T - 1]
        spikes, synops = res.total_spikes_per_sample(), res.total_synops_per_sample()
        e = estimate(ENERGY, ann_macs=macs, synops=synops, spikes=spikes,
                     neuron_updates=sum(res.neurons.values()) * (res.pre_steps + T), input_macs=in_macs)
        row["spikes"][T], row["synops"][T], row["energy"][T] = spikes, synops, e["snn_joules_per_sample"]
        row["pre_steps"], row["sps"] = res.pre_steps, res.steps_per_s
        if T == 8 and "iat" in snn.meta:
            ee = early_exit(res, snn.meta["iat"]["thresholds"], metric=snn.meta["iat"]["metric"])
            row["iat"] = {"acc": 100 * ee.accuracy(y), "steps": ee.mean_timesteps, "spikes": ee.mean_spikes,
                          "full_acc": row["acc"][8], "full_spikes": spikes, "T": 8}
        if "max_spikes" in snn.meta:
            row.setdefault("bursts", {})[T] = list(snn.meta["max_spikes"].values())
    row["ann_energy"] = estimate(ENERGY, ann_macs=macs, synops=0.0, spikes=0.0,
                                 neuron_updates=0.0)["ann_joules_per_sample"]
    return row


def _timed(fn, reps: int) -> tuple[float, float]:
    """(wall s, process CPU s) of the fastest of ``reps`` calls."""
    best = (float("inf"), float("inf"))
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return best


def throughput(ann, calib_x, x, threads: int, T=32, batch=256) -> dict:
    """Simulator samples*steps/s on one batch vs T forward passes of the ANN (same batch, same threads).

    Wall-clock and process-CPU times are both recorded: on a shared machine the CPU-time ratio is
    the robust one (the wall clock also measures other processes)."""
    snn = convert(ann, calib_x, "deng", 8, progress=False)
    xb = torch.as_tensor(x[:batch])
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    ann.run(xb)
    ann_w, ann_c = _timed(lambda: ann.run(xb), 5)
    sim_w, sim_c = _timed(lambda: simulate(snn, xb, T, batch_size=batch), 3)
    torch.set_num_threads(old)
    return {"sps": batch * T / sim_w, "ann_sps": batch / ann_w, "ratio": sim_w / (T * ann_w),
            "cpu_ratio": sim_c / (T * ann_c), "cpu_sps": batch * T / sim_c, "neurons": sum(snn_neurons(snn)),
            "load": os.getloadavg()[0], "threads": threads}


def snn_neurons(snn) -> list[int]:
    return [int(np.prod(snn.shapes[n.name])) for n in snn.of_type(IF)]


def _bursts(r) -> str:
    if "bursts" not in r:
        return ""
    distinct = {tuple(v) for v in r["bursts"].values()}
    return f" N={list(distinct.pop())}" if len(distinct) == 1 else " N per T"


def table(results, anns) -> list[str]:
    lines = []
    for model, rows in results.items():
        lines += [f"### {model} (ANN {anns[model]:.1f} %)", "",
                  "| method | " + " | ".join(f"T={t}" for t in TS) + " | spikes/sample T=8 | T=32 | convert (s, all T) |",
                  "|---|" + "---:|" * (len(TS) + 3)]
        for method, r in rows.items():
            name = method + (f" (+{r['pre_steps']} pre-steps)" if r["pre_steps"] else "") + _bursts(r)
            lines.append(f"| {name} | " + " | ".join(f"{r['acc'][t]:.1f}" for t in TS)
                         + f" | {r['spikes'][8]:.0f} | {r['spikes'][32]:.0f} | {r['convert_s']:.1f} |")
        lines.append("")
    return lines


NOTES = [
    "Notes:",
    "",
    ("* Every cell is its own conversion for that T (the T-specific corrections of calib-light, calib-advanced, "
     "calib-light+pc and calib-wc+pc, the MSE and AdaFire thresholds, tuned for the T they run at), except max "
     "and percentile, whose thresholds do not depend on T: they convert once and are read at every T."),
    ("* max and percentile keep v0 = 0 (floor quantization) and need many steps before the deep layers "
     "fire; the shifted methods (v0 = theta/2) answer from the first steps."),
    ("* SRP rows count T after the paper's tau = 4 pre-steps; its latency is T + 4, so it is left out of "
     "the ranking. On ANNs not trained with QCFS a 4-step pre-run can suppress deep neurons that are still "
     "in their transient (`tau='auto'` picks tau from {4, 8, 16} on calibration data; the Mechanism checks "
     "section counts the unevenness cases with and without SRP)."),
    ("* mnist_qcfs is mnist_cnn trained with QCFS activations (L = 4): every method gives its IF layers "
     "theta = lambda, v0 = theta/2 (docs/methods.md). mnist_functional (mnist_cnn's trained network written "
     "with functional relu, identical rows) is left out; mnist_resnet's MaxPool is rewritten exactly as a "
     "relu-tree (3 extra IF layers) before conversion."),
    "",
]


def default_choice(results, anns) -> tuple[str, dict]:
    """Method with the smallest mean ANN-SNN gap over T in {2, 4, 8} on the CNN examples.

    Methods that run pre-steps (SRP) are left out: their T counts only the steps after tau
    extra ones, so they are not comparable at equal latency."""
    gaps = {}
    for method in next(iter(results.values())):
        if any(results[m][method]["pre_steps"] for m in results):
            continue
        g = [anns[m] - results[m][method]["acc"][t] for m in results if m in CNN_MODELS for t in (2, 4, 8)]
        gaps[method] = float(np.mean(g)) if g else float("nan")
    ranked = {m: g for m, g in gaps.items() if not np.isnan(g)}  # no CNN in the run: nothing to rank
    return (min(ranked, key=ranked.get) if ranked else "none"), ranked


def _best_gap(results, anns, model, t) -> str:
    rows = results[model]
    best = max(rows, key=lambda k: rows[k]["acc"][t])
    return f"{anns[model] - rows[best]['acc'][t]:.1f} points ({best})"


def target_lines(results, anns) -> list[str]:
    """The accuracy targets and, per method, the examples where it beats max-normalized conversion."""
    lines = ["Targets (best method per row):", ""]
    for model, t, bound in (("mnist_cnn", 8, 0.5), ("mnist_cnn", 32, 0.2), ("mnist_resnet", 16, 1.0),
                            ("mnist_qcfs", 4, 1.0)):
        if model in results:
            lines.append(f"* {model}, T = {t}: gap to the ANN {_best_gap(results, anns, model, t)}; target <= {bound}.")
    if all("max" in r for r in results.values()):
        lines += ["", "Examples where a method beats plain max-normalized conversion at some T <= 16:", ""]
        for method in next(iter(results.values())):
            if method == "max":
                continue
            wins = [m for m, r in results.items()
                    if any(r[method]["acc"][t] > r["max"]["acc"][t] for t in TS if t <= 16)]
            lines.append(f"* {method}: {', '.join(wins) or 'none'}")
    return lines + [""]


def frontier_lines(results, anns) -> list[str]:
    """Per model, the least energy per sample of any (method, T) within 1 point of the ANN on the test
    samples, and how often each method is that point (what the compiler's default search looks for,
    there on a validation split)."""
    lines = [("Least energy within 1 point of the ANN (test accuracy; horowitz45nm, analog input's layers as MACs "
              "once per sample; SRP left out): the (method, T) the default `--optimize energy --max-drop 1.0` "
              "aims at, here read on the test samples. ANN/SNN = the ANN's energy per sample over the SNN's."), "",
              "| model | ANN (%) | method | T | SNN (%) | ANN/SNN energy | runner-up (method, T, ANN/SNN) |",
              "|---|---:|---|---:|---:|---:|---|"]
    for model, rows in results.items():
        ok = sorted((r["energy"][t], m, t) for m, r in rows.items() if not r["pre_steps"] for t in TS
                    if r["acc"][t] >= anns[model] - 1.0)
        if not ok:
            lines.append(f"| {model} | {anns[model]:.1f} | none within 1 point | | | | |")
            continue
        e, m, t = ok[0]
        ann_e = rows[m]["ann_energy"]
        other = next(((e2, m2, t2) for e2, m2, t2 in ok[1:] if m2 != m), None)
        runner = "–" if other is None else f"{other[1]}, T={other[2]}, {ann_e / other[0]:.2f}x"
        lines.append(f"| {model} | {anns[model]:.1f} | {m} | {t} | {rows[m]['acc'][t]:.1f} | {ann_e / e:.2f}x | "
                     f"{runner} |")
    lines += ["", ("Accuracy-energy frontier within 5 points of the ANN (test samples; the (method, T) that no other "
                   "is both cheaper and at least as accurate; SRP left out): method T (accuracy %, ANN/SNN energy)."),
              "", "| model | frontier points |", "|---|---|"]
    on = {}
    for model, rows in results.items():
        pts = sorted(((r["energy"][t], -r["acc"][t], m, t) for m, r in rows.items() if not r["pre_steps"]
                      for t in TS if r["acc"][t] >= anns[model] - 5.0))
        front, best = [], -1.0
        for e, neg, m, t in pts:
            if -neg > best:
                front.append((m, t, -neg, rows[m]["ann_energy"] / e))
                best = -neg
        for m, *_ in front:
            on.setdefault(m, set()).add(model)
        lines.append(f"| {model} | " + ", ".join(f"{m} {t} ({a:.1f}, {x:.2f}x)" for m, t, a, x in front) + " |")
    lines += ["", "Methods on a frontier: " + ", ".join(f"{m} ({len(v)} models)" for m, v in
                                                         sorted(on.items(), key=lambda kv: -len(kv[1]))) + "."]
    return lines + [""]


def accuracy_section(results, anns, n_test, n_calib, total_s, load) -> str:
    best, gaps = default_choice(results, anns)
    iat = [f"| {m} | {r['adafire']['iat']['T']} | {r['adafire']['iat']['full_acc']:.1f} | "
           f"{r['adafire']['iat']['full_spikes']:.0f} | {r['adafire']['iat']['acc']:.1f} | "
           f"{r['adafire']['iat']['steps']:.2f} | {r['adafire']['iat']['spikes']:.0f} |"
           for m, r in results.items() if "adafire" in r and "iat" in r["adafire"]]
    lines = [
        "## Accuracy vs timesteps", "",
        (f"`python benchmarks/accuracy.py` ({platform.machine()}, {torch.get_num_threads()} torch threads, "
         f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, torch {torch.__version__}, {date.today()}; "
         f"{total_s / 60:.1f} min, 1-min load average {load[0]:.1f} at the start and {load[1]:.1f} at the end on 2 "
         f"shared cores). Top-1 accuracy (%) on the {n_test} bundled MNIST test samples; every method is converted "
         f"for each T, calibrated on the {n_calib} bundled calibration samples, and simulated for T steps (analog "
         "input; max and percentile, which do not depend on T, once to T = 32). Spikes/sample count every IF layer "
         "(a burst of n counts n) including SRP's pre-steps. SRP runs its pre-steps before the T counted steps "
         "(latency T + tau)."), "",
        "![accuracy vs T](accuracy_vs_t.png)", "",
        *table(results, anns),
        "Mean ANN - SNN gap over T in {2, 4, 8} on the CNN examples (points): "
        + ", ".join(f"{m} {g:.2f}" for m, g in sorted(gaps.items(), key=lambda kv: kv[1]))
        + f". Closest: **{best}** (SRP is left out of this ranking because its T excludes its pre-steps). "
        "`snncompile.convert` defaults to adafire; the CLI without flags searches method x T for the least "
        "energy within 1 point (the table below).", "",
        *frontier_lines(results, anns),
        *target_lines(results, anns),
        *NOTES,
    ]
    if iat:
        lines += [("AdaFire input-aware adaptive timesteps (IAT, entropy policy, thresholds calibrated on the "
                   "calibration set), converted for T = 8: accuracy, mean steps and spikes/sample when each input "
                   "stops at its own step."), "",
                  "| model | T | accuracy full T | spikes full T | accuracy IAT | mean steps IAT | spikes IAT |",
                  "|---|---:|---:|---:|---:|---:|---:|", *iat, ""]
    return "\n".join(lines)


def speed_section(speed) -> str:
    lines = ["## Simulator speed", "",
             ("`snncompile.sim.simulate`, one batch of 256 samples, T = 32, deng conversion. ANN = the IR "
              "executor's forward pass on the same batch with the same threads; ratio = simulation time / "
              "(T x ANN forward time) (target <= 3), from the wall clock and from process CPU time. The "
              "development machine is shared (1-min load average given): the wall clock also measures other "
              "processes, and with 2 threads on a loaded machine torch's thread pool mostly waits, so the "
              "CPU-time columns are the ones to compare."), "",
             ("| model | threads | IF neurons | SNN samples x steps / s (wall) | per CPU-s | ANN samples / s "
              "(wall) | ratio (wall) | ratio (CPU) | load avg |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {m} | {t} | {s['neurons']} | {s['sps']:.0f} | {s['cpu_sps']:.0f} | {s['ann_sps']:.0f} | "
              f"{s['ratio']:.2f} | {s['cpu_ratio']:.2f} | {s['load']:.1f} |" for (m, t), s in speed.items()]
    return "\n".join(lines + [""])


def write_section(text: str, tag: str) -> None:
    begin, end = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text}{end}"
    if begin in doc and end in doc:
        doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(doc)


def plot(results, anns) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    cols = min(3, n)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(5 * cols, 3.6 * ((n + cols - 1) // cols)),
                             squeeze=False)
    for ax, (model, rows) in zip(axes.flat, results.items()):
        for i, (method, r) in enumerate(rows.items()):  # 10 colors: the 11th method on repeats them dashed
            ax.plot(TS, [r["acc"][t] for t in TS], marker="o", ms=3, label=method, color=f"C{i % 10}",
                    ls="-" if i < 10 else "--")
        ax.axhline(anns[model], color="k", ls="--", lw=1, label="ANN")
        ax.set_xscale("log", base=2)
        ax.set_ylim(50, 100)
        ax.set_title(model)
        ax.set_xlabel("timesteps T")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--threads", type=int, default=2, help="torch threads for the accuracy runs")
    p.add_argument("--speed-threads", type=int, nargs="+", default=[2, 1], help="torch threads for the speed section")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    p.add_argument("--speed-only", action="store_true", help="only the simulator speed section")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y, calib_x = load_data()
    start, load0 = time.perf_counter(), os.getloadavg()[0]
    results, anns, speed = {}, {}, {}
    for model in args.models:
        ann = load_onnx(ROOT / "examples" / f"{model}.onnx")
        anns[model] = 100 * ann_accuracy(ann, x, y)
        print(f"== {model}: ANN {anns[model]:.1f} %", flush=True)
        results[model] = {}
        for method in [] if args.speed_only else args.methods:
            r = results[model][method] = run_method(ann, method, calib_x, x, y)
            print(f"  {method:15s} " + " ".join(f"{r['acc'][t]:5.1f}" for t in TS)
                  + f"  convert {r['convert_s']:5.1f}s sim {r['sim_s']:5.1f}s ({time.perf_counter() - start:.0f} s)",
                  flush=True)
        for threads in args.speed_threads:
            sp = speed[(model, threads)] = throughput(ann, calib_x, x, threads)
            print(f"  speed ({threads} threads): {sp['sps']:.0f} samples*steps/s wall ({sp['cpu_sps']:.0f} per "
                  f"CPU-s), ratio to T ANN passes {sp['ratio']:.2f} wall / {sp['cpu_ratio']:.2f} CPU "
                  f"(load {sp['load']:.1f})", flush=True)
    total = time.perf_counter() - start
    if not args.no_write:
        write_section(speed_section(speed), "simspeed")
    if args.speed_only:
        return
    print(f"total {total / 60:.1f} min; closest to the ANN on CNNs at T<=8: {default_choice(results, anns)[0]}")
    text = accuracy_section(results, anns, len(x), len(calib_x), total, (load0, os.getloadavg()[0]))
    if args.no_write:
        print(text)
    else:
        write_section(text, "accuracy")
        plot(results, anns)
        print(f"wrote {DOC} and {PLOT}")


if __name__ == "__main__":
    main()
