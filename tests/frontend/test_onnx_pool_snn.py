"""3-D and dilated pooling end to end: an ONNX model (onnx.helper) with a 3-D MaxPool, a 3-D AveragePool and
a dilated 2-D MaxPool imports equal to onnxruntime, its max pools rewrite exactly into relu-trees, and it
converts to a spiking network that follows the ANN on ``sim`` and ``sim-int`` and runs on Lava spike for spike
like ``sim-int``; exports that cannot carry its 4-D populations refuse in one line naming the node.

A 3-D pool imports as a 2-D pool over (H, W) and one over depth (``onnx_ops._pool``), so its max pool
becomes two relu-trees (2x2, then 2x1 over depth) and its average pool a linear map.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
from onnx_helpers import POOL_SHAPE, assert_matches_ort, ort_run, pool_case

from snncompile.cli import main
from snncompile.convert import convert
from snncompile.convert.maxpool import rewrite_maxpool
from snncompile.frontend.onnx import load_onnx
from snncompile.ir import Conv2d, MaxPool2d, ReLU
from snncompile.sim import simulate


@pytest.fixture(scope="module")
def case():
    """The model with its logits centred on the data (so the classes vary), the data and its labels."""
    model, x = pool_case()
    return model, x, ort_run(model, x).argmax(1)


def test_imports_equal_to_onnxruntime(case):
    model, _, _ = case
    g = assert_matches_ort(model, POOL_SHAPE)
    pools = {n.name: n for n in g.of_type(MaxPool2d)}
    assert pools["MaxPool_1.hw"].kernel == (2, 2) and pools["MaxPool_1.depth"].kernel == (2, 1)
    assert pools["MaxPool_6"].dilation == (2, 2)


def test_relu_trees_are_exact_on_the_ann(case):
    model, x, _ = case
    g = load_onnx(model)
    tree = rewrite_maxpool(g)
    np.testing.assert_allclose(tree.run(x).numpy(), g.run(x).numpy(), rtol=0, atol=1e-5)
    relus = [n.name for n in tree.of_type(ReLU)]
    assert sum(r.startswith("MaxPool_1.hw.relu") for r in relus) == 3
    assert sum(r.startswith("MaxPool_1.depth.relu") for r in relus) == 1
    taps = [n for n in tree.of_type(Conv2d) if n.name.startswith("MaxPool_6.")]
    assert taps and all(t.dilation == (2, 2) for t in taps if t.weight.shape[2:] == (2, 2))


def test_snn_follows_the_ann_on_sim(case):
    model, x, _ = case
    g = load_onnx(model)
    ann = g.run(x[:200]).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = convert(g, x[200:], method="adafire", timesteps=32, progress=False)
    out = simulate(snn, x[:200], 32).outputs[-1].numpy()
    assert (out.argmax(1) == ann.argmax(1)).mean() >= 0.9  # measured 0.975
    assert np.abs(out - ann).mean() <= 0.15 * np.abs(ann).mean()  # measured 0.09


@pytest.fixture(scope="module")
def files(case, tmp_path_factory):
    model, x, y = case
    d = tmp_path_factory.mktemp("pool3d")
    onnx.save(model, d / "m.onnx")
    np.savez(d / "d.npz", x=x, y=y)
    return d


def test_compiles_for_sim_int(files):
    out = files / "sim-int.snn"
    assert main([str(files / "m.onnx"), "--data", str(files / "d.npz"), "--samples", "200", "--target", "sim-int",
                 "-T", "32", "--method", "adafire", "--out", str(out), "-q"]) == 0
    acc = json.loads((out / "report.json").read_text())["accuracy"]
    assert acc["ann"] == 1.0 and acc["snn_float"] >= 0.9 and acc["snn"] >= 0.85, acc  # measured 0.975, 0.95


@pytest.mark.parametrize("target,reason", [
    ("netx", "x.src (Source): per-sample shape (2, 4, 8, 8) has 4 axes; netx layers are (C, H, W) or flat (N,)"),
    ("nir", "x.src->Relu_0 (Dense): output shape (2, 4, 8, 8) needs an unflatten"),
])
def test_exports_refuse_the_4d_populations_in_one_line(files, target, reason, capsys):
    assert main([str(files / "m.onnx"), "--data", str(files / "d.npz"), "--samples", "20", "--target", target,
                 "-T", "8", "--method", "max", "--out", str(files / f"{target}.snn"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(reason in line for line in err), err


@pytest.mark.slow
def test_runs_on_lava_spike_for_spike_like_sim_int(files):
    """Lava carries the 4-D populations and the relu-trees: every layer's spikes equal sim-int's."""
    out = files / "lava.snn"
    assert main([str(files / "m.onnx"), "--data", str(files / "d.npz"), "--samples", "6", "--target", "lava-sim",
                 "-T", "8", "--method", "max", "--out", str(out), "-q"]) == 0
    lava = json.loads((out / "report.json").read_text())["lava"]
    assert lava["spike_exact_fraction"] == 1.0 and lava["outputs_equal"], lava
