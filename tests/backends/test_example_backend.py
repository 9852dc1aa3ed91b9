"""The backend interface, exercised by the in-tree example target (backends/example.py): one file
plus one registry line make a target the CLI, the pipeline and the artifact writer all accept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import snncompile.pipeline  # noqa: F401  (imported before the registration, as in a full test run)
from snncompile import backends
from snncompile.cli import main

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "mnist_cnn.onnx"
DATA = ROOT / "examples" / "data" / "mnist_test.npz"
CALIB = ROOT / "examples" / "data" / "mnist_calib.npz"


@pytest.fixture
def example_target(monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "example", ("snncompile.backends.example", "ExampleBackend", {}))
    yield "example"


def test_the_core_names_no_target():
    """pipeline, commands and distributed decide by the backend's attributes, never by a target's name."""
    for mod in ("pipeline", "commands", "distributed"):
        text = (ROOT / "snncompile" / f"{mod}.py").read_text()
        for target in ("lava-sim", "lava", "loihi2", "nir", "netx", "sim-int"):
            assert f'"{target}"' not in text, (mod, target)


def test_registry_lists_every_target_with_its_capabilities():
    assert backends.targets()[:2] == ("sim", "sim-int")
    graphs = {t: backends.get_backend(t).graph for t in backends.targets()}
    assert graphs["sim"] == "snn" and graphs["sim-int"] == "integer" and graphs["lava-sim-float"] == "populations"
    assert backends.get_backend("lava-sim").own_process and not backends.get_backend("sim-int").own_process
    with pytest.raises(backends.BackendError, match="unknown target 'nope'"):
        backends.get_backend("nope")


def test_example_target_runs_through_the_cli(example_target, tmp_path, capsys):
    out = tmp_path / "ex.snn"
    rc = main([str(MODEL), "--target", "example", "--data", str(DATA), "--calib", str(CALIB), "--samples", "16",
               "-T", "8", "--method", "max", "--out", str(out), "-q"])
    assert rc == 0, capsys.readouterr().err
    r = json.loads((out / "report.json").read_text())
    assert r["target"] == "example" and r["example"]["connections"] == 4
    assert r["accuracy"]["snn"] == r["accuracy"]["snn_quantized"]  # no run of its own: the fixed-point reference
    with np.load(out / "example.npz") as f:
        w = [k for k in f.files if k.endswith("/weight")]
        assert len(w) == 4 and all(f[k].dtype == np.int16 for k in w)
        assert sum(f[k].size for k in w) == r["example"]["synapses"]


def test_example_target_refuses_what_it_cannot_carry(example_target, tmp_path, capsys):
    rc = main([str(MODEL), "--target", "example", "--data", str(DATA), "--calib", str(CALIB), "--samples", "16",
               "-T", "4", "--method", "adafire", "--out", str(tmp_path / "ex.snn"), "-q"])
    err = capsys.readouterr().err
    if rc == 0:  # the conversion heard the target and made binary spikes (no bursts) instead
        assert json.loads((tmp_path / "ex.snn" / "report.json").read_text())["target"] == "example"
    else:
        assert rc == 2 and "binary spikes only" in err and not (tmp_path / "ex.snn").exists()
