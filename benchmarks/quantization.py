"""Float SNN vs quantized (Loihi 2 integers) accuracy at T=32, and fixed-point simulator speed.

For every example model: convert with the default method on the bundled calibration set, run the
float fast simulator and the fixed-point population simulator on the bundled test set, and write
the table into docs/benchmarks.md (section "quantization").
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from benchdoc import bundled_args, machine, write_section  # noqa: E402  (benchmarks/ is still on sys.path here)

# this file is benchmarks/lava.py: keep its directory off sys.path so `import lava` finds Lava
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

import snncompile
from snncompile.convert import DEFAULT_METHOD, convert
from snncompile.lower import lower_populations
from snncompile.quantize import quantize
from snncompile.sim.popsim import simulate_populations


def _best_of(k: int, run):
    """(result, fastest wall time of k runs): the first run also pays one-time costs (caches, allocator)."""
    best, out = float("inf"), None
    for _ in range(k):
        t0 = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - t0)
    return out, best


def bench(model: str, x, y, calib, T: int, method: str) -> dict:
    ann = snncompile.load_onnx(ROOT / "examples" / f"{model}.onnx")
    snn = convert(ann, calib, method=method, timesteps=T, progress=False)
    f, tf = _best_of(2, lambda: snncompile.simulate(snn, x, T))
    with warnings.catch_warnings(record=True) as warns:
        warnings.simplefilter("always")
        q = quantize(lower_populations(snn), calib)
    i, ti = _best_of(2, lambda: simulate_populations(q, x, T))
    acc_f = float(f.accuracy_vs_t(y)[-1])
    acc_i = float(i.accuracy_vs_t(y)[-1])
    ann_acc = float((ann.run(x).argmax(-1).numpy() == y).mean())
    return {"model": model, "ann": ann_acc, "float": acc_f, "int": acc_i, "delta": 100 * (acc_i - acc_f),
            "float_s": tf, "int_s": ti, "ratio": ti / tf, "saturations": sum(i.saturations.values()),
            "warnings": len(warns), "float32": bool(q.meta["float32_exact"])}


def main() -> None:
    args, x, y, calib = bundled_args(__doc__, samples=1000, timesteps=32, default_method=DEFAULT_METHOD)
    rows = []
    for m in args.models:
        r = bench(m, x, y, calib, args.T, args.method)
        print(f"{m}: float {100 * r['float']:.2f} %, quantized {100 * r['int']:.2f} % ({r['delta']:+.2f} pt), "
              f"fixed-point sim {r['ratio']:.2f}x the float simulator's time", flush=True)
        rows.append(r)
    lines = [f"## Float vs quantized (Loihi 2 profile), T = {args.T}", "",
             (f"`python benchmarks/quantization.py` ({machine()}); method `{args.method}`, {len(x)} test samples, "
             "256 calibration samples. Target: quantized within 0.3 points of float; fixed-point simulator "
             "within 1.5x of the float simulator's time."), "",
             ("| model | ANN | SNN float | SNN quantized | delta (pt) | float sim (s) | fixed-point sim (s) | ratio | "
             "membrane saturations | quantization warnings |"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {100 * r['ann']:.2f} | {100 * r['float']:.2f} | {100 * r['int']:.2f} | "
                     f"{r['delta']:+.2f} | {r['float_s']:.2f} | {r['int_s']:.2f} | {r['ratio']:.2f} | "
                     f"{r['saturations']} | {r['warnings']} |")
    write_section("quantization", "\n".join(lines))


if __name__ == "__main__":
    main()
