"""Each method improves the objective it optimizes, measured on the small random CNN.

References: the ANN activations (``graph.run``) and the SNN rates from the simulator.
"""

import dataclasses

import numpy as np
import pytest
import torch

from snncompile.convert import convert
from snncompile.convert.adafire_search import pareto_select, symmetric_kl
from snncompile.convert.bias_correction import correct_bias, correct_potential, layer_error
from snncompile.convert.calib_set import make_calib_set
from snncompile.convert.weight_calibration import (
    _Adam,
    _block_forward,
    _cache,
    _DirectGrad,
    _sqrt_floor,
    adam_lrs,
    calibrate_weights,
    rate_approx,
    synaptic_block,
)
from snncompile.errors import ConversionError
from snncompile.sim import mean_rates, simulate

T = 8
LAYERS = ("r1", "r2", "r3")


def setup(cnn, data):
    calib = make_calib_set(cnn, data, batch_size=48, progress=False)
    snn = convert(cnn, data, "deng", T, progress=False, threshold="mse")
    return calib, snn


def test_bias_correction_reduces_mean_error(cnn, data):
    calib, snn = setup(cnn, data)
    for name in LAYERS:  # sequential: each layer sees the corrected layers before it
        before = layer_error(cnn, snn, calib, name, T)
        snn, _ = correct_bias(cnn, snn, calib, name, T)
        after = layer_error(cnn, snn, calib, name, T)
        channel = tuple(range(1, before.dim()))
        mean_before = (before.mean(channel) if channel else before).abs().mean()
        mean_after = (after.mean(channel) if channel else after).abs().mean()
        assert mean_after < 0.8 * mean_before, name
        assert snn.nodes[name].bias.shape == (before.shape[0],)


def test_potential_correction_reduces_per_neuron_error(cnn, data):
    calib, snn = setup(cnn, data)
    for name in LAYERS:
        before = layer_error(cnn, snn, calib, name, T).abs().mean()
        snn, _ = correct_potential(cnn, snn, calib, name, T)
        assert layer_error(cnn, snn, calib, name, T).abs().mean() < before, name
        assert snn.nodes[name].v0.shape == snn.shapes[name]


def test_weight_calibration_reduces_rate_loss(cnn, data):
    calib, snn = setup(cnn, data)
    new, (before, after) = calibrate_weights(cnn, snn, calib, "r2", T, samples=96, iters=150, lr=1e-3)
    assert after < before
    assert not np.array_equal(new.nodes["c2"].weight, snn.nodes["c2"].weight)
    assert np.array_equal(new.nodes["c1"].weight, snn.nodes["c1"].weight)  # other blocks untouched
    # and the simulated rates moved toward the ANN
    x = torch.as_tensor(data)
    a = cnn.run(x, record=True)[1]["r2"]
    err = {k: float((mean_rates(g, x, T, ["r2"])["r2"] - a).pow(2).sum() / len(x)) for k, g in (("old", snn), ("new", new))}
    assert err["new"] < err["old"]


def _wc_reference(ann, snn, calib, name, timesteps, samples, iters, lr, batch=32, seed=0):
    """Weight calibration written plainly: autograd through rate_approx and the loss, torch.optim.Adam,
    CosineAnnealingLR - the formulation calibrate_weights' direct gradient and Adam steps replace."""
    block, sources = synaptic_block(snn, name)
    inputs, target = _cache(ann, snn, calib, name, sources, timesteps, samples)
    trainable = [n for n in block if n.startswith(("c", "fc"))]
    weights = {n: torch.tensor(np.asarray(snn.nodes[n].weight), requires_grad=True) for n in trainable}
    node = snn.nodes[name]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(list(weights.values()), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iters)
    with torch.enable_grad():
        for _ in range(iters):
            idx = torch.randperm(target.shape[0], generator=gen)[:batch]
            z = _block_forward(snn, block, {s: v[idx] for s, v in inputs.items()}, weights)
            opt.zero_grad()
            (rate_approx(z, node, timesteps) - target[idx]).pow(2).sum().div(idx.numel()).backward()
            opt.step()
            sched.step()
    return {n: w.detach().numpy() for n, w in weights.items()}


@pytest.mark.parametrize("direct", [True, False])
def test_weight_calibration_is_bitwise_the_autograd_adam_loop(cnn, data, direct, monkeypatch):
    """The direct gradient, the in-place Adam and the pooled input computed once give bitwise the
    weights of the plain loop (r2's block has the average pool; T = 8 and 5 not powers of two
    relative to the batch of 24; a burst neuron, N = 2, moves the clamp's upper edge). ``direct``:
    the one-layer blocks' weight gradient from the backward kernels called directly (r2: Conv2d, r3:
    Linear); off, the autograd path that blocks with skip connections take."""
    calls = []
    if direct:
        call = _DirectGrad.__call__
        monkeypatch.setattr(_DirectGrad, "__call__", lambda self, *a: calls.append(1) or call(self, *a))
    else:
        monkeypatch.setattr(_DirectGrad, "of", classmethod(lambda cls, *a: None))
    calib, snn = setup(cnn, data)
    snn = snn.replace({"r3": dataclasses.replace(snn.nodes["r3"], max_spikes=2)})
    for name, timesteps, batch in (("r2", T, 32), ("r3", T, 24), ("r2", 5, 24)):
        new, (before, after) = calibrate_weights(cnn, snn, calib, name, timesteps, samples=96, iters=60, lr=1e-3,
                                                 batch=batch)
        assert after < before, name
        ref = _wc_reference(cnn, snn, calib, name, timesteps, 96, 60, 1e-3, batch)
        for n, w in ref.items():
            assert np.array_equal(new.nodes[n].weight, w), (name, timesteps, n)
    assert bool(calls) == direct


