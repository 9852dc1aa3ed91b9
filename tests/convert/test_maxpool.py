"""MaxPool2d rewrites: the relu-tree is exact on the ANN; avg warns; unsafe cases raise."""

import numpy as np
import pytest

from snncompile.convert import convert
from snncompile.convert.maxpool import rewrite_maxpool
from snncompile.errors import ConversionError
from snncompile.ir import IF, Add, AvgPool2d, Conv2d, Flatten, Graph, Input, MaxPool2d, Output, ReLU
from tests.convert.conftest import small_cnn

F32 = np.float32


def pool_net(kernel, stride, padding, relu=True, dilation=(1, 1)):
    rng = np.random.default_rng(0)
    nodes = [Input("x", (), shape=(3, 9, 9)),
             Conv2d("c", ("x",), rng.normal(size=(4, 3, 3, 3)).astype(F32), rng.normal(size=4).astype(F32),
                    padding=(1, 1, 1, 1))]
    nodes += [ReLU("r", ("c",))] if relu else []
    nodes += [MaxPool2d("p", ("r" if relu else "c",), kernel=kernel, stride=stride, padding=padding,
                        dilation=dilation),
              Flatten("f", ("p",)), Output("o", ("f",))]
    return Graph(nodes)


@pytest.mark.parametrize("kernel,stride,padding", [
    ((2, 2), (2, 2), (0, 0, 0, 0)), ((3, 3), (2, 2), (1, 1, 1, 1)), ((2, 3), (1, 2), (0, 1, 0, 1)), ((1, 1), (1, 1), (0, 0, 0, 0)),
])
def test_relu_tree_is_exact(kernel, stride, padding):
    g = pool_net(kernel, stride, padding)
    new = rewrite_maxpool(g)
    x = np.random.default_rng(1).normal(size=(8, 3, 9, 9)).astype(F32)
    np.testing.assert_allclose(new.run(x).numpy(), g.run(x).numpy(), rtol=0, atol=1e-5)
    k = kernel[0] * kernel[1]
    assert len(new.of_type(ReLU)) == 1 + (k - 1)  # the producer + K-1 tree ReLUs
    assert not new.of_type(MaxPool2d)
    assert isinstance(new.nodes["p"], (Add, Conv2d))  # the pool's name is kept
    (entry,) = new.meta["maxpool_log"]
    assert entry["node"] == "p" and entry["to"] == "relu-tree"
    assert set(new.meta["fixed_weights"]) <= set(new.nodes)


def test_relu_tree_of_a_dilated_pool_is_exact():
    g = pool_net((2, 3), (1, 2), (1, 0, 2, 1), dilation=(3, 2))
    new = rewrite_maxpool(g)
    x = np.random.default_rng(1).normal(size=(8, 3, 9, 9)).astype(F32)
    np.testing.assert_allclose(new.run(x).numpy(), g.run(x).numpy(), rtol=0, atol=1e-5)
    taps = [n for n in new.of_type(Conv2d) if n.weight.shape[2:] == (2, 3)]
    assert taps and all(t.dilation == (3, 2) and t.padding == (1, 0, 2, 1) for t in taps)


def test_relu_tree_without_padding_is_exact_for_any_input():
    g = pool_net((2, 2), (2, 2), (0, 0, 0, 0), relu=False)
    with pytest.raises(ConversionError, match="p \\(MaxPool2d\\): its input 'c' may be negative.*maxpool='avg'"):
        rewrite_maxpool(g)
    new = rewrite_maxpool(g, mode="relu-tree")
    x = np.random.default_rng(2).normal(size=(4, 3, 9, 9)).astype(F32)
    np.testing.assert_allclose(new.run(x).numpy(), g.run(x).numpy(), rtol=0, atol=1e-5)
    with pytest.raises(ConversionError, match="not exact with padding"):
        rewrite_maxpool(pool_net((3, 3), (2, 2), (1, 1, 1, 1), relu=False), mode="relu-tree")


def test_avg_mode_warns_with_the_node_name():
    g = pool_net((2, 2), (2, 2), (0, 0, 0, 0), relu=False)
    with pytest.warns(UserWarning, match="p \\(MaxPool2d\\): replaced by AvgPool2d"):
        new = rewrite_maxpool(g, mode="avg")
    assert isinstance(new.nodes["p"], AvgPool2d)
    assert new.meta["maxpool_log"][0]["to"] == "AvgPool2d"


def test_convert_turns_relu_tree_into_if_neurons(data):
    g = small_cnn(pool="max")
    snn = convert(g, data, "deng", 8, progress=False)
    assert not snn.of_type(ReLU) and not snn.of_type(MaxPool2d)
    tree_ifs = [n for n in snn.of_type(IF) if n.name.startswith("p1.relu")]
    assert len(tree_ifs) == 3
    log = {e["node"]: e for e in snn.meta["conversion_log"]}
    assert log["p1"]["from_op"] == "MaxPool2d" and log["p1"]["to"] == "relu-tree"
    assert log["p1.relu0"]["to"] == "IF"
