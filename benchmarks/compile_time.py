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
pre-steps). The ratio convert / simulation is the conversion's cost in simulations of the calibration set,
taken in process CPU seconds (one torch thread, set before torch starts, so CPU time is the work
done; on a machine shared with other jobs the wall clock also measures them, and wall-clock
ratios are recorded too). The best of ``--repeats`` conversions counts.

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
from benchdoc import MODELS, machine, write_section  # noqa: E402
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

        def counted_replay(net, snn, x, timesteps, fork, replayed, *args, **kw):
            t0 = time.perf_counter()
            out = run(net, snn, x, timesteps, fork, replayed, *args, **kw)
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


def bench(model: str, methods, calib, T: int, repeats: int, counter: Counter | None,
          path: Path | None = None) -> list[dict]:
    ann = snncompile.load_onnx(path or ROOT / "examples" / f"{model}.onnx")
    rows = []
    for method in methods:
        best = None
        for rep in range(repeats):
            if counter:
                counter.rows.clear()
                counter.active = rep == 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0, c0 = time.perf_counter(), time.process_time()
                snn = convert(ann, calib, method, T, progress=False)
                conv, conv_cpu = time.perf_counter() - t0, time.process_time() - c0
            if counter:
                counter.active = False
                if rep == 0:
                    counter.neurons = neurons_of(snn)
                    work = counter.summary(len(calib), T)
            t0, c0 = time.perf_counter(), time.process_time()
            simulate(snn, calib, T, batch_size=256, pre_steps=0)
            sim, sim_cpu = time.perf_counter() - t0, time.process_time() - c0
            if best is None or conv_cpu / sim_cpu < best["ratio"]:
                best = {"model": model, "method": method, "convert_s": conv, "sim_s": sim, "wall_ratio": conv / sim,
                        "convert_cpu_s": conv_cpu, "sim_cpu_s": sim_cpu, "ratio": conv_cpu / sim_cpu,
                        "timing": snn.meta.get("timing"), "T": T, "calib_n": len(calib),
                        "load": round(os.getloadavg()[0], 2)}
        if counter:
            best["work"] = work
        rows.append(best)
        print(f"{model:17s} {method:15s} convert {best['convert_s']:6.2f} s ({best['convert_cpu_s']:6.2f} s CPU)  "
              f"simulate {best['sim_s']:5.2f} s ({best['sim_cpu_s']:5.2f} s CPU)  ratio {best['ratio']:5.2f} "
              f"(wall {best['wall_ratio']:5.2f}, load {best['load']:.1f})", flush=True)
    return rows


KINDS = (("simulate", "whole-network simulations"), ("prefix", "prefix simulations"),
         ("recorded", "recorded runs (replay)"), ("forked", "forked runs (candidates on the batch axis)"),
         ("layer pass", "layer-at-a-time passes"))


def _work_cell(work: dict, kind: str) -> str:
    d = work.get(kind)
    if not d:
        return "-"
    return f"{d['calls']} / {d['sample_steps'] / 1e3:.0f}k / {d['full_eq']:.2f}"


