"""End-to-end CLI runs as subprocesses on a bundled example: reports, plots, compare, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from snncompile.report import schema

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "mnist_mlp.onnx"
DATA = ROOT / "examples" / "data" / "mnist_test.npz"
CALIB = ROOT / "examples" / "data" / "mnist_calib.npz"


def snncompile(*args, cwd=None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("snncompile")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600, check=False,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _compile(out: Path, target: str, *extra) -> dict:
    p = snncompile(MODEL, "--target", target, "--data", DATA, "--calib", CALIB, "--samples", 40, "-T", 8,
                   "--method", "deng", "--calib-samples", 64, "--out", out, "-q", *extra)
    assert p.returncode == 0, p.stderr
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("cli")
    out = {t: base / t for t in ("sim", "lava-sim")}
    for t, d in out.items():
        _compile(d, t)
    return out


@pytest.mark.parametrize("target", ["sim", "lava-sim"])
def test_report_is_valid_and_plots_are_images(runs, target):
    d = runs[target]
    r = json.loads((d / "report.json").read_text())
    jsonschema.validate(r, schema())
    assert r["target"] == target and r["samples"] == 40 and len(r["accuracy_vs_t"]) == 8
    assert r["accuracy"]["ann"] > 0.9 and r["accuracy"]["snn"] > 0.8
    assert r["spikes_per_sample"] > 0 and r["synops_per_sample"] > r["spikes_per_sample"]
    for png in ("accuracy_vs_t.png", "spikes_per_layer.png", "activations_vs_rates.png"):
        with Image.open(d / png) as im:
            assert im.size[0] > 100 and im.size[1] > 100 and len(np.unique(np.asarray(im.convert("L")))) > 2
    assert (d / "compiled" / "manifest.json").is_file() and (d / "report.md").read_text().startswith("# ")


def test_lava_target_is_spike_exact_and_reports_quantized_accuracy(runs):
    r = json.loads((runs["lava-sim"] / "report.json").read_text())
    assert r["lava"]["spike_exact_fraction"] == 1.0
    assert r["accuracy"]["snn"] == r["accuracy"]["snn_quantized"]


@pytest.mark.parametrize("target,parts", [("sim", {"load_s", "convert_s", "ann_s", "simulate_s"}),
                                          ("lava-sim", {"load_s", "convert_s", "lower_s", "quantize_s", "ann_s",
                                                        "simulate_s", "simulate_int_s", "lava-sim_s"})])
def test_timing_names_every_part_of_the_run(runs, target, parts):
    t = json.loads((runs[target] / "report.json").read_text())["timing"]
    assert parts <= set(t) and all(v >= 0 for v in t.values())
    assert "lower_s" not in t if target == "sim" else True


def test_compare_identical_is_ok_and_lower_accuracy_regresses(runs, tmp_path):
    a = runs["sim"] / "report.json"
    assert snncompile("compare", a, a).returncode == 0
    worse = json.loads(a.read_text())
    worse["accuracy"]["snn"] -= 0.02
    (tmp_path / "worse.json").write_text(json.dumps(worse))
    p = snncompile("compare", a, tmp_path / "worse.json", "--max-accuracy-drop", "0.5")
    assert p.returncode == 1 and "REGRESSED" in p.stdout


def test_run_artifact_without_onnx_reproduces_the_integer_accuracy(runs, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(runs["lava-sim"], d)
    p = snncompile("run", d, "--data", DATA, "--samples", 40, "-q")
    assert p.returncode == 0, p.stderr
    r = json.loads((runs["lava-sim"] / "report.json").read_text())
    assert json.loads(p.stdout)["accuracy"] == r["accuracy"]["snn_quantized"]


def test_existing_out_is_refused_and_left_untouched(runs):
    before = (runs["sim"] / "report.json").read_bytes()
    p = snncompile(MODEL, "--data", DATA, "--calib", CALIB, "--out", runs["sim"], "-q")
    assert p.returncode == 2 and "exists" in p.stderr and "Traceback" not in p.stderr
    assert (runs["sim"] / "report.json").read_bytes() == before


def test_report_rerenders(runs, tmp_path):
    d = tmp_path / "r"
    shutil.copytree(runs["sim"], d)
    (d / "report.md").unlink()
    assert snncompile("report", d, "-q").returncode == 0 and (d / "report.md").is_file()


def test_inspect_lists_spiking_layers():
    p = snncompile("inspect", ROOT / "examples" / "mnist_relu6.onnx")
    assert p.returncode == 0 and "Clip" in p.stdout and "neurons" in p.stdout


@pytest.mark.parametrize("target", ["sim-int", "lava-sim"])
def test_shards_merge_to_the_single_run_report(tmp_path, target):
    common = [MODEL, "--target", target, "--data", DATA, "--calib", CALIB, "--samples", 9, "-T", 4,
              "--method", "deng", "--calib-samples", 32, "-q"]
    assert snncompile(*common, "--out", tmp_path / "all").returncode == 0
    for i in range(3):
        p = snncompile(*common, "--shard", f"{i}/3", "--out", tmp_path / f"s{i}")
        assert p.returncode == 0, p.stderr
    p = snncompile("report", "--merge", *(tmp_path / f"s{i}" for i in range(3)), "--out", tmp_path / "m", "-q")
    assert p.returncode == 0, p.stderr
    single, merged = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("all", "m"))
    for r in (single, merged):
        r.pop("timing")
        r["lava"] = {k: v for k, v in r.get("lava", {}).items() if k != "seconds"}
    assert json.dumps(single, sort_keys=True) == json.dumps(merged, sort_keys=True)


def test_merge_refuses_incomplete_shards(tmp_path):
    common = [MODEL, "--target", "sim-int", "--data", DATA, "--calib", CALIB, "--samples", 6, "-T", 2,
              "--method", "deng", "--calib-samples", 16, "-q"]
    assert snncompile(*common, "--shard", "0/2", "--out", tmp_path / "s0").returncode == 0
    p = snncompile("report", "--merge", tmp_path / "s0", "--out", tmp_path / "m")
    assert p.returncode == 2 and "do not cover 2 shards" in p.stderr and not (tmp_path / "m").exists()
