"""Train the example MNIST models, export them to ONNX and write bundled data.

Usage (from the repository root)::

    python examples/train.py --mnist /path/to/mnist/idx/dir
    python examples/train.py --models mnist_mlp mnist_cnn --epochs 2
    python examples/train.py --data-only

For every model in ``examples/models.py`` this trains with Adam (lr 1e-3,
batch 128), prints the test accuracy, saves ``<out>/<name>.pt`` (state_dict)
and ``<out>/<name>.onnx`` (opset 17, legacy TorchScript exporter, eval mode)
and checks the ONNX file against the torch model with onnxruntime.
It also writes ``<out>/data/mnist_calib.npz`` (500 training samples),
``<out>/data/mnist_test.npz`` (the first 1000 test samples) and ``<out>/data/mnist_val.npz``
(the next 1000 test samples: held-out validation data the models were not trained on).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import MODELS  # noqa: E402

EXAMPLES_DIR = Path(__file__).resolve().parent
DEFAULT_MNIST = Path("/tmp/mnist/package/data")
ONNX_TOL = 1e-4
N_CALIB = 500
N_TEST = 1000
N_VAL = 1000  # test samples N_TEST .. N_TEST + N_VAL: validation, disjoint from the evaluated ones

Split = tuple[np.ndarray, np.ndarray]


def read_idx(path: Path) -> np.ndarray:
    """Read an uncompressed big-endian IDX file (ubyte data only)."""
    raw = path.read_bytes()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(tuple(dims))


def load_split(mnist_dir: Path, prefix: str) -> Split:
    """Load ``train`` or ``t10k`` as float32 (N,1,28,28) in [0,1] and int64 labels."""
    images = read_idx(mnist_dir / f"{prefix}-images-idx3-ubyte")
    labels = read_idx(mnist_dir / f"{prefix}-labels-idx1-ubyte")
    x = (images.astype(np.float32) / 255.0)[:, None, :, :]
    return x, labels.astype(np.int64)


def write_data(train: Split, test: Split, out_dir: Path, seed: int = 0) -> None:
    """Write the bundled calibration and test subsets as compressed npz files."""
    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    perm = np.random.default_rng(seed).permutation(len(train[0]))[:N_CALIB]
    np.savez_compressed(data_dir / "mnist_calib.npz", x=train[0][perm], y=train[1][perm])
    np.savez_compressed(data_dir / "mnist_test.npz", x=test[0][:N_TEST], y=test[1][:N_TEST])
    np.savez_compressed(data_dir / "mnist_val.npz", x=test[0][N_TEST:N_TEST + N_VAL], y=test[1][N_TEST:N_TEST + N_VAL])
    print(f"wrote {data_dir / 'mnist_calib.npz'}, {data_dir / 'mnist_test.npz'} and {data_dir / 'mnist_val.npz'}")


def set_seed(seed: int) -> None:
    """Seed torch and numpy so a run is reproducible on the same machine."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def train_model(model: nn.Module, train: Split, epochs: int, seed: int) -> None:
    """Train ``model`` in place with Adam (lr 1e-3) and batch size 128."""
    x = torch.from_numpy(train[0])
    y = torch.from_numpy(train[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(x)))
        total = 0.0
        for start in range(0, len(x), 128):
            idx = order[start:start + 128]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        print(f"  epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}", flush=True)


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Return eval-mode logits for ``x`` as a float32 numpy array."""
    model.eval()
    outs = [model(torch.from_numpy(x[i:i + batch])).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(outs)


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``logits`` against labels ``y``."""
    return float((logits.argmax(axis=1) == y).mean())


def export_onnx(model: nn.Module, path: Path) -> None:
    """Export ``model`` (eval mode) to ONNX opset 17 with a dynamic batch axis."""
    model.eval()
    dummy = torch.zeros(1, 1, 28, 28)
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )


def verify_onnx(path: Path, model: nn.Module, x: np.ndarray) -> float:
    """Check the ONNX file against torch on ``x``; return the max abs difference."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(str(path)))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ort_out = np.concatenate(
        [sess.run(["logits"], {"input": x[i:i + 250]})[0] for i in range(0, len(x), 250)]
    )
    diff = float(np.abs(ort_out - predict(model, x)).max())
    if diff >= ONNX_TOL:
        raise RuntimeError(f"{path.name}: onnxruntime differs from torch by {diff:.3g}")
    return diff


def op_types(path: Path) -> list[str]:
    """Sorted distinct op types of the ONNX graph at ``path``."""
    import onnx

    return sorted({node.op_type for node in onnx.load(str(path)).graph.node})


def run_model(name: str, train: Split, test: Split, args: argparse.Namespace) -> dict:
    """Train, evaluate, save and export one model; return a summary dict."""
    print(f"== {name}", flush=True)
    set_seed(args.seed)
    model = MODELS[name]()
    t0 = time.perf_counter()
    train_model(model, train, args.epochs, args.seed)
    seconds = time.perf_counter() - t0
    full_acc = accuracy(predict(model, test[0]), test[1])
    sub_acc = accuracy(predict(model, test[0][:N_TEST]), test[1][:N_TEST])
    torch.save(model.state_dict(), args.out / f"{name}.pt")
    onnx_path = args.out / f"{name}.onnx"
    export_onnx(model, onnx_path)
    diff = verify_onnx(onnx_path, model, test[0][:N_TEST])
    ops = op_types(onnx_path)
    print(
        f"  test acc {full_acc:.4f} (10k), {sub_acc:.4f} (first {N_TEST}); "
        f"train {seconds:.1f}s; onnx max|diff| {diff:.2e}; "
        f"{onnx_path.stat().st_size / 1024:.1f} KiB; ops {ops}",
        flush=True,
    )
    return {"name": name, "acc": full_acc, "acc_sub": sub_acc, "diff": diff,
            "seconds": seconds, "ops": ops}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist", type=Path, default=DEFAULT_MNIST,
                   help="directory holding the uncompressed MNIST idx files")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS),
                   help="subset of models to train (default: all)")
    p.add_argument("--out", type=Path, default=EXAMPLES_DIR,
                   help="output directory for .onnx/.pt files and data/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-only", action="store_true",
                   help="only write data/mnist_calib.npz, data/mnist_test.npz and data/mnist_val.npz")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point: write the bundled data, then train and export the models."""
    args = parse_args(argv)
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    train = load_split(args.mnist, "train")
    test = load_split(args.mnist, "t10k")
    write_data(train, test, args.out, seed=0)
    if args.data_only:
        return
    t0 = time.perf_counter()
    results = [run_model(name, train, test, args) for name in args.models]
    print(f"\n{'model':<18}{'acc10k':>8}{'acc1k':>8}{'max|diff|':>11}{'train_s':>9}")
    for r in results:
        print(f"{r['name']:<18}{r['acc']:>8.4f}{r['acc_sub']:>8.4f}"
              f"{r['diff']:>11.2e}{r['seconds']:>9.1f}")
    print(f"total time {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
