"""Results in the shape of the seed papers' tables: top-1 accuracy (%) per method and T, mean and
standard deviation over calibration seeds (``python benchmarks/paper_tables.py``; writes the
"Paper-style tables" section of docs/benchmarks.md).

Each seed draws a different random subset of ``--calib`` samples from the 500 bundled calibration
samples (Li et al. report mean and std over 5 seeds the same way); every method converts on that
subset for each T and is simulated on the first ``--samples`` bundled test samples (float
simulator, analog input). SRP's T counts the steps after its tau pre-steps (latency tau + T);
AdaFire's T is its full run (IAT early exit not applied here).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from snncompile import load_onnx
from benchdoc import machine, write_section
from snncompile.convert import METHODS, convert
from snncompile.sim import simulate

ROOT = Path(__file__).resolve().parents[1] / "examples"


def table(model: str, methods, Ts, seeds: int, n_calib: int, xt, yt, xc) -> tuple[list[str], float]:
    ann = load_onnx(ROOT / f"{model}.onnx")
    ann_acc = 100 * float((ann.run(xt).argmax(-1).numpy() == yt).mean())
    acc = np.full((len(methods), len(Ts), seeds), np.nan)
    t0 = time.perf_counter()
    for s in range(seeds):
        xs = xc[np.random.default_rng(s).choice(len(xc), n_calib, replace=False)]
        for i, m in enumerate(methods):
            for j, T in enumerate(Ts):
                snn = convert(ann, xs, m, T, progress=False)
                acc[i, j, s] = 100 * simulate(snn, xt, T).accuracy_vs_t(yt)[-1]
        print(f"{model}: seed {s} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    rows = [f"**{model}** (ANN {ann_acc:.2f} %)", "", "| method | " + " | ".join(f"T={T}" for T in Ts) + " |",
            "|---|" + "---|" * len(Ts)]
    for i, m in enumerate(methods):
        cells = [f"{acc[i, j].mean():.2f} ± {acc[i, j].std():.2f}" for j in range(len(Ts))]
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    return rows, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["mnist_qcfs", "mnist_cnn"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("-T", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--calib", type=int, default=256, help="calibration samples per seed")
    p.add_argument("--samples", type=int, default=1000)
    args = p.parse_args()
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    d, c = np.load(ROOT / "data" / "mnist_test.npz"), np.load(ROOT / "data" / "mnist_calib.npz")
    xt, yt = d["x"][: args.samples], d["y"][: args.samples]
    md = ["## Paper-style tables", "",
          f"`python benchmarks/paper_tables.py` ({machine()}). Top-1 accuracy (%) on {len(xt)} bundled MNIST "
          f"test samples, mean ± std over {args.seeds} calibration seeds ({args.calib} random samples of the 500 "
          "bundled calibration samples each), as in Li et al.'s tables. Every method is converted for the T of "
          "its column. srp: tau = 4 pre-steps before the T counted steps (latency T + 4); adafire: all T steps "
          "(no early exit). Method definitions: docs/methods.md.", ""]
    for model in args.models:
        rows, secs = table(model, args.methods, args.T, args.seeds, args.calib, xt, yt, c["x"])
        md += [*rows, "", f"({secs:.0f} s)", ""]
    write_section("paper-tables", "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