def markdown(rows: list[dict], args, baseline: dict, minutes: float, stab: dict | None = None) -> str:
    T = args.T
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["model"], r["method"]): r for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))
    loads = getattr(args, "loads", None)
    lines = [f"## Compile time (conversion cost), T = {T}", "",
             f"`python benchmarks/compile_time.py` ({machine()}; OMP_NUM_THREADS=1, 1 torch thread; "
             f"{minutes:.1f} min" + (f"; 1/5/15-min load average {', '.join(f'{v:.1f}' for v in loads[0])} at the start, "
                                     f"{', '.join(f'{v:.1f}' for v in loads[1])} at the end" if loads else "")
             + f"). Per example model and method: wall seconds of `convert` at T = {T} on 256 "
             f"bundled calibration samples, and (bold) its cost in float simulations of those 256 samples for T "
             f"steps (`snncompile.simulate`, batch 256, the method's network without pre-steps, measured right "
             f"after in the same process), as the ratio of process CPU seconds: with one thread that is the work "
             f"done, where the wall clock of a machine shared with other jobs is not. Best of {args.repeats}; "
             "untimed small conversions first, so the first model does not carry the process's one-time costs. "
             "`load`: the 1-minute load average after each of the model's runs (min-max; 2 cores). "
             + ("`before`: the same ratio from " + baseline.get("_label", "an earlier run") + "." if baseline else ""),
             ""]

    def table(models):
        out = ["| model | " + " | ".join(methods) + " | load |", "|---|" + "---:|" * (len(methods) + 1)]
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
            ld = [by[(m, meth)]["load"] for meth in methods if "load" in by.get((m, meth), {})]
            cells.append(f"{min(ld):.1f}-{max(ld):.1f}" if ld else "-")
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        return out

    def verdict(rs):
        worst = max(rs, key=lambda r: r["ratio"])
        over = [f"{r['model']}/{r['method']} {r['ratio']:.2f}" for r in rs if r["ratio"] > 4]
        return (f"Largest ratio: {worst['model']} / {worst['method']} = {worst['ratio']:.2f}. "
                + (f"Above the target of 4: {', '.join(over)}." if over else "Every conversion is within 4 simulations."))

    examples = [m for m in models if m != VGG]
    ex_rows = [r for r in rows if r["model"] != VGG]
    if examples:
        lines += table(examples) + ["", verdict(ex_rows)]
    vgg = [r for r in rows if r["model"] == VGG]
    if vgg:
        vt, vn = vgg[0].get("T"), vgg[0].get("calib_n")
        lines += ["", f"### The scale benchmark's VGG, T = {vt}", "",
                  f"`--vgg`: `benchmarks/scale.py`'s model (8 conv + BatchNorm + ReLU, 4 average pools, 2 linear "
                  f"layers, 3x64x64, 2.7 M parameters, random init), {vn} uniform [0, 1] calibration inputs "
                  f"(as scale.py draws them), T = {vt}; the ratio is the same measure as above (convert CPU seconds "
                  "over one float simulation of the calibration set at the same T; the cells' wall seconds "
                  "count whatever else ran on the 2 cores, see the load column)"
                  + ("." if (vn, vt) == (256, T) else
                     f", on {vn} samples at T = {vt} instead of 256 at {T} to keep the run short: a smaller set "
                     "weighs the work whose size does not follow it (WC's fixed 300 Adam steps of 32 samples per "
                     "layer, the threshold searches) more."), ""]
        lines += table([VGG]) + ["", verdict(vgg)]
        vby = {r["method"]: r for r in vgg}
        if DEFAULT_METHOD in vby:
            d = vby[DEFAULT_METHOD]
            search = [m for m in ("calib-light", "calib-light+pc", DEFAULT_METHOD) if m in vby]
            lines += ["", f"Default compile on this model: the default method ({DEFAULT_METHOD}) converts in "
                      f"{d['convert_s']:.0f} s wall ({d['convert_cpu_s']:.0f} s CPU, one thread) at T = {vt}. The "
                      "whole default compile without `-T`/`--method` (the energy search over method x T) was not "
                      "run here: its candidates at this T alone (" + ", ".join(search) + ") would convert for "
                      f"{sum(vby[m]['convert_cpu_s'] for m in search) / 60:.0f} min of CPU, and it converts them at "
                      "several T."]
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
            old = baseline.get(f"{r['model']}/{r['method']}")
            for label, row in ((r["method"], r), (f"{r['method']} (before)", old)):
                if not row or not row.get("work"):
                    continue
                w = row["work"]
                lines.append(f"| {label} | " + " | ".join(_work_cell(w, k) for k, _ in KINDS)
                             + f" | {w.get('ann', {}).get('calls', 0)} | {row['convert_s']:.2f} | {row['ratio']:.2f} |")
        lines += ["", "Seconds per stage (`snn.meta[\"timing\"]`, best run; `other` = building graphs, "
                  "thresholds, bookkeeping):", "",
                  "| method | stages | other | convert |", "|---|---|---:|---:|"]
        for r in prof:
            t = r.get("timing") or {}
            st = ", ".join(f"{k} {v:.2f}" for k, v in (t.get("stages") or {}).items())
            lines.append(f"| {r['method']} | {st or '-'} | {t.get('other_s', 0):.2f} | "
                         f"{t.get('convert_s', r['convert_s']):.2f} |")
    if getattr(args, "peers", None):
        lines += peers_markdown(Path(args.peers))
    lines += ["", REUSE, "", ADAFIRE_COST, "", SEARCH_COST, "", THREADS, "", MEMORY]
    if stab:
        sh = stab["share"]
        lines += ["", f"**Fewer samples?** Checked on {stab['model']} at T = {stab['T']} (`stability()`): AdaFire's "
                  f"picks on {stab['samples']} samples are N = {stab['bursts']}, SSC ratios {stab['ratios']}. "
                  "Share of bootstrap resamples of n samples that reproduce them (bursts / SSC): "
                  + ", ".join(f"n = {n}: {100 * a:.0f} % / {100 * b:.0f} %" for n, (a, b) in sh.items())
                  + f". The first 64 samples alone pick N = {stab['first64'][0]}, ratios {stab['first64'][1]}. "
                  "The searches have not converged even on the whole subset (the KL differences between "
                  "settings are within sampling noise), so fewer samples would change the answer; the "
                  "conversion keeps the method's sample count (adafire's `samples` option trades the picks' "
                  "noise for time)."]
    return "\n".join(lines)


