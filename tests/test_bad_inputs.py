"""Hostile inputs to the ``snncompile`` CLI: each exits with status 2 and prints ONE line on stderr,
``error: ...`` naming the file, node or tensor (expected vs got where that applies), never a
traceback, and leaves no output directory (nor a ``.NAME.tmp-*`` sibling) behind.

Each case runs in a process of its own. Importing torch costs ~1.5 s of CPU per process, so the
cases are forked from one warm interpreter (``_ZYGOTE``: it imports snncompile and nothing else,
then per case forks a child that calls ``snncompile.cli.main`` exactly as the console script does,
with its own stdout/stderr files and exit status). ``test_installed_executable`` runs a few cases
through the real ``snncompile`` executable as well. ``python tests/test_bad_inputs.py`` prints
the case table of docs/robustness.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "mnist_mlp.onnx"
DATA = ROOT / "examples" / "data" / "mnist_test.npz"
CALIB = ROOT / "examples" / "data" / "mnist_calib.npz"
EXE = Path(sys.executable).with_name("snncompile")
FAST = ("--samples", "4", "-T", "2", "--calib-samples", "8", "--method", "max", "-q")  # keeps a full run ~1 s
NOBODY = 65534


# ---- building bad inputs ---------------------------------------------------------------------------
def _mlp() -> onnx.ModelProto:
    return onnx.load(str(MODEL))


def _init(m: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in m.graph.initializer if t.name == name)


def _set_init(m: onnx.ModelProto, name: str, fn: Callable[[np.ndarray], np.ndarray]) -> onnx.ModelProto:
    t = _init(m, name)
    t.CopyFrom(numpy_helper.from_array(fn(numpy_helper.to_array(t).copy()), name))
    return m


def _poke(arr: np.ndarray, value: float) -> np.ndarray:
    arr.reshape(-1)[7] = value
    return arr


def _tiny(nodes, inits=None, in_dims=("N", 1, 28, 28), out_dims=("N", 10)) -> onnx.ModelProto:
    """A small generated model (input 'x', output 'y'), opset 13."""
    g = oh.make_graph(
        nodes,
        "tiny",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, list(in_dims))],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, list(out_dims))],
        initializer=[numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in (inits or {}).items()],
    )
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)], ir_version=8)


def _flat_fc(*extra_nodes) -> list:
    return [
        oh.make_node("Flatten", ["x"], ["f"], name="flat"),
        oh.make_node("Gemm", ["f", "W", "B"], ["h"], name="fc1", transB=1),
        *extra_nodes,
    ]


W1 = np.full((10, 784), 0.01, np.float32)
B1 = np.zeros(10, np.float32)


def _dims(m: onnx.ModelProto, dims) -> onnx.ModelProto:
    d = m.graph.input[0].type.tensor_type.shape.dim
    for i, v in enumerate(dims):
        d[i].Clear()
        if isinstance(v, str):
            d[i].dim_param = v
        else:
            d[i].dim_value = v
    return m


def _op(m: onnx.ModelProto, node: str, op_type: str) -> onnx.ModelProto:
    next(n for n in m.graph.node if n.name == node).op_type = op_type
    return m


def _attr(m: onnx.ModelProto, node: str, **attrs) -> onnx.ModelProto:
    n = next(n for n in m.graph.node if n.name == node)
    n.attribute.extend(oh.make_attribute(k, v) for k, v in attrs.items())
    return m


def _drop_init(m: onnx.ModelProto, name: str) -> onnx.ModelProto:
    m.graph.initializer.remove(_init(m, name))
    return m


@dataclass(frozen=True)
class Case:
    """One bad input. ``args(d)`` writes its files into the empty directory ``d`` and returns the CLI
    arguments (``--out`` is added: ``d/out.snn``, unless the case names its own); the error line must
    contain every string of ``expect`` (``{d}`` is replaced by the case directory)."""

    id: str
    what: str
    args: Callable[[Path], list]
    expect: tuple[str, ...]
    uid: int | None = None  # run as this user (a read-only directory does not stop root)


def _model_file(name: str, content: bytes | onnx.ModelProto | Callable[[], onnx.ModelProto], *extra):
    def args(d: Path) -> list:
        data = content() if callable(content) else content
        (d / name).write_bytes(data if isinstance(data, bytes) else data.SerializeToString())
        return [d / name, "--data", DATA, "--calib", CALIB, *FAST, *extra]

    return args


def _npz(name: str, calib: bool = False, **arrays):
    def args(d: Path) -> list:
        np.savez(d / name, **arrays)
        data, cal = (DATA, d / name) if calib else (d / name, CALIB)
        return [MODEL, "--data", data, "--calib", cal, *FAST]

    return args


def _file(name: str, text: str, flag: str):
    def args(d: Path) -> list:
        (d / name).write_text(text)
        files = {"--data": DATA, "--calib": CALIB, flag: d / name}
        return [MODEL, *(x for kv in files.items() for x in kv), *FAST]

    return args


def _opts(*extra):
    return lambda d: [MODEL, "--data", DATA, "--calib", CALIB, *FAST, *extra]


def _mkdir(d: Path) -> Path:
    d.mkdir()
    return d


def _existing_out(d: Path) -> list:
    (d / "out.snn").mkdir()
    (d / "out.snn" / "keep.txt").write_text("mine")
    return [MODEL, "--data", DATA, "--calib", CALIB, *FAST]


def _out_is_file(d: Path) -> list:
    (d / "out.snn").write_text("a file")
    return [MODEL, "--data", DATA, "--calib", CALIB, *FAST, "--force"]


def _readonly_parent(d: Path) -> list:
    (d / "ro").mkdir()
    (d / "ro").chmod(0o555)
    return [MODEL, "--data", DATA, "--calib", CALIB, *FAST, "--out", d / "ro" / "out.snn"]


def _plain_npy(d: Path) -> list:
    np.save(d / "x.npy", np.zeros((4, 1, 28, 28), np.float32))
    return [MODEL, "--data", d / "x.npy", "--calib", CALIB, *FAST]


def _corrupt_member(d: Path) -> list:
    with zipfile.ZipFile(d / "bad.npz", "w") as z:
        z.writestr("x.npy", "not an array")
    return [MODEL, "--data", d / "bad.npz", "--calib", CALIB, *FAST]


def _npy_dir(d: Path) -> list:
    with np.load(DATA) as f:
        x, y = f["x"][:40].copy(), f["y"][:40]
    x[30, 0, 5, 5] = np.nan
    (d / "npy").mkdir()
    np.save(d / "npy" / "x.npy", x)
    np.save(d / "npy" / "y.npy", y)
    return [MODEL, "--data", d / "npy", "--calib", CALIB, *FAST[2:]]


def _shards(d: Path) -> list:
    (d / "shards").mkdir()
    with np.load(DATA) as f:
        np.savez(d / "shards" / "a.npz", x=f["x"][:10], y=f["y"][:10])
        np.savez(d / "shards" / "b.npz", x=f["x"][:10, :, :14], y=f["y"][:10])
    return [MODEL, "--data", d / "shards", "--calib", CALIB, *FAST]


def _one_sample_data(d: Path) -> list:
    with np.load(DATA) as f:
        np.savez(d / "one.npz", x=f["x"][:1], y=f["y"][:1])
    return [MODEL, "--data", d / "one.npz", *FAST[2:]]


def _cycle() -> onnx.ModelProto:
    nodes = [
        oh.make_node("Add", ["h", "r"], ["a"], name="loop_add"),
        oh.make_node("Relu", ["a"], ["r"], name="loop_relu"),
        oh.make_node("Identity", ["r"], ["y"], name="out"),
    ]
    return _tiny(_flat_fc(*nodes), {"W": W1, "B": B1})


def _rank1() -> onnx.ModelProto:
    return _tiny([oh.make_node("Relu", ["x"], ["y"])], in_dims=["N"], out_dims=["N"])


def _overflowing() -> onnx.ModelProto:
    m = _mlp()
    for w in ("net.1.weight", "net.3.weight"):
        _set_init(m, w, lambda a: a * np.float32(1e30))
    return m


_RNG = np.random.default_rng(0)
X4 = np.zeros((4, 1, 28, 28), np.float32)  # four blank samples of the examples' input shape
# fmt: off
CASES = [  # one case per entry: id, what, how to build it, what the error line must name
    # ---- the model file ----
    Case("truncated-onnx", "the example model cut in half",
         _model_file("half.onnx", MODEL.read_bytes()[:470_000]), ("half.onnx", "not a readable ONNX model")),
    Case("random-bytes", "4 KiB of random bytes", _model_file("random.onnx", _RNG.bytes(4096)),
         ("random.onnx",)),
    Case("text-as-onnx", "a text file named .onnx", _model_file("notes.onnx", b"just some text\n" * 30),
         ("notes.onnx",)),
    Case("empty-onnx", "an empty file", _model_file("empty.onnx", b""), ("empty.onnx", "empty")),
    Case("missing-model", "a model path that does not exist",
         lambda d: [d / "nope.onnx", "--data", DATA, *FAST], ("nope.onnx", "not found")),
    Case("missing-initializer", "the weight of the second Gemm removed from the initializers",
         _model_file("noinit.onnx", lambda: _drop_init(_mlp(), "net.3.weight")), ("net.3.weight",)),
    Case("cycle", "Add -> Relu -> back into the Add", _model_file("cycle.onnx", _cycle),
         ("cycle.onnx", "'r'")),
    Case("weight-rank-3", "a Gemm weight of rank 3 (256, 784, 1)",
         _model_file("rank3.onnx", lambda: _set_init(_mlp(), "net.1.weight", lambda a: a[..., None])),
         ("rank3.onnx", "/net/net.1/Gemm", "rank 3")),
    Case("input-rank-1", "a graph input of shape (N,) (no per-sample dims)",
         _model_file("rank1.onnx", _rank1()),
         ("x (Input)", "rank >= 2")),
    Case("zero-dim", "graph input (N, 0, 28, 28)", _model_file("zero.onnx", lambda: _dims(_mlp(), ("N", 0))),
         ("input (Input)", "dim 1 is 0")),
    Case("symbolic-dim", "graph input (N, C, 28, 28) with a symbolic channel dim",
         _model_file("sym.onnx", lambda: _dims(_mlp(), ("N", "C"))), ("input (Input)", "dim 1", "'C'")),
    Case("empty-bias", "a zero-size Gemm bias (dims [0])",
         _model_file("empty_bias.onnx", lambda: _set_init(_mlp(), "net.5.bias", lambda a: a[:0])),
         ("/net/net.5/Gemm (Gemm)", "(0,)")),
    Case("nan-weight", "one NaN in a weight matrix",
         _model_file("nan.onnx", lambda: _set_init(_mlp(), "net.3.weight", lambda a: _poke(a, np.nan))),
         ("nan.onnx", "'net.3.weight'", "NaN")),
    Case("inf-bias", "one +Inf in a bias vector",
         _model_file("inf.onnx", lambda: _set_init(_mlp(), "net.1.bias", lambda a: _poke(a, np.inf))),
         ("'net.1.bias'", "Inf")),
    Case("float32-overflow",
         "two weight matrices scaled by 1e30: the second layer's activations overflow float32",
         _model_file("huge.onnx", _overflowing), ("/net/net.4/Relu (IF)", "NaN or Inf")),
    Case("unsupported-op-deep", "the last hidden Relu replaced by Tanh",
         _model_file("tanh.onnx", lambda: _op(_mlp(), "/net/net.4/Relu", "Tanh")),
         ("/net/net.4/Relu (Tanh)", "not supported", "supported: ")),
    Case("unsupported-attribute", "Gemm with transA=1",
         _model_file("transa.onnx", lambda: _attr(_mlp(), "/net/net.3/Gemm", transA=1)),
         ("/net/net.3/Gemm (Gemm)", "transA=1")),
    # ---- the data files ----
    Case("data-missing", "--data names no file", lambda d: [MODEL, "--data", d / "nope.npz", *FAST],
         ("nope.npz", "no such file")),
    Case("data-not-npz", "--data is a text file", _file("data.npz", "x,y\n1,2\n", "--data"),
         ("data.npz", "not a readable .npz")),
    Case("data-plain-npy", "--data a lone .npy array instead of an .npz", _plain_npy,
         ("x.npy", "single .npy array")),
    Case("data-corrupt-member", "an .npz whose x.npy member is not in .npy format", _corrupt_member,
         ("bad.npz", "'x' in the archive is not a .npy array")),
    Case("data-no-x", "an .npz without 'x'", _npz("images.npz", images=X4),
         ("images.npz", "no 'x'", "['images']")),
    Case("data-wrong-shape", "x of shape (5, 784) for a (1, 28, 28) input",
         _npz("flat.npz", x=np.zeros((5, 784), np.float32)), ("flat.npz", "(784,)", "(1, 28, 28)")),
    Case("data-strings", "x of dtype <U1", _npz("str.npz", x=np.full((4, 1, 28, 28), "a")),
         ("str.npz", "dtype <U1")),
    Case("data-complex", "x of dtype complex64", _npz("cplx.npz", x=np.zeros((4, 1, 28, 28), np.complex64)),
         ("cplx.npz", "complex64")),
    Case("data-object-pickle", "x an object array (would need pickle)",
         _npz("obj.npz", x=np.array([None, 1], dtype=object)), ("obj.npz", "not a readable .npz")),
    Case("data-nan", "one NaN in x", _npz("nan.npz", x=_poke(X4.copy(), np.nan)),
         ("nan.npz", "1 NaN/Inf")),
    Case("labels-out-of-range", "labels 0..10 for a 10-class model",
         _npz("y11.npz", x=np.zeros((11, 1, 28, 28), np.float32), y=np.arange(11)),
         ("y11.npz", "[0, 10]", "0..9")),
    Case("labels-float", "float labels", _npz("yf.npz", x=X4, y=np.zeros(4)),
         ("yf.npz", "'y'", "float64")),
    Case("labels-length", "5 labels for 4 samples",
         _npz("y5.npz", x=X4, y=np.zeros(5, np.int64)), ("y5.npz", "(5,)", "(4,)")),
    Case("data-dir-empty", "--data an empty directory",
         lambda d: [MODEL, "--data", _mkdir(d / "empty"), "--calib", CALIB, *FAST],
         ("{d}/empty", "neither x.npy nor .npz")),
    Case("data-dir-late-nan", "--data a directory whose memory-mapped x.npy has a NaN in sample 30 of 40",
         _npy_dir, ("x.npy", "NaN")),
    Case("data-shards-mismatch", "--data a directory of .npz shards with different sample shapes", _shards,
         ("b.npz", "(1, 14, 28)", "(1, 28, 28)")),
    Case("calib-empty", "a calibration file with 0 samples",
         _npz("calib0.npz", calib=True, x=X4[:0]), ("calib0.npz", "(0, 1, 28, 28)")),
    Case("calib-wrong-shape", "calibration samples of shape (1, 14, 14)",
         _npz("calib14.npz", calib=True, x=np.zeros((8, 1, 14, 14), np.float32)),
         ("calib14.npz", "(1, 14, 14)")),
    Case("no-calib-left", "no --calib and every sample of --data evaluated",
         lambda d: [MODEL, "--data", DATA, "-T", "2", "-q"],
         ("mnist_test.npz", "none is left for calibration")),
    # ---- the output directory ----
    Case("out-exists", "--out exists (no --force)", _existing_out, ("out.snn", "exists", "--force")),
    Case("out-is-a-file", "--out is an existing file, with --force", _out_is_file,
         ("out.snn", "not a directory")),
    Case("out-parent-missing", "--out in a directory that does not exist",
         _opts("--out", "{d}/no/such/dir/out.snn"), ("out.snn", "does not exist")),
    Case("out-parent-is-a-file", "--out below a regular file", _opts("--out", "{d}/args.txt/out.snn"),
         ("out.snn", "args.txt is not a directory")),
    Case("out-name-too-long", "--out with a 300-character name", _opts("--out", "{d}/" + "o" * 300),
         ("o" * 300, "File name too long")),
    Case("out-parent-readonly", "--out in a read-only directory (mode 0555, run as nobody)", _readonly_parent,
         ("ro/out.snn", "not writable"), uid=NOBODY),
    Case("out-unwritable-fs", "--out in /sys (the permission check passes as root, creating fails)",
         _opts("--out", "/sys/snncompile-test.snn"), ("/sys/snncompile-test.snn",)),
    # ---- options ----
    Case("samples-0", "--samples 0", _opts("--samples", "0"), ("--samples must be >= 1, got 0",)),
    Case("samples-negative", "--samples -3", _opts("--samples", "-3"), ("--samples must be >= 1, got -3",)),
    Case("timesteps-0", "-T 0", _opts("-T", "0"), ("--timesteps must be >= 1, got 0",)),
    Case("calib-samples-negative", "--calib-samples -1", _opts("--calib-samples", "-1"),
         ("--calib-samples must be >= 1, got -1",)),
    Case("batch-size-0", "--batch-size 0", _opts("--batch-size", "0"), ("--batch-size must be >= 1, got 0",)),
    Case("seed-negative", "--seed -1", _opts("--seed", "-1"), ("--seed", "-1")),
    Case("device-unknown", "--device tpu9", _opts("--device", "tpu9"), ("--device 'tpu9'",)),
    Case("method-unknown", "--method magic", _opts("--method", "magic"), ("'magic'", "calib-advanced")),
    Case("target-unknown", "--target gpu (argparse)", _opts("--target", "gpu"),
         ("--target", "'gpu'", "sim-int")),
    Case("timesteps-not-int", "-T abc (argparse)", _opts("-T", "abc"), ("-T/--timesteps", "'abc'")),
    Case("data-flag-missing", "no --data (argparse)", lambda d: [MODEL, "-q"], ("required", "--data")),
    Case("energy-missing", "--energy names no model nor file", _opts("--energy", "{d}/nope.json"),
         ("nope.json", "not a known energy model")),
    Case("energy-not-json", "--energy file is not JSON", _file("e.json", "{not json", "--energy"),
         ("e.json", "JSON")),
    Case("energy-missing-keys", "--energy JSON without the constants",
         _file("e.json", json.dumps({"model": "mine", "ann_mac_pj": 1}), "--energy"),
         ("e.json", "snn_synop_pj")),
    # ---- subcommands ----
    Case("run-not-an-artifact", "`snncompile run` on a directory that is no compiled artifact",
         lambda d: ["run", d, "--data", DATA, "-q"], ("{d}",)),
    Case("compare-missing-report", "`snncompile compare` with a missing baseline",
         lambda d: ["compare", d / "a.json", d / "b.json"], ("a.json", "cannot read report")),
    Case("inspect-bad-model", "`snncompile inspect` on random bytes",
         lambda d: ["inspect", _model_file("r.onnx", _RNG.bytes(512))(d)[0]], ("r.onnx",)),
]
# fmt: on


def _flip(pos: int, bit: int):
    def flipped(d: Path) -> list:
        b = bytearray(MODEL.read_bytes())
        b[pos] ^= 1 << bit
        (d / "flip.onnx").write_bytes(bytes(b))
        return [d / "flip.onnx", "--data", DATA, "--calib", CALIB, *FAST]

    return flipped


# Bit flips in the protobuf header and structure (most break parsing or the checker) and in the
# weights (the model stays valid: the run may succeed). Either way: exit 0 or 2, never a traceback.
FLIPS = [
    (0, 0),
    (1, 3),
    (5, 7),
    (20, 2),
    (60, 5),
    (200, 1),
    (3000, 4),
    (500_000, 6),
    (941_000, 0),
    (941_400, 3),
]
FLIP_CASES = [Case(f"bit-flip-{p}-{b}", f"bit {b} of byte {p} flipped", _flip(p, b), ()) for p, b in FLIPS]
GOOD_CASES = [
    Case(
        "one-sample-calibration",
        "--data with a single sample: evaluate it, calibrate on it too",
        lambda d: [*_one_sample_data(d), "--calib", d / "one.npz"],
        (),
    )
]


# ---- running cases ---------------------------------------------------------------------------------
_ZYGOTE = r"""
import json, os, signal, sys, traceback
import snncompile.cli, snncompile.commands, snncompile.pipeline, snncompile.frontend.onnx, snncompile.convert
import snncompile.quantize, snncompile.sim, snncompile.report, snncompile.artifact, snncompile.sim.popsim
import importlib, pkgutil
# Every snncompile module now, before any fork: a case run as another user (Case.uid) cannot import
# what it cannot read, e.g. from a checkout in a private (0700) directory.
for m in pkgutil.walk_packages(snncompile.__path__, "snncompile."):
    if ".lava" not in m.name and "distributed" not in m.name:
        try:
            importlib.import_module(m.name)
        except Exception:
            pass

