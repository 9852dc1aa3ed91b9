"""Softmax, LogSoftmax and Sigmoid on the network output: kept by the ANN reference (checked against
onnxruntime), dropped by the spiking conversion with a conversion-log line (the argmax is kept);
anywhere else refused naming the node."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import assert_matches_ort, make_model, node

from snncompile.convert import convert
from snncompile.errors import UnsupportedOperator
from snncompile.frontend.onnx import load_onnx
from snncompile.ir import Linear, Softmax
from snncompile.sim import simulate

_RNG = np.random.default_rng(3)
W1, B1 = _RNG.standard_normal((6, 12)).astype(np.float32), _RNG.standard_normal(12).astype(np.float32)
W2 = _RNG.standard_normal((12, 4)).astype(np.float32)


def _mlp(head: list, opset: int = 13):
    body = [node("MatMul", ["x", "W1"], ["h"]), node("Add", ["h", "B1"], ["a"]), node("Relu", ["a"], ["r"]),
            node("MatMul", ["r", "W2"], ["z"])]
    return make_model(body + head, (6,), opset, W1=W1, B1=B1, W2=W2)


@pytest.mark.parametrize("op,opset,attrs", [
    ("Softmax", 11, {}), ("Softmax", 13, {}), ("Softmax", 21, {"axis": 1}), ("LogSoftmax", 11, {"axis": -1}),
    ("LogSoftmax", 13, {}), ("Sigmoid", 13, {}),
])
def test_output_activation_matches_onnxruntime(op, opset, attrs):
    g = assert_matches_ort(_mlp([node(op, ["z"], ["y"], name="prob", **attrs)], opset), (6,))
    assert g.nodes["prob"].op == op


def test_legacy_softmax_flattens_from_axis():
    """Softmax-11 with axis=1 on a (N, 2, 3) input normalizes over all 6 values (coerced to 2-D)."""
    g = assert_matches_ort(make_model([node("Softmax", ["x"], ["y"], axis=1)], (2, 3), 11), (2, 3))
    assert isinstance(g.nodes["Softmax_0"], Softmax) and g.nodes["Softmax_0"].flat


def test_inside_the_network_is_refused_naming_the_node():
    body = [node("MatMul", ["x", "W1"], ["h"]), node("Softmax", ["h"], ["s"], name="gate"),
            node("MatMul", ["s", "W2"], ["y"], name="fc2")]
    with pytest.raises(UnsupportedOperator) as e:
        load_onnx(make_model(body, (6,), 13, W1=W1, W2=W2))
    msg = str(e.value)
    assert msg.startswith("gate (Softmax):") and "fc2 (MatMul)" in msg and "\n" not in msg


def test_softmax_across_the_batch_refused():
    with pytest.raises(UnsupportedOperator, match="across the batch axis"):
        load_onnx(make_model([node("Softmax", ["x"], ["y"], axis=0)], (4,), 13))


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Sigmoid"])
def test_conversion_drops_it_and_keeps_the_argmax(op):
    ann = load_onnx(_mlp([node(op, ["z"], ["y"], name="prob")]))
    x = np.random.default_rng(0).uniform(0, 1, (64, 6)).astype(np.float32)
    snn = convert(ann, x, method="max", timesteps=64, progress=False)
    assert "prob" not in snn.nodes
    readout = snn.nodes[snn.outputs[0].inputs[0]]
    assert isinstance(readout, Linear)
    line = next(r for r in snn.meta["conversion_log"] if r["node"] == "prob")
    assert line["from_op"] == op and line["to"].startswith("dropped")
    logits = ann.run(x).numpy()
    got = simulate(snn, x, 64).outputs[-1].numpy()
    assert (got.argmax(-1) == logits.argmax(-1)).mean() >= 0.9
