"""The shared protocol of the peer benchmark: data, models, T grid, result files.

Imported by every runner, each in its own virtual environment, so it needs only numpy (and torch
for ``load_model``). Knobs come from the environment so that ``make bench-peers`` and the test
can shrink a run without code changes:

========================  ==========================================================
``PEERS_MODELS``          comma list of example models (default: all seven)
``PEERS_SAMPLES``         test samples, the first N of mnist_test.npz (default 500)
``PEERS_CALIB``           calibration samples, the first N of mnist_calib.npz (500)
``PEERS_T``               comma list of T values (default 1,2,4,8,16,32,64)
``PEERS_RESULTS``         results folder (default benchmarks/peers/results)
``PEERS_DOCS``            where report.py writes peers.md and its PNGs (default docs/)
``PEERS_JOBS``            accuracy jobs run side by side by bench.sh (default: cores)
========================  ==========================================================
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

__all__ = [
    "BATCH",
    "EXAMPLES",
    "MODELS",
    "ROOT",
    "THREADS",
    "describe",
    "error_record",
    "load_data",
    "load_model",
    "median_us",
    "mode_record",
    "models",
    "n_samples",
    "results_dir",
    "t_grid",
    "timing_only",
    "timing_record",
    "version_of",
    "write_result",
]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MODELS = ("mnist_mlp", "mnist_cnn", "mnist_resnet", "mnist_relu6", "mnist_concat", "mnist_functional", "mnist_qcfs")
BATCH = 100  # samples per batch, for every tool, in accuracy and timing runs
THREADS = int(os.environ.get("PEERS_THREADS", "2"))  # torch.set_num_threads / TF intra-op threads


def _env_list(name: str, default: tuple) -> list[str]:
    raw = os.environ.get(name, "")
    return [v.strip() for v in raw.split(",") if v.strip()] or list(default)


def t_grid() -> list[int]:
    """The T values reported; one run goes to max(t_grid()) and is read at every T."""
    return sorted(int(t) for t in _env_list("PEERS_T", ("1", "2", "4", "8", "16", "32", "64")))


def models() -> list[str]:
    return _env_list("PEERS_MODELS", MODELS)


def n_samples() -> tuple[int, int]:
    """(test samples, calibration samples)."""
    return int(os.environ.get("PEERS_SAMPLES", "500")), int(os.environ.get("PEERS_CALIB", "500"))


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(calib_x, test_x, test_y): the first PEERS_CALIB / PEERS_SAMPLES samples, float32 in [0, 1]."""
    n_test, n_calib = n_samples()
    calib = np.load(EXAMPLES / "data" / "mnist_calib.npz")
    test = np.load(EXAMPLES / "data" / "mnist_test.npz")
    return calib["x"][:n_calib], test["x"][:n_test], test["y"][:n_test]


def load_model(name: str):
    """The example torch module with its trained weights, in eval mode.

    ``mnist_qcfs`` (trained with QCFS activations, L = 4): the peers convert ``nn.ReLU`` modules only
    and know no quantized activation, so they get its weights with every QCFS module an ``nn.ReLU``
    (what a user of theirs would convert; its ANN accuracy is in their result files). snncompile
    reads the ONNX export with the QCFS activations.
    """
    import torch
    from torch import nn

    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    from models import QCFS, build_model

    model = build_model(name)
    model.load_state_dict(torch.load(EXAMPLES / f"{name}.pt", map_location="cpu"))
    for parent in list(model.modules()):
        for child, mod in list(parent.named_children()):
            if isinstance(mod, QCFS):
                setattr(parent, child, nn.ReLU())
    return model.eval()