def test_adam_square_root_floor_is_bitwise_torch_adam():
    """_Adam (the square root of max(v, floor)) against torch.optim.Adam under the cosine schedule, on
    entries whose gradient is always 0 (v = 0), so small that v underflows to 0 or is subnormal, sometimes
    0, and ordinary: the same weights bitwise."""
    assert _sqrt_floor(torch.float32, 0.999, 1e-8) is not None
    gen = torch.Generator().manual_seed(0)
    scales = torch.tensor([0.0, 1e-24, 1e-21, 1e-19, 1e-17, 1e-12, 1e-6, 1e-3, 1.0]).repeat(6)
    w = torch.randn(40, scales.numel(), generator=gen)
    ref = torch.nn.Parameter(w.clone())
    opt = torch.optim.Adam([ref], lr=1e-3)
    mine = _Adam([w])
    for lr in adam_lrs(1e-3, 80):
        g = torch.randn(w.shape, generator=gen) * scales * (torch.rand(w.shape, generator=gen) > 0.3)
        ref.grad = g.clone()
        opt.param_groups[0]["lr"] = lr
        opt.step()
        mine.step([g], lr)
        assert torch.equal(w, ref.detach())


def test_weight_calibration_stops_early_only_on_its_fallback(cnn, data, monkeypatch):
    """r1 (fed by the analog input): the loss on the cached set is not below its start at the first
    ``patience`` checks, so the schedule stops there and the weights stay, as the whole schedule would
    also leave them; r3 improves: every step runs and the weights are bitwise those without the check."""
    steps = []
    step = _Adam.step
    monkeypatch.setattr(_Adam, "step", lambda self, *a: steps.append(1) or step(self, *a))
    calib, snn = setup(cnn, data)
    for name, stops in (("r1", True), ("r3", False)):
        runs = {}
        for patience in (3, None):
            steps.clear()
            runs[patience] = calibrate_weights(cnn, snn, calib, name, T, samples=96, iters=150, lr=1e-3,
                                               check_every=10, patience=patience)
            assert len(steps) == (30 if stops and patience else 150), (name, patience)
        (early, loss), (full, full_loss) = runs[3], runs[None]
        assert loss == full_loss and (loss[0] == loss[1]) == stops, name
        assert all(np.array_equal(early.nodes[n].weight, full.nodes[n].weight) for n in ("c1", "c2", "fc1"))


def test_srp_reduces_ann_zero_snn_positive_neurons(cnn, data):
    deng = convert(cnn, data, "deng", T, progress=False)
    srp = convert(cnn, data, "srp", T, progress=False, tau=4)
    assert srp.meta["pre_steps"] == 4 and srp.meta["srp_nodes"] == list(LAYERS)
    x = torch.as_tensor(data)
    acts = cnn.run(x, record=True)[1]
    rd, rs = mean_rates(deng, x, T, list(LAYERS)), mean_rates(srp, x, T, list(LAYERS))
    wrong = {k: sum(int(((acts[n] == 0) & (r[n] > 0)).sum()) for n in LAYERS) for k, r in (("deng", rd), ("srp", rs))}
    assert wrong["srp"] < wrong["deng"]


def test_adafire_bursts_beat_binary_neurons_at_equal_T(cnn, data):
    x = torch.as_tensor(data)
    logits = cnn.run(x)
    fast = {"samples": 64, "ssc_ratios": (1.0,)}
    binary = convert(cnn, data, "adafire", T, progress=False, candidates=(1,), budget=1, **fast)
    burst = convert(cnn, data, "adafire", T, progress=False, candidates=(1, 2, 4), budget=2, iat=True, **fast)
    sizes = [burst.nodes[n].max_spikes for n in LAYERS]
    assert max(sizes) > 1 and np.mean(sizes) <= 2
    assert all(binary.nodes[n].max_spikes == 1 for n in LAYERS)
    kl = {k: symmetric_kl(simulate(g, x, T).outputs[-1], logits) for k, g in (("binary", binary), ("burst", burst))}
    assert kl["burst"] < kl["binary"]
    iat = burst.meta["iat"]
    assert iat["metric"] == "entropy" and len(iat["thresholds"]) == T and "iat" not in binary.meta  # off by default
    with pytest.raises(ConversionError, match="iat must be true or false"):
        convert(cnn, data, "adafire", T, progress=False, iat="no", **fast)
    with pytest.raises(ConversionError, match="give iat=true"):
        convert(cnn, data, "adafire", T, progress=False, iat_rule="precision", **fast)


def test_pareto_select_minimizes_profit_under_budget():
    # 3 layers, settings N = 1, 2, 4 (costs); profits = sensitivities
    costs = [[1, 2, 4]] * 3
    profits = [[5.0, 1.0, 0.5], [0.3, 0.2, 0.1], [2.0, 0.4, 0.3]]
    assert pareto_select(costs, profits, limit=6) == [1, 1, 1]  # N = 2, 2, 2: profit 1.6
    assert pareto_select(costs, profits, limit=3) == [0, 0, 0]
    assert pareto_select(costs, profits, limit=12) == [2, 2, 2]
