"""Per-axis (per-channel) activation quantizers and blocked (opset 21 ``block_size``) dequantization.

* onnx's own node tests ``test_quantizelinear_axis`` and ``test_dequantizelinear_blocked`` equal their
  expected outputs;
* a per-axis QuantizeLinear is exact against onnxruntime (round half to even on ties, saturation, a scale
  and zero point per channel), alone (integer output) and with its DequantizeLinear (a QuantClip with a
  ceiling and level count per channel); blocked DequantizeLinear of int8 weights folds to exactly
  ``(w - zp) * s`` with each block's scale;
* a per-channel QDQ activation converts as a quantized clipped ReLU per channel (IF theta = lam[c],
  v0 = lam[c]/2): at T = L steps the spiking network's output equals the ANN's, and the model compiles
  with the CLI to ``sim`` and ``sim-int``.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from node_suite import collect, run_case
from onnx_helpers import assert_matches_ort, make_model, node, ort_run

from snncompile.cli import main
from snncompile.convert import convert
from snncompile.errors import ConversionError, UnsupportedOperator
from snncompile.frontend.onnx import load_onnx
from snncompile.ir import IF, Linear, QuantClip, Quantize
from snncompile.sim import simulate

_RNG = np.random.default_rng(21)


def w(*shape: int) -> np.ndarray:
    return (_RNG.standard_normal(shape) * 0.4).astype(np.float32)


@pytest.mark.parametrize("name", ["test_quantizelinear_axis", "test_dequantizelinear_blocked"])
def test_onnx_node_tests_pass(name):
    (case,) = [c for c in collect() if c.name == name]
    outcome = run_case(case)
    assert outcome.status == "pass", outcome.detail


def _ties(shape: tuple[int, ...], scale: np.ndarray, axis: int) -> np.ndarray:
    """Samples holding exact ties (k + 1/2) * s of each channel's scale, values past saturation and noise."""
    view = [1] * (len(shape) + 1)
    view[axis] = -1
    s = scale.reshape(view)
    k = _RNG.integers(-300, 300, (6, *shape)).astype(np.float32)
    return np.concatenate([(k + 0.5) * s, k * s * 3, _RNG.standard_normal((4, *shape)).astype(np.float32) * 40])


def _integer_output(nd: onnx.NodeProto, shape: tuple[int, ...], opset: int, **inits: np.ndarray) -> onnx.ModelProto:
    """A one-node model x (N, *shape) float -> y of the zero point's integer type."""
    oh = onnx.helper
    out = oh.np_dtype_to_tensor_dtype(inits["z"].dtype)
    graph = oh.make_graph([nd], "q", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", *shape])],
                          [oh.make_tensor_value_info("y", out, ["N", *shape])],
                          initializer=[onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    opsets = [oh.make_opsetid("", opset)]
    return oh.make_model(graph, opset_imports=opsets, ir_version=oh.find_min_ir_version_for(opsets))


@pytest.mark.parametrize("opset", [13, 19, 21])
@pytest.mark.parametrize("zp_type", [np.uint8, np.int8])
@pytest.mark.parametrize("axis", [1, -1])
def test_per_axis_quantize_is_exact(opset, zp_type, axis):
    """QuantizeLinear alone (its integer output is the network output) and QuantizeLinear -> DequantizeLinear
    per channel (axis 1) and along the last axis (per neuron), equal to onnxruntime element for element."""
    shape = (3, 4, 5)
    n = (1, *shape)[axis]
    s = _RNG.uniform(0.05, 0.5, n).astype(np.float32)
    info = np.iinfo(zp_type)
    z = _RNG.integers(info.min + 20, info.max - 20, n).astype(zp_type)
    x = _ties(shape, s, axis if axis > 0 else len(shape))
    q = _integer_output(onnx.helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=axis), shape, opset,
                        s=s, z=z)
    g = load_onnx(q)
    (qn,) = g.of_type(Quantize)
    assert np.shape(qn.scale) == ((n,) if axis == 1 else shape)  # per channel, or per neuron along W
    np.testing.assert_array_equal(g.run(x).numpy(), ort_run(q, x).astype(np.float32))
    qdq = make_model([node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=axis),
                      node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=axis)], shape, opset, s=s, z=z)
    g = load_onnx(qdq)
    (qc,) = g.of_type(QuantClip)
    assert qc.per_channel and not g.of_type(Quantize)
    np.testing.assert_array_equal(g.run(x).numpy(), ort_run(qdq, x))


