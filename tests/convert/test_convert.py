"""The convert() entry point: dispatch, structure of the SNN, conversion log, errors."""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pytest

from snncompile.convert import METHODS, convert
from snncompile.errors import ConversionError, DataError
from snncompile.ir import IF, Graph, Node, ReLU
from snncompile.sim import simulate
from tests.convert.conftest import small_cnn

FAST = {"adafire": {"samples": 32}, "adafire+ch": {"samples": 32}}


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_replaces_every_relu(method, cnn, data):
    snn = convert(cnn, data, method, 8, progress=False, **FAST.get(method, {}))
    assert not snn.of_type(ReLU)
    assert [n.name for n in snn.of_type(IF)] == ["r1", "r2", "r3"]
    assert snn.meta["method"] == method and snn.meta["timesteps"] == 8
    log = snn.meta["conversion_log"]
    assert [e["node"] for e in log] == ["r1", "r2", "r3", "fc2"]
    assert log[-1]["to"] == "readout: membrane integrator"
    assert all(e["theta"] is not None and min(np.ravel(e["theta"])) > 0 for e in log[:3])  # per layer or channel
    assert cnn.of_type(ReLU) and cnn.meta == {}  # the input graph is untouched
    res = simulate(snn, data[:8], 8)
    assert res.outputs.shape == (8 + 0, 8, 5) and set(res.spikes) == {"r1", "r2", "r3"}


def test_shift_and_threshold_semantics(cnn, data):
    plain = convert(cnn, data, "max", 8, progress=False)
    deng = convert(cnn, data, "deng", 8, progress=False, threshold="max")
    bias = convert(cnn, data, "deng", 8, progress=False, threshold="max", shift="bias")
    for name in ("r1", "r2", "r3"):
        theta = plain.nodes[name].theta
        assert float(plain.nodes[name].v0) == 0.0
        assert float(deng.nodes[name].v0) == pytest.approx(float(theta) / 2)
        assert float(bias.nodes[name].bias) == pytest.approx(float(theta) / 16)


def test_clipped_relu_becomes_saturating_if(data):
    snn = convert(small_cnn(clip=0.5), data, "max", 8, progress=False)
    node = snn.nodes["r1"]
    assert node.max_value == 0.5 and float(node.theta) <= 0.5 and math.isinf(snn.nodes["r2"].max_value)
    assert "clip 0.5" in snn.meta["conversion_log"][0]["from_op"]


def test_calibration_set_errors(cnn, data):
    with pytest.raises(ConversionError, match="x \\(Input\\): calibration set is empty"):
        convert(cnn, data[:0], "max", 8, progress=False)
    with pytest.raises(DataError, match="x \\(Input\\): calibration data must have shape"):
        convert(cnn, data[:, :, :4], "max", 8, progress=False)
    one = convert(cnn, data[:1], "calib-light", 4, progress=False)  # a single sample is enough
    assert len(one.of_type(IF)) == 3


def test_unknown_method_and_options(cnn, data):
    with pytest.raises(ConversionError, match="unknown conversion method 'foo'"):
        convert(cnn, data, "foo", 8)
    with pytest.raises(ConversionError, match="method 'deng': unknown option\\(s\\) tau"):
        convert(cnn, data, "deng", 8, tau=3)
    with pytest.raises(ConversionError, match="already an SNN"):
        convert(convert(cnn, data, "max", 8, progress=False), data, "max", 8, progress=False)


@dataclass(frozen=True, eq=False)
class Square(Node):
    """A nonlinear operator an SNN cannot compute on spikes: y = x^2."""

    op = "Square"

    def forward(self, x):
        return x * x


def test_nonlinear_operator_is_rejected(cnn, data):
    nodes = [n for n in cnn.nodes.values() if n.name != "r2"]
    nodes = [dataclasses.replace(n, inputs=("sq",)) if n.inputs == ("r2",) else n for n in nodes]
    g = Graph(nodes + [Square("sq", ("c2",))])
    with pytest.raises(ConversionError, match="sq \\(Square\\): not a ReLU, linear or structural operator"):
        convert(g, data, "deng", 8, progress=False)
