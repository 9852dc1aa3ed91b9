"""A small random CNN (IR nodes, He-initialised) and calibration data for the conversion tests."""

from pathlib import Path

import numpy as np
import pytest

from snncompile.ir import AvgPool2d, Conv2d, Flatten, Graph, Input, Linear, MaxPool2d, Output, ReLU

F32 = np.float32
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def he(rng, shape, fan_in):
    return rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(F32)


def small_cnn(seed=0, pool="avg", clip=float("inf")):
    """x(1,8,8) -> conv3x3(6)+ReLU -> pool 2x2 -> conv3x3(8)+ReLU -> flatten -> fc(32)+ReLU -> fc(5)."""
    rng = np.random.default_rng(seed)
    pool_node = (AvgPool2d if pool == "avg" else MaxPool2d)("p1", ("r1",))
    return Graph([
        Input("x", (), shape=(1, 8, 8)),
        Conv2d("c1", ("x",), he(rng, (6, 1, 3, 3), 9), rng.normal(0, 0.1, 6).astype(F32), padding=(1, 1, 1, 1)),
        ReLU("r1", ("c1",), max_value=clip),
        pool_node,
        Conv2d("c2", ("p1",), he(rng, (8, 6, 3, 3), 54), rng.normal(0, 0.1, 8).astype(F32), padding=(1, 1, 1, 1)),
        ReLU("r2", ("c2",)),
        Flatten("f", ("r2",)),
        Linear("fc1", ("f",), he(rng, (32, 128), 128), rng.normal(0, 0.1, 32).astype(F32)),
        ReLU("r3", ("fc1",)),
        Linear("fc2", ("r3",), he(rng, (5, 32), 32), np.zeros(5, F32)),
        Output("out", ("fc2",)),
    ], "small_cnn")


@pytest.fixture
def cnn():
    return small_cnn()


@pytest.fixture
def data():
    return np.random.default_rng(1).uniform(0, 1, (96, 1, 8, 8)).astype(F32)
