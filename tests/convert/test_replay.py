"""Partial simulation (convert/replay.py) gives what the whole-network and prefix runs it replaces give.

References: ``snncompile.sim.simulate`` (whole network per candidate, the old sensitivity path) and
the prefix simulations of ``layer_error`` / ``calibrate_weights`` (the old layer-wise path, still
used when the recorded trains would not fit in memory). Bitwise equality is expected: the replayed
neuron update is the simulator's, operation for operation.
"""

import sys

import numpy as np
import pytest
import torch

import snncompile
from snncompile.convert import convert
from snncompile.convert.activations import record_ann
from snncompile.convert.adafire_search import _sensitivity_full, sensitivity
from snncompile.convert.calib_set import make_calib_set
from snncompile.convert.maxpool import rewrite_maxpool
from snncompile.convert.replay import fork_inputs, fork_outputs, record_run
from snncompile.convert.to_snn import relu_names
from snncompile.ir import IF, Conv2d, Linear

from .conftest import EXAMPLES

T = 4


def _resnet():
    return snncompile.load_onnx(EXAMPLES / "mnist_resnet.onnx")


def _mnist(n):
    return np.load(EXAMPLES / "data" / "mnist_calib.npz")["x"][:n]


def _params(snn):
    ifs = {n.name: (np.asarray(n.theta), np.asarray(n.bias), np.asarray(n.v0), n.max_spikes) for n in snn.of_type(IF)}
    ws = {n.name: np.asarray(n.weight) for n in snn.of_type(Conv2d, Linear)}
    return ifs, ws


def _assert_same(a, b):
    (ia, wa), (ib, wb) = _params(a), _params(b)
    assert ia.keys() == ib.keys()
    for k in ia:
        for x, y in zip(ia[k], ib[k]):
            assert np.array_equal(x, y), k
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k


@pytest.mark.parametrize("which", ["cnn", "resnet"])  # resnet: forks through the residual Add (1.3 s)
def test_forked_sensitivity_equals_whole_network_runs(which, cnn, data):
    ann = rewrite_maxpool(cnn if which == "cnn" else _resnet())
    x = data[:24] if which == "cnn" else _mnist(24)
    calib = make_calib_set(ann, x, batch_size=32, progress=False)
    ada = sys.modules["snncompile.convert.adafire"]
    names = relu_names(ann)
    rec = record_ann(ann, calib, names, keep=len(x))
    b = ada._Builder(ann, rec.stats, T)
    top = dict.fromkeys(names, 4)
    build = lambda layer, n: b.build({**top, layer: n}, {})
    args = (build, names, (1, 2, 4), calib.x, rec.logits, T)
    fast = sensitivity(*args, base=4, batch_size=32)  # chunks of 16: two recorded runs, forks of 32 rows
    slow = _sensitivity_full(*args, base=4, batch_size=32, device="cpu")
    assert fast.kl == slow.kl
    assert fast.spikes == slow.spikes
    assert fast.own == slow.own and fast.own[names[0]][0] > 0


def test_forks_read_their_inputs_from_the_base_run():
    """A fork given the base run's values of the nodes it reads (fork_inputs: the layer's input, the
    skip connections into its descendants) gives bitwise what it gives computing them from the replayed trains."""
    ann = rewrite_maxpool(_resnet())
    x = torch.as_tensor(_mnist(12))
    calib = make_calib_set(ann, x.numpy(), batch_size=16, progress=False)
    names = relu_names(ann)
    rec = record_ann(ann, calib, names)
    b = sys.modules["snncompile.convert.adafire"]._Builder(ann, rec.stats, T)
    net = b.build(dict.fromkeys(names, 4), {})
    inputs = {layer: fork_inputs(net, layer) for layer in names}
    assert inputs[names[0]] == [] and inputs["/block/relu1/Relu"] == ["/pool1/MaxPool", "/block/conv1/Conv"]
    keep = sorted({n for v in inputs.values() for n in v})
    _, _, trains = record_run(net, x, T)
    _, _, kept = record_run(net, x, T, keep)
    assert set(kept) == set(trains) | set(keep)
    for layer in names:
        variants = [b.build({**dict.fromkeys(names, 4), layer: n}, {}).nodes[layer] for n in (1, 2)]
        out_a, sp_a = fork_outputs(net, layer, variants, x, T, trains)
        out_b, sp_b = fork_outputs(net, layer, variants, x, T, kept)
        assert torch.equal(out_a, out_b), layer
        assert sp_a.keys() == sp_b.keys() and all(torch.equal(sp_a[n], sp_b[n]) for n in sp_a), layer


