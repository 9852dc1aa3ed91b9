"""A channels-last (NHWC) 3-channel model end to end: the CLI takes the model's own NHWC data.

tf2onnx puts a Transpose(0, 3, 1, 2) between an NHWC input and the first Conv. The frontend folds it
into the Input (``Input.source_perm``) and the data loading reorders the samples once, so the
compiled network equals the same network written NCHW and fed NCHW data, sample for sample: same
accuracy, spikes and synops on the fixed-point simulator, and ``snncompile run`` on the artifact
takes the NHWC data too.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx_helpers import make_model, ort_run
from test_onnx_layouts import keras_cnn

from snncompile.cli import main


def _nchw_twin(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same network without the input Transpose: an NCHW input straight into the first Conv."""
    nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in model.graph.node][1:]
    nodes[0].input[0] = "x"
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    return make_model(nodes, (3, 8, 8), 13, **inits)


def test_cli_takes_nhwc_data_like_the_nchw_network(tmp_path):
    nhwc, shape = keras_cnn(3)
    nchw = _nchw_twin(nhwc)
    x = np.random.default_rng(3).random((120, *shape), dtype=np.float32)
    y = ort_run(nhwc, x).argmax(1)
    np.testing.assert_allclose(ort_run(nchw, x.transpose(0, 3, 1, 2)), ort_run(nhwc, x), rtol=1e-5, atol=1e-6)
    reports = {}
    for name, model, data in (("nhwc", nhwc, x), ("nchw", nchw, x.transpose(0, 3, 1, 2))):
        onnx.save(model, tmp_path / f"{name}.onnx")
        np.savez(tmp_path / f"{name}.npz", x=data, y=y)
        out = tmp_path / f"{name}.snn"
        assert main([str(tmp_path / f"{name}.onnx"), "--data", str(tmp_path / f"{name}.npz"), "--samples", "40",
                     "--target", "sim-int", "-T", "8", "--method", "max", "--out", str(out), "-q"]) == 0
        reports[name] = json.loads((out / "report.json").read_text())
    a, b = reports["nhwc"], reports["nchw"]
    assert a["accuracy"] == b["accuracy"] and a["accuracy"]["ann"] == 1.0
    assert a["spikes_per_sample"] == b["spikes_per_sample"] and a["synops_per_sample"] == b["synops_per_sample"]


def test_run_on_the_artifact_takes_nhwc_data(tmp_path, capsys):
    model, shape = keras_cnn(3)
    x = np.random.default_rng(4).random((80, *shape), dtype=np.float32)
    y = ort_run(model, x).argmax(1)
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = tmp_path / "m.snn"
    assert main([str(tmp_path / "m.onnx"), "--data", str(tmp_path / "d.npz"), "--samples", "20", "--target",
                 "sim-int", "-T", "8", "--method", "max", "--out", str(out), "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    capsys.readouterr()
    assert main(["run", str(out), "--data", str(tmp_path / "d.npz"), "--samples", "20", "--target", "sim-int",
                 "-q"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["accuracy"] == report["accuracy"]["snn"]
    # the model's NCHW-transposed data is refused with the shape the model expects
    np.savez(tmp_path / "wrong.npz", x=x.transpose(0, 3, 1, 2), y=y)
    assert main(["run", str(out), "--data", str(tmp_path / "wrong.npz"), "--target", "sim-int", "-q"]) == 2
    assert "(8, 8, 3)" in capsys.readouterr().err


def test_samples_read_from_disk_are_reordered_as_read(tmp_path):
    """A memory-mapped directory (x.npy, y.npy) stays lazy: slices and windows come back reordered."""
    from snncompile.data import load_npz
    from snncompile.frontend.onnx import load_onnx

    model, shape = keras_cnn(3)
    inp = load_onnx(model).input
    x = np.random.default_rng(5).random((30, *shape), dtype=np.float32)
    (tmp_path / "d").mkdir()
    np.save(tmp_path / "d" / "x.npy", x)
    np.save(tmp_path / "d" / "y.npy", np.zeros(30, np.int64))
    d = load_npz(tmp_path / "d").in_layout(inp)
    assert d.x.shape == (30, 3, 8, 8)
    np.testing.assert_array_equal(d.x[4:9], x[4:9].transpose(0, 3, 1, 2))
    w = d.take(10, 20)
    assert w.x.shape == (10, 3, 8, 8)
    np.testing.assert_array_equal(np.asarray(w.x), x[10:20].transpose(0, 3, 1, 2))
