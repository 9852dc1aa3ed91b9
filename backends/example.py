"""An example target, complete in one file: what a new backend needs (see backends/__init__.py).

``example`` exports the integer population graph as plain numpy arrays (``example.npz``: every
connection's weight mantissas and exponent, every population's threshold, bias and initial
membrane) for a hypothetical chip toolchain. It takes the integer graph quantized for the Loihi 2
profile, carries binary spikes only, and cannot run the network itself: ``evaluate`` checks that
the graph fits and returns no evaluation, so the report's accuracy is the fixed-point simulator's.
The tests register it with ``snncompile.backends.register("example", "snncompile.backends.example",
"ExampleBackend")``; a real target adds that line to ``BACKENDS`` instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from snncompile.backends import Backend, Supports

from snncompile.errors import BackendError
from snncompile.ir.populations import CONNECTIONS, IFPop, Readout


class ExampleBackend(Backend):
    name = "example"
    graph = "integer"
    supports = Supports(bursts=False, srp=False)

    def evaluate(self, graph, evals, cfg, *, reference):
        burst = [n.name for n in graph.of_type(IFPop) if n.max_spikes > 1]
        if burst:
            raise BackendError(f"{burst[0]} (IF): emits up to {graph.nodes[burst[0]].max_spikes} spikes per step; "
                               f"the example target carries binary spikes only")
        conns = graph.of_type(*CONNECTIONS)
        return None, {"example": {"file": "example.npz", "connections": len(conns),
                                  "synapses": int(sum(np.asarray(c.weight).size for c in conns))}}

    def write(self, result, directory: Path) -> list[Path]:
        g = result.pop_int
        arrays = {}
        for n in g.nodes.values():
            if isinstance(n, CONNECTIONS):
                arrays[f"{n.name}/weight"] = np.asarray(n.weight, np.int16)
                arrays[f"{n.name}/weight_exp"] = np.asarray(n.weight_exp, np.int8)
            elif isinstance(n, (IFPop, Readout)):
                for f in ("theta", "bias", "v0"):
                    if hasattr(n, f):
                        arrays[f"{n.name}/{f}"] = np.asarray(getattr(n, f), np.int32)
        path = Path(directory) / "example.npz"
        np.savez_compressed(path, **arrays)
        return [path]

    def check(self, report: dict, directory: Path) -> None:
        if "example" not in report:
            raise BackendError(f"example: the report in {directory} has no export record")