def child(case):
    os.chdir(case["cwd"])
    for fd, name in ((1, "stdout"), (2, "stderr")):
        f = os.open(os.path.join(case["cwd"], name + ".txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        os.dup2(f, fd)
    if case["uid"] is not None and os.geteuid() == 0:
        os.setgid(case["uid"]); os.setuid(case["uid"])
    signal.alarm(300)
    try:
        code = snncompile.cli.main(case["argv"])  # what the console script does: sys.exit(main())
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(code)

results = []
for case in json.load(sys.stdin):
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        child(case)
    _, status = os.waitpid(pid, 0)
    results.append(os.waitstatus_to_exitcode(status))
print(json.dumps(results))
"""


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    cwd: Path
    out: Path


def prepare_cases(cases: list[Case], base: Path) -> tuple[list[dict], dict[str, Path]]:
    """Build every case in its own directory under ``base``: the zygote's jobs and each case's output path."""
    jobs, outs = [], {}
    for c in cases:
        d = base / c.id
        d.mkdir(parents=True)
        argv = [str(a).replace("{d}", str(d)) for a in c.args(d)]
        (d / "args.txt").write_text(" ".join(argv))
        if argv[0] not in ("run", "compare", "inspect", "report") and "--out" not in argv:
            argv += ["--out", str(d / "out.snn")]
        out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else d / "out.snn"
        jobs.append({"argv": argv, "cwd": str(d), "uid": c.uid})
        outs[c.id] = out if out.is_absolute() else d / out
    return jobs, outs


def execute_cases(cases: list[Case], base: Path, jobs: list[dict], outs: dict[str, Path]) -> dict[str, Outcome]:
    """Run prepared cases, each in a child forked from one warm interpreter (see module doc)."""
    p = subprocess.run(
        [sys.executable, "-c", _ZYGOTE],
        input=json.dumps(jobs),
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr
    codes = json.loads(p.stdout.splitlines()[-1])
    return {
        c.id: Outcome(
            rc,
            (base / c.id / "stdout.txt").read_text(),
            (base / c.id / "stderr.txt").read_text(),
            base / c.id,
            outs[c.id],
        )
        for c, rc in zip(cases, codes)
    }


def run_cases(cases: list[Case], base: Path) -> dict[str, Outcome]:
    """Build every case in its own directory under ``base`` and run them all (see module doc)."""
    return execute_cases(cases, base, *prepare_cases(cases, base))


def assert_clean_error(o: Outcome, expect: tuple[str, ...]) -> str:
    """Exit 2, one 'error:' line naming the problem, no traceback, no output left behind."""
    lines = o.stderr.splitlines()
    assert o.rc == 2, f"exit {o.rc}: {o.stderr[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), o.stderr[-2000:]
    assert "Traceback" not in o.stderr
    for s in expect:
        s = s.replace("{d}", str(o.cwd))
        assert s in lines[0], f"{s!r} not in {lines[0]!r}"
    assert_no_partial_output(o.out)
    return lines[0]


def assert_no_partial_output(out: Path) -> None:
    parent = out.parent
    if parent.is_dir() and os.access(parent, os.R_OK):
        leftovers = [p.name for p in parent.iterdir() if p.name.startswith(f".{out.name}.")]
        assert not leftovers, leftovers


@contextmanager
def case_root():
    """A temporary directory the unprivileged user of ``Case.uid`` can reach (pytest's are 0700)."""
    with tempfile.TemporaryDirectory(prefix="snncompile-bad-") as tmp:
        os.chmod(tmp, 0o755)
        yield Path(tmp)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    with case_root() as base:
        yield run_cases([*CASES, *FLIP_CASES, *GOOD_CASES], base)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clean_error(outcomes, case):
    o = outcomes[case.id]
    assert_clean_error(o, case.expect)
    if case.id == "out-exists":
        assert sorted(p.name for p in o.out.iterdir()) == ["keep.txt"]
    elif case.id == "out-is-a-file":
        assert o.out.read_text() == "a file"
    else:
        assert not os.path.lexists(o.out)  # (no OSError for a name too long)


@pytest.mark.parametrize("case", FLIP_CASES, ids=[c.id for c in FLIP_CASES])
def test_bit_flipped_model_never_crashes(outcomes, case):
    o = outcomes[case.id]
    assert o.rc in (0, 2) and "Traceback" not in o.stderr and "internal error" not in o.stderr, o.stderr[
        -2000:
    ]
    if o.rc == 2:
        assert_clean_error(o, ())
    else:
        assert (o.out / "report.json").is_file()
        assert_no_partial_output(o.out)


def test_one_sample_calibration_set_works(outcomes):
    o = outcomes["one-sample-calibration"]
    assert o.rc == 0, o.stderr[-2000:]
    r = json.loads((o.out / "report.json").read_text())
    assert r["samples"] == 1 and len(r["accuracy_vs_t"]) == 2


def test_bad_cases_are_distinct_and_enough():
    assert len({c.id for c in CASES}) == len(CASES) >= 25


def test_unknown_method_option_is_a_conversion_error(tmp_path):
    """The CLI passes no method options; the Python API and RunConfig.method_options do."""
    import snncompile
    from snncompile.convert import convert
    from snncompile.errors import ConversionError
    from snncompile.pipeline import RunConfig, run

    with np.load(CALIB) as f:
        x = f["x"][:4]
    with pytest.raises(ConversionError, match=r"^method 'deng': unknown option\(s\) bogus; it takes "):
        convert(snncompile.load_onnx(MODEL), x, method="deng", timesteps=2, bogus=1)
    cfg = RunConfig(
        model=MODEL,
        data=DATA,
        calib=CALIB,
        method="max",
        samples=4,
        timesteps=2,
        progress=False,
        method_options={"tau": 8},
    )  # an option of 'srp'
    with pytest.raises(ConversionError, match=r"^method 'max': unknown option\(s\) tau; it takes percentile"):
        run(cfg)


def test_failed_write_leaves_nothing_behind(tmp_path):
    """An OSError half-way through writing (disk full) is a DataError; no temporary directory stays and
    an existing output replaced with --force is restored."""
    from snncompile.errors import DataError
    from snncompile.outdir import write_atomically

    out = tmp_path / "out.snn"
    write_atomically(out, lambda d: (d / "old.txt").write_text("previous run"), force=False)  # an earlier run of ours

    def fill(d: Path) -> None:
        (d / "report.json").write_text("{")
        raise OSError(28, "No space left on device", str(d / "report.md"))

    with pytest.raises(
        DataError, match=r"out\.snn: cannot write the output directory \(No space left on device"
    ):
        write_atomically(out, fill, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.snn"]
    assert sorted(p.name for p in out.iterdir()) == [".snncompile-output", "old.txt"]


def test_installed_executable(tmp_path):
    """The console script itself: a clean error without -v, the traceback with -v."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(MODEL.read_bytes()[:1000])
    cmd = [str(EXE), bad, "--data", DATA, "--calib", CALIB, "--out", tmp_path / "o.snn", *FAST]
    p = subprocess.run(list(map(str, cmd)), check=False, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and len(p.stderr.splitlines()) == 1, p.stderr
    p = subprocess.run(
        [str(a) for a in cmd if a != "-q"] + ["-v"], check=False, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 2 and "Traceback" in p.stderr and "ModelFileError" in p.stderr, p.stderr[-2000:]
    assert p.stderr.splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "o.snn").exists() and [p.name for p in tmp_path.iterdir()] == ["bad.onnx"]


def markdown_table(outcomes: dict[str, Outcome]) -> str:
    """The bad-input table of docs/robustness.md: case, what, exit status, the observed message."""
    rows = ["| case | bad input | exit | message (`error: ...`) |", "|---|---|---:|---|"]
    for c in CASES:
        o = outcomes[c.id]
        msg = (
            o.stderr.strip().replace(str(o.cwd), "$TMP").replace(str(ROOT) + "/", "").removeprefix("error: ")
        )
        msg = re.sub(r"(.)\1{40,}", lambda m: f"{m[1]}...({len(m[0])} times)", msg)
        rows.append(f"| `{c.id}` | {c.what} | {o.rc} | {msg.replace('|', '&#124;')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    with case_root() as base:
        print(markdown_table(run_cases(CASES, base)))
