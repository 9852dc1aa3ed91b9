"""The example torch models rebuilt by hand in Keras (for SNN Toolbox, which takes Keras models).

Same weights: BatchNorm folded into its conv, conv kernels (O, I, H, W) -> (H, W, I, O), channels
last, and the Linear after a conv Flatten reordered from NCHW to NHWC order. ``check`` compares the
logits of both on data (the runner records the max difference). Built only in the SNN Toolbox venv.
"""

from __future__ import annotations

import harness as H
import numpy as np
from torch import nn

__all__ = ["build_keras", "check"]


def _conv(m: nn.Conv2d):
    return [m.weight.detach().numpy().transpose(2, 3, 1, 0), m.bias.detach().numpy()]


def _dense(m: nn.Linear, nchw: tuple[int, int, int] | None = None):
    w = m.weight.detach().numpy()
    if nchw is not None:  # torch flattens (C, H, W), Keras (H, W, C)
        c, h, wd = nchw
        w = w.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
    return [w.T, m.bias.detach().numpy()]


def _act(x, kind: str):
    from tensorflow import keras

    return keras.layers.ReLU(max_value=6.0)(x) if kind == "relu6" else keras.layers.Activation("relu")(x)


def _cnn(t: nn.Module, act: str):
    from tensorflow import keras

    L = keras.layers
    convs = [m for m in t.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in t.modules() if isinstance(m, nn.Linear)]
    inp = keras.Input((28, 28, 1))
    x = _act(L.Conv2D(16, 3, padding="same", weights=_conv(convs[0]))(inp), act)
    x = L.AveragePooling2D(2)(x)
    x = _act(L.Conv2D(32, 3, padding="same", weights=_conv(convs[1]))(x), act)
    x = L.Flatten()(L.AveragePooling2D(2)(x))
    x = _act(L.Dense(128, weights=_dense(fcs[0], (32, 7, 7)))(x), act)
    return keras.Model(inp, L.Dense(10, activation="softmax", weights=_dense(fcs[1]))(x))


def _mlp(t: nn.Module):
    from tensorflow import keras

    L = keras.layers
    fcs = [m for m in t.modules() if isinstance(m, nn.Linear)]
    inp = keras.Input((28, 28, 1))
    x = L.Flatten()(inp)  # C = 1: NCHW and NHWC flatten orders agree
    x = _act(L.Dense(256, weights=_dense(fcs[0]))(x), "relu")
    x = _act(L.Dense(128, weights=_dense(fcs[1]))(x), "relu")
    return keras.Model(inp, L.Dense(10, activation="softmax", weights=_dense(fcs[2]))(x))


def _concat(t: nn.Module):
    from tensorflow import keras

    L = keras.layers
    inp = keras.Input((28, 28, 1))
    x = _act(L.Conv2D(16, 3, padding="same", weights=_conv(t.stem[0]))(inp), "relu")
    x = L.AveragePooling2D(2)(x)
    a = _act(L.Conv2D(16, 1, weights=_conv(t.branch_a[0]))(x), "relu")
    b = _act(L.Conv2D(16, 3, padding="same", weights=_conv(t.branch_b[0]))(x), "relu")
    x = L.Flatten()(L.AveragePooling2D(2)(L.Concatenate(axis=-1)([a, b])))
    return keras.Model(inp, L.Dense(10, activation="softmax", weights=_dense(t.fc, (32, 7, 7)))(x))


def _resnet(t: nn.Module):
    from tensorflow import keras

    L = keras.layers
    inp = keras.Input((28, 28, 1))
    x = _act(L.Conv2D(16, 3, padding="same", weights=_conv(t.stem[0]))(inp), "relu")
    x = L.MaxPooling2D(2)(x)
    y = _act(L.Conv2D(16, 3, padding="same", weights=_conv(t.block.conv1))(x), "relu")
    y = L.Conv2D(16, 3, padding="same", weights=_conv(t.block.conv2))(y)
    x = L.AveragePooling2D(2)(_act(L.Add()([y, x]), "relu"))
    x = _act(L.Conv2D(32, 3, padding="same", weights=_conv(t.conv[0]))(x), "relu")
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10, activation="softmax", weights=_dense(t.fc))(x))


def build_keras(name: str, torch_model: nn.Module):
    """The Keras twin of example model ``name`` (BN folded)."""
    t = H.fold_bn(torch_model)
    builders = {
        "mnist_mlp": lambda: _mlp(t),
        "mnist_cnn": lambda: _cnn(t, "relu"),
        "mnist_functional": lambda: _cnn(t, "relu"),
        "mnist_qcfs": lambda: _cnn(t, "relu"),  # its QCFS activations as ReLU (protocol.load_model)
        "mnist_relu6": lambda: _cnn(t, "relu6"),
        "mnist_concat": lambda: _concat(t),
        "mnist_resnet": lambda: _resnet(t),
    }
    return builders[name]()


def check(keras_model, torch_model: nn.Module, x: np.ndarray) -> float:
    """Max |softmax(torch logits) - keras output| on ``x`` (N, 1, 28, 28)."""
    import torch

    with torch.no_grad():
        p = torch.softmax(torch_model(torch.as_tensor(x)), 1).numpy()
    return float(np.abs(keras_model.predict(x.transpose(0, 2, 3, 1), verbose=0) - p).max())
