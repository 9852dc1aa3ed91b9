"""The Lava IFSoft models compute the IR's one IF update (ir.neurons.if_step), bit for bit.

IFSoft's ProcessModels run inside Lava and import only numpy (Lava's model discovery executes their
module alone), so they cannot call the torch definition; this test drives their update
(``_integrate``, one step of a window) and ``IFPop.step`` (which is ``if_step`` with the
population's constants) from the same random integer states and inputs, step after step, and
asserts equal spikes and membranes. The hardware constants come from the profile.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

pytest.importorskip("lava")

# imported after the skip; the procs package applies the Lava shim before Lava's own imports
from snncompile.backends.lava.procs import if_soft

from snncompile.ir.populations import IFPop
from snncompile.quantize.profile import LOIHI2

STEPS, N = 6, 64


def _model(cls, pop: IFPop, vth, bias_mant):
    m = cls({"max_spikes": pop.max_spikes, "period": STEPS, "offset": 0, "act_shift": pop.shift,
             "vth_shift": pop.vth_shift, "v_max": pop.v_max})
    dtype = np.int32 if cls is if_soft.PyIFSoftModelFixed else np.float64
    m.vth, m.bias_mant = vth.astype(dtype), bias_mant.astype(dtype)
    m.bias_exp = np.array([pop.bias_exp], dtype)
    return m


@pytest.mark.parametrize("max_spikes", [1, 5])
@pytest.mark.parametrize("constants", [{}, {"shift": 3, "vth_shift": 2, "v_max": 5000}, {"bias_exp": -2},
                                       {"bias_exp": 4, "shift": 0}])
def test_lava_fixed_model_is_if_step_on_random_integers(max_spikes, constants):
    rng = np.random.default_rng(max_spikes * 7 + len(constants))
    pop = IFPop("p", ("c",), theta=rng.integers(1, 2**9, N).astype(np.float64),
                bias=rng.integers(-300, 300, N).astype(np.float64), v0=np.zeros(N), max_spikes=max_spikes,
                fixed=True, **constants)
    model = _model(if_soft.PyIFSoftModelFixed, pop, pop.theta, pop.bias)
    v0 = rng.integers(-pop.v_max, pop.v_max, N)
    model.v = v0.astype(np.int32)
    v = torch.as_tensor(v0, dtype=torch.float64)[None]
    top = pop.v_max >> pop.shift  # inputs up to the bound in membrane units: both clips are exercised
    saturated = 0
    for _ in range(STEPS):
        a = rng.integers(-top, top + 1, N)
        n_lava = model._integrate(a.astype(np.int32))
        n, v, k = pop.step(torch.as_tensor(a, dtype=torch.float64)[None], v)
        saturated += k
        np.testing.assert_array_equal(n_lava, n[0].numpy())
        np.testing.assert_array_equal(model.v, v[0].numpy())
    assert saturated > 0
    if max_spikes > 1:
        assert model.v.dtype == np.int32


def test_lava_float_model_is_if_step():
    rng = np.random.default_rng(3)
    pop = IFPop("p", ("c",), theta=rng.uniform(0.1, 2.0, N), bias=rng.uniform(-0.2, 0.2, N), v0=np.zeros(N),
                max_spikes=3)
    model = _model(if_soft.PyIFSoftModelFloat, pop, pop.theta, pop.bias)
    model.v = np.zeros(N)
    v = torch.zeros((1, N), dtype=torch.float64)
    for _ in range(STEPS):
        a = rng.uniform(-1.0, 3.0, N)
        n_lava = model._integrate(a)
        n, v, _ = pop.step(torch.as_tensor(a)[None], v)
        np.testing.assert_array_equal(n_lava, n[0].numpy())
        np.testing.assert_allclose(model.v, v[0].numpy(), rtol=0, atol=1e-12)


def test_hardware_constants_are_the_profiles():
    """IFPop's defaults (a population that quantization did not write) and IFSoft's are Loihi 2's profile."""
    defaults = {f.name: f.default for f in dataclasses.fields(IFPop)}
    assert (defaults["shift"], defaults["vth_shift"], defaults["v_max"]) == (
        LOIHI2.act_shift, LOIHI2.vth_shift, LOIHI2.v_max)
    assert (if_soft.ACT_SHIFT, if_soft.VTH_SHIFT, if_soft.V_MAX) == (LOIHI2.act_shift, LOIHI2.vth_shift, LOIHI2.v_max)
