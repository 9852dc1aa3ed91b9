"""Train two small Keras models on MNIST and export them with tf2onnx (channels-last exports).

They exercise what a Keras/TensorFlow export looks like to snncompile: tf2onnx's NHWC<->NCHW
Transposes around each Conv, the Flatten of an NHWC tensor (a Transpose(0, 2, 3, 1) + Reshape before
the first Dense layer), MatMul + Add for Dense, and a Softmax on the output.

Needs TensorFlow and tf2onnx, which snncompile does not depend on; run it in a separate venv::

    python3.11 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install "tensorflow-cpu==2.15.*" tf2onnx "onnx==1.16.*" onnxruntime "numpy<2"
    /tmp/tfvenv/bin/python examples/export_keras.py --mnist /tmp/mnist/package/data

Both models take the bundled data's (N, 1, 28, 28) pixels in [0, 1] (a Keras Reshape to (28, 28, 1)
first), and end in ``Dense(10, activation="softmax")``. Writes examples/keras_mlp.onnx and
examples/keras_cnn.onnx (opset 13) and checks each against Keras with onnxruntime on the 1000
bundled test samples (fails at a difference of 1e-4 or more).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def load_split(mnist_dir: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST idx files as float32 (N, 1, 28, 28) in [0, 1] and int64 labels (as train.py reads them)."""
    def idx(path: Path) -> np.ndarray:
        raw = path.read_bytes()
        ndim = raw[3]
        dims = np.frombuffer(raw, ">u4", ndim, 4).astype(int)
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)

    x = idx(mnist_dir / f"{prefix}-images-idx3-ubyte").astype(np.float32)[:, None] / 255.0
    return x, idx(mnist_dir / f"{prefix}-labels-idx1-ubyte").astype(np.int64)


def build(name: str):
    from tensorflow import keras

    L = keras.layers
    inp = keras.Input((1, 28, 28), name="input")
    x = L.Reshape((28, 28, 1))(inp)
    if name == "keras_mlp":
        x = L.Flatten()(x)
        x = L.Dense(128, activation="relu")(x)
    else:
        x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
        x = L.AveragePooling2D(2)(x)
        x = L.Conv2D(16, 3, padding="same", activation="relu")(x)
        x = L.AveragePooling2D(2)(x)
        x = L.Flatten()(x)
        x = L.Dense(64, activation="relu")(x)
    out = L.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name=name)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist", type=Path, default=Path("/tmp/mnist/package/data"))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    tf.keras.utils.set_random_seed(0)
    x_tr, y_tr = load_split(args.mnist, "train")
    test = np.load(HERE / "data" / "mnist_test.npz")
    for name in ("keras_mlp", "keras_cnn"):
        model = build(name)
        model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(x_tr, y_tr, batch_size=128, epochs=args.epochs, verbose=2)
        spec = (tf.TensorSpec((None, 1, 28, 28), tf.float32, name="input"),)
        path = args.out / f"{name}.onnx"
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=13, output_path=str(path))
        want = model.predict(test["x"], verbose=0)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: test["x"]})[0]
        diff = float(np.abs(got - want).max())
        acc = float((want.argmax(1) == test["y"]).mean())
        print(f"{path.name}: bundled-test accuracy {100 * acc:.1f} %, onnxruntime vs Keras max diff {diff:.2e}")
        if diff >= 1e-4:
            raise SystemExit(f"{path.name}: onnxruntime differs from Keras by {diff}")


if __name__ == "__main__":
    main()
