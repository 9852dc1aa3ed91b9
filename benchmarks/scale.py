"""Scale: compile and simulate a generated VGG-style CNN (3x64x64 input, several million parameters).

The model (8 conv + BatchNorm + ReLU layers, 4 average pools, two linear layers; random init, seed 0)
is exported to ONNX in a temp dir. For each T in TIMESTEPS a fresh subprocess (so peak RSS is per
configuration) times the compile stages ``load_onnx``, ``convert`` (method "deng", 64 uniform [0, 1]
calibration inputs), ``lower_populations`` and ``quantize``, records its peak RSS
(``ru_maxrss``) after compiling, then times the float simulator ``snncompile.simulate`` (``wall_s``)
and the fixed-point simulator ``simulate_populations`` (``seconds``) at batch sizes BATCHES on
N = 2*B samples, with 2 torch threads. Reports microseconds per sample·step: a constant column
down T means cost linear in T. Configurations predicted to overrun the time budget are skipped
(largest first) and listed. Writes docs/benchmarks.md section "scale".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

TIMESTEPS = (4, 8, 16)
BATCHES = (8, 32)
CALIB_N = 64
BUDGET_S = float(os.environ.get("SCALE_BUDGET_S", "540"))  # whole run, compile + simulation


def build_model() -> nn.Module:
    torch.manual_seed(0)

    def conv(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    layers = (conv(3, 32) + conv(32, 32) + [nn.AvgPool2d(2)]
              + conv(32, 64) + conv(64, 64) + [nn.AvgPool2d(2)]
              + conv(64, 128) + conv(128, 128) + [nn.AvgPool2d(2)]
              + conv(128, 256) + [nn.AvgPool2d(2)]
              + [nn.Flatten(), nn.Linear(256 * 4 * 4, 512), nn.ReLU(), nn.Linear(512, 10)])
    model = nn.Sequential(*layers)
    # non-trivial BatchNorm statistics so the folded affine maps are not identities
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def child(args) -> dict:
    """One T: compile (timed per stage, peak RSS), then both simulators per batch size."""
    torch.set_num_threads(2)
    import snncompile
    from snncompile.convert import convert
    from snncompile.lower import lower_populations
    from snncompile.quantize import quantize
    from snncompile.sim.popsim import simulate_populations

    d = Path(args.dir)
    T = args.T
    calib = np.load(d / "calib.npy")
    xs = np.load(d / "inputs.npy")
    out = {"T": T, "compile": {}, "sim": [], "skipped": []}
    t0 = time.perf_counter()
    ann = snncompile.load_onnx(d / "model.onnx")
    out["compile"]["load_onnx"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    snn = convert(ann, calib, method="deng", timesteps=T, progress=False)
    out["compile"]["convert"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pop = lower_populations(snn)
    out["compile"]["lower_populations"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    q = quantize(pop, calib)
    out["compile"]["quantize"] = time.perf_counter() - t0
    out["rss_compile_mb"] = peak_rss_mb()

    # warm-up (first-call costs: allocator, kernels), not measured
    snncompile.simulate(snn, xs[:2], 1, batch_size=2)
    simulate_populations(q, xs[:2], 1, batch_size=2)

    deadline = time.perf_counter() + args.budget
    per_step = {}  # simulator -> last measured seconds per sample·step, to predict the next config
    for B in BATCHES:
        n = 2 * B
        x = xs[:n]
        for sim in ("float", "fixed"):
            left = deadline - time.perf_counter()
            if sim in per_step and per_step[sim] * n * T > left:
                out["skipped"].append({"T": T, "B": B, "sim": sim,
                                       "predicted_s": per_step[sim] * n * T, "left_s": max(left, 0.0)})
                continue
            if sim == "float":
                secs = float(snncompile.simulate(snn, x, T, batch_size=B).wall_s)
            else:
                secs = float(simulate_populations(q, x, T, batch_size=B).seconds)
            per_step[sim] = secs / (n * T)
            out["sim"].append({"T": T, "B": B, "N": n, "sim": sim, "seconds": secs,
                               "us_per_sample_step": 1e6 * secs / (n * T)})
    out["rss_total_mb"] = peak_rss_mb()
    return out


def fmt(v: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}" if v < 100 else f"{v:.0f}"


def main() -> None:
    start, load0 = time.perf_counter(), os.getloadavg()[0]
    torch.set_num_threads(2)
    from benchdoc import machine, write_section

    model = build_model()
    params = sum(p.numel() for p in model.parameters())
    print(f"VGG-style CNN, 3x64x64 input: {params:,} parameters", flush=True)
    rng = np.random.default_rng(0)
    calib = rng.uniform(0, 1, size=(CALIB_N, 3, 64, 64)).astype(np.float32)
    inputs = rng.uniform(0, 1, size=(2 * max(BATCHES), 3, 64, 64)).astype(np.float32)
    results, errors = [], []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        x = torch.from_numpy(calib[:1])
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # legacy exporter (dynamo=False)
        torch.onnx.export(model, x, d / "model.onnx", opset_version=17, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)
        np.save(d / "calib.npy", calib)
        np.save(d / "inputs.npy", inputs)
        onnx_mb = (d / "model.onnx").stat().st_size / 2**20
        compile_s = 0.0  # compile time of the first child, charged to every later one
        for i, T in enumerate(TIMESTEPS):
            left = BUDGET_S - (time.perf_counter() - start)
            # share what is left after the remaining compiles, weighting each T by its step count
            share = max(left - compile_s * (len(TIMESTEPS) - i), 0.0) * T / sum(TIMESTEPS[i:])
            print(f"T={T}: child with simulation budget {share:.0f} s", flush=True)
            proc = subprocess.run([sys.executable, __file__, "--child", "--dir", str(d), "--T", str(T),
                                   "--budget", str(max(share, 0.0))], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                errors.append(f"T={T}: child failed (rc {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
                print(errors[-1], proc.stderr[-3000:], file=sys.stderr, flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            c = r["compile"]
            compile_s = compile_s or sum(c.values()) + 5.0  # + process start and warm-up
            print("  compile: " + ", ".join(f"{k} {v:.2f} s" for k, v in c.items())
                  + f"; peak RSS {r['rss_compile_mb']:.0f} MB (after sims {r['rss_total_mb']:.0f} MB)", flush=True)
            for s in r["sim"]:
                print(f"  {s['sim']:5s} B={s['B']:2d} N={s['N']:2d}: {s['seconds']:.2f} s, "
                      f"{s['us_per_sample_step']:.0f} us/sample·step", flush=True)
            for s in r["skipped"]:
                print(f"  SKIPPED {s['sim']} B={s['B']}: predicted {s['predicted_s']:.0f} s > {s['left_s']:.0f} s left",
                      flush=True)
    total = time.perf_counter() - start

    md = [
        "## Scale: a generated VGG-style CNN",
        "",
        (f"`benchmarks/scale.py` (`make bench-scale`). Model: VGG-style CNN on 3x64x64 input "
        f"(conv 3→32→32, avgpool, 32→64→64, avgpool, 64→128→128, avgpool, 128→256, avgpool, "
        f"Linear 4096→512→10; each conv + BatchNorm + ReLU), random init (seed 0), "
        f"**{params:,} parameters** ({onnx_mb:.1f} MB ONNX, opset 17). Calibration: {CALIB_N} uniform [0, 1] "
        f"inputs; conversion method `deng`. Each T runs in a fresh subprocess: compile stage wall times, "
        f"peak RSS (`ru_maxrss`) after compiling, then the float simulator (`snncompile.simulate`, `wall_s`) "
        f"and the fixed-point simulator (`simulate_populations` on the quantized population graph, `seconds`) "
        f"at batch size B on N = 2B samples, 2 torch threads, after a 1-step warm-up. "
        f"Cost per sample·step = seconds / (N·T): a constant column down T means linear in T; "
        f"a smaller value at the larger B means per-batch overhead is being amortized. "
         "`lower_populations` is the largest compile stage. The 2 cores are shared with other work: a single cell several times "
         "off its neighbours is contention, not the simulator (one run each, no repeats)."),
        "",
        (f"Machine: {machine()} (2 shared cores, 1-min load average {load0:.1f} at the start and "
         f"{os.getloadavg()[0]:.1f} at the end; timings are noisy). Total benchmark runtime: {total:.0f} s."),
        "",
        "### Compile stages (seconds) and peak RSS",
        "",
        "| T | load_onnx | convert | lower_populations | quantize | total | peak RSS after compile (MB) | peak RSS after sims (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c = r["compile"]
        md.append(f"| {r['T']} | {c['load_onnx']:.2f} | {c['convert']:.2f} | {c['lower_populations']:.2f} | "
                  f"{c['quantize']:.2f} | {sum(c.values()):.2f} | {r['rss_compile_mb']:.0f} | {r['rss_total_mb']:.0f} |")
    sims = [s for r in results for s in r["sim"]]
    for sim, title in (("float", "Float simulator (`snncompile.simulate`)"),
                       ("fixed", "Fixed-point simulator (`simulate_populations`)")):
        md += ["", f"### {title}: µs per sample·step", "",
               "| T | " + " | ".join(f"B={b} (N={2 * b})" for b in BATCHES) + " | "
               + " | ".join(f"seconds B={b}" for b in BATCHES) + " |",
               "|---|" + "---|" * (2 * len(BATCHES))]
        for T in TIMESTEPS:
            row = {s["B"]: s for s in sims if s["sim"] == sim and s["T"] == T}
            cells = [fmt(row[b]["us_per_sample_step"], 0) if b in row else "skipped" for b in BATCHES]
            cells += [fmt(row[b]["seconds"]) if b in row else "—" for b in BATCHES]
            md.append(f"| {T} | " + " | ".join(cells) + " |")
        # linearity summary: ratio of per-sample·step cost at largest vs smallest T, and B=32 vs B=8
        for b in BATCHES:
            ts = [s for s in sims if s["sim"] == sim and s["B"] == b]
            if len(ts) >= 2:
                lo = min(ts, key=lambda s: s["T"])
                hi = max(ts, key=lambda s: s["T"])
                md.append("")
                md.append(f"B={b}: µs per sample·step at T={hi['T']} / at T={lo['T']} = "
                          f"{hi['us_per_sample_step'] / lo['us_per_sample_step']:.2f} (1.0 = linear in T).")
    skipped = [s for r in results for s in r["skipped"]]
    if skipped or errors:
        md += ["", "Skipped to stay within the time budget "
               f"({BUDGET_S:.0f} s): " + "; ".join(
                   f"{s['sim']} T={s['T']} B={s['B']} (predicted {s['predicted_s']:.0f} s, {s['left_s']:.0f} s left)"
                   for s in skipped) + ("" if not errors else ". Errors: " + "; ".join(errors)) + "."]
    markdown = "\n".join(md)
    write_section("scale", markdown)
    print(markdown)
    print(f"total runtime {total:.0f} s", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dir")
    ap.add_argument("--T", type=int)
    ap.add_argument("--budget", type=float, default=1e9)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a)), flush=True)
    else:
        main()
