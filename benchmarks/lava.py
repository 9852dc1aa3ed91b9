"""Lava CPU simulator vs the fixed-point simulator: spike-exactness, cost per step, speed ratio.

For every example model: convert (default method), quantize, run 100 test samples through
``lava-sim`` and through the fixed-point simulator, and report the fraction of samples whose
per-layer spike counts are equal (target 100 %), Lava's cost per sample-step against its floor
(an "empty" run of the same process graph with one neuron per population and 1x1 weights), and
how many times faster the fast simulator is. Writes docs/benchmarks.md section "lava".
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
from benchdoc import bundled_args, machine, write_section  # noqa: E402  (benchmarks/ is still on sys.path here)

# this file is benchmarks/lava.py: keep its directory off sys.path so `import lava` finds Lava
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

from snncompile.backends.lava.backend import spike_exact_fraction
from snncompile.backends.lava.runner import run_lava

import snncompile
from snncompile.convert import DEFAULT_METHOD, convert
from snncompile.evaluate import from_population_sim
from snncompile.ir import Graph, Input
from snncompile.ir.populations import ConvConn, DenseConn, IFPop, Readout
from snncompile.lower import lower_populations
from snncompile.quantize import quantize
from snncompile.sim.popsim import simulate_populations


def skeleton(g: Graph) -> Graph:
    """The same process graph with one neuron per population and 1x1 weights (Lava's per-step floor)."""
    one = np.ones(1)
    nodes = []
    for n in g.nodes.values():
        if isinstance(n, Input):
            n = dataclasses.replace(n, shape=(1,))
        elif isinstance(n, (DenseConn, ConvConn)):
            n = DenseConn(n.name, n.inputs, weight=np.zeros((1, 1)), out_shape=(1,), fixed=True)
        elif isinstance(n, IFPop):
            n = dataclasses.replace(n, theta=one, bias=0 * one, v0=0 * one, shift=6)
        elif isinstance(n, Readout):
            n = dataclasses.replace(n, bias=0 * one)
        nodes.append(n)
    s = Graph(nodes, g.name + "-skeleton")
    return s


def bench(model: str, x, y, calib, T: int, method: str) -> dict:
    ann = snncompile.load_onnx(ROOT / "examples" / f"{model}.onnx")
    snn = convert(ann, calib, method=method, timesteps=T, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize(lower_populations(snn), calib)
    t0 = time.perf_counter()
    ref = simulate_populations(q, x, T)
    t_sim = time.perf_counter() - t0
    lava = run_lava(q, x, T, progress=True)
    floor = run_lava(skeleton(q), np.zeros((x.shape[0], 1)), T)
    a, b = from_population_sim(q, ref, y, "sim-int"), from_population_sim(q, lava, y, "lava-sim")
    steps = x.shape[0] * T
    procs = sum(1 for n in q.nodes.values() if not isinstance(n, Input)) - 1  # minus the Output node
    return {"model": model, "exact": spike_exact_fraction(a, b), "acc_sim": a.accuracy, "acc_lava": b.accuracy,
            "lava_s": lava.seconds, "floor_s": floor.seconds, "per_step_ms": 1e3 * lava.seconds / steps,
            "floor_ms": 1e3 * floor.seconds / steps, "ratio": lava.seconds / floor.seconds, "sim_s": t_sim,
            "speedup": lava.seconds / t_sim, "processes": procs}


def main() -> None:
    args, x, y, calib = bundled_args(__doc__, samples=100, timesteps=16, default_method=DEFAULT_METHOD)
    rows = []
    for m in args.models:
        r = bench(m, x, y, calib, args.T, args.method)
        print(f"{m}: spike-exact {100 * r['exact']:.0f} %, lava {r['per_step_ms']:.2f} ms/sample-step "
              f"(floor {r['floor_ms']:.2f}, {r['ratio']:.2f}x), fast simulator {r['speedup']:.0f}x faster", flush=True)
        rows.append(r)
    lines = [f"## Lava CPU simulator (lava-sim), T = {args.T}, {len(x)} samples", "",
             (f"`python benchmarks/lava.py` ({machine()}); method `{args.method}`. Spike-exact = fraction of samples "
             "whose per-layer spike counts on Lava equal the fixed-point simulator's (target 100 %). Floor = the "
             "same process graph with one neuron per population (Lava's fixed cost per step); target: Lava "
             "within 2x of its floor."), "",
             ("| model | processes | spike-exact | accuracy sim-int | accuracy lava-sim | lava ms/sample-step | "
             "floor ms/step | lava / floor | fixed-point sim (s) | lava (s) | fast sim speed-up |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['processes']} | {100 * r['exact']:.0f} % | {100 * r['acc_sim']:.1f} | "
                     f"{100 * r['acc_lava']:.1f} | {r['per_step_ms']:.2f} | {r['floor_ms']:.2f} | {r['ratio']:.2f} | "
                     f"{r['sim_s']:.2f} | {r['lava_s']:.1f} | {r['speedup']:.0f}x |")
    write_section("lava", "\n".join(lines))


if __name__ == "__main__":
    main()