def test_per_axis_quantize_along_the_batch_axis_is_refused():
    model = make_model([node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=0),
                        node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=0)], (4,), 13, batch=3,
                       s=np.float32([0.1, 0.2, 0.3]), z=np.uint8([1, 2, 3]))
    with pytest.raises(UnsupportedOperator, match="along the batch axis"):
        load_onnx(model)


def test_blocked_dequantize_of_weights_folds_exactly():
    """int8 weights (6, 10) with one scale and zero point per 4 columns (the last block short): the Gemm
    weight is exactly (w - zp[block]) * s[block] in float32, and the model matches onnxruntime."""
    wq = _RNG.integers(-128, 128, (6, 10)).astype(np.int8)
    ws, wz = _RNG.uniform(0.01, 0.1, (6, 3)).astype(np.float32), _RNG.integers(-4, 4, (6, 3)).astype(np.int8)
    nodes = [node("DequantizeLinear", ["W", "ws", "wz"], ["Wf"], axis=1, block_size=4),
             node("Gemm", ["x", "Wf"], ["y"], transB=1)]
    g = assert_matches_ort(make_model(nodes, (10,), 21, W=wq, ws=ws, wz=wz), (10,), batches=(1, 5))
    (lin,) = g.of_type(Linear)
    cols = np.arange(10) // 4
    want = (wq.astype(np.int64) - wz[:, cols]).astype(np.float32) * ws[:, cols]
    np.testing.assert_array_equal(lin.weight, want)


def test_blocked_dequantize_badly_shaped_scale_is_refused():
    nodes = [node("DequantizeLinear", ["W", "ws"], ["Wf"], axis=1, block_size=4), node("Gemm", ["x", "Wf"], ["y"])]
    model = make_model(nodes, (6,), 21, W=np.ones((6, 8), np.int8), ws=np.ones((6, 3), np.float32))
    with pytest.raises(UnsupportedOperator, match=r"does not block a tensor of shape \(6, 8\)"):
        load_onnx(model)


@pytest.mark.parametrize("ws, wz", [(np.full(5, 0.1, np.float32), None),
                                     (np.full(6, 0.1, np.float32), np.zeros(5, np.int8))])
def test_per_axis_dequantize_of_weights_of_a_wrong_length_is_refused(ws, wz):
    """A per-axis weight scale (or zero point) whose length is not the axis' size: a one-line error naming
    the node, not numpy's broadcasting error."""
    inits = {"W": np.ones((6, 8), np.int8), "ws": ws, **({} if wz is None else {"wz": wz})}
    nodes = [node("DequantizeLinear", ["W", "ws", *(["wz"] if wz is not None else [])], ["Wf"], axis=0),
             node("Gemm", ["x", "Wf"], ["y"], transB=1)]
    with pytest.raises(UnsupportedOperator, match=r"DequantizeLinear\): .* of shape \(5,\) .* axis 0 of size 6"):
        load_onnx(make_model(nodes, (8,), 13, **inits))


@pytest.mark.parametrize("op", ["DequantizeLinear", "QuantizeLinear"])
def test_quantizer_axis_out_of_range_is_refused(op):
    """ONNX accepts axis in [-r, r-1]: axis=3 on the rank-2 weights (6, 4) is no alias of axis 1, nor axis=5
    on the rank-3 activation (N, 2, 4) one of axis 2."""
    s, z = np.float32([0.1, 0.2, 0.3, 0.4]), np.zeros(4, np.uint8)
    if op == "DequantizeLinear":
        nodes = [node(op, ["W", "s", "z"], ["Wf"], axis=3), node("Gemm", ["x", "Wf"], ["y"], transB=1)]
        model, want = make_model(nodes, (4,), 13, W=np.ones((6, 4), np.uint8), s=s, z=z), "axis=3 .* rank 2"
    else:
        nodes = [node(op, ["x", "s", "z"], ["q"], axis=5), node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=5)]
        model, want = make_model(nodes, (2, 4), 13, s=s, z=z), "axis=5 .* rank 3"
    with pytest.raises(UnsupportedOperator, match=rf"\({op}\): {want}"):
        load_onnx(model)


