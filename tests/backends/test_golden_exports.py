"""Golden exports: the NIR and netx files of two small fixed networks, as text, diffed against tests/golden/.

A change to an exporter (or to the lowering or quantization before it) shows up here as a readable
diff of node types, edges, shapes and parameter values, not only as a failed numeric check.

The text lists every node (NIR) or dataset (netx) in a fixed order with its shape, dtype and its
values (all of them when at most 16, else count, sum, sum of absolute values, min and max), floats
to 6 significant digits. Regenerate after an intended change with

    SNNCOMPILE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/backends/test_golden_exports.py

and review the diff (git diff tests/golden) before committing it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from snncompile.backends.netx import write_netx
from snncompile.backends.nir import to_nir

from snncompile.lower import lower_populations
from snncompile.quantize import quantize
from tests.backends.test_exports import build_conv_chain
from tests.quantize.conftest import build_mlp_snn

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("SNNCOMPILE_UPDATE_GOLDEN") == "1"


def _num(v) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.6g}"


def _values(a) -> str:
    a = np.asarray(a)
    head = f"{a.dtype.kind}{list(a.shape)}"
    if a.dtype.kind not in "biuf":
        return f"{head} {a!r}"
    flat = a.astype(np.float64).ravel()
    if flat.size <= 16:
        return f"{head} [{', '.join(_num(v) for v in flat)}]"
    return (f"{head} n={flat.size} sum={_num(flat.sum())} abs={_num(np.abs(flat).sum())} "
            f"min={_num(flat.min())} max={_num(flat.max())}")


def nir_text(graph) -> str:
    lines = []
    for name in sorted(graph.nodes):
        node = graph.nodes[name]
        lines.append(f"node {name}: {type(node).__name__}")
        for field in sorted(vars(node)):
            value = getattr(node, field)
            if field in ("metadata", "input_type", "output_type"):
                continue
            if isinstance(value, (np.ndarray, list, tuple, int, float)) and not isinstance(value, bool):
                lines.append(f"  {field}: {_values(value)}")
    lines += [f"edge {a} -> {b}" for a, b in sorted(graph.edges)]
    return "\n".join(lines) + "\n"


def netx_text(path: Path) -> str:
    lines = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            lines.append(f"{name}: {_values(obj[()])}")
        else:
            lines.append(f"{name}/")

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return "\n".join(lines) + "\n"


def _pop_and_int(build):
    pop = lower_populations(build())
    x = np.random.default_rng(0).uniform(0, 1, (3, *pop.shapes[pop.input.name]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pop, quantize(pop, x)


def _check(text: str, name: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with SNNCOMPILE_UPDATE_GOLDEN=1 once and commit it"
    expected = path.read_text()
    assert text == expected, f"{name} differs from the golden file (regenerate and review: see module docstring)"


@pytest.mark.parametrize("build", [build_mlp_snn, build_conv_chain], ids=["mlp", "conv"])
def test_nir_export_matches_golden_text(build):
    pop, _ = _pop_and_int(build)
    _check(nir_text(to_nir(pop)), f"nir_{build.__name__}.txt")


@pytest.mark.parametrize("build", [build_mlp_snn, build_conv_chain], ids=["mlp", "conv"])
def test_netx_export_matches_golden_text(build, tmp_path):
    _, q = _pop_and_int(build)
    write_netx(q, tmp_path / "model.net")
    _check(netx_text(tmp_path / "model.net"), f"netx_{build.__name__}.txt")


def test_golden_text_shows_a_changed_value():
    """The text format is sensitive enough: one weight changed by 1e-4 changes the NIR text."""
    pop, _ = _pop_and_int(build_mlp_snn)
    graph = to_nir(pop)
    before = nir_text(graph)
    affine = next(n for n in graph.nodes.values() if type(n).__name__ == "Affine")
    affine.weight[0, 0] += 1e-3
    assert nir_text(graph) != before
