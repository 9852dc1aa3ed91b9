"""--early-exit measured: accuracy, mean steps, spikes and energy of each rule against the full T.

``python benchmarks/early_exit.py [--model examples/mnist_cnn.onnx] [--samples 1000]`` compiles the
model for the fixed-point simulator (sim-int) once per (method, T), runs the evaluation samples once
with a per-step trace, and reads every rule from that run exactly as ``snncompile --early-exit RULE``
does (thresholds calibrated on the first 256 calibration samples against the ANN; counts to each
sample's exit step; energy by the report's code). Prints a markdown table (docs/targets.md, "Early exit").
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from snncompile.data import load_npz
from snncompile.evaluate import ann_correct, ann_macs, from_population_sim, input_macs
from snncompile.pipeline import RunConfig, compile_model
from snncompile.report import build_report
from snncompile.sim.early_exit import calibrate_policy
from snncompile.sim.popsim import simulate_populations

ROOT = Path(__file__).resolve().parents[1]
RULES = [None, ("iat", 0.002), ("precision", 0.002), ("both", 0.002), ("precision", 0.01), ("both", 0.01)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "examples" / "mnist_cnn.onnx")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--configs", default="calib-light+pc:4,calib-light+pc:8,adafire:8")
    args = ap.parse_args()
    data, calib_path = ROOT / "examples" / "data" / "mnist_test.npz", ROOT / "examples" / "data" / "mnist_calib.npz"
    calib = load_npz(calib_path, limit=256)
    print(f"{args.model.name}, sim-int, {args.samples} test samples, thresholds on 256 calibration samples\n")
    print("| method | T | rule | max error | accuracy | mean steps | spikes/sample | energy J/sample | "
          "ANN/SNN | energy vs full T |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for item in args.configs.split(","):
        method, T = item.split(":")
        T = int(T)
        cfg = RunConfig(model=args.model, data=data, target="sim-int", calib=calib_path, method=method, timesteps=T,
                        samples=args.samples, progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = compile_model(cfg)
        y, x = c.evals.y, c.evals.x
        t0 = time.perf_counter()
        res = simulate_populations(c.pop_int, x, T, trace=True)
        sim_s = time.perf_counter() - t0
        ok = ann_correct(c.ann, x, y)
        full_e = None
        for rule in RULES:
            meta = {k: v for k, v in c.pop_int.meta.items() if k != "early_exit"}
            if rule is not None:
                meta["early_exit"] = calibrate_policy(c.snn, c.ann, calib.x, T, rule[0], max_error=rule[1]).as_dict()
            c.pop_int.meta = meta
            ev = from_population_sim(c.pop_int, res, y, "sim-int")
            r = build_report(model=str(args.model), target="sim-int", method=c.method, seed=0, ann_correct=ok,
                             main=ev, float_ev=None, int_ev=ev, ann_macs=ann_macs(c.ann), input_macs=input_macs(c.ann),
                             energy_constants=c.energy, conversion=[], timing={"convert_s": 0.0, "simulate_s": sim_s})
            e = r["energy"]["snn_joules_per_sample"]
            full_e = e if rule is None else full_e
            steps = T if rule is None else r["early_exit"]["mean_steps"]
            print(f"| {c.method} | {T} | {'none (full T)' if rule is None else rule[0]} | "
                  f"{'-' if rule is None else rule[1]} | {100 * r['accuracy']['snn']:.1f} | {steps:.2f} | "
                  f"{r['spikes_per_sample']:.0f} | {e:.3e} | {r['energy']['ratio']:.2f}x | {e / full_e:.2f} |",
                  flush=True)
    print(f"\nANN accuracy on these samples: {100 * ok / len(y):.1f} %")


if __name__ == "__main__":
    main()
