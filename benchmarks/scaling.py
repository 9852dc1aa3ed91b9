"""Distributed evaluation: throughput without Ray and on 1 and 2 local Ray workers, a wall-time estimate, memory.

For ``sim-int`` and ``lava-sim`` on mnist_mlp: compile once, then time ``evaluate`` in this process
with one torch thread (as a Ray task has) at n/4 and n samples (a straight line a + b*n: fixed cost per evaluation a, cost per sample b),
and ``evaluate_on_ray`` with one shard per worker on a local Ray instance of 1 and 2 CPUs (twice:
the first call also starts the workers; Lava tasks always get a fresh worker, ``max_calls=1``).
From a, b and the Ray cost per task r (1-worker wall time minus a + b*n) it estimates the wall
time of 10k and 100k samples on W workers: ceil(S/W) rounds of (a + r + b*n/S) with S =
``default_shards(n, W)``. Memory: RSS after compiling and peak RSS while evaluating (``sim-int``,
T = 8; a fresh process each) 1k and 10k samples memory-mapped from disk (the bundled test set
repeated), in one piece and in shards of 1000 (``evaluate_here``).
Writes docs/benchmarks.md section "scaling".
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
from benchdoc import machine, write_section  # noqa: E402  (benchmarks/ is still on sys.path here)

# this file's directory holds lava.py: keep it off sys.path (Ray copies sys.path to its workers)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

from snncompile.distributed import LOCAL, default_shards, evaluate_here, evaluate_on_ray, ray_session
from snncompile.pipeline import RunConfig, compile_model, evaluate

MODEL = ROOT / "examples" / "mnist_mlp.onnx"
DATA = ROOT / "examples" / "data" / "mnist_test.npz"
CALIB = ROOT / "examples" / "data" / "mnist_calib.npz"
SAMPLES = {"sim-int": 400, "lava-sim": 40}
T = 16
WORKERS = (1, 2)


def _cfg(target: str, samples: int) -> RunConfig:
    return RunConfig(model=MODEL, data=DATA, target=target, calib=CALIB, method="deng", timesteps=T,
                     calib_samples=64, samples=samples, progress=False)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure_local(c, cfg: RunConfig) -> dict:
    """Seconds of ``evaluate`` in this process (best of 3, after a warm-up) at n/4 and n samples, as a + b*n."""
    n = len(c.evals)
    evaluate(c, cfg, c.evals.take(0, 8))  # first-call imports and caches
    quarter = min(_timed(partial(evaluate, c, cfg, c.evals.take(0, n // 4))) for _ in range(3))
    full = min(_timed(partial(evaluate, c, cfg, c.evals)) for _ in range(3))
    b = max(0.0, (full - quarter) / (n - n // 4))
    return {"n": n, "local": full, "a": max(0.0, full - b * n), "b": b}


def measure() -> dict[str, dict]:
    """Everything in this process first (Lava forks it), then Ray: per worker count, two calls per target."""
    cfgs = {t: _cfg(t, n) for t, n in SAMPLES.items()}
    compiled = {t: compile_model(cfg) for t, cfg in cfgs.items()}
    results = {t: measure_local(compiled[t], cfg) for t, cfg in cfgs.items()}
    for w in WORKERS:
        with ray_session(LOCAL, w):
            for t, cfg in cfgs.items():
                run = partial(evaluate_on_ray, compiled[t], cfg, shards=w)
                results[t][w] = [_timed(run) for _ in range(2)]
    return results


def estimate(m: dict, n: int, w: int) -> float:
    s = default_shards(n, w)
    r = max(0.0, m[1][1] - m["local"])  # Ray's cost per task: warm 1-worker run minus the same work in-process
    return math.ceil(s / w) * (m["a"] + r + m["b"] * n / s)


def _status_mb(key: str) -> float:
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith(key))) / 1024


def memory_child(data: str, n: str, shards: str) -> None:
    """(In a fresh process) compile, reset the peak RSS, evaluate, print RSS before and peak during evaluation."""
    cfg = replace(_cfg("sim-int", int(n)), data=Path(data), timesteps=8)
    c = compile_model(cfg)
    Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS
    before = _status_mb("VmRSS:")
    evaluate(c, cfg, c.evals) if shards == "1" else evaluate_here(c, cfg, shards=int(shards))
    print(before, _status_mb("VmHWM:"))


def peak_rss_mb(data: Path, n: int, shards: int) -> tuple[float, float]:
    p = subprocess.run([sys.executable, __file__, "--memory-child", str(data), str(n), str(shards)], check=True,
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    before, peak = map(float, p.stdout.split()[-2:])
    return before, peak


def memory() -> list[tuple[int, int, float, float]]:
    """(samples, shards, RSS before evaluation, peak RSS during it) for 1k and 10k memory-mapped samples."""
    src = np.load(DATA)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1000, 10_000):
            d = Path(tmp) / f"n{n}"
            d.mkdir()
            x = np.lib.format.open_memmap(d / "x.npy", mode="w+", dtype=np.float32, shape=(n, *src["x"].shape[1:]))
            for i in range(0, n, len(src["x"])):
                x[i:i + len(src["x"])] = src["x"][: n - i]
            x.flush()
            del x
            np.save(d / "y.npy", np.resize(src["y"], n))
            rows += [(n, k, *peak_rss_mb(d, n, k)) for k in sorted({1, n // 1000})]
    return rows


def table(results: dict[str, dict], mem: list, load: float) -> str:
    intro = (f"`python benchmarks/scaling.py` ({machine()}; load average {load:.1f} at the start, on "
             f"{os.cpu_count()} CPUs shared with other jobs: 2 workers cannot show a 2x speed-up here). Wall "
             "seconds of the evaluation alone (compiled once before). No Ray: this process with 1 torch thread, as "
             "a Ray task has (`num_cpus=1`), best of 3. Ray: a local instance, one shard per worker; the 1st call "
             "also starts the workers, the 2nd finds them warm (a Lava shard always starts a fresh worker, "
             "`max_calls=1`). a, b: straight-line fit of the no-Ray time at n/4 and n samples.")
    lines = [f"## Distributed evaluation (`--ray`), mnist_mlp, T = {T}", "", intro, "",
             ("| target | samples | no Ray (s) | samples/s | Ray 1 worker: 1st / 2nd (s) | samples/s (2nd) "
             "| Ray 2 workers: 1st / 2nd (s) | samples/s (2nd) | b (ms/sample) | a (s) |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t, m in results.items():
        n = m["n"]
        lines.append(f"| {t} | {n} | {m['local']:.2f} | {n / m['local']:.0f} | {m[1][0]:.1f} / {m[1][1]:.2f} | "
                     f"{n / m[1][1]:.0f} | {m[2][0]:.1f} / {m[2][1]:.2f} | {n / m[2][1]:.0f} | {1e3 * m['b']:.2f} | "
                     f"{m['a']:.2f} |")
    ws = (1, 8, 32, 128)
    lines += ["", ("Estimated wall time of the evaluation on W dedicated cores: ceil(S/W) x (a + r + b n/S), with S "
              "the default shard count (one per worker, at most 2048 samples each) and r the Ray cost per task "
              "(warm 1-worker time minus the no-Ray time). Compilation on the driver (about 1 s here) comes on top."),
              "", "| target | samples | " + " | ".join(f"W = {w}" for w in ws) + " |", "|---|---:|" + "---:|" * len(ws)]
    for t, m in results.items():
        for n in (10_000, 100_000):
            lines.append(f"| {t} | {n} | " + " | ".join(_duration(estimate(m, n, w)) for w in ws) + " |")
    lines += ["", ("Memory of the evaluation (`sim-int`, T = 8) of samples memory-mapped from a directory (x.npy, "
              "y.npy), a fresh process each: RSS after compiling, and peak RSS while evaluating (VmHWM, reset after "
              "compiling). In one piece, the float and the fixed-point simulators each convert all samples at once "
              "(float32, float64) and keep per-sample outputs; in shards (`--shards K`, 1000 samples each) one "
              "shard at a time is in memory."), "",
              "| samples | shards | RSS after compile (MB) | peak RSS evaluating (MB) | growth (MB) |",
              "|---:|---:|---:|---:|---:|"]
    lines += [f"| {n} | {k} | {a:.0f} | {b:.0f} | {b - a:.0f} |" for n, k, a, b in mem]
    return "\n".join(lines)


def _duration(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else (f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s")


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # as in every Ray task (num_cpus=1 sets OMP_NUM_THREADS=1): the same work per core
    if sys.argv[1:2] == ["--memory-child"]:
        memory_child(*sys.argv[2:])
        return
    load = os.getloadavg()[0]
    results = measure()
    md = table(results, memory(), load)
    print(md)
    write_section("scaling", md)


if __name__ == "__main__":
    main()
