"""Hostile and careless use, as issue 16 lists it: data loss outside the output directory, writes
through planted links, hangs and unbounded memory from tiny files, a CI gate that lets regressions
through, exit 3 on bad input, and what a SIGTERM leaves behind.

Every case runs in a forked process like ``test_bad_inputs`` (same zygote) and is checked for its
exit status, its one-line message, and that nothing outside its output directory changed: each
case directory is hashed (names, modes, bytes, link targets) before and after the run, with the
output directory itself left out.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from tests.test_bad_inputs import (
    CALIB,
    DATA,
    EXE,
    FAST,
    MODEL,
    ROOT,
    Case,
    assert_clean_error,
    case_root,
    execute_cases,
    prepare_cases,
)

CNN = ROOT / "examples" / "mnist_cnn.onnx"


# ---- building the hostile inputs -------------------------------------------------------------------
def _ours(d: Path, name: str = "prev.snn") -> Path:
    """An output directory of an earlier run of ours (made by the same atomic writer, with its marker)."""
    from snncompile.outdir import write_atomically

    write_atomically(d / name, lambda t: (t / "report.json").write_text("{}"), force=False)
    return d / name


def _user_folder(d: Path) -> list:
    (d / "docs").mkdir()
    (d / "docs" / "thesis.txt").write_text("years of work")
    return [MODEL, "--data", DATA, "--calib", CALIB, *FAST, "--out", d / "docs", "--force"]


def _out_holds_model(d: Path) -> list:
    (d / "models").mkdir()
    shutil.copy(MODEL, d / "models" / "m.onnx")
    return [d / "models" / "m.onnx", "--data", DATA, "--calib", CALIB, *FAST, "--out", d / "models", "--force"]


def _out_is_data(d: Path) -> list:
    shutil.copy(DATA, d / "test.npz")
    return [MODEL, "--data", d / "test.npz", "--calib", CALIB, *FAST, "--out", d / "test.npz", "--force"]


def _out_inside_data(d: Path) -> list:
    with np.load(DATA) as f:
        (d / "data").mkdir()
        np.save(d / "data" / "x.npy", f["x"][:40])
        np.save(d / "data" / "y.npy", f["y"][:40])
    return [MODEL, "--data", d / "data", "--calib", CALIB, *FAST, "--out", d / "data" / "o.snn"]


def _out_symlink(d: Path) -> list:
    target = _ours(d, "real.snn")
    (d / "link.snn").symlink_to(target)
    return [MODEL, "--data", DATA, "--calib", CALIB, *FAST, "--out", d / "link.snn", "--force"]


def _force_ours(d: Path) -> list:
    _ours(d, "out.snn")
    return [MODEL, "--data", DATA, "--calib", CALIB, *FAST, "--out", d / "out.snn", "--force"]


def _report_dir(d: Path, mutate=None) -> Path:
    """A real output directory (compiled once per session, copied), optionally with its report.json changed."""
    src = _compiled_once()
    shutil.copytree(src, d / "art.snn", symlinks=True)
    if mutate is not None:
        p = d / "art.snn" / "report.json"
        r = json.loads(p.read_text())
        mutate(r)
        p.write_text(json.dumps(r))
    return d / "art.snn"


def _report_links(d: Path) -> list:
    art = _report_dir(d)
    (d / "victim.txt").write_text("precious")
    for name in ("report.md", "accuracy_vs_t.png", "spikes_per_layer.png"):
        (art / name).unlink()
        (art / name).symlink_to(d / "victim.txt")
    return ["report", art, "-q"]


def _evil_names(r: dict) -> None:
    r["layers"][0]["name"] = "a\n# pwned | x\x1b[2J"
    r["model"] = "m\n\n[click](http://evil)"
    r["conversion"][0]["notes"] = "ok |\n\n## injected"


def _report_injection(d: Path) -> list:
    return ["report", _report_dir(d, _evil_names), "-q"]


def _report_missing_key(d: Path) -> list:
    return ["report", _report_dir(d, lambda r: r.pop("layers")), "-q"]


def _report_wrong_type(d: Path) -> list:
    return ["report", _report_dir(d, lambda r: r.update(spikes_per_sample="many")), "-q"]


def _compare(mutate, *extra):
    def args(d: Path) -> list:
        base = _report_dir(d)
        (d / "new").mkdir()
        new = _report_dir(d / "new", mutate)
        return ["compare", base, new, *extra]

    return args


def _set(path: str, value):
    def mutate(r: dict) -> None:
        *keys, last = path.split("/")
        for k in keys:
            r = r[k]
        r[last] = value

    return mutate


def _drop(path: str):
    def mutate(r: dict) -> None:
        *keys, last = path.split("/")
        for k in keys:
            r = r[k]
        r.pop(last)

    return mutate


def _nan_json(r: dict) -> None:
    r["accuracy"]["snn"] = float("nan")  # json.dumps writes NaN, as a tampered or broken tool would


def _model(nodes, inits, outs=("y",)) -> onnx.ModelProto:
    g = oh.make_graph(nodes, "hostile", [oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
                      [oh.make_tensor_value_info(o, TensorProto.FLOAT, ["N", 10]) for o in outs],
                      initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)], ir_version=8)


_W = np.random.default_rng(0).normal(0, 0.05, (10, 784)).astype(np.float32)
_W2 = np.random.default_rng(1).normal(0, 0.3, (10, 10)).astype(np.float32)
_B = np.zeros(10, np.float32)
_FC = [oh.make_node("Flatten", ["x"], ["f"], name="flat"), oh.make_node("Gemm", ["f", "W", "B"], ["h"], name="fc", transB=1)]


def _loop_model() -> onnx.ModelProto:
    body = oh.make_graph(
        [oh.make_node("Add", ["a_in", "one"], ["a_out"]), oh.make_node("Identity", ["c_in"], ["c_out"])], "body",
        [oh.make_tensor_value_info("i", TensorProto.INT64, []), oh.make_tensor_value_info("c_in", TensorProto.BOOL, []),
         oh.make_tensor_value_info("a_in", TensorProto.FLOAT, [1])],
        [oh.make_tensor_value_info("c_out", TensorProto.BOOL, []), oh.make_tensor_value_info("a_out", TensorProto.FLOAT, [1])],
        initializer=[numpy_helper.from_array(np.ones(1, np.float32), "one")])
    return _model([oh.make_node("Loop", ["M", "cond", "a0"], ["aN"], name="spin", body=body), *_FC,
                   oh.make_node("Mul", ["h", "aN"], ["y"], name="mul")],
                  {"W": _W, "B": _B, "M": np.array(10**15, np.int64), "cond": np.array(True),
                   "a0": np.zeros(1, np.float32)})


def _const_of_shape() -> onnx.ModelProto:
    return _model([oh.make_node("ConstantOfShape", ["shp"], ["big"], name="huge",
                                value=oh.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
                   oh.make_node("ReduceMax", ["big"], ["s"], name="rmax", keepdims=0), *_FC,
                   oh.make_node("Mul", ["h", "s"], ["y"], name="mul")],
                  {"W": _W, "B": _B, "shp": np.array([30000, 30000], np.int64)})


def _two_outputs() -> onnx.ModelProto:
    return _model([*_FC, oh.make_node("Relu", ["h"], ["r"], name="relu"),
                   oh.make_node("Gemm", ["r", "W2", "B"], ["y"], name="head", transB=1),
                   oh.make_node("Gemm", ["r", "W2", "B"], ["aux"], name="aux_head", transB=1)],
                  {"W": _W, "B": _B, "W2": _W2}, outs=("y", "aux"))


def _no_activation() -> onnx.ModelProto:
    return _model([oh.make_node("Flatten", ["x"], ["f"], name="flat"),
                   oh.make_node("Gemm", ["f", "W", "B"], ["y"], name="fc", transB=1)], {"W": _W, "B": _B})


def _evil_node_name() -> onnx.ModelProto:
    m = onnx.load(str(MODEL))
    n = next(n for n in m.graph.node if n.op_type == "Relu")
    n.op_type, n.name = "Sigmoid", "bad\nnode\x1b[31m\u202e"
    return m


def _escape_names() -> onnx.ModelProto:
    m = onnx.load(str(MODEL))
    relu = next(n for n in m.graph.node if n.op_type == "Relu")
    relu.name = "r\x1b]0;owned\x07\nx"
    return m


def _model_args(build, *extra, method=True):
    def args(d: Path) -> list:
        onnx.save(build(), str(d / "m.onnx"))
        opts = FAST if method else tuple(a for a in FAST if a not in ("--method", "max"))
        return [d / "m.onnx", "--data", DATA, "--calib", CALIB, *opts, *extra]

    return args


def _npy_header(shape, dtype="<f4") -> bytes:
    import io

    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": dtype, "fortran_order": False, "shape": shape})
    return b.getvalue()


def _declared_huge(d: Path) -> list:
    """x declared (4e6, 1, 28, 28) (12.5 GB), holding only the first 64 samples' bytes."""
    with np.load(DATA) as f:
        x = f["x"][:64].astype("<f4")
    with zipfile.ZipFile(d / "huge.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", _npy_header((4_000_000, 1, 28, 28)) + x.tobytes())
    return [MODEL, "--data", d / "huge.npz", "--calib", CALIB, "--samples", "16", *FAST[2:]]