REUSE = """How the conversions reuse work (`snncompile/convert/replay.py`). Every saving but WC's early fallback
(below) gives the same thresholds, biases, potentials, weights, burst sizes, SSC ratios and IAT
thresholds as the whole-network runs it replaces (checked bitwise on the examples):

* **One ANN pass** over the calibration set records the threshold statistics, the outputs (AdaFire's KL
  reference and IAT labels) and the activations of the subset the layer-wise corrections measure on.
* **Layer at a time** (calib-*, AdaFire's BC): the spike trains of every corrected layer are kept (uint8),
  layer l's input current is computed once from them, each measurement (BC, PC, WC's inputs) re-runs
  only layer l's neurons, and its final parameters emit layer l's trains for the layers after it: about
  one simulation of the subset for the whole network instead of one prefix simulation per measurement.
* **Forked candidates** (AdaFire's burst and SSC searches): one recorded run of the base network, then per
  layer one run of that layer and its descendants with the candidate settings stacked on the batch axis,
  upstream layers replayed from the recording: the prefix once plus K suffixes instead of K networks.
  Since 5f10515 not even the prefix: the recorded run keeps the per-step values the forks read from
  upstream (each layer's input current, the skip connections into its descendants).
* **Searches stop where the answer is fixed**: burst sizes that cannot fit the budget are not simulated;
  AdaFire's IAT run (only with `-O iat=true` since 2026-12-06: the pipeline's `--early-exit` calibrates its
  own thresholds) reuses the outputs BC simulated on its subset and simulates only the other samples.
* The MSE threshold search (`convert/thresholds.py`; 4258fa3, 511202c) evaluates in float32 only the
  candidates a float64 bound leaves: from the layer's sorted subsample and its prefix sums, with margins
  for float32 rounding, values on level boundaries and any summation order, the bound rules out every
  candidate that cannot be the float32 argmin (2-4 of 96 left per layer, 4-25 per channel); the
  survivors get the original error, so the thresholds are bitwise the same (19,188 arrays of the 7
  examples x 8 MSE-based methods x T = 4, 32; tests/convert/test_thresholds.py checks the argmin and
  that the bounds contain the exact error). mnist_mlp's 8 AdaFire thresholds per layer: 78-91 -> 13-15 ms
  CPU. WC's rate approximation converts the IF arrays once per layer, not at every Adam step.
* **The float operators themselves** (d9a5224, exact): the MaxPool rewrite's selections and differences
  (depthwise convolutions with one or two taps of +-1 and no bias) are computed from strided views of
  their input instead of a depthwise `conv2d` (3-4x faster per call, bitwise equal:
  tests/ir/test_conv_selection.py); an Add of three or more inputs sums into its fresh result in place;
  a forked Add broadcasts its inputs shared by the stacked candidates instead of copying them K times.
  They speed the simulation as much as the conversion (mnist_resnet's float simulation of the calibration
  set, 1 thread: about 5 -> 1.2-1.3 s CPU), so the ratios below hardly move; the seconds do.
* **Weight calibration** (calib-wc+pc; `convert/weight_calibration.py`): its 300 Adam steps per layer
  each run the block forward and its weight gradient on 32 samples; the loss's gradient with respect
  to the block output is computed directly, in place, by the same operations autograd's backward
  would run (two exact shortcuts: the straight-through floor is `floor(u)` and the clamp's mask one
  fused `hardtanh_backward`); a block that is one Conv2d/Linear on fixed inputs (not one with an Add or a
  Concat, or with a pool or BatchNorm after its trained layer) gets its weight gradient from the backward kernel called directly, without an
  autograd graph per step; the Adam step is torch's arithmetic without the optimizer's bookkeeping,
  its square root taken of max(v, floor) (the CPU's square root of 0 - a weight fed by a pixel that
  is 0 on every calibration sample, 30 % of the MLP's first layer - or of a subnormal costs 20-60
  times a normal one's; below the floor every denominator rounds to eps either way); the cosine
  schedule is replayed once per (lr, iters); the block's nodes that no trained weight feeds (pools)
  run once on the cached set. All of it gives bitwise the weights of the autograd + `torch.optim.Adam`
  loop (tests/convert/test_methods.py). One saving is not exact: a layer whose loss on the cached set
  is not below its start at the first 3 checks (every 25 steps) keeps its original weights without
  the other 225 steps, as the whole schedule decides for such layers (the analog-input layers of
  mnist_mlp and mnist_cnn at every T). Of 7 example models x 7 T (1-64) 48 convert to bitwise the
  same SNN; mnist_mlp at T = 64 does not (its second layer's loss falls below its start, 0.2067 ->
  0.2040, only in the last steps) and classifies the 1000 test samples exactly as before (97.1 %).
  Measured after commit 58562e4 (`--methods calib-wc+pc --repeats 2`, load 6.5-12 on the 2 cores,
  CPU ratios; the table's calib-wc+pc column, rerun since, agrees): mnist_mlp 10.4 simulations (38.3
  with the code before it, same run), the CNN examples 1.8-2.5 (2.3-3.5); with the early fallback off
  (`patience=None`, another run at load 5) mnist_mlp 24.3 and mnist_cnn 3.3, against 11.0 and 2.8 with
  it; mnist_qcfs (not in the table) 3.1 (3.4). What is left on the MLP,
  whose simulation takes about 15 ms (its analog input layer's current is computed once for all
  steps): 75 steps on the first layer's 784 x 256 weights (about 0.5 ms each) and 300 on the second
  layer (about 25 tensor operations of under 10 us each per step), above 4 simulations; fewer steps
  would change the weights, not done."""

