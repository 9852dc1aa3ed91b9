"""Numerical edge cases from ONNX to integers: dead layers, huge and tiny activation ranges, weights and
biases that overflow the Loihi 2 formats, membrane saturation, and negative network inputs.

Every case is a small generated MLP (16 inputs, ReLU or Clip hidden layers of 12 and 8, 4 outputs)
built with ``onnx.helper`` and imported with ``load_onnx``; references are the same network
unscaled, the float simulator, or the ANN (bounds stated per test).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

import snncompile
from snncompile.convert import convert
from snncompile.convert.thresholds import DEAD_THETA
from snncompile.ir import IF
from snncompile.ir.populations import Source
from snncompile.lower import lower_populations
from snncompile.pipeline import RunConfig, run
from snncompile.quantize import quantize
from snncompile.quantize.numbers import QuantizationWarning
from snncompile.sim.popsim import simulate_populations

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RNG = np.random.default_rng(0)
W1, W2, W3 = RNG.normal(0, 0.5, (12, 16)), RNG.normal(0, 0.4, (8, 12)), RNG.normal(0, 0.4, (4, 8))
X = RNG.random((64, 16), dtype=np.float32)
T = 8


def mlp_proto(w1=W1, b1=0.0, w2=W2, b2=0.0, clip: float | None = None) -> onnx.ModelProto:
    """x (N, 16) -> fc1 -> relu1 (or Clip(0, clip)) -> fc2 -> relu2 -> fc3 -> y (N, 4)."""
    act = (
        oh.make_node("Relu", ["h1"], ["a1"], name="relu1")
        if clip is None
        else oh.make_node("Clip", ["h1", "lo", "hi"], ["a1"], name="relu1")
    )
    nodes = [
        oh.make_node("Gemm", ["x", "W1", "B1"], ["h1"], name="fc1", transB=1),
        act,
        oh.make_node("Gemm", ["a1", "W2", "B2"], ["h2"], name="fc2", transB=1),
        oh.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        oh.make_node("Gemm", ["a2", "W3", "B3"], ["y"], name="fc3", transB=1),
    ]
    inits = {
        "W1": w1,
        "B1": np.broadcast_to(b1, 12),
        "W2": w2,
        "B2": np.broadcast_to(b2, 8),
        "W3": W3,
        "B3": np.zeros(4),
    }
    if clip is not None:
        inits |= {"lo": 0.0, "hi": clip}
    g = oh.make_graph(
        nodes,
        "edge",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        initializer=[numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()],
    )
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)], ir_version=8)


def compile_int(proto, calib=X, method="max"):
    """(snn, integer population graph) and the warnings raised on the way."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        snn = convert(
            snncompile.load_onnx(proto), calib, method=method, timesteps=T, progress=False
        )
        pop = quantize(lower_populations(snn), calib)
    return snn, pop, [str(m.message) for m in w]


@pytest.mark.parametrize("method", ["max", "mse", "deng", "calib-light"])
def test_dead_layer_gets_a_finite_threshold_and_a_warning(method):
    """fc1's bias of -100 keeps relu1 at 0 on every sample: theta must not be 0 (v/theta, W*sigma/theta)."""
    snn, pop, msgs = compile_int(mlp_proto(b1=-100.0, b2=0.1), method=method)
    assert any(m.startswith("relu1 (IF): layer never active") for m in msgs), msgs
    theta = {n.name: np.asarray(n.theta) for n in snn.of_type(IF)}
    assert np.all(theta["relu1"] == np.float32(DEAD_THETA)) and np.all(np.isfinite(theta["relu2"]))
    float_res = snncompile.simulate(snn, X, T)
    int_res = simulate_populations(pop, X, T)
    assert float_res.spikes["relu1"] == 0 and float_res.spikes["relu2"] > 0  # relu2 driven by its bias alone
    assert np.isfinite(float_res.outputs.numpy()).all() and np.isfinite(int_res.outputs.numpy()).all()
    # theta = 1e-3 against pre-activations of -100: the integer bias cannot hold -100 / 1e-3 thresholds
    # (its clip turns relu1 on in the fixed-point run) - the quantizer must say so, naming the layer
    assert any(m.startswith("relu1: bias up to") and "clipped" in m for m in msgs), msgs


def test_dead_channels_take_the_scale_of_their_layer():
    """Per-channel thresholds on the example CNN leave 24 channels dead; at theta = 1e-3 their incoming
    weights would set the shared weight exponent and zero the live channels' weights (integer accuracy
    29 % against 99 % float). With the largest live threshold the integer network keeps the accuracy."""
    with np.load(EXAMPLES / "data" / "mnist_test.npz") as f:
        x, y = f["x"][:32], f["y"][:32]
    with np.load(EXAMPLES / "data" / "mnist_calib.npz") as f:
        calib = f["x"][:128]
    with pytest.warns(
        UserWarning, match=r"channels of layer never active .* \(the largest of the live channels\)"
    ):
        snn = convert(
            snncompile.load_onnx(EXAMPLES / "mnist_cnn.onnx"),
            calib,
            method="max",
            timesteps=T,
            progress=False,
            per_channel=True,
        )
    assert all(np.all(np.asarray(n.theta) > DEAD_THETA) for n in snn.of_type(IF))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pop = quantize(lower_populations(snn), calib)
    acc_float = (snncompile.simulate(snn, x, T).outputs[-1].argmax(-1).numpy() == y).mean()
    acc_int = (simulate_populations(pop, x, T).outputs[-1].argmax(-1).numpy() == y).mean()
    assert acc_float > 0.7 and acc_int >= acc_float - 0.1, (acc_float, acc_int)


