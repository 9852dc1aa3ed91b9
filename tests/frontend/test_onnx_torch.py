"""Small torch networks exported with ``torch.onnx.export(dynamo=False)`` at opsets 13 and 17.

Opset 13 is exported without torch's constant folding, so BatchNormalization nodes and the
Shape/Gather/Concat arithmetic of ``view``/``reshape`` reach the importer unfolded.

Reference: onnxruntime on the exported file, batch sizes 1 and 3 (dynamic batch axis),
rtol 1e-4, atol 1e-5.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx_helpers import ATOL, RTOL, ort_run
from torch import nn

from snncompile.frontend.onnx import load_onnx
from snncompile.ir import BatchNorm, ReLU


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(12, 16), nn.Linear(16, 16), nn.Linear(16, 5)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


class BNCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
        )
        self.head = nn.Linear(8 * 2 * 2, 4)

    def forward(self, x):
        y = self.body(x)
        return self.head(y.view(y.size(0), -1))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c0 = nn.Conv2d(3, 6, 3, padding=1)
        self.c1, self.c2 = nn.Conv2d(6, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.pool, self.gap, self.fc = (
            nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Linear(6, 3),
        )

    def forward(self, x):
        h = self.pool(F.relu(self.c0(x)))
        h = F.relu(h + self.c2(F.relu(self.c1(h))))
        return self.fc(torch.flatten(self.gap(h), 1))


class ReLU6Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.bn, self.fc = nn.Conv2d(3, 4, 3, groups=1), nn.BatchNorm2d(4), nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(F.relu6(self.bn(self.c(x))).reshape(x.shape[0], -1))


class ConcatNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 2, 3, padding=1)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)

    def forward(self, x):
        h = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=1)
        return F.max_pool2d(F.relu(self.dw(h)), 2).flatten(1)


MODELS = {
    "mlp": (MLP, (3, 2, 2)),
    "bn_cnn": (BNCNN, (3, 8, 8)),
    "residual_maxpool": (Residual, (3, 7, 7)),
    "relu6": (ReLU6Net, (3, 8, 8)),
    "concat": (ConcatNet, (3, 6, 6)),
}


def _export(name: str, opset: int, path, dynamic: bool = True) -> tuple[str, tuple[int, ...]]:
    cls, shape = MODELS[name]
    torch.manual_seed(0)
    model = cls().eval()
    for m in model.modules():  # non-trivial BN statistics so that folding is tested
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 2.0)
    f = str(path / f"{name}_{opset}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            torch.randn(1, *shape),
            f,
            dynamo=False,
            opset_version=opset,
            input_names=["x"],
            output_names=["y"],
            do_constant_folding=opset != 13,
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}} if dynamic else None,
        )
    return f, shape


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("name", list(MODELS))
def test_torch_export_matches_onnxruntime(name: str, opset: int, tmp_path):
    f, shape = _export(name, opset, tmp_path)
    g = load_onnx(f)
    proto = onnx.load(f)
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        np.testing.assert_allclose(g.run(x).numpy(), ort_run(proto, x), rtol=RTOL, atol=ATOL)


def test_bn_is_folded_and_relu6_is_clip(tmp_path):
    g = load_onnx(_export("relu6", 13, tmp_path)[0])
    assert not g.of_type(BatchNorm)
    (r,) = g.of_type(ReLU)
    assert r.max_value == 6.0 and r.source_op == "Clip"


@pytest.mark.parametrize("opset", [13, 17])
def test_fixed_batch_export_generalizes_to_any_batch(opset: int, tmp_path):
    """Exported with batch 1 (literal Reshape targets): the IR still runs batch 3, sample by sample."""
    f, shape = _export("bn_cnn", opset, tmp_path, dynamic=False)
    g, proto = load_onnx(f), onnx.load(f)
    x = np.random.default_rng(1).standard_normal((3, *shape)).astype(np.float32)
    want = np.concatenate([ort_run(proto, x[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(g.run(x).numpy(), want, rtol=RTOL, atol=ATOL)