ADAFIRE_COST = """**Where AdaFire's cost goes** (issue 21 item 1; mnist_resnet, T = 32, process CPU seconds
on one thread, cProfile and the conversion's stages on a CPU clock, 2026-12-06 at load 7-9, so +-10 %), in
simulations of the calibration set: burst search 5.3, SSC search 5.1, BC 0.95, IAT 0.5, ANN pass 0.15
(the thresholds, 0.3, inside the searches). By operation: `conv2d` 37 % (the MaxPool rewrite's four
depthwise 2x2 convolutions of the stem's output cost twice the block's 16x16 3x3 one per sample; since
d9a5224 they are strided views, a third of that), the IF
update 27 % (add, div, floor, clamp, addcmul), the residual Adds 7 %, the forked runs' per-step Python 4 %,
replaying recorded trains 3 %, tiling upstream values for the stacked candidates 3 % (broadcast since
d9a5224). The searches do the
work their definition asks for: per search, one recorded run of the base network on the 128 search
samples (0.5 simulation) and, per IF layer, that layer and every IF layer after it for the 3 other
settings (0.5 x 3 x the fraction of the network's neurons at or after the layer). Those fractions sum to
1.33-1.34 on the 2- and 3-layer examples and 2.79 on mnist_resnet's 7 layers, so the forked runs alone
are 4.0 and 8.4 simulations, and with the two recorded runs (1.0), BC (two passes of each layer on 128
samples: 1.0) 6.0 and 10.4: what the table measures on the CNN examples and on mnist_resnet (with IAT,
the other 128 samples, 0.5 more: 6.5 and 10.9, the runs before 2026-12-06's df51bdc; `-O iat=true` still
computes it). mnist_mlp cost more than its 6.0 (14-17) while the MSE threshold grid of its 8
(layer, N) thresholds (96 candidates over a 65,536-value subsample each) was 6.5 of its 15 ms simulations;
with the bounded search (4258fa3, 511202c) that is about one, and mnist_mlp's adafire 8.5-11 with IAT, 9.75 in the table above without it. The target
of 4 needs AdaFire to compute less, not faster.

Cut, exactly (5f10515, 5a0adf2): a forked run no longer recomputes what is upstream of its layer: the base
run keeps the per-step values the forks read (`replay.fork_inputs`; up to `CACHE_BYTES`), which drops 1,920
of mnist_resnet's 6,231 convolutions. The sensitivity tables, bursts, SSC ratios, thresholds, biases and
IAT thresholds are bitwise those of before on all 7 examples at T = 32 (tests/convert/test_replay.py checks
a fork and a conversion with and without). Convert CPU seconds, with against without, alternating in one
process, best of 3 (load 5-6): mnist_mlp -7 %, mnist_cnn -10 %, mnist_resnet -12 %, mnist_relu6 -11 %,
mnist_concat -11 %, mnist_functional -6 %, mnist_qcfs -3 %. Evaluated, not done:

* KL for burst size N from one run at the largest N (truncation, analytic relations): theta_l(N) is
  re-derived for each N (mnist_resnet's stem: 3.42, 1.67, 0.93, 0.47 for N = 1, 2, 4, 8) and the membrane
  keeps what a smaller N cannot emit, so no candidate's spike trains follow from another's.
* Skipping candidates no budget allows (done for the mean-N budget): under the spike budget only the stem's
  N = 8 is infeasible on mnist_resnet and mnist_cnn, and it is the base, simulated anyway.
* Stopping a layer's scan once its answer is fixed: the picks minimize a sum over layers under one shared
  budget, and S_l is not monotone in N or rho in a way a bound can use; the one bound there is (S >= 0, so
  a partial sum over samples bounds S from below) would drop only the stem's N = 1 and 2 on mnist_resnet
  for the last third of the samples, about 7 % of a burst search.
* Reusing the burst search's runs for SSC: SSC's base network has the chosen burst sizes, which change the
  stem on every example, so none of the burst search's networks is one of SSC's.
* Time-batched convolutions (one call over T x K x B samples instead of T calls): no faster on one thread
  (3.6 ms per 384 samples either way for the 16x16 3x3 convolution on 14x14, twice slower on 7x7).
* One forked chunk for all 128 samples instead of `batch_size // K`: bitwise the same on mnist_mlp and
  mnist_cnn and 5-15 % less CPU there, but the forks would hold 3 x 128 rows, over `--batch-size`.
* fp64: only the 10-class KL and the per-sample spike sums use it.
* Approximate: fewer search samples. `-O search_samples=32` meets 4 on mnist_resnet (3.7) but moves test
  accuracy by -0.8 to +5.0 points (docs/methods.md); the check below shows why: the picks are not settled
  even on all 128 samples. On mnist_cnn at T = 32 they are (the same check: 78 % / 93 % of the resamples
  of 64 samples reproduce the picks, and the first 64 samples pick what all 128 do), but not at T = 4
  (search_samples=64 there: -0.3 points), and where the picks change the accuracy moves by up to 5
  points: no smaller sample count keeps every model and T within 0.1 point. Not the default."""


