"""AdaFire's burst budget and per-channel thresholds against independent references.

References: whole-network simulations (``snncompile.sim.simulate``) of every (layer, N) setting, an
exhaustive search over every assignment of burst sizes (instead of the method's Pareto program), the
authors' constraint (bic-L/burst-ann2snn: the burst layers' spikes at most 0.95 x their spikes at
N = 4) and threshold_from_stats on per-channel statistics.
"""

import itertools
import sys

import numpy as np
import pytest
import torch

from snncompile.cli import _option
from snncompile.convert import convert
from snncompile.convert.activations import record_ann
from snncompile.convert.calib_set import make_calib_set
from snncompile.convert.thresholds import threshold_from_stats
from snncompile.errors import ConversionError
from snncompile.ir import IF
from snncompile.sim import simulate

T = 4
LAYERS = ("r1", "r2", "r3")
FAST = {"ssc_ratios": (1.0,), "bias_correction": False}


def _kl(a, b):
    la, lb = torch.log_softmax(a.double(), -1), torch.log_softmax(b.double(), -1)
    return float(((la.exp() * (la - lb)).sum(-1) + (lb.exp() * (lb - la)).sum(-1)).mean() / 2)


def _tables(cnn, data, candidates, top):
    """KL and own spikes per sample of every (layer, N), others at ``top``, from whole-network runs."""
    ada = sys.modules["snncompile.convert.adafire"]
    calib = make_calib_set(cnn, data, batch_size=256, progress=False)
    rec = record_ann(cnn, calib, list(LAYERS))
    b = ada._Builder(cnn, rec.stats, T)
    logits = cnn.run(torch.as_tensor(data))
    kl, own = {}, {}
    for layer, n in itertools.product(LAYERS, candidates):
        res = simulate(b.build({**dict.fromkeys(LAYERS, top), layer: n}, {}), data, T)
        kl[layer, n] = _kl(res.outputs[-1], logits)
        own[layer, n] = res.spikes[layer] / len(data)
    return kl, own


@pytest.mark.parametrize("ref,ratio", [(4, 0.95), (2, 1.0), (2, 0.6)])
def test_burst_sizes_are_the_least_sensitive_within_the_spike_budget(cnn, data, ref, ratio):
    candidates = (1, 2, 4)
    kl, own = _tables(cnn, data, candidates, top=4)
    limit = ratio * sum(own[layer, ref] for layer in LAYERS)
    best = min((sum(kl[l_, n] for l_, n in zip(LAYERS, ns)), ns) for ns in itertools.product(candidates, repeat=3)
               if sum(own[l_, n] for l_, n in zip(LAYERS, ns)) <= limit + 1e-9)[1]
    snn = convert(cnn, data, "adafire", T, progress=False, candidates=candidates, spike_ref=ref, spike_budget=ratio,
                  samples=len(data), **FAST)
    assert tuple(snn.nodes[n].max_spikes for n in LAYERS) == best
    assert "spikes/sample" in snn.meta["notes"]["r1"][0]


def test_spike_ref_outside_the_candidates_is_simulated(cnn, data):
    kl, own = _tables(cnn, data, (1, 2, 4), top=2)
    limit = 0.95 * sum(own[layer, 4] for layer in LAYERS)  # N = 4 never chosen, only the reference
    best = min((sum(kl[l_, n] for l_, n in zip(LAYERS, ns)), ns) for ns in itertools.product((1, 2), repeat=3)
               if sum(own[l_, n] for l_, n in zip(LAYERS, ns)) <= limit + 1e-9)[1]
    snn = convert(cnn, data, "adafire", T, progress=False, candidates=(1, 2), samples=len(data), **FAST)
    assert tuple(snn.nodes[n].max_spikes for n in LAYERS) == best


def test_mean_burst_budget_is_still_an_option(cnn, data):
    snn = convert(cnn, data, "adafire", T, progress=False, candidates=(1, 2, 4), budget=1.5, samples=len(data), **FAST)
    sizes = [snn.nodes[n].max_spikes for n in LAYERS]
    assert np.mean(sizes) <= 1.5 and "mean N <= 1.5" in snn.meta["notes"]["r1"][0]


def test_single_candidate_needs_no_search(cnn, data):
    snn = convert(cnn, data, "adafire", T, progress=False, candidates=(1,), samples=len(data), **FAST)
    assert all(n.max_spikes == 1 for n in snn.of_type(IF))


@pytest.mark.parametrize("opts", [{"spike_budget": 0}, {"spike_ref": 0}, {"spike_ref": 1.5}, {"spike_budget": "x"},
                                  {"spike_budget": float("nan")}, {"spike_ref": True}])
def test_bad_spike_budget_is_a_conversion_error(cnn, data, opts):
    with pytest.raises(ConversionError, match=r"^adafire: need spike_budget > 0 and an integer spike_ref >= 1, got"):
        convert(cnn, data, "adafire", T, progress=False, **opts)


@pytest.mark.parametrize("value", [0, -3, 2.5, "64"])
def test_bad_search_samples_is_a_conversion_error(cnn, data, value):
    with pytest.raises(ConversionError, match=r"^adafire: search_samples must be an integer >= 1, got"):
        convert(cnn, data, "adafire", T, progress=False, search_samples=value)


def test_per_channel_option_from_the_command_line(cnn, data):
    key, value = _option("per_channel=true")  # -O per_channel=true
    snn = convert(cnn, data, "adafire", T, progress=False, candidates=(1, 2), samples=len(data),
                  **{key: value}, **FAST)
    calib = make_calib_set(cnn, data, batch_size=256, progress=False)
    stats = record_ann(cnn, calib, list(LAYERS), per_channel=True).stats
    for name, channels in (("r1", 6), ("r2", 8), ("r3", 32)):
        node = snn.nodes[name]
        want = threshold_from_stats(name, stats[name], "mse", timesteps=T, max_spikes=node.max_spikes,
                                    rounding="round")
        assert np.asarray(node.theta).shape == (channels,)
        np.testing.assert_array_equal(node.theta, want)
    assert snn.meta["options"] == {"candidates": (1, 2), "samples": len(data), "per_channel": True, **FAST}


def test_adafire_ch_is_adafire_with_per_channel_thresholds(cnn, data):
    kw = {"candidates": (1, 2), "samples": 32, **FAST}
    a = convert(cnn, data, "adafire+ch", T, progress=False, **kw)
    b = convert(cnn, data, "adafire", T, progress=False, per_channel=True, **kw)
    for n in LAYERS:
        assert a.nodes[n].max_spikes == b.nodes[n].max_spikes
        np.testing.assert_array_equal(a.nodes[n].theta, b.nodes[n].theta)
        np.testing.assert_array_equal(a.nodes[n].bias, b.nodes[n].bias)
    with pytest.raises(ConversionError, match="method 'adafire\\+ch': unknown option"):
        convert(cnn, data, "adafire+ch", T, progress=False, per_channel=False)


def test_binary_targets_get_adafire_ch_without_bursts():
    from snncompile.backends import get_backend

    from snncompile.convert.for_target import method_for_target

    nir = get_backend("nir").supports
    assert method_for_target("nir", nir, "adafire+ch", {}) == ("adafire+ch", {"candidates": (1,), "budget": 1.0})
    with pytest.raises(ConversionError, match=r"^method adafire\+ch: candidates \(1, 2\) include burst neurons"):
        method_for_target("nir", nir, "adafire+ch", {"candidates": (1, 2)})


def test_search_samples_limit_only_the_searches(cnn, data):
    kw = {"candidates": (1, 2, 4), "ssc_ratios": (1.0, 1.5), "bias_correction": False, "iat": True}
    a = convert(cnn, data, "adafire", T, progress=False, samples=96, search_samples=32, **kw)
    b = convert(cnn, data, "adafire", T, progress=False, samples=32, **kw)  # without BC, samples feed only the searches
    for n in LAYERS:
        assert a.nodes[n].max_spikes == b.nodes[n].max_spikes
        np.testing.assert_array_equal(a.nodes[n].theta, b.nodes[n].theta)
    assert a.meta["iat"] == b.meta["iat"] and a.meta["notes"] == b.meta["notes"]
