"""The Keras MLP and CNN of examples/ exported by tf2onnx (examples/export_keras.py): channels-last
Flatten (Transpose(0, 2, 3, 1) + Reshape) before the Dense layers, Softmax outputs.

The executor equals onnxruntime (rtol 1e-4), and the compiled networks run on Lava spike for spike
like the fixed-point simulator."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from snncompile.convert import convert
from snncompile.frontend.onnx import load_onnx
from snncompile.ir import Permute

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODELS = ["keras_mlp", "keras_cnn"]


def _data(n: int):
    d = np.load(EXAMPLES / "data" / "mnist_test.npz")
    return d["x"][:n], d["y"][:n]


@pytest.mark.parametrize("name", MODELS)
def test_executor_equals_onnxruntime(name):
    path = EXAMPLES / f"{name}.onnx"
    x, y = _data(300)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    g = load_onnx(path)
    got = g.run(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert not g.of_type(Permute)  # every layout change folded into the weights
    assert (got.argmax(1) == y).mean() > 0.9


def test_cnn_export_has_the_nhwc_flatten():
    ops = [(n.op_type, list(n.attribute[0].ints) if n.op_type == "Transpose" else None)
           for n in onnx.load(str(EXAMPLES / "keras_cnn.onnx")).graph.node]
    assert ("Transpose", [0, 2, 3, 1]) in ops and ops[-1][0] == "Softmax"


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_compiles_and_runs_on_lava_spike_exact(name):
    from snncompile.backends.lava.backend import spike_exact_fraction
    from snncompile.backends.lava.runner import run_lava

    from snncompile.evaluate import from_population_sim
    from snncompile.lower import lower_populations
    from snncompile.quantize import quantize
    from snncompile.sim.popsim import simulate_populations

    x, _ = _data(3)
    calib = np.load(EXAMPLES / "data" / "mnist_calib.npz")["x"][:64]
    snn = convert(load_onnx(EXAMPLES / f"{name}.onnx"), calib, method="max", timesteps=6, progress=False)
    assert any(r["to"].startswith("dropped") for r in snn.meta["conversion_log"])  # the Softmax
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize(lower_populations(snn), calib)
    ref = simulate_populations(q, x, 6, dtype="float64")
    got = run_lava(q, x, 6)
    a, b = from_population_sim(q, ref, None, "sim-int"), from_population_sim(q, got, None, "lava-sim")
    assert spike_exact_fraction(a, b) == 1.0
    assert np.array_equal(ref.outputs.numpy(), got.outputs.numpy())