SEARCH_COST = """**Search cost** (issue 19 item 3: the default compile within 4 compiles of the default method at one
fixed T; whole CLI runs `snncompile MODEL --data mnist_test.npz --calib mnist_calib.npz`, one torch
thread, process CPU seconds, 2026-12-06 15:50-16:05 UTC at 1-min load 3.8-7.8 on the 2 cores, so wall
seconds are 1.5-2.5 times these): mnist_cnn, no flags, 6.7 s against `--method adafire -T 4` 4.8 s
(`-T 32` 12.5 s): 1.4 compiles; mnist_resnet, no flags, 24.4 s against `--method adafire -T 8` 10.5 s
(`-T 32` 27.5 s): 2.3 compiles, since e7fb6ff (the energy pruning reads each T's full-T candidate; before
it the early-exit candidates kept adafire alive up to T = 64: 20 conversions, 125 s CPU at load 8). The method
search at a fixed T (`mnist_resnet -T 32`, four conversions each scored for the full T and three exit
rules) is 76 s CPU at load 3.8-5.7 (48 s at load 1 earlier the same day, before the search scored early exit), 80 % of
the search's wall seconds the two AdaFire conversions and their runs: not under 15 s. At one T nothing can be ruled out before
converting (the energy bound needs the candidate's spikes), and adafire and adafire+ch share no exact
work (their ANN passes keep per-layer and per-channel statistics, and the per-channel thresholds change
every network their sensitivity analyses simulate), so what is left there is AdaFire's own conversion cost. What the search shares exactly:
the ANN pass, the one run of a T-independent method, and since 0d5a5b7 the validation and calibration
runs of a conversion identical to one already simulated at the same T (every array the simulator reads;
on mnist_qcfs adafire and adafire+ch convert to calib-light's network: its default compile 8.9 -> 8.2 s
CPU, same choice; tests/test_search.py checks the same candidates as with every network simulated).
Since f7fa7ed the exit thresholds' calibration run reads the rows of the calibration set each calib-* or
AdaFire conversion already simulated its final network on (`snncompile/convert/kept_outputs.py`: the first
128 by default, when their trains fit in memory, AdaFire with bias correction on; on CPU; bitwise the
simulator's outputs, tests/convert/test_kept_outputs.py) and simulates only the others: in a `-T 32` run of
mnist_resnet (2 threads) the other 128 rows took 0.35-0.45 s per candidate, about what the kept half no
longer costs; the same candidates and choice. On a machine with torch's 2
threads (the cli-time section below, 2026-12-07 00:00-00:06 UTC, whole CLI wall seconds, alternating with
the code before it): mnist_resnet `-T 32` 27.8-28.9 s (before 28.1-30.7), no flags 16.2-17.5 s (before
17.1-18.5), against 13.0-13.7 s for `--method adafire -T 32` in the same run (12.4-12.8 s on an idle machine
at 23:26 UTC the day before)."""


THREADS = """**On a shared machine** (the issue's "300-600 s under the load of two jobs"): torch's OpenMP worker
threads spin between parallel regions, and beside another busy process they take the cores the working
threads need. mnist_resnet's adafire conversion at T = 8, 2 threads, 2 cores, 2026-12-06 (alternating runs,
wall seconds): idle, 3.4 s with the default spin, 5.1 s with `OMP_WAIT_POLICY=PASSIVE`, 4.9-5.1 s on one
thread, 3.6-3.9 s with `GOMP_SPINCOUNT=10000`; beside one busy process 24-34 s spinning, 5.8-6.8 s
passive, 5.0-5.5 s on one thread, 11.7-11.9 s with the shorter spin; beside two, 24-31 s and 5.8-9.7 s.
The whole CLI run `mnist_resnet --method adafire -T 32` at load 4-6: 147 and 153 s spinning, 29 and 37 s
passive. Since 3776010 `import snncompile` sets `OMP_WAIT_POLICY=PASSIVE` before torch loads when the
machine is busy (and neither it nor `GOMP_SPINCOUNT` is set), and keeps the spin on an idle machine, where
it is faster. "Busy" first read the 1-minute load average (0.5 or more), which lags: a compile right after
another one (the CI job, this benchmark) took the passive path, `--method adafire -T 32` on mnist_resnet
32 s against 19-21 s spinning, alternating runs 20 s apart. It now reads the kernel's count of runnable
tasks (5 reads, 1 ms apart: another process runnable in each, beyond the cores `OMP_NUM_THREADS` leaves
free), the load average only where that count is unknown; two back-to-back runs: 19.7 and 18.2 s."""


