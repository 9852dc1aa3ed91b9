"""-O/--method-option KEY=VALUE reaches the conversion method; SRP's pre-steps count in the latency."""

from __future__ import annotations

import json
from pathlib import Path

from snncompile.cli import main

ROOT = Path(__file__).resolve().parents[2]
ARGS = [str(ROOT / "examples" / "mnist_mlp.onnx"), "--data", str(ROOT / "examples" / "data" / "mnist_test.npz"),
        "--calib", str(ROOT / "examples" / "data" / "mnist_calib.npz"), "--samples", "20", "-T", "4", "-q"]


def test_method_option_sets_srp_tau_and_latency_counts_pre_steps(tmp_path):
    assert main([*ARGS, "--method", "srp", "-O", "tau=8", "--out", str(tmp_path / "a")]) == 0
    r = json.loads((tmp_path / "a" / "report.json").read_text())
    assert r["latency_steps"] == 12 and r["totals"]["pre_steps"] == 8
    assert main([*ARGS, "--method", "srp", "--out", str(tmp_path / "b")]) == 0  # the paper's tau = 4
    assert json.loads((tmp_path / "b" / "report.json").read_text())["latency_steps"] == 8


def test_method_option_is_checked(tmp_path, capsys):
    assert main([*ARGS, "--method", "max", "-O", "tau=8", "--out", str(tmp_path / "c")]) == 2
    assert "unknown option(s) tau" in capsys.readouterr().err
    assert main([*ARGS, "-O", "tau=8", "--out", str(tmp_path / "d")]) == 2
    assert "give --method too" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
