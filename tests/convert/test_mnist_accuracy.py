"""End to end on a real network: the example MNIST CNN, converted with Deng & Gu's method (no
calibration simulations, so the test takes seconds; every other method is at least as accurate
at T = 32 in benchmarks/accuracy.py).

Reference: the ANN's accuracy on the same 1000 bundled test samples; bound: 1 point at T = 32.
"""

import warnings

import numpy as np
import pytest

from snncompile import load_onnx
from snncompile.convert import convert
from snncompile.sim import simulate
from tests.convert.conftest import EXAMPLES

MODEL = EXAMPLES / "mnist_cnn.onnx"
pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="examples/mnist_cnn.onnx not present")


def test_deng_within_one_point_of_ann_at_T32():
    test = np.load(EXAMPLES / "data" / "mnist_test.npz")
    calib = np.load(EXAMPLES / "data" / "mnist_calib.npz")["x"]
    ann = load_onnx(MODEL)
    ann_acc = float((ann.run(test["x"]).argmax(-1).numpy() == test["y"]).mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dead-channel notices
        snn = convert(ann, calib, "deng", 32, progress=False)
    acc = simulate(snn, test["x"], 32).accuracy_vs_t(test["y"])
    assert ann_acc > 0.97
    assert acc[-1] >= ann_acc - 0.01, f"SNN {acc[-1]:.3f} vs ANN {ann_acc:.3f}"