MEMORY = """**Memory reuse** (33a7336): a simulation frees and allocates tensors of 0.1-20 MB at every step. With
glibc's default thresholds (blocks over 128 KB, raised on the fly to the largest block freed, come from a
fresh `mmap`; the heap's free top above twice that goes back to the kernel) each such tensor faults in
new zeroed pages. `import snncompile` now sets `mallopt` M_MMAP_THRESHOLD to 32 MB (glibc's largest) and
M_TRIM_THRESHOLD to 256 MB, unless the user tuned malloc (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
`MALLOC_TOP_PAD_`, `MALLOC_MMAP_MAX_`, a `glibc.malloc.*` entry in `GLIBC_TUNABLES`) or set
`SNNCOMPILE_NO_MALLOC_TUNING=1` (tests/test_malloc_tuning.py: 20 rounds of four 20 MB arrays with transparent
huge pages off, about 390,000 page faults untuned here, none after the import; 32,000-43,000 untuned with
numpy's huge-page advice, which depends on the kernel's setting).
No result changes. The whole CLI run `mnist_resnet --method adafire -T 32`, 2 threads on the 2 cores,
idle machine, alternating runs of 9419f08 and 33a7336 (2026-12-06 22:05 UTC): 16.8, 17.0, 18.2 s wall
(kernel time 2.5-3.7 s) before, 14.5, 15.9, 16.7 s (1.2-1.5 s) after; an earlier alternating series the
same evening (the thresholds as environment variables against none): 16.4, 16.8 s against 13.8, 14.0 s,
kernel time 4.5-4.9 s against 1.2-1.3 s. All
8 runs of the code that evening: 13.6, 14.1, 14.4, 14.5, 14.6, 15.1, 15.9, 16.7 s. Peak RSS 0.82-1.0 GB
either way. The issue's target (under 15 s) is met in 5 of those 8 runs: this machine's speed drifts by
10-20 % within an hour. `make bench-cli` (next section; fresh processes, each code run in its own checkout)
measured it again at 23:26 UTC, alternating, 5 runs each: 14.4-15.6 s before (kernel 4.4-4.7 s), 12.4-12.8 s
after (1.0-1.3 s), under 15 s in 5 of 5. On one thread the
gain is smaller (the table's `before` ratios; convert CPU seconds, one run each: mnist_resnet's adafire and
adafire+ch -12 % and -11 %, the other AdaFire cells -9 % to +4 %, within the noise of single runs), and the
simulation the ratios divide by gains too: mnist_resnet's adafire ratio 11.92 -> 10.63 (-11 %); the cells
under 0.3 s of CPU move by -32 % to +16 % (single runs of 0.01-0.3 s), the others by -11 % to +10 %. Where the rest of that compile goes (cProfile, 2 threads):
convert 8-10 s (the burst and SSC searches 85 % of it), the evaluation of the 1000 test samples 2.7-3.3 s,
importing torch 1.7 s, the three plots 1.7 s (matplotlib's import 0.4-0.7 s of it). Tried, no gain: the
layers' forked runs in two threads of one torch thread each (8.35 and 8.33 s against 8.36 and 7.74 s
convert), one forked chunk of all 128 samples (8.07, 8.13 s against 8.46, 7.97 s), importing matplotlib
in a thread during the conversion (13.95-14.66 s against 13.56-14.38 s), channels-last convolutions (1.3-1.9x
faster alone, but not faster with the layout converted at each call, and not bitwise equal for 32 input
channels)."""

PEER_NAMES = {"spikingjelly": "SpikingJelly", "sinabs": "sinabs", "snntoolbox": "SNN Toolbox"}


