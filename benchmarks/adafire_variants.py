"""AdaFire variants on the example models: test accuracy, spikes and energy at several T.

``python benchmarks/adafire_variants.py OUT.jsonl [model ...] [--T 4,8,32] [--variants a,b]``:
converts each example model (256 calibration samples of examples/data/mnist_calib.npz) with
``adafire`` under each variant's options, simulates the first 1000 samples of
examples/data/mnist_test.npz with the float simulator and appends one JSON line per
(model, T, variant): top-1 accuracy, ANN accuracy, spikes and synops per sample, ANN/SNN energy
(horowitz45nm, input layer's MACs counted as the search does), burst sizes, convert seconds.
Numbers for docs/methods.md's AdaFire section.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import snncompile
from snncompile.convert import convert
from snncompile.energy import estimate, load_constants
from snncompile.evaluate import ann_macs, input_macs
from snncompile.ir import IF
from snncompile.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "mean-N": {"budget": 2.0},  # the former default: mean_l N_l <= 2
    "mean-N+ch": {"budget": 2.0, "per_channel": True},
    "spikes": {},  # the paper's network spike budget (default)
    "spikes+ch": {"per_channel": True},
    "spikes-s64": {"search_samples": 64},  # the burst and SSC searches on 64 of the 128 samples
    "spikes-s32": {"search_samples": 32},
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("models", nargs="*", default=["mnist_cnn", "mnist_resnet"])
    p.add_argument("--T", default="4,8,32")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--samples", type=int, default=1000)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    calib = np.load(ROOT / "examples/data/mnist_calib.npz")["x"][:256]
    test = np.load(ROOT / "examples/data/mnist_test.npz")
    x, y = test["x"][: a.samples], test["y"][: a.samples]
    energy = load_constants("horowitz45nm")
    for model in a.models:
        ann = snncompile.load_onnx(ROOT / "examples" / f"{model}.onnx")
        ann_acc = float((ann.run(x).reshape(len(x), -1).argmax(-1).numpy() == y).mean())
        macs, imacs = float(ann_macs(ann)), float(input_macs(ann))
        for T in (int(t) for t in a.T.split(",")):
            for v in a.variants.split(","):
                opts = VARIANTS[v]
                torch.manual_seed(0)
                np.random.seed(0)
                t0 = time.perf_counter()
                snn = convert(ann, calib, "adafire", T, progress=False, **opts)
                secs = time.perf_counter() - t0
                res = simulate(snn, x, T, batch_size=256)
                acc = float(res.accuracy_vs_t(y)[-1])
                spikes, synops = res.total_spikes_per_sample(), res.total_synops_per_sample()
                e = estimate(energy, ann_macs=macs, synops=synops, spikes=spikes,
                             neuron_updates=sum(res.neurons.values()) * T, input_macs=imacs)
                row = {"model": model, "T": T, "variant": v, "options": {k: val for k, val in opts.items()},
                       "accuracy": acc, "ann_accuracy": ann_acc, "spikes": spikes, "synops": synops,
                       "ann_over_snn_energy": e["ann_joules_per_sample"] / e["snn_joules_per_sample"],
                       "bursts": [n.max_spikes for n in snn.of_type(IF)],
                       "ssc": list(snn.meta.get("ssc", {}).values()), "convert_s": round(secs, 2),
                       "timing": snn.meta.get("timing", {})}
                print(json.dumps({k: row[k] for k in ("model", "T", "variant", "accuracy", "ann_over_snn_energy",
                                                      "bursts", "convert_s")}), file=sys.stderr, flush=True)
                with a.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
