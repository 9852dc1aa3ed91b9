"""The simulator targets: ``sim`` (the float SNN, torch) and ``sim-int`` (the bit-exact fixed-point
population simulator for the Loihi 2 profile). Both are the numeric oracles the other targets are
compared against; as targets they return that reference evaluation itself."""

from __future__ import annotations

from snncompile.backends import Backend


class SimBackend(Backend):
    """The float simulator of the converted SNN graph (no lowering, no quantization)."""

    name = "sim"
    graph = "snn"
    profile = None

    def evaluate(self, graph, evals, cfg, *, reference):
        return reference, {}


class SimIntBackend(SimBackend):
    """The fixed-point simulator of the integer population graph: what Loihi 2 computes, bit for bit.
    As a target it returns the reference evaluation (``SimBackend.evaluate``)."""

    name = "sim-int"
    graph = "integer"
    profile = Backend.profile
    runs_artifacts = True

    def run(self, graph, x, timesteps: int, *, progress: bool = False):
        from snncompile.sim.popsim import simulate_populations

        # with an early-exit policy (an artifact compiled with --early-exit) count to each sample's exit step
        return simulate_populations(graph, x, timesteps, progress=progress, trace=bool(graph.meta.get("early_exit")))