def results_dir() -> Path:
    d = Path(os.environ.get("PEERS_RESULTS", Path(__file__).resolve().parent / "results"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def version_of(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _floats(values) -> list[float | None]:
    return [None if v is None else float(v) for v in values]


def mode_record(
    mode: str,
    *,
    acc: np.ndarray,
    spikes: np.ndarray,
    synops: np.ndarray,
    binary: bool,
    spiking_layers: list[str],
    analog_layers: list[str],
    notes: str = "",
    us: dict | None = None,
) -> dict:
    """One mode's results on the T grid; ``acc``, ``spikes``, ``synops`` are indexed like t_grid().

    ``spikes``/``synops``: per sample, cumulative over the first T steps (n spikes in one step
    count n). ``binary``: at most one spike per neuron and step. ``us``: {"wall": .., "cpu": ..}
    microseconds per sample-step of the timing-only run.
    """
    status = "partial" if analog_layers else "ok"
    return {
        "mode": mode,
        "status": status,
        "error": None,
        "binary": binary,
        "T": t_grid(),
        "accuracy": _floats(acc),
        "spikes_per_sample": _floats(spikes),
        "synops_per_sample": _floats(synops),
        "spiking_layers": spiking_layers,
        "analog_layers": analog_layers,
        "us_per_sample_step": (us or {}).get("wall"),
        "cpu_us_per_sample_step": (us or {}).get("cpu"),
        "notes": notes,
    }


def error_record(mode: str, err: BaseException, notes: str = "") -> dict:
    """A mode that could not convert or run: the error is the result (with where it was raised)."""
    import traceback

    msg = f"{type(err).__name__}: {err}".strip().splitlines()[0][:400]
    frames = traceback.extract_tb(err.__traceback__) if err.__traceback__ else []
    if frames:
        f = frames[-1]
        msg += f" (raised in {f.name}, {'/'.join(Path(f.filename).parts[-3:])}:{f.lineno})"
    return {
        "mode": mode,
        "status": "error",
        "error": msg,
        "binary": None,
        "T": t_grid(),
        "accuracy": None,
        "spikes_per_sample": None,
        "synops_per_sample": None,
        "spiking_layers": [],
        "analog_layers": [],
        "us_per_sample_step": None,
        "cpu_us_per_sample_step": None,
        "notes": notes,
    }


def median_us(run, sample_steps: int, repeats: int = 3, prepare=None) -> dict[str, float]:
    """Call ``run()`` (one timed unit of ``sample_steps`` samples x steps) ``repeats`` times, each
    after an untimed ``prepare()`` if given: the median microseconds per sample-step, wall clock and
    process CPU time (all threads)."""
    walls, cpus = [], []
    for _ in range(repeats):
        if prepare is not None:
            prepare()
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"wall": 1e6 * float(np.median(walls)) / sample_steps, "cpu": 1e6 * float(np.median(cpus)) / sample_steps}


def timing_only() -> bool:
    """PEERS_TIMING_ONLY=1: convert and run the timing-only pass, nothing else (e.g. with
    PEERS_THREADS=1: torch's 2 OpenMP threads on an oversubscribed 2-core machine mostly wait)."""
    return os.environ.get("PEERS_TIMING_ONLY") == "1"


def timing_record(mode: str, us: dict) -> dict:
    return {
        "mode": mode,
        "status": "ok",
        "us_per_sample_step": us["wall"],
        "cpu_us_per_sample_step": us["cpu"],
    }


def describe(rec: dict) -> str:
    """One progress line for a mode record, an error record or a timing record."""
    if rec.get("error"):
        return rec["error"]
    us = f"{rec['cpu_us_per_sample_step']:.0f} us CPU ({rec['us_per_sample_step']:.0f} wall) per sample-step"
    if rec.get("accuracy") is None:
        return us
    analog = f", analog: {rec['analog_layers']}" if rec["analog_layers"] else ""
    return f"acc@T {rec['accuracy']}, spikes@Tmax {rec['spikes_per_sample'][-1]:.0f}, {us}{analog}; {rec['notes']}"


def write_result(
    tool: str, model: str, *, version: str, ann_accuracy: float | None, modes: list[dict], started: float
) -> Path:
    """Write results/<tool>_<model>.json (timing-only: <tool>_<model>.timing-<threads>t.json)."""
    n_test, n_calib = n_samples()
    doc = {
        "tool": tool,
        "version": version,
        "model": model,
        "samples": n_test,
        "calib_samples": n_calib,
        "batch": BATCH,
        "threads": THREADS,
        "T": t_grid(),
        "ann_accuracy": ann_accuracy,
        "modes": modes,
        "wall_s": round(time.time() - started, 1),
    }
    doc["timing_only"] = timing_only()
    path = results_dir() / (
        f"{tool}_{model}.timing-{THREADS}t.json" if timing_only() else f"{tool}_{model}.json"
    )
    path.write_text(json.dumps(doc, indent=1))
    return path