def test_blocked_activation_quantizer_of_one_sample_matches_onnxruntime():
    """A blocked QuantizeLinear -> DequantizeLinear on an activation (a batch-1 model: the scales cover
    one sample, blocks of 2 along axis 1) is a QuantClip per neuron, exact against onnxruntime."""
    s = _RNG.uniform(0.1, 0.5, (1, 4, 3)).astype(np.float32)
    z = _RNG.integers(0, 255, (1, 4, 3)).astype(np.uint8)
    nodes = [node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1, block_size=2),
             node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1, block_size=2)]
    model = make_model(nodes, (8, 3), 21, batch=1, s=s, z=z)
    g = load_onnx(model)
    (qc,) = g.of_type(QuantClip)
    assert np.shape(qc.scale) == (8, 3)
    x = _ties((8, 3), np.repeat(s[0], 2, axis=0)[:, 0], 1)[:1] + np.zeros((1, 8, 3), np.float32)
    for xi in (x, _RNG.standard_normal((1, 8, 3)).astype(np.float32) * 60):
        np.testing.assert_array_equal(g.run(xi).numpy(), ort_run(model, xi))


def _qdq_cnn(zp: np.ndarray) -> tuple[onnx.ModelProto, np.ndarray]:
    """(model, 200 samples in [0, 1)): x (2, 8, 8) -> Conv(4, weights >= 0) -> per-channel QDQ (uint8, a zero
    point per channel, each scale set so that the channel's 99th percentile is its ceiling) -> Flatten ->
    Gemm(5, biases centring the logits). The quantizer's input is >= 0, so the activation is the quantized
    clipped ReLU (the negative range the IF drops is never reached)."""
    rng = np.random.default_rng(7)
    K, kb = np.abs(rng.standard_normal((4, 2, 3, 3))) * 0.2, rng.standard_normal(4) * 0.08
    x = rng.uniform(0, 1, (200, 2, 8, 8)).astype(np.float32)
    c = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(K).float(), torch.from_numpy(kb).float(),
                                   padding=1).numpy()
    scale = np.percentile(c.transpose(1, 0, 2, 3).reshape(4, -1), 99, axis=1) / (255 - zp.astype(np.float64))
    nodes = [node("Conv", ["x", "K", "kb"], ["c"], pads=[1, 1, 1, 1]),
             node("QuantizeLinear", ["c", "s", "z"], ["q"], axis=1),
             node("DequantizeLinear", ["q", "s", "z"], ["a"], axis=1), node("Flatten", ["a"], ["f"]),
             node("Gemm", ["f", "W", "b"], ["y"], transB=1)]
    consts = {"K": K.astype(np.float32), "kb": kb.astype(np.float32), "s": scale.astype(np.float32), "z": zp,
              "W": (rng.standard_normal((5, 256)) * 0.4).astype(np.float32)}
    b = -ort_run(make_model(nodes, (2, 8, 8), 13, b=np.zeros(5, np.float32), **consts), x).mean(0)
    return make_model(nodes, (2, 8, 8), 13, b=b, **consts), x


def test_requantizing_a_per_channel_grid_after_a_transpose_is_no_identity():
    """Per-channel QDQ along C, Transpose C <-> H (C = H = 4), then the same scale vector along axis 1 (now
    H): element (c, h) sits on grid s[c] but is re-quantized with s[h], so the second pair is no identity
    (it was dropped as one: 18 of 160 values off by up to 0.2)."""
    s, z = np.float32([0.05, 0.1, 0.2, 0.4]), np.zeros(4, np.uint8)
    nodes = [node("Conv", ["x", "K"], ["c"]), node("QuantizeLinear", ["c", "s", "z"], ["q1"], axis=1),
             node("DequantizeLinear", ["q1", "s", "z"], ["a"], axis=1),
             node("Transpose", ["a"], ["t"], perm=[0, 2, 1, 3]),
             node("QuantizeLinear", ["t", "s", "z"], ["q2"], axis=1),
             node("DequantizeLinear", ["q2", "s", "z"], ["y"], axis=1)]
    g = assert_matches_ort(make_model(nodes, (2, 4, 5), 13, K=w(4, 2, 1, 1) * 4, s=s, z=z), (2, 4, 5))
    assert len(g.of_type(QuantClip)) == 2


