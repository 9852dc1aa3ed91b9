"""Conv2d's strided-view path (depthwise, one kernel of one or two +-1 taps, zero bias: the MaxPool
rewrite's selections and differences) against F.conv2d, and the cases it must leave to F.conv2d."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from snncompile.ir import Conv2d

GEOMETRIES = [((2, 2), (1, 1), (0, 0, 0, 0)), ((1, 1), (1, 1), (1, 1, 1, 1)), ((2, 2), (2, 2), (0, 1, 0, 1)),
              ((3, 2), (1, 2), (1, 0, 2, 1))]


def _reference(conv: Conv2d, x: torch.Tensor) -> torch.Tensor:
    xp, pad = conv.pad_input(x)
    return F.conv2d(xp, torch.as_tensor(conv.weight), torch.as_tensor(conv.bias), conv.stride, pad,
                    conv.dilation, conv.groups)


@pytest.mark.parametrize("kernel,geometry", list(itertools.product([(2, 2), (3, 3), (1, 1), (2, 3)], GEOMETRIES)))
def test_signed_selections_equal_conv2d_bitwise(kernel, geometry):
    stride, dilation, padding = geometry
    rng, c = np.random.default_rng(sum(kernel) + stride[0]), 5
    for _ in range(10):
        ker = np.zeros(kernel, np.float32)
        taps = rng.choice(ker.size, size=min(ker.size, int(rng.integers(1, 3))), replace=False)
        ker.flat[taps] = rng.choice([-1.0, 1.0], size=len(taps))
        conv = Conv2d("c", ("x",), np.tile(ker, (c, 1, 1, 1)), np.zeros(c, np.float32), stride, padding, dilation,
                      groups=c)
        conv.infer_shape((c, 9, 11))
        assert conv._signed_taps() is not None
        x = torch.randn(4, c, 9, 11)
        assert torch.equal(conv.forward(x), _reference(conv, x))
        assert torch.equal(conv.forward(x[0]), _reference(conv, x[0]))  # unbatched too


@pytest.mark.parametrize("change", ["three taps", "a weight of 2", "a bias", "channels differ", "not depthwise"])
def test_other_convolutions_take_conv2d(change):
    c = 4
    w = np.zeros((c, 1, 2, 2), np.float32)
    w[:, 0, 0, 0], w[:, 0, 1, 1] = 1, -1
    b, groups = np.zeros(c, np.float32), c
    if change == "three taps":
        w[:, 0, 0, 1] = 1
    elif change == "a weight of 2":
        w[:, 0, 0, 0] = 2
    elif change == "a bias":
        b[1] = 0.5
    elif change == "channels differ":
        w[2, 0, 0, 0] = -1
    else:
        w, groups = np.zeros((c, c, 2, 2), np.float32), 1
        w[:, :, 0, 0] = 1
    conv = Conv2d("c", ("x",), w, b, (2, 2), groups=groups)
    assert conv._signed_taps() is None
    x = torch.randn(3, c, 8, 8)
    assert torch.equal(conv.forward(x), _reference(conv, x))
