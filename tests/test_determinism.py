"""Same inputs and ``--seed`` => the same report, byte for byte, once wall-clock fields are removed.

Each configuration is compiled twice by the installed ``snncompile`` executable, in two processes
running side by side (different hash seeds, different temporary directories), and the two
``report.json`` files are compared after dropping ``timing`` and every ``seconds`` field. The
integer target (``sim-int``) also has to produce the same compiled parameters, and Lava
(``lava-sim``, few samples, small T) the same spikes and accuracies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "mnist_mlp.onnx"
DATA = ROOT / "examples" / "data" / "mnist_test.npz"
CALIB = ROOT / "examples" / "data" / "mnist_calib.npz"
EXE = Path(sys.executable).with_name("snncompile")
WALL_CLOCK = ("timing", "seconds")  # keys whose values are measured times


def strip_wall_clock(r):
    """The report without its time measurements (recursively)."""
    if isinstance(r, dict):
        return {k: strip_wall_clock(v) for k, v in r.items() if k not in WALL_CLOCK and not k.endswith("_s")}
    if isinstance(r, list):
        return [strip_wall_clock(v) for v in r]
    return r


def compile_twice(tmp_path: Path, *args) -> list[Path]:
    """Two concurrent compiles of the same configuration; returns their output directories."""
    outs = [tmp_path / f"run{i}" / "out.snn" for i in (1, 2)]
    procs = []
    for i, out in enumerate(outs):
        out.parent.mkdir()
        cmd = [EXE, MODEL, "--data", DATA, "--calib", CALIB, "--out", out, "-q", *args]
        env = {**os.environ, "PYTHONHASHSEED": str(i + 1)}
        procs.append(
            subprocess.Popen(
                list(map(str, cmd)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=out.parent,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    return outs


def canonical_report(out: Path) -> bytes:
    return json.dumps(
        strip_wall_clock(json.loads((out / "report.json").read_text())), indent=1, sort_keys=True
    ).encode()


@pytest.mark.parametrize("target,method", [("sim-int", "calib-light"), ("lava-sim", "deng")])
def test_same_seed_gives_the_same_report(tmp_path, target, method):
    a, b = compile_twice(
        tmp_path,
        "--target",
        target,
        "--method",
        method,
        "--samples",
        "12",
        "-T",
        "4",
        "--calib-samples",
        "48",
        "--seed",
        "7",
    )
    ra, rb = canonical_report(a), canonical_report(b)
    assert ra == rb, _first_difference(ra, rb)
    report = json.loads(ra)
    assert report["target"] == target and report["seed"] == 7 and report["spikes_per_sample"] > 0
    if target == "lava-sim":
        assert report["lava"]["spike_exact_fraction"] == 1.0
    manifests = [json.loads((d / "compiled" / "manifest.json").read_text()) for d in (a, b)]
    assert manifests[0] == manifests[1]
    with np.load(a / "compiled" / "params.npz") as pa, np.load(b / "compiled" / "params.npz") as pb:
        assert sorted(pa.files) == sorted(pb.files)
        for k in pa.files:
            np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)


def _first_difference(a: bytes, b: bytes) -> str:
    la, lb = a.decode().splitlines(), b.decode().splitlines()
    i = next((i for i, (x, y) in enumerate(zip(la, lb)) if x != y), min(len(la), len(lb)))
    return f"first difference at line {i}: {la[i - 3 : i + 2]} vs {lb[i - 3 : i + 2]}"