def test_per_channel_qdq_converts_per_channel_and_follows_the_ann_at_T_equal_L():
    """Levels L = 255 - zp = 4 in every channel, ceilings lam = 4 s[c]: each IF gets theta = lam[c] and
    v0 = lam[c]/2, and at T = L = 4 steps the spiking network's output equals the ANN's (random inputs
    hit no tie, where round half to even and the IF's round half up could differ)."""
    model, x = _qdq_cnn(np.full(4, 251, np.uint8))
    g = assert_matches_ort(model, (2, 8, 8), batches=(3,))
    (qc,) = g.of_type(QuantClip)
    scale = onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "s"))
    lam = (4 * scale.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(qc.lam, np.float32), lam)
    snn = convert(g, x, method="max", timesteps=4, progress=False)
    (neuron,) = snn.of_type(IF)
    np.testing.assert_array_equal(neuron.theta, lam)
    np.testing.assert_array_equal(neuron.v0, lam / 2)
    row = next(r for r in snn.meta["conversion_log"] if r["node"] == neuron.name)
    assert "L=4 levels per channel" in row["notes"] and "theta = lam per channel" in row["notes"]
    got = simulate(snn, x, 4).outputs[-1].numpy()
    np.testing.assert_allclose(got, g.run(x).numpy(), rtol=1e-5, atol=1e-5)


def test_per_neuron_ceiling_is_refused_by_the_conversion():
    """A quantizer along W (a ceiling per neuron) runs in the ANN reference but is no IF threshold."""
    nodes = [node("Conv", ["x", "K"], ["c"]), node("QuantizeLinear", ["c", "s", "z"], ["q"], axis=3),
             node("DequantizeLinear", ["q", "s", "z"], ["a"], axis=3), node("Flatten", ["a"], ["f"]),
             node("Gemm", ["f", "W"], ["y"], transB=1)]
    model = make_model(nodes, (1, 4, 4), 13, K=np.abs(w(2, 1, 1, 1)), s=np.float32([0.1, 0.2, 0.3, 0.4]),
                       z=np.zeros(4, np.uint8), W=w(3, 32))
    g = assert_matches_ort(model, (1, 4, 4))
    with pytest.raises(ConversionError, match=r"QuantClip\): a ceiling per neuron"):
        convert(g, np.ones((4, 1, 4, 4), np.float32), method="max", timesteps=4, progress=False)


def _compile(tmp_path, model: onnx.ModelProto, x: np.ndarray, target: str, steps: int) -> dict:
    """The CLI's report compiling ``model`` on ``x`` labelled with onnxruntime's predictions (100 evaluated)."""
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "d.npz", x=x, y=ort_run(model, x).argmax(1))
    out = tmp_path / f"{target}.snn"
    assert main([str(tmp_path / "m.onnx"), "--data", str(tmp_path / "d.npz"), "--samples", "100", "--target",
                 target, "-T", str(steps), "--method", "max", "--out", str(out), "-q"]) == 0
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("target", ["sim", "sim-int"])
def test_per_channel_qdq_model_compiles_at_T_equal_L(tmp_path, target):
    """The CLI compiles the per-channel QDQ model with L = 4 in every channel at T = 4: on ``sim`` the spiking
    network predicts exactly as onnxruntime (measured 100 %); ``sim-int`` (8-bit weights and input) loses
    what the same model quantized per tensor loses (measured 92 %, per-tensor twin 93 %)."""
    model, x = _qdq_cnn(np.full(4, 251, np.uint8))
    report = _compile(tmp_path, model, x, target, 4)
    assert report["accuracy"]["ann"] == 1.0 and report["accuracy"]["snn_float"] == 1.0
    assert report["accuracy"]["snn"] >= (1.0 if target == "sim" else 0.85), report["accuracy"]


@pytest.mark.parametrize("target", ["sim", "sim-int"])
def test_per_channel_qdq_model_with_unequal_levels_compiles(tmp_path, target):
    """Channels with different level counts (L = 255 - zp = 6, 10, 20, 40): thresholds per channel in the
    conversion log; no single T equals every L, so the spiking network approximates the ANN (measured at
    T = 40: 83 % of onnxruntime's predictions on ``sim`` and on ``sim-int``)."""
    model, x = _qdq_cnn(np.uint8([249, 245, 235, 215]))
    report = _compile(tmp_path, model, x, target, 40)
    (row,) = [r for r in report["conversion"] if r["to"] == "IF"]
    assert len(row["theta"]) == 4 and "L=6 to 40 levels per channel" in row["notes"]
    assert report["accuracy"]["ann"] == 1.0 and report["accuracy"]["snn"] >= 0.7, report["accuracy"]
    assert abs(report["accuracy"]["snn"] - report["accuracy"]["snn_float"]) <= 0.05
