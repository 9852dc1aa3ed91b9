"""Mutation fuzzing of what ``snncompile run``, ``report`` and ``compare`` read: compiled artifacts
(manifest.json and params.npz) and report.json files.

A case is a real artifact or report with a few mutations drawn by hypothesis: a JSON value anywhere
replaced by another JSON value (wrong types, NaN, huge and negative numbers, empty containers,
control-character strings), keys dropped, arrays retyped, reshaped, scaled or poisoned with NaN.
Whatever the mutation, loading and running (or rendering and comparing) either succeeds or raises a
:class:`~snncompile.errors.CompileError`, never another exception.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snncompile.errors import CompileError

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "mnist_mlp.onnx"
DATA = ROOT / "examples" / "data" / "mnist_test.npz"
CALIB = ROOT / "examples" / "data" / "mnist_calib.npz"

VALUES = st.one_of(st.none(), st.booleans(), st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**40), 7]),
                   st.sampled_from([0.5, -0.0, 1e308, -1e-300, math.nan, math.inf, -math.inf]),
                   st.sampled_from(["", "x", "a\nb\x1b[2J", "inf", "nan", "IFPop", "|", "$\\frac{1}{0}$"]),
                   st.just([]), st.just({}), st.just([1, [2]]), st.just({"a": 1}))


@cache
def _base(tmp: str) -> Path:
    """One sim-int output directory of the MLP (report.json + compiled/), made through the pipeline."""
    from snncompile.artifact import save_artifact
    from snncompile.pipeline import RunConfig, run
    from snncompile.safeio import dumps

    res = run(RunConfig(model=MODEL, data=DATA, calib=CALIB, target="sim-int", method="max", samples=4,
                        timesteps=2, calib_samples=8, progress=False))
    d = Path(tmp) / "base.snn"
    d.mkdir()
    (d / "report.json").write_text(dumps(res.report))
    save_artifact(res.pop_int, d / "compiled", extra={"target": "sim-int", "timesteps": 2, "method": "max"})
    return d


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return _base(str(tmp_path_factory.mktemp("fuzz-artifacts")))


def _paths(obj, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:6]):
            out += _paths(v, (*prefix, i))
    return out


def _mutate_json(obj, data, n: int) -> list[str]:
    log = []
    for _ in range(n):
        paths = [p for p in _paths(obj) if p]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            parent.pop(path[-1], None)
            log.append(f"drop {path}")
        else:
            parent[path[-1]] = copy.deepcopy(data.draw(VALUES))  # st.just values are shared objects
            log.append(f"set {path} = {parent[path[-1]]!r}")
    return log


def _mutate_params(p: dict, data) -> str:
    k = data.draw(st.sampled_from(sorted(p)))
    a = p[k]
    how = data.draw(st.sampled_from(["nan", "scale", "half", "flat", "dtype", "empty", "drop"]))
    if how == "nan" and a.size:
        a = a.astype(np.float64)
        a.reshape(-1)[0] = np.nan
    elif how == "scale":
        a = a * data.draw(st.sampled_from([1e6, -3, 0.5, 1e-9]))
    elif how == "half":
        a = a.reshape(-1)[: a.size // 2]
    elif how == "flat":
        a = a.reshape(-1)
    elif how == "dtype":
        a = a.astype(data.draw(st.sampled_from([np.int8, np.float16, np.complex64, np.bool_, np.uint64])))
    elif how == "empty":
        a = a.reshape(-1)[:0]
    else:
        p.pop(k)
        return f"drop {k}"
    p[k] = a
    return f"{how} {k}"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.data())
def test_mutated_artifacts_run_or_fail_cleanly(base, tmp_path_factory, data):
    from snncompile.artifact import load_artifact
    from snncompile.sim.popsim import simulate_populations

    d = Path(tmp_path_factory.mktemp("art")) / "compiled"
    shutil.copytree(base / "compiled", d)
    log = []
    if data.draw(st.booleans()):
        m = json.loads((d / "manifest.json").read_text())
        log += _mutate_json(m, data, data.draw(st.integers(1, 3)))
        (d / "manifest.json").write_text(json.dumps(m))
    else:
        with np.load(d / "params.npz") as f:
            p = {k: f[k] for k in f.files}
        log.append(_mutate_params(p, data))
        np.savez(d / "params.npz", **p)
    try:
        g, _ = load_artifact(d)
        with np.load(DATA) as f:
            x = f["x"][:2]
        if tuple(x.shape[1:]) == tuple(g.shapes[g.input.name]):
            simulate_populations(g, x, 2, progress=False)
    except CompileError as e:
        assert "\n" not in str(e), (log, str(e))
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"{type(e).__name__}: {e} after {log}")


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.data())
def test_mutated_reports_render_and_compare_cleanly(base, tmp_path_factory, data):
    from snncompile.report import compare, load_report, merge, render_markdown, write_plots

    r0 = json.loads((base / "report.json").read_text())
    r = copy.deepcopy(r0)
    log = _mutate_json(r, data, data.draw(st.integers(1, 3)))
    d = Path(tmp_path_factory.mktemp("rep"))
    (d / "report.json").write_text(json.dumps(r))
    try:
        full = load_report(d)
        render_markdown(full)
        if data.draw(st.booleans()):
            write_plots(full, d)
        merge([{**full, "shard": "0/1"}]) if "totals" in full else None
    except CompileError as e:
        assert "\n" not in str(e), (log, str(e))
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"report/render: {type(e).__name__}: {e} after {log}")
    try:
        regressed, table = compare(r0, load_report(d, full=False))
        if any(k in " ".join(log) for k in ("'accuracy'", "spikes_per_sample", "synops_per_sample")):
            pass  # a changed metric may or may not regress; NaN/missing ones must (tests/test_hostile.py)
        assert isinstance(regressed, bool) and "metric" in table
    except CompileError as e:
        assert "\n" not in str(e), (log, str(e))
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"compare: {type(e).__name__}: {e} after {log}")
