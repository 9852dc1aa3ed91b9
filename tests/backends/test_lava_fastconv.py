"""backends/lava/fastconv.py: the same numbers as Lava's own conv, on every parameter it takes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lava")

from snncompile.backends.lava.compat import apply

apply()

from snncompile.backends.lava import fastconv

CASES = [  # (X, Y, C, O, kernel, stride, padding, dilation, groups)
    (28, 28, 16, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (14, 12, 4, 6, (3, 3), (2, 2), (1, 1), (1, 1), 1),
    (11, 9, 6, 6, (5, 3), (1, 2), (2, 1), (1, 1), 3),
    (16, 16, 2, 4, (3, 3), (1, 1), (2, 2), (2, 2), 1),
    (7, 7, 8, 8, (1, 1), (1, 1), (0, 0), (1, 1), 8),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.int32, np.float64])
def test_fast_conv_equals_lavas(case, dtype):
    X, Y, C, O, k, stride, pad, dil, groups = case
    rng = np.random.default_rng(sum(case[:4]))
    if dtype is np.int32:  # graded spikes and 8-bit weights, as the fixed_pt model sees them
        x = rng.integers(0, 4, (X, Y, C)).astype(np.int32)
        w = (rng.integers(-128, 128, (O, *k, C // groups)) * 2).astype(np.int32)
    else:
        x = rng.random((X, Y, C))
        w = rng.normal(0, 1, (O, *k, C // groups))
    args = (np.array(k), np.array(stride), np.array(pad), np.array(dil), groups)
    ref, fast = fastconv.original()(x, w, *args), fastconv.conv(x, w, *args)
    assert fast.dtype == ref.dtype and fast.shape == ref.shape
    if dtype is np.int32:
        assert np.array_equal(fast, ref)  # integer sums: exact in both
    else:  # two float32 convolutions; the last bit may differ (why floating_pt runs keep Lava's own)
        np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-5)


def test_install_only_for_integer_runs(monkeypatch):
    from lava.proc.conv import utils

    lavas = fastconv.original()
    assert fastconv.install(fixed=True) and utils.conv is fastconv.conv and fastconv.installed()
    assert not fastconv.install(fixed=False) and utils.conv is lavas
    monkeypatch.setenv("SNNCOMPILE_LAVA_FASTCONV", "0")
    assert not fastconv.install(fixed=True) and utils.conv is lavas
