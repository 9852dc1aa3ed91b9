"""The QCFS-trained example (examples/mnist_qcfs.onnx: mnist_cnn with QCFS activations, L = 4): its three
activations import as QuantClip nodes (L = 4, the trained lam), and the spiking network at T = 4 = L on
`sim` stays within 1 point of the ANN (QCFS: theta = lam, v0 = theta/2, no threshold search)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from snncompile.convert import convert
from snncompile.frontend.onnx import load_onnx
from snncompile.ir import Floor, QuantClip
from snncompile.sim import simulate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODEL = EXAMPLES / "mnist_qcfs.onnx"


def _data(n: int):
    d = np.load(EXAMPLES / "data" / "mnist_test.npz")
    return d["x"][:n], d["y"][:n]


def test_imports_three_quantclips_exactly():
    g = load_onnx(MODEL)
    qcs = g.of_type(QuantClip)
    assert len(qcs) == 3 and not g.of_type(Floor)
    assert all((q.levels, q.offset, q.rounding, q.source_op) == (4, 0.5, "floor", "QCFS") for q in qcs)
    x, _ = _data(500)
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    got = g.run(x).numpy()
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.998
    np.testing.assert_allclose(np.median(np.abs(got - want)), 0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["max", "adafire"])
def test_snn_at_t_equal_l_within_one_point(method):
    x, y = _data(1000)
    g = load_onnx(MODEL)
    ann = (g.run(x).numpy().argmax(1) == y).mean()
    calib = np.load(EXAMPLES / "data" / "mnist_calib.npz")["x"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = convert(g, calib, method=method, timesteps=4, progress=False)
    acc = (simulate(snn, x, 4).outputs[-1].numpy().argmax(1) == y).mean()
    assert acc >= ann - 0.01, (method, acc, ann)
