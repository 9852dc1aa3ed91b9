"""QDQ models (onnxruntime.quantization.quantize_static, per-channel int8 weights, uint8 activations):
constant DequantizeLinear folds exactly, activation QuantizeLinear -> DequantizeLinear pairs run exactly
(round half to even, saturation) as QuantClip nodes, and the pairs convert as quantized clipped ReLUs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx_helpers import assert_matches_ort, make_model, node

from snncompile.convert import convert
from snncompile.frontend.onnx import load_onnx
from snncompile.ir import IF, Conv2d, QuantClip, Quantize
from snncompile.sim import simulate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
_RNG = np.random.default_rng(5)


@pytest.fixture(scope="module")
def qdq_cnn(tmp_path_factory) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    calib = np.load(EXAMPLES / "data" / "mnist_calib.npz")["x"]
    src = EXAMPLES / "mnist_cnn.onnx"
    name = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: calib[i:i + 50]} for i in range(0, len(calib), 50)])

        def get_next(self):
            return next(self.batches, None)

    out = tmp_path_factory.mktemp("qdq") / "mnist_cnn_qdq.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def _test_data(n: int = 1000):
    d = np.load(EXAMPLES / "data" / "mnist_test.npz")
    return d["x"][:n], d["y"][:n]


def test_executor_agrees_with_onnxruntime(qdq_cnn):
    x, _ = _test_data()
    sess = ort.InferenceSession(str(qdq_cnn), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    g = load_onnx(qdq_cnn)
    got = g.run(x).numpy()
    agree = (got.argmax(1) == want.argmax(1)).mean()
    assert agree >= 0.995, agree
    assert not g.of_type(Quantize)  # every pair fused
    qcs = g.of_type(QuantClip)
    # input, 2 conv, 2 pool, 1 fc and the logits quantizer; the Flatten's re-quantization is the identity
    assert len(qcs) == 7 and all(q.rounding == "half_even" for q in qcs)
    assert sum(q.lo < 0 for q in qcs) == 1  # the logits (uint8 with a zero point > 0)


def test_weights_fold_exactly_per_channel():
    """DequantizeLinear of int8 per-channel weights and an int32 bias: (w - zp) * s in float32."""
    w = _RNG.integers(-128, 128, (4, 2, 3, 3)).astype(np.int8)
    ws, wz = _RNG.uniform(0.01, 0.05, 4).astype(np.float32), _RNG.integers(-3, 3, 4).astype(np.int8)
    b, bs = _RNG.integers(-1000, 1000, 4).astype(np.int32), np.float32(0.001)
    nodes = [node("DequantizeLinear", ["W", "ws", "wz"], ["Wf"], axis=0), node("DequantizeLinear", ["B", "bs"], ["Bf"]),
             node("Conv", ["x", "Wf", "Bf"], ["y"])]
    g = assert_matches_ort(make_model(nodes, (2, 5, 5), 13, W=w, ws=ws, wz=wz, B=b, bs=bs), (2, 5, 5))
    conv = g.of_type(Conv2d)[0]
    want = ((w.astype(np.int64) - wz.reshape(4, 1, 1, 1)).astype(np.float32) * ws.reshape(4, 1, 1, 1))
    np.testing.assert_array_equal(conv.weight, want)
    np.testing.assert_array_equal(conv.bias, b.astype(np.float32) * bs)


@pytest.mark.parametrize("opset", [10, 13, 19, 21, 25])
@pytest.mark.parametrize("zp_type", [np.uint8, np.int8])
def test_activation_pair_is_exact(opset, zp_type):
    """Round half to even and saturation on both sides, compared with onnxruntime on ties."""
    zp = zp_type(3) if zp_type is np.uint8 else zp_type(-5)
    nodes = [node("QuantizeLinear", ["x", "s", "z"], ["q"]), node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    model = make_model(nodes, (4, 8), min(opset, 21), s=np.float32(0.5), z=zp)
    g = load_onnx(model)
    (qc,) = g.of_type(QuantClip)
    info = np.iinfo(zp_type)
    assert (qc.lo, qc.levels) == (info.min - int(zp), info.max - int(zp))
    x = np.concatenate([np.arange(-200, 200, 0.25, dtype=np.float32)[:1600].reshape(50, 4, 8),
                        np.full((1, 4, 8), 1e4, np.float32)])  # ties (k + 1/2) * s and saturation
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(g.run(x).numpy(), sess.run(None, {"x": x})[0])


def test_quantizer_without_relu_converts_as_clipped_relu():
    """Conv -> QDQ (uint8, zp 0: the quantizer removed the Relu) is the activation: an IF with theta = lam."""
    nodes = [node("Conv", ["x", "W"], ["c"]), node("QuantizeLinear", ["c", "s", "z"], ["q"]),
             node("DequantizeLinear", ["q", "s", "z"], ["a"]), node("Flatten", ["a"], ["f"]),
             node("Gemm", ["f", "W2"], ["y"], transB=1)]
    model = make_model(nodes, (1, 6, 6), 13, W=_RNG.standard_normal((3, 1, 3, 3)).astype(np.float32),
                       s=np.float32(0.02), z=np.uint8(0), W2=_RNG.standard_normal((4, 48)).astype(np.float32))
    g = assert_matches_ort(model, (1, 6, 6))
    x = _RNG.uniform(0, 1, (32, 1, 6, 6)).astype(np.float32)
    snn = convert(g, x, method="max", timesteps=8, progress=False)
    (neuron,) = snn.of_type(IF)
    assert float(neuron.theta) == pytest.approx(255 * 0.02) and float(neuron.v0) == pytest.approx(255 * 0.01)
    row = next(r for r in snn.meta["conversion_log"] if r["node"] == neuron.name)
    assert "theta = lam" in row["notes"] and "L=255" in row["notes"]


@pytest.mark.slow
def test_snn_close_to_onnxruntime(qdq_cnn):
    """SNN at T = 32 (method max, 500 samples) within 1.5 points of onnxruntime's accuracy."""
    x, y = _test_data(500)
    sess = ort.InferenceSession(str(qdq_cnn), providers=["CPUExecutionProvider"])
    ref = (sess.run(None, {sess.get_inputs()[0].name: x})[0].argmax(1) == y).mean()
    calib = np.load(EXAMPLES / "data" / "mnist_calib.npz")["x"][:200]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = convert(load_onnx(qdq_cnn), calib, method="max", timesteps=32, progress=False)
    acc = (simulate(snn, x, 32).outputs[-1].numpy().argmax(1) == y).mean()
    assert acc >= ref - 0.015, (acc, ref)
