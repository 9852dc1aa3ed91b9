"""The Graph: construction checks, stages, the executor's error classes, safe printing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from snncompile.errors import GraphError, ShapeError
from snncompile.ir import IF, Graph, Input, Linear, Output, ReLU
from snncompile.ir.node import Node


def _mlp(name_relu: str = "r") -> Graph:
    w = np.eye(3, dtype=np.float32)
    b = np.zeros(3, np.float32)
    return Graph([Input("x", (), shape=(3,)), Linear("fc", ("x",), weight=w, bias=b), ReLU(name_relu, ("fc",)),
                  Output("y", (name_relu,))], "mlp")


def test_stage_is_told_by_the_nodes_and_set_by_lowering():
    ann = _mlp()
    assert ann.stage == "ann"
    snn = ann.replace({"r": IF("r", ("fc",), theta=np.ones(3), v0=np.zeros(3), bias=np.zeros(3))})
    assert snn.stage == "snn"
    snn.meta["stage"] = "integer"  # lowering/quantization state it explicitly
    assert snn.stage == "integer"


def test_graph_checks_names_and_edges():
    with pytest.raises(GraphError, match="'nowhere' is not produced"):
        Graph([Input("x", (), shape=(3,)), ReLU("r", ("nowhere",)), Output("y", ("r",))])
    with pytest.raises(GraphError, match="duplicate node name"):
        Graph([Input("x", (), shape=(3,)), ReLU("r", ("x",)), ReLU("r", ("x",)), Output("y", ("r",))])


@dataclass(frozen=True, eq=False)
class _Buggy(Node):
    """A node with a bug in its forward (a TypeError): our bug, not the user's input."""

    op = "Buggy"

    def infer_shape(self, x):
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + None  # TypeError


def test_executor_reports_shape_errors_as_user_errors_and_lets_bugs_through():
    g = _mlp()
    with pytest.raises(ShapeError, match=r"expected shape \(B, 3\)"):
        g.run(np.zeros((2, 4), np.float32))
    bug = Graph([Input("x", (), shape=(3,)), _Buggy("b", ("x",)), Output("y", ("b",))])
    with pytest.raises(TypeError):  # exit 3 (internal error) at the CLI, not exit 2
        bug.run(np.zeros((2, 3), np.float32))


def test_printing_escapes_names():
    text = str(_mlp("r\x1b[2J\nevil"))
    assert "\x1b" not in text and "r\\x1b[2J\\nevil" in text
    assert len(text.splitlines()) == 6  # header, column names, four nodes: the newline did not add a line


def test_input_macs_count_the_layers_before_the_first_activation():
    """The SNN's first layers act on the analog input: their MACs are charged once per sample (energy)."""
    from snncompile.energy import ENERGY_MODELS, estimate
    from snncompile.evaluate import ann_macs, input_macs

    w, b = np.ones((3, 3), np.float32), np.zeros(3, np.float32)
    g = Graph([Input("x", (), shape=(3,)), Linear("fc1", ("x",), weight=w, bias=b), ReLU("r", ("fc1",)),
               Linear("fc2", ("r",), weight=w, bias=b), Output("y", ("fc2",))])
    assert ann_macs(g) == 18 and input_macs(g) == 9
    e = estimate(ENERGY_MODELS["horowitz45nm"], ann_macs=18, synops=0, spikes=0, neuron_updates=0, input_macs=9)
    assert e["snn_joules_per_sample"] == pytest.approx(9 * 4.6e-12) and e["ratio"] == pytest.approx(2.0)