def _declared_huge_all(d: Path) -> list:
    _declared_huge(d)
    return [MODEL, "--data", d / "huge.npz", "--calib", CALIB, *FAST[2:]]


def _truncated_shard(d: Path) -> list:
    (d / "shards").mkdir()
    with np.load(DATA) as f:
        np.savez(d / "shards" / "a.npz", x=f["x"][:10], y=f["y"][:10])
        np.savez(d / "shards" / "b.npz", x=f["x"][10:20], y=f["y"][10:20])
    raw = (d / "shards" / "b.npz").read_bytes()
    (d / "shards" / "b.npz").write_bytes(raw[: len(raw) // 2])
    return [MODEL, "--data", d / "shards", "--calib", CALIB, *FAST]


def _energy_file(content: str):
    def args(d: Path) -> list:
        (d / "e.json").write_text(content)
        return [MODEL, "--data", DATA, "--calib", CALIB, *FAST, "--energy", d / "e.json"]

    return args


def _uint8_eval(d: Path) -> list:
    with np.load(DATA) as f:
        np.savez(d / "pixels.npz", x=np.round(f["x"][:16] * 255), y=f["y"][:16])
    return [MODEL, "--data", d / "pixels.npz", "--calib", CALIB, *FAST]


def _few_samples(d: Path) -> list:
    with np.load(DATA) as f:
        np.savez(d / "small.npz", x=f["x"][:6], y=f["y"][:6])
    return [MODEL, "--data", d / "small.npz", "--calib", CALIB, *FAST[2:], "--samples", "100"]


# ---- tampered compiled artifacts -------------------------------------------------------------------
def _artifact(edit):
    """``snncompile run`` on a copy of a real sim-int artifact changed by ``edit(compiled_dir)``."""

    def args(d: Path) -> list:
        art = _report_dir(d) / "compiled"
        edit(art)
        return ["run", art, "--data", DATA, "--samples", "4", "-q"]

    return args


def _manifest(fn):
    def edit(art: Path) -> None:
        m = json.loads((art / "manifest.json").read_text())
        fn(m)
        (art / "manifest.json").write_text(json.dumps(m))

    return edit


def _params(fn):
    def edit(art: Path) -> None:
        with np.load(art / "params.npz") as f:
            p = {k: f[k] for k in f.files}
        fn(p)
        np.savez(art / "params.npz", **p)

    return edit


def _node(m: dict, typ: str) -> dict:
    return next(n for n in m["nodes"] if n["type"] == typ)


def _first_weight(p: dict) -> str:
    return next(k for k in p if k.endswith("/weight"))


def _arr(key_fn, fn):
    def edit(p: dict) -> None:
        k = key_fn(p)
        p[k] = fn(p[k])

    return edit


def _half_weight(a):
    a = a.astype(np.float64)
    a.reshape(-1)[0] = 0.5
    return a


def _nan_weight(a):
    a = a.astype(np.float64)
    a.reshape(-1)[0] = np.nan
    return a


def _link_dev_zero(art: Path) -> None:
    (art / "manifest.json").unlink()
    (art / "manifest.json").symlink_to("/dev/zero")


_TAMPERED = [
    ("manifest-not-json", lambda a: (a / "manifest.json").write_text("{oops"), ("manifest.json", "not valid JSON")),
    ("manifest-dev-zero", _link_dev_zero, ("manifest.json", "regular file")),
    ("manifest-a-list", lambda a: (a / "manifest.json").write_text("[1, 2]"), ("unknown artifact format",)),
    ("node-unknown-field", _manifest(lambda m: _node(m, "IFPop")["attrs"].update(evil=1)), ("no field 'evil'",)),
    ("node-field-wrong-type", _manifest(lambda m: _node(m, "IFPop")["attrs"].update(max_spikes="many")),
     ("max_spikes", "not of type int")),
    ("node-unknown-type", _manifest(lambda m: _node(m, "IFPop").update(type="Popen")), ("unknown type Popen",)),
    ("node-unknown-input", _manifest(lambda m: _node(m, "IFPop").update(inputs=["nowhere"])), ("'nowhere'",)),
    ("timesteps-zero", _manifest(lambda m: m.update(timesteps=0)), ("timesteps",)),
    ("weight-not-integer", _params(_arr(_first_weight, _half_weight)), ("weight", "non-integer")),
    ("weight-nan", _params(_arr(_first_weight, _nan_weight)), ("weight", "NaN")),
    ("weight-out-of-range", _params(_arr(_first_weight, lambda a: a * 1000)), ("weight", "outside the Loihi 2 range")),
    ("weight-wrong-shape", _params(_arr(_first_weight, lambda a: a.reshape(-1)[: a.size // 2])), ("weight",)),
    ("array-missing", _params(lambda p: p.pop(_first_weight(p))), ("missing from params.npz",)),
    ("params-missing", lambda a: (a / "params.npz").unlink(), ("params.npz",)),
    ("relay-not-identity", _manifest(lambda m: _node(m, "IFPop").update(type="Relay", attrs={}, arrays=[])),
     ("(Relay)", "not an identity connection")),
]

# fmt: off
CASES = [
    # ---- never destroy what is not ours ----
    Case("force-user-folder", "--out names a user's folder, with --force", _user_folder,
         ("docs", "not an snncompile output directory")),
    Case("out-holds-model", "--out is the folder holding the model, with --force", _out_holds_model,
         ("models", "contains the input")),
    Case("out-is-data", "--out is the data file, with --force", _out_is_data, ("test.npz", "is the input")),
    Case("out-inside-data", "--out lies inside the --data directory", _out_inside_data, ("o.snn", "lies inside")),
    Case("out-is-cwd", "--out . --force", lambda d: [MODEL, "--data", DATA, "--calib", CALIB, *FAST, "--out", ".",
                                                     "--force"], ("current directory",)),
    Case("out-contains-cwd", "--out .. --force", lambda d: [MODEL, "--data", DATA, "--calib", CALIB, *FAST, "--out",
                                                            "..", "--force"], ("current directory",)),
    Case("out-symlink", "--out is a symlink to an output of ours, with --force", _out_symlink,
         ("link.snn", "symbolic link")),
    # ---- bounded work on hostile files ----
    Case("loop-on-constants", "a Loop with a 1e15 trip count on constants", _model_args(_loop_model),
         ("spin (Loop)", "control flow")),
    Case("inspect-loop", "`inspect` of the same model", lambda d: ["inspect", _model_args(_loop_model)(d)[0]],
         ("spin (Loop)",)),
    Case("constant-of-shape-huge", "ConstantOfShape of 30000 x 30000 (3.6 GB)", _model_args(_const_of_shape),
         ("huge (ConstantOfShape)", "3600000000 bytes")),
    Case("npz-declared-huge", "x declared (4e6, 1, 28, 28) without --samples", _declared_huge_all,
         ("huge.npz",)),
    Case("energy-dev-zero", "--energy /dev/zero", lambda d: [MODEL, "--data", DATA, "--calib", CALIB, *FAST,
                                                             "--energy", "/dev/zero"], ("/dev/zero", "regular file")),
    Case("ray-cpus-0", "--ray --ray-cpus 0", lambda d: [MODEL, "--data", DATA, "--calib", CALIB, *FAST, "--ray",
                                                        "--ray-cpus", "0"], ("--ray-cpus must be >= 1",)),
    Case("shards-0", "--shards 0", lambda d: [MODEL, "--data", DATA, "--calib", CALIB, *FAST, "--shards", "0"],
         ("--shards must be >= 1",)),
    # ---- energy constants ----
    Case("energy-nan", "--energy with a NaN constant",
         _energy_file('{"ann_mac_pj": NaN, "snn_synop_pj": 1, "neuron_update_pj": 0, "active_neuron_update_pj": 0, '
                      '"spike_pj": 0}'), ("e.json", "NaN")),
    Case("energy-inf", "--energy with an infinite constant (1e999)",
         _energy_file('{"ann_mac_pj": 1e999, "snn_synop_pj": 1, "neuron_update_pj": 0, "active_neuron_update_pj": 0, '
                      '"spike_pj": 0}'), ("e.json", "ann_mac_pj", "finite number >= 0")),
    Case("energy-negative", "--energy with a negative constant",
         _energy_file('{"ann_mac_pj": 4.6, "snn_synop_pj": -0.9, "neuron_update_pj": 0, "active_neuron_update_pj": 0, '
                      '"spike_pj": 0}'), ("e.json", "snn_synop_pj", "finite number >= 0")),
    Case("energy-bool", "--energy with true as a constant",
         _energy_file('{"ann_mac_pj": true, "snn_synop_pj": 1, "neuron_update_pj": 0, "active_neuron_update_pj": 0, '
                      '"spike_pj": 0}'), ("e.json", "ann_mac_pj")),
    # ---- bad input that used to be exit 3 ----
    Case("truncated-shard", "a data directory whose second .npz shard is cut in half", _truncated_shard,
         ("b.npz",)),
    Case("report-missing-key", "`report` on a report.json without 'layers'", _report_missing_key,
         ("report.json", "layers")),
    Case("report-wrong-type", "`report` on a report.json whose spikes_per_sample is a string", _report_wrong_type,
         ("report.json", "spikes_per_sample")),
    Case("compare-wrong-type", "`compare` with a new report whose spikes_per_sample is a string",
         _compare(_set("spikes_per_sample", "many")), ("spikes_per_sample", "not a number")),
    Case("compare-threshold-nan", "`compare --max-accuracy-drop nan`",
         _compare(lambda r: None, "--max-accuracy-drop", "nan"), ("--max-accuracy-drop", "finite number")),
    Case("compare-threshold-negative", "`compare --max-spike-increase -5%`",
         _compare(lambda r: None, "--max-spike-increase=-5%"), ("--max-spike-increase", "finite number")),
    Case("compare-threshold-text", "`compare --max-synops-increase lots`",
         _compare(lambda r: None, "--max-synops-increase", "lots"), ("--max-synops-increase",)),
    Case("run-samples-0", "`run --samples 0`", lambda d: ["run", _report_dir(d), "--data", DATA, "--samples", "0"],
         ("--samples must be >= 1, got 0",)),
    Case("run-samples-negative", "`run --samples -3`",
         lambda d: ["run", _report_dir(d), "--data", DATA, "--samples=-3"], ("--samples must be >= 1, got -3",)),
    Case("run-timesteps-0", "`run -T 0`", lambda d: ["run", _report_dir(d), "--data", DATA, "-T", "0"],
         ("--timesteps must be >= 1, got 0",)),
    Case("node-name-escapes", "an unsupported node named with a newline, ESC codes and a bidi override",
         _model_args(_evil_node_name), ("bad\\nnode\\x1b[31m\\u202e (Sigmoid)",)),
    *[Case(f"artifact-{cid}", f"`run` on a tampered artifact: {cid}", _artifact(edit), expect)
      for cid, edit, expect in _TAMPERED],
]
REGRESSIONS = [  # `compare` must exit 1 (a regression), never 0, on each
    Case("compare-nan-accuracy", "new accuracy NaN", _compare(_nan_json), ()),
    Case("compare-nan-spikes", "new spikes/sample NaN", _compare(_set("spikes_per_sample", float("nan"))), ()),
    Case("compare-nan-synops", "new synops/sample NaN", _compare(_set("synops_per_sample", float("nan"))), ()),
    Case("compare-null-accuracy", "new accuracy null", _compare(_set("accuracy/snn", None)), ()),
    Case("compare-no-accuracy", "new report without accuracy", _compare(_drop("accuracy")), ()),
    Case("compare-no-spikes", "new report without spikes_per_sample", _compare(_drop("spikes_per_sample")), ()),
    Case("compare-nan-energy", "new energy NaN, energy checked",
         _compare(_set("energy/snn_joules_per_sample", float("nan")), "--max-energy-increase", "10%"), ()),
]
GOOD = [  # exit 0, with the expected result
    Case("force-ours", "--force over an output directory of ours", _force_ours, ()),
    Case("npz-declared-huge-samples", "x declared (4e6, 1, 28, 28), --samples 16: reads 16", _declared_huge, ()),
    Case("two-outputs", "a model with two outputs: the first is compiled, with a warning",
         _model_args(_two_outputs), ()),
    Case("no-activation", "a model without activations, default method", _model_args(_no_activation, method=False),
         ()),
    Case("uint8-eval-on-sim", "0-255 evaluation data, [0, 1] calibration, target sim", _uint8_eval, ()),
    Case("samples-beyond-file", "--samples 100 on a 6-sample file", _few_samples, ()),
    Case("report-through-links", "`report` in a directory whose report.md and PNGs are links to a user file",
         _report_links, ()),
    Case("report-injection", "`report` on a report.json with newlines, pipes and ESC in its strings",
         _report_injection, ()),
    Case("inspect-escapes", "`inspect` of a model whose Relu is named with a terminal title escape and a newline",
         lambda d: ["inspect", _model_args(_escape_names)(d)[0]], ()),
]
# fmt: on

_ONCE: dict[str, Path] = {}


def _compiled_once() -> Path:
    return _ONCE["art"]


def _fingerprint(root: Path, skip: Path) -> dict:
    """Every entry under ``root`` except ``skip`` and our own stdout/stderr files: type, mode, content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [n for n in dirnames if Path(dirpath, n) != skip and not n.startswith(f".{skip.name}.")]
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            if p == skip or n in ("stdout.txt", "stderr.txt"):
                continue
            st = p.lstat()
            if p.is_symlink():
                out[str(p)] = ("link", os.readlink(p))
            elif p.is_file():
                out[str(p)] = ("file", st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                out[str(p)] = ("dir", st.st_mode)
    return out


@pytest.fixture(scope="module")
def hostile():
    """Outcomes of every case, and each case directory's fingerprint taken after its setup, before its run."""
    with case_root() as base:
        # one real sim-int output directory, copied by every report/compare/run case
        art = base / "_artifact" / "art.snn"
        art.parent.mkdir()
        p = subprocess.run([str(EXE), str(CNN), "--target", "sim-int", "--data", str(DATA), "--calib", str(CALIB),
                            "--samples", "8", "-T", "4", "--method", "max", "-q", "--out", str(art)],
                           capture_output=True, text=True, timeout=600, check=False)
        assert p.returncode == 0, p.stderr
        _ONCE["art"] = art
        cases = [*CASES, *REGRESSIONS, *GOOD]
        jobs, outs = prepare_cases(cases, base)
        # an --out that exists before the run (a user's folder, the data) must stay unchanged too
        skip = {k: (o if not os.path.lexists(o) else base / "_none") for k, o in outs.items()}
        before = {c.id: (base / c.id, skip[c.id], _fingerprint(base / c.id, skip[c.id])) for c in cases}
        yield execute_cases(cases, base, jobs, outs), before


def _unchanged_outside_out(hostile, cid: str) -> None:
    _, before = hostile
    d, out, fp = before[cid]
    after = _fingerprint(d, out)
    changed = sorted(k for k in fp.keys() | after.keys() if fp.get(k) != after.get(k))
    assert not changed, f"{cid}: changed outside the output directory: {changed[:5]}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_one_clean_error(hostile, case):
    outcomes, _ = hostile
    o = outcomes[case.id]
    assert_clean_error(o, case.expect)
    _unchanged_outside_out(hostile, case.id)


@pytest.mark.parametrize("case", REGRESSIONS, ids=[c.id for c in REGRESSIONS])
def test_compare_fails_closed(hostile, case):
    o = hostile[0][case.id]
    assert o.rc == 1, (o.rc, o.stdout, o.stderr)
    assert "REGRESSED" in o.stdout and o.stdout.strip().endswith("REGRESSION")


@pytest.mark.parametrize("case", GOOD, ids=[c.id for c in GOOD])
def test_hostile_but_valid_input_works(hostile, case):
    o = hostile[0][case.id]
    assert o.rc == 0, o.stderr[-2000:]
    assert "Traceback" not in o.stderr
    if case.id not in ("report-through-links", "report-injection", "force-ours"):
        _unchanged_outside_out(hostile, case.id)
    d = o.cwd
    if case.id == "force-ours":
        assert (d / "out.snn" / "report.json").read_text() != "{}"
        assert sorted(p.name for p in d.iterdir() if p.name.startswith(".")) == []
    elif case.id == "npz-declared-huge-samples":
        assert json.loads((o.out / "report.json").read_text())["samples"] == 16
    elif case.id == "two-outputs":
        assert "2 outputs ('y', 'aux')" in o.stderr and "compiles the first" in o.stderr
    elif case.id == "no-activation":
        r = json.loads((o.out / "report.json").read_text())
        assert r["spikes_per_sample"] == 0 and r["accuracy"]["snn"] == r["accuracy"]["ann"]
    elif case.id == "uint8-eval-on-sim":
        assert "beyond the range" in o.stderr and "calibration inputs" in o.stderr
    elif case.id == "samples-beyond-file":
        assert "--samples 100" in o.stderr and "only 6 samples" in o.stderr
        assert json.loads((o.out / "report.json").read_text())["samples"] == 6
    elif case.id == "inspect-escapes":
        assert "\x1b" not in o.stdout and "\x07" not in o.stdout and "r\\x1b]0;owned\\x07\\nx" in o.stdout
    elif case.id == "report-through-links":
        assert (d / "victim.txt").read_text() == "precious"
        for name in ("report.md", "accuracy_vs_t.png", "spikes_per_layer.png"):
            p = d / "art.snn" / name
            assert p.is_file() and not p.is_symlink()
    elif case.id == "report-injection":
        md = (d / "art.snn" / "report.md").read_text()
        assert "\x1b" not in md
        assert not any(line.startswith(("# pwned", "## injected", "[click]")) for line in md.splitlines())
        table = [line for line in md.splitlines() if line.startswith("| a\\n")]
        assert len(table) == 1 and table[0].count("|") == 8  # the pipe in the name is escaped


def test_out_symlink_leaves_no_stray(hostile):
    d = hostile[0]["out-symlink"].cwd
    assert sorted(p.name for p in d.iterdir() if p.name.startswith(".")) == []
    assert (d / "link.snn").is_symlink() and (d / "real.snn" / "report.json").read_text() == "{}"


def test_bad_case_count():
    assert len(CASES) + len(REGRESSIONS) + len(GOOD) >= 50


# ---- unit checks of the bounds ----------------------------------------------------------------------
def test_unused_npz_member_is_never_decompressed(tmp_path):
    """A 256 MiB member beside x is skipped: loading takes well under a second and no large allocation."""
    import resource

    from snncompile.data import load_npz

    p = tmp_path / "junk.npz"
    with np.load(DATA) as f:
        x = f["x"][:8].astype("<f4")
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", _npy_header(x.shape) + x.tobytes())
        with z.open("junk.npy", "w", force_zip64=True) as f:
            f.write(_npy_header((64, 1 << 20)))
            chunk = bytes(1 << 20)
            for _ in range(256):
                f.write(chunk)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    ds = load_npz(p)
    assert time.perf_counter() - t0 < 1.0 and len(ds) == 8
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 64 * 1024  # KiB: far below 256 MiB


def test_report_json_has_no_nan(tmp_path):
    from snncompile.safeio import dumps

    with pytest.raises(ValueError, match=r"\$\.a\.b\[1\]"):
        dumps({"a": {"b": [1.0, float("nan")]}})


def test_write_file_replaces_links(tmp_path):
    from snncompile.safeio import write_file

    (tmp_path / "victim").write_text("keep")
    (tmp_path / "f").symlink_to(tmp_path / "victim")
    write_file(tmp_path / "f", "new")
    assert (tmp_path / "victim").read_text() == "keep" and (tmp_path / "f").read_text() == "new"
    assert not (tmp_path / "f").is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["f", "victim"]


# ---- SIGTERM -------------------------------------------------------------------------------------------
def _session_pids(sid: int) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # a zombie holds no memory; init reaps it
            found.append(int(pid))
    return found


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.mark.slow
@pytest.mark.parametrize("to_group", [False, True], ids=["process", "process-group"])
def test_sigterm_during_lava_run_cleans_up(tmp_path, to_group):
    """SIGTERM to the CLI (``timeout``) or to its whole process group (CI cancellation) while Lava
    runs: exit 143 within seconds, no process of the run left, no /dev/shm segment, no temp dir."""
    shm0 = _shm()
    out = tmp_path / "lv.snn"
    p = subprocess.Popen([str(EXE), str(CNN), "--target", "lava-sim", "--data", str(DATA), "--calib", str(CALIB),
                          "--samples", "400", "-T", "16", "--method", "max", "-q", "--out", str(out)],
                         start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while len(_session_pids(p.pid)) < 4 and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.5)  # Lava's runtime processes have started
        assert p.poll() is None, p.stderr.read()
        time.sleep(2)
        (os.killpg if to_group else os.kill)(p.pid, signal.SIGTERM)
        rc = p.wait(timeout=60)
        err = p.stderr.read()
    finally:
        for pid in _session_pids(p.pid):
            os.kill(pid, signal.SIGKILL)
    assert rc == 143, err[-2000:]
    assert "terminated" in err
    deadline = time.monotonic() + 10  # multiprocessing's resource tracker exits once its pipe closes
    while _session_pids(p.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session_pids(p.pid) == []
    assert _shm() - shm0 == set()
    assert sorted(q.name for q in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigterm_lost_in_an_at_fork_hook_still_terminates(tmp_path):
    """A SIGTERM handled inside an at-fork callback (as when it lands while Lava forks, in logging's
    hook) has its exception swallowed by Python; the runner's checkpoint raises it again: exit 143."""
    script = (
        "import os, signal, sys\n"
        "fired = []\n"
        "def hook():\n"
        "    if not fired:\n"
        "        fired.append(1)\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        sum(range(1000))  # bytecodes: the handler runs here, inside the hook\n"
        "os.register_at_fork(after_in_parent=hook)\n"
        "import snncompile.cli\n"
        "sys.exit(snncompile.cli.main(sys.argv[1:]))\n"
    )
    p = subprocess.run([sys.executable, "-c", script, str(MODEL), "--target", "lava-sim", "--data", str(DATA),
                        "--calib", str(CALIB), *FAST, "--out", str(tmp_path / "out.snn")],
                       capture_output=True, text=True, timeout=300, check=False, start_new_session=True)
    assert p.returncode == 143, p.stderr[-2000:]
    assert "Exception ignored" in p.stderr  # the lost exception: the case this test is about
    assert list(tmp_path.iterdir()) == []


def test_sigterm_while_writing_removes_the_temporary_output(tmp_path):
    """SIGTERM during the write phase: exit 143, no output directory, no ``.out.snn.tmp-*`` left."""
    script = (
        "import os, signal, sys, snncompile.report as r\n"
        "def plots(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "r.write_plots = plots\n"
        "import snncompile.cli\n"
        "sys.exit(snncompile.cli.main(sys.argv[1:]))\n"
    )
    p = subprocess.run([sys.executable, "-c", script, str(MODEL), "--data", str(DATA), "--calib", str(CALIB), *FAST,
                        "--out", str(tmp_path / "out.snn")], capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 143, p.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []
