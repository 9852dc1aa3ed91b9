"""Threshold selection (max / percentile / MSE), streaming statistics, dead layers, clipping."""

import warnings

import numpy as np
import pytest
import torch

from snncompile.convert.activations import LayerStats, collect_activations
from snncompile.convert.calib_set import make_calib_set
from snncompile.convert.thresholds import (
    _GRID,
    DEAD_THETA,
    _contenders,
    _level_bounds,
    _mse_threshold,
    _sorted_sample,
    _tail_bounds,
    clip_quantize,
    threshold_from_stats,
)
from tests.convert.conftest import small_cnn


def stats_of(graph, data, names, **kw):
    return collect_activations(graph, make_calib_set(graph, data, batch_size=32, progress=False), names, **kw)


def test_mse_threshold_beats_max_on_its_objective(cnn, data):
    st = stats_of(cnn, data, ["r1", "r2", "r3"])
    _, acts = cnn.run(data, record=True)
    for name in ("r1", "r2", "r3"):
        a = acts[name]
        t_max = torch.tensor(threshold_from_stats(name, st[name], "max", timesteps=8))
        t_mse = torch.tensor(threshold_from_stats(name, st[name], "mse", timesteps=8))
        err = {k: float((a - clip_quantize(a, t, 8)).pow(2).mean()) for k, t in (("max", t_max), ("mse", t_mse))}
        assert t_max == a.max()
        assert err["mse"] < err["max"], name
        t_p = threshold_from_stats(name, st[name], "percentile", timesteps=8, percentile=99.0)
        assert t_p < float(t_max)


def test_per_channel_thresholds_have_channel_shape(cnn, data):
    st = stats_of(cnn, data, ["r1", "r3"], per_channel=True)
    with pytest.warns(UserWarning, match="r1 \\(IF\\): 1 of 6 channels of layer never active"):
        theta = threshold_from_stats("r1", st["r1"], "max", timesteps=8)
    assert theta.shape == (6,)
    _, acts = cnn.run(data, record=True)
    expected = acts["r1"].amax(dim=(0, 2, 3)).numpy()
    # a dead channel gets its layer's largest live threshold
    np.testing.assert_allclose(theta, np.where(expected > 0, expected, expected.max()))
    with pytest.warns(UserWarning, match="r3 \\(IF\\): 8 of 32 channels"):
        assert threshold_from_stats("r3", st["r3"], "mse", timesteps=8).shape == (32,)


def test_reservoir_is_bounded_and_exact_when_small(cnn, data):
    small = stats_of(cnn, data, ["r1"], reservoir=10**6)["r1"]
    assert small.sample.shape == (1, 96 * 6 * 64) and small.count == 96 * 6 * 64
    bounded = stats_of(cnn, data, ["r1"], reservoir=2000)["r1"]
    assert bounded.sample.shape == (1, 2000)
    assert bounded.max == small.max  # the max is tracked exactly
    # a uniform subsample: its mean is close to the full mean
    assert abs(float(bounded.sample.mean() - small.sample.mean())) < 0.1 * float(small.sample.mean())


def test_dead_layer_gets_positive_threshold_and_warns(cnn, data):
    dead = cnn.replace({"c2": type(cnn.nodes["c2"])(
        "c2", ("p1",), np.zeros_like(cnn.nodes["c2"].weight), np.full(8, -1.0, np.float32), padding=(1, 1, 1, 1))})
    st = stats_of(dead, data, ["r2"])
    for mode in ("max", "percentile", "mse"):
        with pytest.warns(UserWarning, match="r2 \\(IF\\): layer never active"):
            theta = threshold_from_stats("r2", st["r2"], mode, timesteps=8)
        assert theta == pytest.approx(DEAD_THETA)


def test_clipped_relu_threshold_respects_clip(data):
    g = small_cnn(clip=0.5)
    st = stats_of(g, data, ["r1"])
    assert float(st["r1"].max) <= 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert threshold_from_stats("r1", st["r1"], "max", timesteps=8, max_value=0.5) <= 0.5
        # burst: N * theta may not exceed the clip
        theta4 = threshold_from_stats("r1", st["r1"], "max", timesteps=8, max_spikes=4, max_value=0.5)
    assert 4 * theta4 <= 0.5 + 1e-7


@pytest.mark.parametrize("per_channel", [False, True])
def test_max_only_pass_keeps_no_subsample_and_the_same_maximum(cnn, data, per_channel):
    """reservoir=0 (what method "max" asks for) skips the subsample; the running maximum and the
    max thresholds are those of the full pass, and the activations' true maximum."""
    names = ["r1", "r2", "r3"]
    full = stats_of(cnn, data, names, per_channel=per_channel)
    bare = stats_of(cnn, data, names, per_channel=per_channel, reservoir=0)
    acts = cnn.run(torch.as_tensor(data), record=True)[1]
    for n in names:
        assert bare[n].sample.shape[1] == 0 and bare[n].count == full[n].count
        assert torch.equal(bare[n].max, full[n].max)
        a = acts[n].transpose(0, 1).reshape(acts[n].shape[1], -1) if per_channel else acts[n].reshape(1, -1)
        assert torch.equal(bare[n].max, a.max(1).values)
        for_max = threshold_from_stats(n, bare[n], "max", timesteps=8)
        assert np.array_equal(for_max, threshold_from_stats(n, full[n], "max", timesteps=8))


def _grid_search(st, timesteps, max_spikes, rounding):
    """The MSE threshold's definition: every candidate of the grid through clip_quantize's float32 error."""
    cand = _GRID.view(-1, 1, 1) * (st.max.clamp_min(0) / max_spikes).view(1, -1, 1)
    a = st.sample.unsqueeze(0)
    err = (a - clip_quantize(a, cand.clamp_min(1e-12), timesteps, max_spikes, rounding)).pow(2).mean(-1)
    return cand[err.argmin(0), torch.arange(cand.shape[1]), 0]


@pytest.mark.parametrize("kind", ["relu", "on_levels", "channels"])
def test_mse_threshold_is_the_grid_argmin_bitwise(kind):
    """The search bounds most candidates away in float64 and evaluates only the rest in float32: the
    threshold must be bitwise the argmin of the float32 error over the whole grid - also for data on
    the quantization levels' boundaries (where float32 and exact levels differ) and per channel with a
    dead channel."""
    gen = torch.Generator().manual_seed(0)
    if kind == "relu":
        s = torch.relu(torch.randn(1, 65536, generator=gen)) * 3
    elif kind == "on_levels":  # every value a multiple of 1/16: many sit exactly on level boundaries
        s = (torch.rand(1, 65536, generator=gen) * 80).floor() / 16
    else:
        s = torch.relu(torch.randn(4, 16384, generator=gen) + 1) * torch.tensor([[0.0], [1.0], [3.0], [0.5]])
    st = LayerStats(s.max(1).values, s, torch.zeros_like(s), s.shape[1])
    pruned = 0
    for timesteps in (4, 5, 32):
        for max_spikes in (1, 4):
            for rounding in ("floor", "round"):
                got = _mse_threshold(st, timesteps, max_spikes, rounding)
                assert torch.equal(got, _grid_search(st, timesteps, max_spikes, rounding)), \
                    (timesteps, max_spikes, rounding)
                theta = (torch.linspace(0.05, 1.0, 96).view(-1, 1) * st.max.clamp_min(0) / max_spikes)
                rows = _contenders(st, theta.clamp_min(1e-12), timesteps, max_spikes, rounding)
                pruned += rows is not None and rows.shape[0] <= 8
    assert pruned >= 6  # the bound does prune (the speed-up this guards)


@pytest.mark.parametrize("kind", ["relu", "on_levels"])
def test_mse_error_bounds_hold_the_float32_terms(kind):
    """Both bounds the search prunes with (per level; loose, from the level-0 and clipped terms) must hold
    the exact sum of the float32 error terms of every candidate - including terms on level boundaries."""
    gen = torch.Generator().manual_seed(1)
    if kind == "relu":
        s = torch.relu(torch.randn(2, 8192, generator=gen)) * torch.tensor([[3.0], [0.01]])
    else:
        s = (torch.rand(2, 8192, generator=gen) * 80).floor() / 16
    st = LayerStats(s.max(1).values, s, torch.zeros_like(s), s.shape[1])
    for timesteps, max_spikes in ((4, 1), (5, 2), (16, 4)):
        theta = (_GRID.view(-1, 1) * st.max / max_spikes).clamp_min(1e-12)  # (G, C)
        for rounding, delta in (("floor", 0.0), ("round", 0.5)):
            a = s.unsqueeze(0)
            terms = (a - clip_quantize(a, theta.unsqueeze(-1), timesteps, max_spikes, rounding)).pow(2)
            exact = terms.double().sum(-1).T  # (C, G)
            h = theta.double().T.contiguous() / timesteps
            for bounds in (_level_bounds, _tail_bounds):
                lo, hi = bounds(*_sorted_sample(st), h, max_spikes * timesteps, delta)
                assert bool((lo <= exact).all() and (exact <= hi).all()), (bounds.__name__, timesteps, rounding)
