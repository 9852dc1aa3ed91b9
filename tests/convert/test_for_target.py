"""Conversion hears the target (issue 17, item 6): NIR and netx carry binary spikes only, no SRP.

``method_for_target`` reads the backend's ``supports`` and adapts the default conversion (adafire
without bursts, with a log line) or refuses what the format cannot carry; the adapted conversion of
a real model exports to NIR.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from snncompile.backends import get_backend
from snncompile.backends.nir import to_nir

from snncompile import load_onnx
from snncompile.convert import DEFAULT_METHOD, convert
from snncompile.convert.for_target import method_for_target
from snncompile.errors import CompileError, ConversionError
from snncompile.ir.neurons import IF
from snncompile.lower import lower_populations

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("target", ["nir", "netx"])
def test_default_method_makes_binary_spikes_for_binary_targets_and_says_so(target, caplog):
    assert not get_backend(target).supports.bursts and not get_backend(target).supports.srp
    with caplog.at_level(logging.INFO, logger="snncompile"):
        method, options = method_for_target(target, get_backend(target).supports)
    assert (method, options) == ("adafire", {"candidates": (1,), "budget": 1.0}) and DEFAULT_METHOD == "adafire"
    assert any(f"target {target} carries binary spikes only" in r.getMessage() for r in caplog.records)


def test_targets_that_carry_everything_keep_the_method_and_options(caplog):
    with caplog.at_level(logging.INFO, logger="snncompile"):
        assert method_for_target("sim", None) == (DEFAULT_METHOD, {})
        assert method_for_target("lava-sim", get_backend("lava-sim").supports, "adafire", {"budget": 3}) == \
            ("adafire", {"budget": 3})
        assert method_for_target("nir", get_backend("nir").supports, "deng", {}) == ("deng", {})
    assert not caplog.records


def test_user_options_are_kept_and_bursts_or_srp_refused_in_one_line():
    nir = get_backend("nir").supports
    assert method_for_target("nir", nir, "adafire", {"budget": 1.5, "samples": 64}) == \
        ("adafire", {"budget": 1.5, "samples": 64, "candidates": (1,)})
    assert method_for_target("nir", nir, "adafire", {"candidates": (1,)}) == ("adafire", {"candidates": (1,)})
    with pytest.raises(ConversionError, match=r"^method adafire: candidates \(1, 2, 4\) include burst neurons .* "
                                              r"target nir carries binary spikes only") as e:
        method_for_target("nir", nir, "adafire", {"candidates": (1, 2, 4)})
    assert isinstance(e.value, CompileError) and "\n" not in str(e.value)
    with pytest.raises(ConversionError, match=r"^method srp: .* cannot be carried by target netx"):
        method_for_target("netx", get_backend("netx").supports, "srp", {})


def test_adapted_default_conversion_of_the_example_mlp_exports_to_nir():
    x = np.load(ROOT / "examples" / "data" / "mnist_calib.npz")["x"][:32]
    method, options = method_for_target("nir", get_backend("nir").supports)
    snn = convert(load_onnx(ROOT / "examples" / "mnist_mlp.onnx"), x, method=method, timesteps=4, progress=False,
                  samples=16, **options)
    assert [n.max_spikes for n in snn.of_type(IF)] and all(n.max_spikes == 1 for n in snn.of_type(IF))
    graph = to_nir(lower_populations(snn))
    assert sum(type(n).__name__ == "Threshold" for n in graph.nodes.values()) == len(snn.of_type(IF))
