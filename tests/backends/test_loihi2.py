"""loihi2 target: resource estimate numbers, lava-loihi detection, and the write-then-fail protocol.

Estimate graph (integer populations, hand-checkable)::

    x(1x4x4) -> Conv 3x3 pad 1 (2 out, one zero tap) -> IF(2x4x4) -> Dense(3x32, sparse) -> readout(3)
    x(700)   -> Dense(200x700, ones) -> IF(200) -> Dense(8193x200, one column) -> readout(8193)
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from snncompile.backends import get_backend, loihi2
from snncompile.backends.loihi2 import CONSTANTS, Loihi2Backend, estimate_resources, lava_loihi_missing

from snncompile.errors import BackendError
from snncompile.ir import Graph, Input, Output
from snncompile.ir.populations import ConvConn, DenseConn, IFPop, Readout, Source


def _if(name, src, shape):
    return IFPop(name, (src,), theta=np.array(4096.0), bias=np.zeros(shape), v0=np.zeros(()), fixed=True)


def _conv_graph() -> Graph:
    w = np.ones((2, 1, 3, 3))
    w[0, 0, 0, 0] = 0  # the top-left tap of channel 0: 9 synapses fewer (4x4 input, padding 1)
    d = np.zeros((3, 32))
    d[0, :5], d[2, 3:20] = 1, -2
    return Graph([Input("x", (), shape=(1, 4, 4)), Source("x.src", ("x",), fixed=True),
                  ConvConn("x.src->r1", ("x.src",), weight=w, padding=(1, 1), fixed=True), _if("r1", "x.src->r1", (2, 4, 4)),
                  DenseConn("r1->ro", ("r1",), weight=d, out_shape=(3,), fixed=True),
                  Readout("ro", ("r1->ro",), bias=np.zeros(3), fixed=True), Output("y", ("ro",))], "conv")


def _limits_graph() -> Graph:
    d2 = np.zeros((8193, 200))
    d2[:, 0] = 1
    return Graph([Input("x", (), shape=(700,)), Source("x.src", ("x",), fixed=True),
                  DenseConn("x.src->r1", ("x.src",), weight=np.ones((200, 700)), out_shape=(200,), fixed=True),
                  _if("r1", "x.src->r1", (200,)), DenseConn("r1->ro", ("r1",), weight=d2, out_shape=(8193,), fixed=True),
                  Readout("ro", ("r1->ro",), bias=np.zeros(8193), fixed=True), Output("y", ("ro",))], "limits")


def test_estimate_counts_synapses_fan_in_and_memory():
    est = estimate_resources(_conv_graph())
    r1, ro = est["populations"]
    # per channel, a 3x3 tap (dy, dx) links (4 - |dy|) * (4 - |dx|) pairs: (3 + 4 + 3)**2 = 100
    assert (r1["neurons"], r1["synapses"], r1["fan_in"], r1["shared_kernel_weights"]) == (32, 200 - 9, 9, 17)
    assert (ro["neurons"], ro["synapses"], ro["fan_in"]) == (3, 5 + 17, 17)
    assert r1["weight_memory_bits"] == 191 * CONSTANTS["weight_bits"].value
    assert est["totals"] == {"neurons": 35, "synapses": 213, "weight_memory_bits": 213 * 8, "cores": 2, "chips": 1}
    assert est["input"]["shape"] == [1, 4, 4]
    assert all({"value", "unit", "source", "verified"} <= set(c) for c in est["constants"].values())


def test_cores_follow_the_neuron_and_memory_limits():
    est = estimate_resources(_limits_graph())
    r1, ro = est["populations"]
    assert r1["weight_memory_bits"] == 140_000 * 8 > CONSTANTS["core_memory_bits"].value  # memory-bound: 2 cores
    assert r1["cores"] == 2
    assert ro["neurons"] == CONSTANTS["neurons_per_core"].value + 1 and ro["cores"] == 2  # neuron-bound: 2 cores
    assert est["totals"]["cores"] == 4 and est["totals"]["chips"] == 1


def test_lava_loihi_is_detected_by_its_neurocore_compiler(monkeypatch):
    from snncompile.backends.lava.compat import import_lava

    assert import_lava("lava.magma.core.run_configs").Loihi2HwCfg  # importable without lava-loihi: not the test

    monkeypatch.setattr(loihi2, "NC_COMPILER", "json")  # a module that imports
    assert lava_loihi_missing() is None
    monkeypatch.setattr(loihi2, "NC_COMPILER", "lava.magma.compiler.subcompilers.nc.not_there")
    assert "lava-loihi is not installed" in lava_loihi_missing()


def test_without_lava_loihi_the_estimate_is_written_then_check_fails(monkeypatch, tmp_path):
    monkeypatch.setattr(loihi2, "NC_COMPILER", "lava.magma.compiler.subcompilers.nc.not_there")
    backend = get_backend("loihi2")
    assert isinstance(backend, Loihi2Backend)
    main, extra = backend.evaluate(_conv_graph(), None, None, reference=None)
    assert main is None and extra["loihi2"]["board_run"] is False
    assert extra["loihi2"]["totals"]["cores"] == 2
    [path] = get_backend("loihi2").write(SimpleNamespace(pop_int=_conv_graph()), tmp_path)  # no state kept
    assert path.name == "loihi2_resources.json" and json.loads(path.read_text())["totals"]["synapses"] == 213
    with pytest.raises(BackendError, match=r"^loihi2: lava-loihi is not installed .*written to " + str(tmp_path)):
        get_backend("loihi2").check(extra, tmp_path)


def test_with_lava_loihi_the_backend_runs_on_hardware_and_check_passes(monkeypatch, tmp_path):
    monkeypatch.setattr(loihi2, "lava_loihi_missing", lambda: None)
    ran = SimpleNamespace(accuracy=1.0)
    monkeypatch.setattr(Loihi2Backend, "_run", lambda self, g, ev, cfg, ref: (ran, {"spike_exact_fraction": 1.0}))
    backend = Loihi2Backend()
    main, extra = backend.evaluate(_conv_graph(), None, None, reference=None)
    assert main is ran and extra["loihi2"]["board_run"] is True
    backend.check(extra, tmp_path)  # nothing to report