def peers_markdown(path: Path) -> list[str]:
    """The conversion step alone of each tool per example model (benchmarks/peers/conversion_time.py's
    JSON) next to snncompile's convert and whole default compile."""
    res = {r["tool"]: r for r in json.loads(Path(path).read_text())}
    ours = res.get("snncompile", {})
    rows = ours.get("rows", [])
    models = list(dict.fromkeys(r["model"] for r in rows))
    peers = [t for t in PEER_NAMES if t in res]

    def cell(r):
        return f"{r['cpu_s']:.2f} ({r['wall_s']:.2f})"

    def best(tool, model):
        ok = [r for r in res[tool].get("rows", []) if r["model"] == model and "cpu_s" in r]
        return min(ok, key=lambda r: r["cpu_s"]) if ok else None

    default = ours.get("default_method", "adafire")
    lines = ["", "### Conversion next to the peers' (`benchmarks/peers/conversion_time.py`)", "",
             "`make bench-peers` times whole accuracy jobs (conversion, then every mode simulated to T = 64 on 500 "
             "samples: 2-42 s per peer job), not conversions. This run times only each tool's conversion step, "
             "one torch thread, after one untimed conversion in the same process: SpikingJelly's "
             "`Converter(...).convert` (modes max, 99.9%, 0.5: one ANN pass over the 500 calibration samples for "
             "the statistics), sinabs' BatchNorm folding, `normalize_weights` and `from_model` (multispike: no "
             "data at all; -norm99.9: one ANN pass per layer), SNN Toolbox's parse, `normalize_parameters` and "
             "INI build (the Keras rebuild is not counted). Cells: process CPU seconds (wall seconds), median "
             f"of {res[peers[0]]['rows'][0].get('repeats', 3) if peers and res[peers[0]].get('rows') else 3}; "
             "a peer's cell is its fastest mode (named). snncompile: `convert` at T = 32 on the CLI's 256 "
             f"calibration samples for the default method ({default}), the cheapest calibrated method "
             "(calib-light) and `max` (the peers' max-norm), one run each; and the whole default compile "
             "(`snncompile MODEL --data mnist_test.npz --calib mnist_calib.npz`: searches method x T for the "
             "least energy, scores the candidates on 244 validation samples, deploys the chosen one, simulates "
             "the 1000 test samples and writes the report and plots; one process, OMP_NUM_THREADS=1), with "
             "its `search_s` from report.json's `timing`; its CPU seconds include the process's start (imports of "
             "torch, onnx, matplotlib: about 2 s), which the peers' conversion cells do not. sinabs' multispike "
             "mode reads no data and on mnist_relu6 and mnist_functional converts nothing (ReLU6 and functional "
             "relu stay analog, docs/peers.md): as a best peer it is a lower bound, not a conversion of the same "
             "network. Load average (1 min) at the start of each tool's run: "
             + ", ".join(f"{PEER_NAMES.get(t, t)} {res[t]['load']:.1f}" for t in [*peers, "snncompile"]
                         if "load" in res.get(t, {})) + "."]
    for t, r in res.items():
        if "missing" in r or "error" in r:
            lines.append(f"{t}: not measured ({r.get('missing') or r.get('error')}).")
    lines += ["", "| model | " + " | ".join(PEER_NAMES[t] for t in peers)
              + f" | convert {default} | convert calib-light | convert max | default compile (search) | "
                "CPU ratio to the best peer: default compile, convert max |",
              "|---|" + "---|" * len(peers) + "---:|---:|---:|---|---:|"]
    for m in models:
        cells, peer_best = [], None
        for t in peers:
            b = best(t, m)
            cells.append(f"{cell(b)} {b['mode']}" if b else "failed")
            if b and (peer_best is None or b["cpu_s"] < peer_best["cpu_s"]):
                peer_best = b
        mine = {r["mode"]: r for r in rows if r["model"] == m}
        for k in (f"convert {default}, T=32", "convert calib-light, T=32", "convert max, T=32"):
            cells.append(cell(mine[k]) if k in mine else "-")
        comp = mine.get("whole default compile (CLI)")
        if comp and "error" not in comp:
            tm, ch = comp.get("timing") or {}, comp.get("chosen") or {}
            cells.append(f"{comp['cpu_s']:.1f} ({comp['wall_s']:.1f}; search {tm.get('search_s', 0):.1f} s wall; "
                         f"{ch.get('method')} T={ch.get('timesteps')}; load {comp.get('load', 0):.1f})")
            mx = mine.get("convert max, T=32")
            cells.append(f"{comp['cpu_s'] / peer_best['cpu_s']:.0f}x, {mx['cpu_s'] / peer_best['cpu_s']:.1f}x"
                         if peer_best and mx else "-")
        else:
            cells += [str(comp.get("error")) if comp else "-", "-"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def stability(model: str, calib, T: int, samples: int = 128, resamples: int = 200) -> dict:
    """How settled AdaFire's two searches are at ``samples`` calibration samples: per-sample
    sensitivity tables (the same runs as the conversion: one recorded base run, one forked run per
    layer), then the budgeted picks on bootstrap resamples of n samples, n in (32, 64, samples): the
    share of resamples that reproduce the pick made on all ``samples``. A share near 100 % at small n
    would mean the search could stop early with the same answer."""
    import snncompile.convert.adafire  # noqa: F401  (the module; the package exports the function)
    from snncompile.convert.activations import record_ann
    from snncompile.convert.adafire_search import _kl_per_sample, pareto_select
    from snncompile.convert.calib_set import make_calib_set
    from snncompile.convert.maxpool import rewrite_maxpool
    from snncompile.convert.replay import fork_outputs, record_run
    from snncompile.convert.to_snn import relu_names

    ada = sys.modules["snncompile.convert.adafire"]
    ann = rewrite_maxpool(snncompile.load_onnx(ROOT / "examples" / f"{model}.onnx"))
    cs = make_calib_set(ann, calib, progress=False)
    names = relu_names(ann)
    rec = record_ann(ann, cs, names, keep=samples)
    b = ada._Builder(ann, rec.stats, T)
    x, logits = cs.head(samples), rec.logits[:samples]

    def table(build, settings, base):
        net = build(names[0], base)
        out, spk, trains = record_run(net, x, T)
        base_kl, base_sp = _kl_per_sample(out, logits).numpy(), sum(spk.values()).numpy()
        others = [v for v in settings if v != base]
        kl, sp, own = (np.zeros((len(names), len(settings), len(x))) for _ in range(3))
        for i, layer in enumerate(names):
            outs, fs = fork_outputs(net, layer, [build(layer, v).nodes[layer] for v in others], x, T, trains)
            up = base_sp - sum(spk[n].numpy() for n in fs)
            for j, v in enumerate(settings):
                k = others.index(v) if v != base else None
                kl[i, j] = base_kl if k is None else _kl_per_sample(outs[k], logits).numpy()
                sp[i, j] = base_sp if k is None else up + sum(f[k].numpy() for f in fs.values())
                own[i, j] = spk[layer].numpy() if k is None else fs[layer][k].numpy()
        return kl, sp, own

    cands, ratios = (1, 2, 4, 8), (1.0, 1.25, 1.5, 2.0)
    top = dict.fromkeys(names, 8)
    kb, _, ob = table(lambda layer, n: b.build({**top, layer: n}, {}), cands, 8)

    def burst(idx):  # the default spike budget: the layers' own spikes <= 0.95 x theirs at N = 4
        own = ob[:, :, idx].mean(-1)
        return tuple(pareto_select(own.tolist(), kb[:, :, idx].mean(-1).tolist(),
                                   0.95 * own[:, cands.index(4)].sum()))

    full_b = burst(np.arange(samples))
    bursts = {n: cands[j] for n, j in zip(names, full_b)}
    ks, ss, _ = table(lambda layer, r: b.build(bursts, {layer: r}), ratios, 1.0)

    def ssc(idx):
        k, sp = ks[:, :, idx].mean(-1), ss[:, :, idx].mean(-1)
        return tuple(pareto_select((k - k[0, 0]).tolist(), (sp - sp[0, 0]).tolist(), 0.1 * k[0, 0]))

    full_s = ssc(np.arange(samples))
    rng = np.random.default_rng(0)
    share = {}
    for n in (32, 64, samples):
        share[n] = (float(np.mean([burst(rng.choice(samples, n)) == full_b for _ in range(resamples)])),
                    float(np.mean([ssc(rng.choice(samples, n)) == full_s for _ in range(resamples)])))
    return {"model": model, "T": T, "samples": samples, "bursts": [cands[j] for j in full_b],
            "ratios": [ratios[j] for j in full_s], "share": share,
            "first64": ([cands[j] for j in burst(np.arange(64))], [ratios[j] for j in ssc(np.arange(64))])}


VGG = "scale_vgg"


def vgg_onnx(tmp: Path, n: int) -> tuple[Path, np.ndarray]:
    """benchmarks/scale.py's VGG-style CNN (3x64x64, random init, seed 0) exported to ``tmp``, and ``n``
    uniform [0, 1] calibration inputs (scale.py's calibration data)."""
    import scale

    model = scale.build_model()
    calib = np.random.default_rng(0).uniform(0, 1, size=(n, 3, 64, 64)).astype(np.float32)
    path = tmp / "scale_vgg.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.from_numpy(calib[:1]), path, opset_version=17, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)
    return path, calib


def warm_up(calib, methods) -> None:
    """Untimed small conversions (every method, 16 samples, T = 2) and simulations of a dense and a
    convolutional example, so the first timed model does not carry the process's one-time costs (lazy
    initialisation of torch's kernels, autograd, the optimizers)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model in ("mnist_mlp", "mnist_cnn"):
            ann = snncompile.load_onnx(ROOT / "examples" / f"{model}.onnx")
            for method in methods:
                snn = convert(ann, calib[:16], method, 2, progress=False)
                simulate(snn, calib[:16], 2, batch_size=16)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-T", type=int, default=32)
    p.add_argument("--models", nargs="*", default=MODELS)
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--profile-model", default="mnist_resnet")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--no-stability", action="store_true", help="skip the bootstrap check of AdaFire's picks")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"), help="file whose section is rewritten")
    p.add_argument("--json", help="write the raw rows here")
    p.add_argument("--baseline", help="rows (--json) of an earlier run, shown as 'before'")
    p.add_argument("--baseline-label", default="an earlier run")
    p.add_argument("--vgg", action="store_true", help="also the scale benchmark's VGG (benchmarks/scale.py's model)")
    p.add_argument("--vgg-T", type=int, default=8)
    p.add_argument("--vgg-samples", type=int, default=64)
    p.add_argument("--peers", help="JSON of benchmarks/peers/conversion_time.py: adds the peer comparison")
    p.add_argument("--add-rows", nargs="*", default=[],
                   help="rows (--json) of other runs to include in the written section (this run's rows win)")
    args = p.parse_args()
    torch.set_num_threads(1)
    calib = np.load(ROOT / "examples" / "data" / "mnist_calib.npz")["x"][:256]
    counter = None if args.no_profile else Counter()
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    warm_up(calib, args.methods)
    rows = []
    for model in args.models:
        rows += bench(model, args.methods, calib, args.T, args.repeats,
                      counter if model == args.profile_model else None)
    if args.vgg:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path, vcalib = vgg_onnx(Path(tmp), args.vgg_samples)
            rows += bench(VGG, args.methods, vcalib, args.vgg_T, args.repeats, None, path=path)
    stab = None
    if not args.no_stability and "adafire" in args.methods and args.profile_model in args.models:
        stab = stability(args.profile_model, calib, args.T)
        print("stability", stab, flush=True)
    minutes = (time.perf_counter() - t0) / 60
    args.loads = (load0, os.getloadavg())
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    mine = {(r["model"], r["method"]) for r in rows}
    for f in args.add_rows:
        rows += [r for r in json.loads(Path(f).read_text()) if (r["model"], r["method"]) not in mine]
    baseline = {}
    if args.baseline:
        baseline = {f"{r['model']}/{r['method']}": r for r in json.loads(Path(args.baseline).read_text())}
        baseline["_label"] = args.baseline_label
    if not args.no_write:
        write_section("compile-time", markdown(rows, args, baseline, minutes, stab), doc=Path(args.doc))
    print(f"default method {DEFAULT_METHOD}; {minutes:.1f} min")


if __name__ == "__main__":
    main()
