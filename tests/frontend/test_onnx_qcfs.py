"""QCFS quantized activations (Bu et al., ICLR 2022), h(x) = lam/L * clip(floor(x L/lam + 1/2), 0, L),
recognized as one QuantClip node from the arrangements exporters write, exactly (against torch and
onnxruntime), and converted without a threshold search (theta = lam, v0 = theta/2)."""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx_helpers import make_model, node
from torch import nn

from snncompile.convert import convert
from snncompile.errors import ConversionError
from snncompile.frontend.onnx import load_onnx
from snncompile.ir import IF, BatchNorm, Floor, QuantClip


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.floor(x)

    @staticmethod
    def backward(ctx, g):
        return g


class ClampFirst(nn.Module):
    """QCFS's reference code: x / lam -> clamp(0, 1) -> floor(x L + 1/2) / L -> * lam."""

    def __init__(self, levels=4, lam=3.0):
        super().__init__()
        self.levels, self.lam = levels, nn.Parameter(torch.tensor([lam]))

    def forward(self, x):
        x = torch.clamp(x / self.lam, 0, 1)
        return _FloorSTE.apply(x * self.levels + 0.5) / self.levels * self.lam


class ClipLast(nn.Module):
    """The equation as written: lam / L * clip(floor(x * L / lam + 1/2), 0, L)."""

    def __init__(self, levels=4, lam=2.5):
        super().__init__()
        self.levels, self.lam = levels, lam

    def forward(self, x):
        return self.lam / self.levels * torch.clamp(torch.floor(x * self.levels / self.lam + 0.5), 0, self.levels)


class ShiftedFloor(nn.Module):
    """Another arrangement: relu, then floor((x + lam/2L) / (lam/L)) capped with min, then scaled."""

    def __init__(self, levels=8, lam=4.0):
        super().__init__()
        self.levels, self.lam = levels, lam

    def forward(self, x):
        step = self.lam / self.levels
        return torch.clamp(torch.floor((torch.relu(x) + step / 2) / step), max=self.levels) * step


def _export(act: nn.Module, opset: int = 17) -> tuple[nn.Module, bytes]:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), act, nn.Flatten(), nn.Linear(144, 3)).eval()
    f = io.BytesIO()
    torch.onnx.export(m, torch.zeros(1, 1, 8, 8), f, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N"}}, opset_version=opset, dynamo=False)
    return m, f.getvalue()


@pytest.mark.parametrize("act,levels,lam", [(ClampFirst(), 4, 3.0), (ClipLast(), 4, 2.5), (ShiftedFloor(), 8, 4.0)])
def test_torch_arrangements_become_one_quantclip(act, levels, lam):
    m, onnx_bytes = _export(act)
    g = load_onnx(onnx_bytes)
    (q,) = g.of_type(QuantClip)
    assert not g.of_type(Floor) and not g.of_type(BatchNorm)
    assert (q.levels, q.lo, q.offset, q.rounding) == (levels, 0, 0.5, "floor")
    assert q.lam == pytest.approx(lam, rel=1e-6)
    x = torch.randn(64, 1, 8, 8) * 2
    got = g.run(x.numpy()).numpy()
    np.testing.assert_allclose(got, m(x).detach().numpy(), rtol=1e-5, atol=1e-5)
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, sess.run(None, {"x": x.numpy()})[0], rtol=1e-5, atol=1e-5)


def test_onnx_chain_with_offset_level_and_shift():
    """Sub/Div/Add/Floor/Clip(1, 5)/Mul/Add: a floor level at 1 (not 0) leaves a shift after the QuantClip."""
    nodes = [node("MatMul", ["x", "W"], ["z"]), node("Div", ["z", "st"], ["u"]), node("Add", ["u", "half"], ["v"]),
             node("Floor", ["v"], ["f"]), node("Clip", ["f", "one", "five"], ["c"]), node("Mul", ["c", "st"], ["m"]),
             node("Add", ["m", "off"], ["y"])]
    inits = {"W": np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32), "st": np.float32(0.3),
             "half": np.float32(0.5), "one": np.float32(1), "five": np.float32(5), "off": np.float32(-0.2)}
    model = make_model(nodes, (6,), 13, **inits)
    g = load_onnx(model)
    (q,) = g.of_type(QuantClip)
    assert q.levels == 4 and q.scale == pytest.approx(0.3)
    x = np.random.default_rng(1).standard_normal((200, 6)).astype(np.float32) * 2
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(g.run(x).numpy(), sess.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_unrecognized_floor_runs_but_does_not_convert():
    """Two Floors in one chain are not a QuantClip: the ANN reference runs it, conversion refuses it."""
    nodes = [node("MatMul", ["x", "W"], ["z"]), node("Floor", ["z"], ["f"]), node("Mul", ["f", "k"], ["m"]),
             node("Floor", ["m"], ["f2"]), node("Relu", ["f2"], ["y"])]
    model = make_model(nodes, (4,), 13, W=np.eye(4, dtype=np.float32), k=np.float32(0.5))
    g = load_onnx(model)
    assert g.of_type(Floor)
    x = np.random.default_rng(2).standard_normal((16, 4)).astype(np.float32) * 3
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(g.run(x).numpy(), sess.run(None, {"x": x})[0])
    with pytest.raises(ConversionError, match="Floor"):
        convert(g, x, method="max", timesteps=4, progress=False)


@pytest.mark.parametrize("method", ["max", "calib-light", "adafire"])
def test_conversion_uses_theta_lam(method):
    """theta = lam, v0 = theta/2, one spike per step, whatever the method; the log says so."""
    _, onnx_bytes = _export(ClampFirst(levels=4, lam=3.0))
    g = load_onnx(onnx_bytes)
    x = np.random.default_rng(3).uniform(0, 1, (64, 1, 8, 8)).astype(np.float32)
    snn = convert(g, x, method=method, timesteps=4, progress=False)
    (neuron,) = snn.of_type(IF)
    assert float(neuron.theta) == pytest.approx(3.0) and neuron.max_spikes == 1
    row = next(r for r in snn.meta["conversion_log"] if r["node"] == neuron.name)
    assert "QCFS, L=4" in row["notes"] and "no threshold search" in row["notes"]
    if method == "max":
        assert float(neuron.v0) == pytest.approx(1.5)
