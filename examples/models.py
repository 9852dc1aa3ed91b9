"""Example ANN models for the snncompile MNIST examples.

Each class rebuilds exactly the network that ``examples/train.py`` trains and
exports to ONNX (``examples/<name>.onnx``, weights in ``examples/<name>.pt``).
All models take a ``(N, 1, 28, 28)`` float tensor in ``[0, 1]`` (no mean/std
normalization) and return ``(N, 10)`` logits. They are deliberately small so
that the converted spiking networks stay cheap to simulate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MnistMLP",
    "MnistCNN",
    "MnistResNet",
    "MnistReLU6",
    "MnistConcat",
    "MnistFunctional",
    "MnistQCFS",
    "QCFS",
    "MODELS",
    "build_model",
]


def _conv_bn(cin: int, cout: int, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """3x3 same-padding convolution (with bias) + BatchNorm2d + activation."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=True),
        nn.BatchNorm2d(cout),
        act(),
    )


class MnistMLP(nn.Module):
    """Fully connected 784-256-128-10 network with ReLU activations."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 256),
            nn.ReLU(),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MnistCNN(nn.Module):
    """Two conv+BN+act / avg-pool stages followed by a two-layer classifier.

    ``act`` selects the activation module class (``nn.ReLU`` by default).
    """

    def __init__(self, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn(1, 16, act),
            nn.AvgPool2d(2),
            _conv_bn(16, 32, act),
            nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 128),
            act(),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MnistReLU6(MnistCNN):
    """``MnistCNN`` with every activation replaced by ``nn.ReLU6`` (ONNX Clip)."""

    def __init__(self) -> None:
        super().__init__(act=nn.ReLU6)


class ResidualBlock(nn.Module):
    """Basic residual block: conv-BN-ReLU, conv-BN, identity add, ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu2(y + x)


class MnistResNet(nn.Module):
    """Tiny ResNet: stem, max-pool, one residual block, avg-pool, conv, GAP, FC."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn(1, 16)
        self.pool1 = nn.MaxPool2d(2)
        self.block = ResidualBlock(16)
        self.pool2 = nn.AvgPool2d(2)
        self.conv = _conv_bn(16, 32)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.stem(x))
        x = self.pool2(self.block(x))
        x = self.gap(self.conv(x))
        return self.fc(self.flatten(x))


class MnistConcat(nn.Module):
    """Stem followed by a 1x1 and a 3x3 branch concatenated on channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn(1, 16)
        self.pool1 = nn.AvgPool2d(2)
        self.branch_a = nn.Sequential(nn.Conv2d(16, 16, 1), nn.ReLU())
        self.branch_b = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.pool2 = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.stem(x))
        x = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)
        return self.fc(self.flatten(self.pool2(x)))


class MnistFunctional(nn.Module):
    """Same topology as ``MnistCNN`` but with functional ``F.relu`` calls."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.pool1 = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.pool2 = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(F.relu(self.bn1(self.conv1(x))))
        x = self.pool2(F.relu(self.bn2(self.conv2(x))))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class _FloorSTE(torch.autograd.Function):
    """floor(x) forward, identity gradient (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class QCFS(nn.Module):
    """Quantization-clip-floor-shift activation (Bu et al., ICLR 2022) with L levels and a trained ceiling:

    h(x) = lam / L * clip(floor(x * L / lam + 1/2), 0, L)

    written as QCFS's reference code does: x / lam -> clamp(0, 1) -> floor(x * L + 1/2) / L -> * lam.
    """

    def __init__(self, levels: int = 4, lam: float = 8.0) -> None:
        super().__init__()
        self.levels = levels
        self.lam = nn.Parameter(torch.tensor([lam]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(x / self.lam, 0, 1)
        x = _FloorSTE.apply(x * self.levels + 0.5) / self.levels
        return x * self.lam


class MnistQCFS(MnistCNN):
    """``mnist_cnn`` with every activation a QCFS quantized clipped ReLU (L = 4), trained as such."""

    def __init__(self) -> None:
        super().__init__(act=QCFS)


MODELS: dict[str, type[nn.Module]] = {
    "mnist_mlp": MnistMLP,
    "mnist_cnn": MnistCNN,
    "mnist_resnet": MnistResNet,
    "mnist_relu6": MnistReLU6,
    "mnist_concat": MnistConcat,
    "mnist_functional": MnistFunctional,
    "mnist_qcfs": MnistQCFS,
}


def build_model(name: str) -> nn.Module:
    """Instantiate the example model registered under ``name``."""
    try:
        return MODELS[name]()
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose from {sorted(MODELS)}") from None
