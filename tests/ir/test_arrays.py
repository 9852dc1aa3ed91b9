"""The one broadcasting rule of IR parameters: scalar, per channel (first axis) or per neuron."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snncompile.ir.arrays import channel_view, expand, layout_error, per_channel


@pytest.mark.parametrize("shape", [(3,), (3, 4, 5)])
def test_expand_and_per_channel_put_a_channel_value_on_every_neuron_of_its_channel(shape):
    rng = np.random.default_rng(1)
    c = rng.standard_normal(3)
    full = rng.standard_normal(shape)
    want = np.stack([np.full(shape[1:], v) for v in c])  # element [k, ...] = c[k]
    np.testing.assert_array_equal(expand(c, shape), want)
    np.testing.assert_array_equal(expand(np.float64(2.5), shape), np.full(shape, 2.5))
    np.testing.assert_array_equal(expand(full, shape), full)
    x = torch.zeros((2, *shape), dtype=torch.float64)
    for arr, ref in ((c, want), (full, full), (np.float64(2.5), np.full(shape, 2.5))):
        got = x + per_channel(arr, x)
        assert got.dtype == x.dtype
        np.testing.assert_array_equal(got.numpy(), np.broadcast_to(ref, (2, *shape)))
    assert channel_view(torch.as_tensor(c), len(shape)).shape == (3,) + (1,) * (len(shape) - 1)


def test_expand_copies_and_keeps_a_dtype_on_request():
    c = np.arange(3, dtype=np.int32)
    out = expand(c, (3, 2, 2), dtype=None)
    assert out.dtype == np.int32 and out.flags.writeable
    assert expand(c, (3, 2, 2), np.float32).dtype == np.float32


@pytest.mark.parametrize("shape, ok", [((), True), ((3,), True), ((3, 4, 5), True), ((4,), False),
                                       ((3, 4), False), ((1, 4, 5), False)])
def test_layout_error_accepts_scalar_per_channel_and_per_neuron_only(shape, ok):
    """For input (3, 4, 5): a scalar, (3,) or (3, 4, 5); IF and QuantClip refuse anything else with it."""
    assert (layout_error(np.zeros(shape), (3, 4, 5)) is None) is ok
