"""Conversion time alone, per tool and example model (issue 21: "no example model slower than 2x the
best peer's conversion").

The accuracy jobs of ``make bench-peers`` time a whole job (conversion, then simulation of every mode
to T = 64 on 500 samples), so their seconds are not conversion times. This script times only the
step each tool calls its conversion, on the protocol's 500 calibration samples, one torch thread,
after one untimed conversion of the first model in the same process (imports, first-call set-up):

* SpikingJelly: ``Converter(RateCodingRecipe(loader, mode)).convert(model)`` per mode (max, 99.9%, 0.5);
* sinabs: BatchNorm folding, ``normalize_weights`` (the -norm99.9 modes) and ``from_model``;
* SNN Toolbox: save the Keras rebuild, parse, ``normalize_parameters`` (percentile 99.9) and build
  the INI network (the Keras rebuild itself is our harness's step and is not timed);
* snncompile: ``convert`` at T = 32 of its default method (``DEFAULT_METHOD``), of the cheapest
  calibrated method (calib-light) and of ``max`` (the peers' max-norm conversion), on the 256 samples the CLI calibrates on by default (``--calib-samples``), and
  the whole default compile (``snncompile MODEL --data mnist_test.npz --calib mnist_calib.npz``: the
  energy search over method x T, scored on the 244 calibration samples after those, then the
  deployed network simulated on the 1000 test samples) with the ``timing`` block of its report.

Each timing is the median of ``--repeats`` runs (1 for the default compile). Wall and process CPU
seconds; the load average is recorded next to each tool's run.

Usage (from the repository root, with the product's .venv; each peer runs in its venv under
benchmarks/peers/, skipped with a note when the venv is missing)::

    python benchmarks/peers/conversion_time.py --out benchmarks/peers/results/conversion_time.json
    .venv-spikingjelly/bin/python benchmarks/peers/conversion_time.py --tool spikingjelly   # one tool
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TOOLS = ("spikingjelly", "sinabs", "snntoolbox", "snncompile")
VENV = {"spikingjelly": HERE / ".venv-spikingjelly", "sinabs": HERE / ".venv-sinabs",
        "snntoolbox": HERE / ".venv-snntoolbox", "snncompile": ROOT / ".venv"}


def _timed(fn, repeats: int) -> dict:
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "repeats": repeats}


def _peer_modes(tool: str):
    """{mode: fn(model_name, calib_x) -> None doing the tool's conversion}."""
    import protocol as P
    import torch

    if tool == "spikingjelly":
        import run_spikingjelly as R

        def sj(mode):
            model = {}

            def run(name, calib_x):
                m = model.setdefault(name, P.load_model(name))
                R._convert(m, calib_x, mode)
            return run
        return {name: sj(mode) for name, mode in R.MODES.items()}
    if tool == "sinabs":
        import harness as H
        import run_sinabs as R
        import sinabs.activation as act
        from sinabs.from_torch import from_model

        def sn(spike_fn, percentile):
            def run(name, calib_x):
                model = H.fold_bn(P.load_model(name))  # loading the state dict is in the timing: ~1 ms
                if percentile is not None:
                    R._normalize(model, calib_x, percentile)
                from_model(model, input_shape=(1, 28, 28), batch_size=P.BATCH, spike_threshold=torch.tensor(1.0),
                           spike_fn=getattr(act, spike_fn), reset_fn=act.MembraneSubtract())
            return run
        return {"multispike": sn("MultiSpike", None), "multispike-norm99.9": sn("MultiSpike", 99.9)}
    if tool == "snntoolbox":
        import keras_models as K
        import run_snntoolbox as R

        keras = {}

        def run(name, calib_x):
            k = keras.setdefault(name, K.build_keras(name, P.load_model(name)))
            with tempfile.TemporaryDirectory() as tmp:
                xs = calib_x.transpose(0, 2, 3, 1)
                R._build_snn(name, k, xs, xs[:100], P.load_data()[2][:100], Path(tmp))
        return {"percentile 99.9": run}
    raise ValueError(tool)


def run_peer(tool: str, models: list[str], repeats: int) -> dict:
    import protocol as P
    import torch

    torch.set_num_threads(1)
    calib_x = P.load_data()[0]
    modes = _peer_modes(tool)
    out = {"tool": tool, "version": P.version_of(tool), "calib_samples": len(calib_x), "load": os.getloadavg()[0],
           "rows": []}
    first = next(iter(modes.values()))
    try:
        first(models[0], calib_x)  # untimed: imports, tracing, first-call set-up
    except Exception as err:  # noqa: BLE001 - the timed runs below report it per model
        print(tool, "warm-up failed:", err, file=sys.stderr)
    for name in models:
        for mode, fn in modes.items():
            try:
                if tool == "snntoolbox":  # the Keras rebuild is cached by the first call, outside the timing
                    fn(name, calib_x[:100])
                t = _timed(lambda fn=fn, name=name: fn(name, calib_x), repeats)
            except Exception as err:  # noqa: BLE001 - whatever the peer raises is its result
                t = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"}
            out["rows"].append({"model": name, "mode": mode, **t})
            print(tool, name, mode, t, file=sys.stderr, flush=True)
    return out


def run_ours(models: list[str], repeats: int, compile_default: bool) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import snncompile
    from snncompile.convert import DEFAULT_METHOD, convert

    data = ROOT / "examples" / "data"
    calib = np.load(data / "mnist_calib.npz")["x"]
    x = calib[:256]
    methods = [DEFAULT_METHOD, "calib-light", "max"]  # default; fastest calibrated; the peers' max norm
    out = {"tool": "snncompile", "version": snncompile.__version__ if hasattr(snncompile, "__version__") else "",
           "calib_samples": len(x), "load": os.getloadavg()[0], "rows": [], "default_method": DEFAULT_METHOD}
    warnings.simplefilter("ignore")
    convert(snncompile.load_onnx(ROOT / "examples" / f"{models[0]}.onnx"), x[:16], "calib-light", 4, progress=False)
    for name in models:
        ann = snncompile.load_onnx(ROOT / "examples" / f"{name}.onnx")
        for m in methods:
            t = _timed(lambda m=m, ann=ann: convert(ann, x, m, 32, progress=False), repeats)
            out["rows"].append({"model": name, "mode": f"convert {m}, T=32", **t})
            print("snncompile", name, m, t, file=sys.stderr, flush=True)
        if compile_default:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [str(ROOT / ".venv" / "bin" / "snncompile"), str(ROOT / "examples" / f"{name}.onnx"),
                       "--data", str(data / "mnist_test.npz"), "--calib", str(data / "mnist_calib.npz"),
                       "--out", str(Path(tmp) / "o"), "-q", "--json"]
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                r0 = os.times()
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                      env={**os.environ, "OMP_NUM_THREADS": "1"})
                r1 = os.times()
                row = {"model": name, "mode": "whole default compile (CLI)", "wall_s": time.perf_counter() - t0,
                       "cpu_s": (r1.children_user + r1.children_system) - (r0.children_user + r0.children_system),
                       "repeats": 1, "load": load}
                if proc.returncode != 0:
                    row["error"] = proc.stderr.strip().splitlines()[-1:] or f"rc {proc.returncode}"
                else:
                    rep = json.loads((Path(tmp) / "o" / "report.json").read_text())
                    row["timing"] = rep.get("timing")
                    row["chosen"] = {k: rep.get(k) for k in ("method", "timesteps")}
                out["rows"].append(row)
                print("snncompile", name, "default compile", row, file=sys.stderr, flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tool", choices=TOOLS, help="time one tool in this interpreter and print JSON")
    p.add_argument("--tools", nargs="*", default=list(TOOLS))
    p.add_argument("--models", nargs="*")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="skip snncompile's whole default compile")
    p.add_argument("--out", help="write all tools' JSON here")
    args = p.parse_args()
    sys.path.insert(0, str(HERE))
    if args.tool:
        import protocol as P

        models = args.models or P.models()
        res = (run_ours(models, 1, not args.no_compile) if args.tool == "snncompile"
               else run_peer(args.tool, models, args.repeats))
        print(json.dumps(res))
        return
    results = []
    for tool in args.tools:
        py = VENV[tool] / "bin" / "python"
        if not py.exists():
            results.append({"tool": tool, "missing": f"no venv at {VENV[tool].relative_to(ROOT)} (make bench-peers builds it)"})
            print(results[-1], flush=True)
            continue
        cmd = [str(py), __file__, "--tool", tool, "--repeats", str(args.repeats)]
        cmd += ["--models", *args.models] if args.models else []
        cmd += ["--no-compile"] if args.no_compile else []
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
        if proc.returncode != 0:
            results.append({"tool": tool, "error": proc.stderr.strip().splitlines()[-3:]})
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1])[:2000], flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
