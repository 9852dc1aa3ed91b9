"""Small hand-built SNN graphs covering every lowering path (conv, pool+conv fold, dense, residual, concat)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snncompile.ir import (
    IF,
    Add,
    AvgPool2d,
    Concat,
    Conv2d,
    Flatten,
    GlobalAvgPool,
    Graph,
    Input,
    Linear,
    Output,
)


def _if(name, src, c, rng, n=1, per_channel=True):
    theta = rng.uniform(0.5, 1.5, size=(c,) if per_channel else ()).astype(np.float32)
    return IF(name, (src,), theta=theta, v0=(theta / 2).astype(np.float32), bias=np.zeros((), np.float32),
              max_spikes=n)


def _conv(name, src, cin, cout, rng, k=3, pad=1, stride=1):
    w = rng.normal(0, 0.6 / np.sqrt(cin * k * k), size=(cout, cin, k, k)).astype(np.float32)
    return Conv2d(name, (src,), weight=w, bias=rng.normal(0, 0.05, size=cout).astype(np.float32),
                  stride=(stride, stride), padding=(pad,) * 4)


def build_residual_snn(seed: int = 0, burst: int = 1) -> Graph:
    """conv-IF, avgpool+conv-IF, residual block, concat of two branches, GAP + linear readout; 10x12 input."""
    rng = np.random.default_rng(seed)
    nodes = [Input("x", (), shape=(2, 10, 12)), _conv("c1", "x", 2, 4, rng), _if("r1", "c1", 4, rng, burst),
             AvgPool2d("p1", ("r1",)), _conv("c2", "p1", 4, 6, rng), _if("r2", "c2", 6, rng, burst, False),
             _conv("c3", "r2", 6, 6, rng), _if("r3", "c3", 6, rng), _conv("c4", "r3", 6, 6, rng),
             Add("add", ("c4", "r2")), _if("r4", "add", 6, rng),
             _conv("ba", "r4", 6, 3, rng, k=1, pad=0), _if("ra", "ba", 3, rng),
             _conv("bb", "r4", 6, 3, rng, stride=1), _if("rb", "bb", 3, rng),
             Concat("cat", ("ra", "rb"), axis=0), GlobalAvgPool("gap", ("cat",)), Flatten("fl", ("gap",)),
             Linear("fc", ("fl",), weight=rng.normal(0, 0.5, size=(5, 6)).astype(np.float32),
                    bias=rng.normal(0, 0.1, size=5).astype(np.float32)),
             Output("y", ("fc",))]
    return Graph(nodes, "residual")


def build_input_skip_snn(seed: int = 3) -> Graph:
    """x -> IF r1 -> IF r2 -> readout of (r2, x): the readout also reads the graded input, over two levels."""
    rng = np.random.default_rng(seed)

    def lin(name, src, n_out, n_in, scale):
        return Linear(name, (src,), weight=rng.normal(0, scale, (n_out, n_in)).astype(np.float32),
                      bias=rng.normal(0, 0.05, n_out).astype(np.float32))

    return Graph([Input("x", (), shape=(4,)), lin("l1", "x", 6, 4, 0.8), _if("r1", "l1", 6, rng),
                  lin("l2", "r1", 6, 6, 0.8), _if("r2", "l2", 6, rng), lin("a", "r2", 3, 6, 0.5),
                  lin("b", "x", 3, 4, 0.5), Add("o", ("a", "b")), Output("y", ("o",))], "input-skip")


def build_mlp_snn(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    nodes = [Input("x", (), shape=(1, 6, 6)), Flatten("f", ("x",)),
             Linear("l1", ("f",), weight=rng.normal(0, 0.3, (20, 36)).astype(np.float32),
                    bias=rng.normal(0, 0.1, 20).astype(np.float32)), _if("r1", "l1", 20, rng),
             Linear("l2", ("r1",), weight=rng.normal(0, 0.3, (7, 20)).astype(np.float32),
                    bias=rng.normal(0, 0.1, 7).astype(np.float32)), Output("y", ("l2",))]
    return Graph(nodes, "mlp")


def reference_snn(g: Graph, x: np.ndarray, T: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Plain synchronous float SNN loop over the graph (test reference): average readout, spike totals."""
    x = torch.as_tensor(x, dtype=torch.float64)
    v, spikes, acc = {}, {n.name: 0.0 for n in g.of_type(IF)}, 0
    for _ in range(T):
        acts = {}
        for n in g.nodes.values():
            if isinstance(n, Input):
                acts[n.name] = x
            elif isinstance(n, IF):
                a = acts[n.inputs[0]]
                v.setdefault(n.name, n.init_state(a))
                cnt, v[n.name] = n.step(a, v[n.name])
                spikes[n.name] += float(cnt.sum())
                acts[n.name] = cnt * torch.as_tensor(n.theta, dtype=a.dtype).reshape(
                    (1, -1) + (1,) * (a.dim() - 2) if n.theta.ndim else ())
            else:
                acts[n.name] = n.forward(*(acts[i] for i in n.inputs))
        acc = acc + acts[g.outputs[0].name]
    return acc / T, spikes


@pytest.fixture
def residual_snn() -> Graph:
    return build_residual_snn()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1)