@pytest.mark.parametrize("scale", [1e-4, 1e4])
def test_activation_scale_changes_nothing_but_thresholds(scale):
    """ReLU nets are positively homogeneous: fc1 scaled by c scales every later activation and threshold
    by c (readout too), so the spikes are the same; float32 rounding moves at most a few of them."""
    ref, ref_pop, _ = compile_int(mlp_proto())
    big, big_pop, msgs = compile_int(mlp_proto(w1=W1 * scale))
    assert not [m for m in msgs if "not finite" in m or "clipped" in m], msgs
    for a, b in ((ref, big), (ref_pop, big_pop)):
        sim = snncompile.simulate if a is ref else simulate_populations
        ra, rb = sim(a, X, T), sim(b, X, T)
        for layer in ("relu1", "relu2"):
            assert abs(ra.spikes[layer] - rb.spikes[layer]) <= 0.01 * ra.spikes[layer] + 2
        pa, pb = ra.outputs[-1].argmax(-1), rb.outputs[-1].argmax(-1)
        assert (pa == pb).float().mean() >= 0.95


def test_weights_and_biases_beyond_the_profile_warn_naming_the_layer():
    """Clip(0, 1e-6) pins relu1's threshold at 1e-6 and a bias of 0.5 is 5e5 thresholds per step: even
    with the smallest threshold mantissa (16 << 6) the bias exceeds 4095 << 7, and fc1's weights would
    need a weight_exp above 7 (clipped to 255 << 7)."""
    _, _, msgs = compile_int(mlp_proto(w1=np.abs(W1), b1=0.5, clip=1e-6))
    weights = [m for m in msgs if m.startswith("x.src->relu1: weights up to") and "> 7" in m]
    bias = [m for m in msgs if m.startswith("relu1: bias up to") and "clipped" in m]
    assert weights and bias, msgs


def _npz(path, x):
    np.savez(path, x=x, y=RNG.integers(0, 4, len(x)))
    return path


def test_membrane_saturation_is_counted_per_layer_and_warned(tmp_path):
    """Clip(0, 0.05) after pre-activations of ~2: the input per step is ~40 thresholds, the 24-bit membrane
    keeps 32 above the threshold, so relu1 saturates in the fixed-point run; relu2 never does."""
    model = tmp_path / "clip.onnx"
    model.write_bytes(mlp_proto(w1=np.abs(W1), clip=0.05).SerializeToString())
    cfg = RunConfig(
        model=model,
        data=_npz(tmp_path / "d.npz", X[:16]),
        calib=_npz(tmp_path / "c.npz", X),
        target="sim-int",
        method="max",
        timesteps=T,
        progress=False,
    )
    with pytest.warns(QuantizationWarning, match=r"relu1 \(IF\): membrane saturated \d+ times"):
        report = run(cfg).report
    sat = {L["name"]: L["saturations"] for L in report["layers"] if "saturations" in L}
    assert sat["relu1"] > 0 and sat["relu2"] == 0, report["layers"]


def test_negative_inputs_use_a_signed_input_encoding():
    """Standardized inputs in [-2, 2]: the source is signed 8-bit (127 / max|x|), and the integer network
    agrees with the float SNN on >= 95 % of predictions and within 2 % of its spikes."""
    xn = (X - 0.5) / 0.25
    snn, pop, _ = compile_int(mlp_proto(), calib=xn)
    src = next(n for n in pop.nodes.values() if isinstance(n, Source))
    assert src.signed and src.scale == pytest.approx(127 / np.abs(xn).max())
    assert (src.forward(torch.as_tensor(xn, dtype=torch.float64)) < 0).any()
    f, q = snncompile.simulate(snn, xn, T), simulate_populations(pop, xn, T)
    assert (f.outputs[-1].argmax(-1) == q.outputs[-1].argmax(-1)).float().mean() >= 0.95
    for layer in ("relu1", "relu2"):
        assert abs(f.spikes[layer] - q.spikes[layer]) <= 0.02 * f.spikes[layer]


def test_negative_inputs_beyond_a_nonnegative_calibration_set_warn(tmp_path):
    """Calibrated on [0, 1], evaluated on [-2, 2]: the unsigned encoding clips negatives to 0 - warned."""
    model = tmp_path / "m.onnx"
    model.write_bytes(mlp_proto().SerializeToString())
    cfg = RunConfig(
        model=model,
        data=_npz(tmp_path / "d.npz", (X[:16] - 0.5) / 0.25),
        calib=_npz(tmp_path / "c.npz", X),
        target="sim-int",
        method="max",
        timesteps=T,
        progress=False,
    )
    with pytest.warns(QuantizationWarning, match=r"x\.src \(Source\): evaluation inputs span .*unsigned"):
        run(cfg)