def test_adafire_decisions_equal_without_the_kept_fork_inputs(monkeypatch):
    """Burst sizes, SSC ratios, thresholds, biases, notes and IAT thresholds of a conversion whose
    forks read their inputs from the base run equal those of one that recomputes them."""
    ann, x = _resnet(), _mnist(24)
    search = sys.modules["snncompile.convert.adafire_search"]
    used = []
    kept = search._kept_inputs
    monkeypatch.setattr(search, "_kept_inputs", lambda *a: used.append(kept(*a)) or used[-1])
    kw = {"samples": 16, "ssc_ratios": (1.0, 1.5, 2.0), "batch_size": 32, "iat": True}
    fast = convert(ann, x, "adafire", T, progress=False, **kw)
    assert used and all(used)
    monkeypatch.setattr(search, "_kept_inputs", lambda *a: [])
    slow = convert(ann, x, "adafire", T, progress=False, **kw)
    _assert_same(fast, slow)
    for key in ("max_spikes", "ssc", "iat", "notes"):
        assert fast.meta[key] == slow.meta[key], key


@pytest.mark.parametrize("method", ["calib-light+pc", pytest.param("calib-advanced", marks=pytest.mark.slow)])
def test_layer_at_a_time_calibration_equals_prefix_runs(method, monkeypatch):
    ann, x = _resnet(), _mnist(24)
    opts = {"wc": True, "wc_iters": 10, "wc_samples": 20} if method == "calib-advanced" else {}
    fast = convert(ann, x, method, T, progress=False, batch_size=16, samples=16, **opts)
    monkeypatch.setattr(sys.modules["snncompile.convert.calibration"], "fits_in_memory", lambda *a: False)
    slow = convert(ann, x, method, T, progress=False, batch_size=16, samples=16, **opts)
    _assert_same(fast, slow)
    assert fast.meta["notes"] == slow.meta["notes"]


@pytest.mark.slow
def test_adafire_bias_correction_and_iat_equal_prefix_runs(monkeypatch):
    ann, x = _resnet(), _mnist(24)
    kw = {"samples": 16, "candidates": (1, 2), "ssc_ratios": (1.0, 1.5), "batch_size": 16, "iat": True}
    fast = convert(ann, x, "adafire", T, progress=False, **kw)
    monkeypatch.setattr(sys.modules["snncompile.convert.adafire"], "fits_in_memory", lambda *a: False)
    slow = convert(ann, x, "adafire", T, progress=False, **kw)
    _assert_same(fast, slow)
    assert fast.meta["iat"] == slow.meta["iat"]
    assert fast.meta["max_spikes"] == slow.meta["max_spikes"] and fast.meta["ssc"] == slow.meta["ssc"]


def test_timing_meta_names_the_stages(cnn, data):
    snn = convert(cnn, data, "adafire", T, progress=False, candidates=(1, 2), ssc_ratios=(1.0, 1.5), iat=True)
    t = snn.meta["timing"]
    assert {"ann_pass", "burst_search", "ssc_search", "bias_correction", "iat_thresholds"} <= set(t["stages"])
    off = convert(cnn, data, "adafire", T, progress=False, candidates=(1, 2), ssc_ratios=(1.0, 1.5))
    assert "iat_thresholds" not in off.meta["timing"]["stages"] and "iat" not in off.meta  # iat=False: not computed
    assert sum(t["stages"].values()) + t["other_s"] + t["prepare_s"] <= t["convert_s"] + 1e-3
    assert all(v >= 0 for v in t["stages"].values())


def test_sensitivity_holds_one_chunk_of_recorded_values(cnn, data, monkeypatch):
    """The trains and kept fork inputs of one chunk are freed before the next chunk's recorded run
    (not held beside it): the memory bounds (TRAIN_BYTES, CACHE_BYTES) are per chunk."""
    import weakref

    search = sys.modules["snncompile.convert.adafire_search"]
    ann = rewrite_maxpool(cnn)
    x = data[:48]
    calib = make_calib_set(ann, x, batch_size=64, progress=False)
    names = relu_names(ann)
    rec = record_ann(ann, calib, names, keep=len(x))
    b = sys.modules["snncompile.convert.adafire"]._Builder(ann, rec.stats, T)
    top = dict.fromkeys(names, 4)
    refs, alive = [], []
    real = search.record_run

    def watched(*a, **k):
        alive.append(sum(r() is not None for r in refs))
        out = real(*a, **k)
        refs[:] = [weakref.ref(v) for v in out[2].values() if isinstance(v, torch.Tensor)]
        refs.extend(weakref.ref(s) for v in out[2].values() if isinstance(v, list) for s in v)
        return out

    monkeypatch.setattr(search, "record_run", watched)
    sensitivity(lambda layer, n: b.build({**top, layer: n}, {}), names, (1, 2, 4), calib.x, rec.logits, T,
                base=4, batch_size=32)  # chunks of 16: three recorded runs
    assert len(alive) == 3 and refs and alive == [0, 0, 0]
