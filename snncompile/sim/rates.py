"""Time-averaged outputs of chosen nodes of an SNN, for layer-wise calibration.

Only the ancestors of the requested nodes are simulated (a prefix of the network), so
calibrating layer l costs the layers up to l, not the whole network.
"""

from __future__ import annotations

import torch

from snncompile.ir import Graph
from snncompile.ir.ops import Output
from snncompile.sim.engine import run_batch
from snncompile.sim.program import compile_program

__all__ = ["RateProbe", "mean_rates", "prefix_graph"]


def prefix_graph(snn: Graph, names: list[str]) -> Graph:
    """The sub-graph of ``names`` and their ancestors, with one Output on ``names[0]``."""
    keep, stack = set(), list(names)
    while stack:
        name = stack.pop()
        if name not in keep:
            keep.add(name)
            stack.extend(snn.nodes[name].inputs)
    nodes = [n for k, n in snn.nodes.items() if k in keep]
    return Graph(nodes + [Output("__rates_out", (names[0],))], f"{snn.name}[prefix]")


class RateProbe:
    """Compiled prefix of ``snn`` that returns the mean output of ``names`` over T steps.

    For an IF node the mean output is its rate ``r = theta * sum_t n[t] / T`` over the T counted
    steps. Analog input coding; ``pre_steps`` and SRP layers as in ``snn.meta`` (see
    :func:`snncompile.sim.simulate`) when ``use_meta`` is true, none otherwise.
    """

    def __init__(self, snn: Graph, names: list[str], device: str | torch.device = "cpu", *,
                 use_meta: bool = False) -> None:
        meta = (getattr(snn, "meta", {}) or {}) if use_meta else {}
        self.names = tuple(names)
        self.pre_steps = int(meta.get("pre_steps", 0))
        self.prog = compile_program(prefix_graph(snn, list(names)), device, analog=True,
                                    srp_nodes=frozenset(meta.get("srp_nodes", ())))

    def __call__(self, x: torch.Tensor, timesteps: int) -> dict[str, torch.Tensor]:
        """Rates for one batch ``x`` (B, *input_shape): tensors (B, *shape) on the probe's device."""
        tr = run_batch(self.prog, x.to(self.prog.device), timesteps, pre_steps=self.pre_steps,
                       per_step=False, record=self.names)
        return tr.recorded


def mean_rates(snn: Graph, x: torch.Tensor, timesteps: int, names: list[str], *, batch_size: int = 256,
               device: str | torch.device = "cpu", use_meta: bool = True) -> dict[str, torch.Tensor]:
    """Mean outputs (N, *shape) on CPU of ``names`` for all samples of ``x``, in batches
    (pre-steps and SRP from ``snn.meta`` unless ``use_meta`` is false)."""
    probe = RateProbe(snn, names, device, use_meta=use_meta)
    parts = [probe(x[s:s + batch_size], timesteps) for s in range(0, x.shape[0], batch_size)]
    return {k: torch.cat([p[k].cpu() for p in parts]) for k in probe.names}
