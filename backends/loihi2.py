"""The ``loihi2`` target: a Loihi 2 resource estimate, and a board run where Intel's lava-loihi exists.

Without lava-loihi (Intel's proprietary extension of Lava, not on PyPI) nothing runs on a chip.
What fails then is *not* an import of ``Loihi2HwCfg``: lava-nc 0.10.0 ships that class, and its
compiler (``lava/magma/compiler/compiler.py``) catches the ImportError of
``lava.magma.compiler.subcompilers.nc.ncproc_compiler`` and substitutes empty stubs, so a network
run with ``Loihi2HwCfg`` silently falls back to the CPU models. :func:`lava_loihi_missing` therefore
checks for that NeuroCore compiler module itself. The backend then returns the estimate only,
``write`` stores it as ``loihi2_resources.json`` and :meth:`Loihi2Backend.check` raises one
BackendError after the output directory is complete.

Resource model, per population of the graph Lava deploys (the compiled graph after the Lava
backend's timing pass, :func:`snncompile.backends.lava.timing.pipeline`: its delay relays take
cores too; every population except the input lives on neuro cores; the synapses of a connection
are stored with its destination neurons):

    neurons   = prod(shape)
    synapses  = non-zero weights of every incoming connection, materialized (a conv synapse exists
                for each output neuron, input neuron pair that a non-zero kernel tap links)
    fan_in    = max over neurons of their incoming synapses
    weight_memory_bits = synapses * WEIGHT_BITS (no weight sharing: an upper bound for conv layers)
    cores     = max(ceil(neurons / NEURONS_PER_CORE), ceil(weight_memory_bits / CORE_MEMORY_BITS), 1)
    chips     = max(ceil(sum cores / CORES_PER_CHIP), ceil(neurons / NEURONS_PER_CHIP),
                    ceil(synapses / SYNAPSES_PER_CHIP))

The constants and the source of each are in :data:`CONSTANTS` (also written into the JSON).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from snncompile.backends import Backend
from snncompile.backends.lava.timing import Relay, pipeline

from snncompile.errors import BackendError
from snncompile.ir import Graph
from snncompile.ir.populations import ConvConn, DenseConn, IFPop, Readout, Source

__all__ = ["CONSTANTS", "NC_COMPILER", "Constant", "Loihi2Backend", "estimate_resources", "lava_loihi_missing"]

log = logging.getLogger("snncompile")

NC_COMPILER = "lava.magma.compiler.subcompilers.nc.ncproc_compiler"  # lava-loihi's NeuroCore compiler


@dataclass(frozen=True)
class Constant:
    """A hardware number with where it comes from; ``verified`` is False where no Intel source was read."""

    value: int
    unit: str
    source: str
    verified: bool


CONSTANTS: dict[str, Constant] = {
    "cores_per_chip": Constant(
        128, "neuro cores",
        "Intel Labs technology brief 'Taking Neuromorphic Computing to the Next Level with Loihi 2' (2021): "
        "128 neuro cores per chip; lava-nc 0.10.0 lava/magma/compiler/subcompilers/constants.py: "
        "NUM_VIRTUAL_CORES_L2 = 128", True),
    "neurons_per_chip": Constant(
        1_000_000, "neurons",
        "Intel press release 'Intel Advances Neuromorphic with Loihi 2, New Lava Software Framework' "
        "(Business Wire, 2021-09-30): 'up to 1 million neurons per chip'", True),
    "synapses_per_chip": Constant(
        120_000_000, "synapses",
        "'up to 1 million neurons and 120 million synapses' per chip, as quoted from Intel by "
        "open-neuromorphic.org (Loihi 2 page); not checked against an Intel document", False),
    "neurons_per_core": Constant(
        8192, "neurons",
        "derived: 2**20 neurons per chip / 128 cores; no per-core figure from Intel was read", False),
    "core_memory_bits": Constant(
        128 * 1024 * 8, "bits",
        "128 KB of flexibly partitioned SRAM per core, from press coverage of the 2021 announcement "
        "(fbhtechinfo.com, 'Intel's new Loihi-2 chip uses 1 million neurons'); Intel's per-core "
        "figure not verified; here counted for synaptic weights only", False),
    "weight_bits": Constant(
        8, "bits per synapse",
        "lava-nc 0.10.0 Dense fixed_pt: num_weight_bits = 8 (lava/proc/dense/models.py, "
        "lava/utils/weightutils.py)", True),
}


def lava_loihi_missing() -> str | None:
    """Why no Loihi 2 board run is possible here (None if lava-loihi's NeuroCore compiler imports)."""
    from snncompile.backends.lava.compat import apply

    apply()
    try:
        importlib.import_module(NC_COMPILER)
    except ImportError:
        return (f"lava-loihi is not installed (Intel's proprietary package and a Loihi 2 board are needed; "
                f"{NC_COMPILER} does not import)")
    return None


def _incoming_per_neuron(g: Graph, conn: DenseConn | ConvConn) -> np.ndarray:
    """Non-zero synapses of ``conn`` that end on each destination neuron, shaped like the destination."""
    if isinstance(conn, DenseConn):
        return np.count_nonzero(conn.weight, axis=1).reshape(g.shapes[conn.name])
    nz = torch.as_tensor(np.asarray(conn.weight) != 0, dtype=torch.float64)
    ones = torch.ones((1, *g.shapes[conn.inputs[0]]), dtype=torch.float64)
    counts = F.conv2d(ones, nz, None, conn.stride, conn.padding, conn.dilation, conn.groups)
    return counts[0].numpy()


def _population(g: Graph, pop) -> dict:
    c = {k: v.value for k, v in CONSTANTS.items()}
    neurons = int(math.prod(g.shapes[pop.name]))
    per_neuron = sum((_incoming_per_neuron(g, g.nodes[i]) for i in pop.inputs), np.zeros(g.shapes[pop.name]))
    synapses = int(per_neuron.sum())
    bits = synapses * c["weight_bits"]
    cores = max(math.ceil(neurons / c["neurons_per_core"]), math.ceil(bits / c["core_memory_bits"]), 1)
    shared = sum(int(np.count_nonzero(g.nodes[i].weight)) for i in pop.inputs if isinstance(g.nodes[i], ConvConn))
    return {"name": pop.name, "kind": pop.op, "shape": list(g.shapes[pop.name]), "neurons": neurons,
            "incoming_connections": len(pop.inputs), "synapses": synapses, "fan_in": int(per_neuron.max()),
            "weight_memory_bits": bits, "shared_kernel_weights": shared, "cores": cores}


def estimate_resources(g: Graph) -> dict:
    """Loihi 2 resource estimate of a population graph as Lava deploys it (relays included, see the
    module docstring); plain JSON types."""
    c = {k: v.value for k, v in CONSTANTS.items()}
    g = pipeline(g)
    pops = [_population(g, n) for n in g.nodes.values() if isinstance(n, (IFPop, Readout, Relay))]
    src = next(n for n in g.nodes.values() if isinstance(n, Source))
    neurons, synapses = sum(p["neurons"] for p in pops), sum(p["synapses"] for p in pops)
    cores = sum(p["cores"] for p in pops)
    chips = max(math.ceil(cores / c["cores_per_chip"]), math.ceil(neurons / c["neurons_per_chip"]),
                math.ceil(synapses / c["synapses_per_chip"]), 1)
    return {
        "populations": pops,
        "input": {"name": src.name, "shape": list(g.shapes[src.name]),
                  "note": "injected by the host or embedded cores; no neuro core counted"},
        "totals": {"neurons": neurons, "synapses": synapses,
                   "weight_memory_bits": sum(p["weight_memory_bits"] for p in pops), "cores": cores, "chips": chips},
        "constants": {k: asdict(v) for k, v in CONSTANTS.items()},
        "assumptions": [
            "synapses are stored with their destination neurons; one population never shares a core",
            "every non-zero synapse is stored (no conv weight sharing): weight memory is an upper bound",
            "neuron state, axon routing and microcode memory are not counted against core memory",
            "constants marked verified=false come from secondary sources or are derived",
        ],
    }


def _log_estimate(est: dict) -> None:
    log.info("loihi2 resource estimate (%s):", ", ".join(f"{k} {v}" for k, v in est["totals"].items()))
    for p in est["populations"]:
        log.info("  %-40s %-7s neurons %8d  synapses %10d  fan-in %6d  cores %4d", p["name"][-40:], p["kind"],
                 p["neurons"], p["synapses"], p["fan_in"], p["cores"])


class Loihi2Backend(Backend):
    """Resource estimate always; a run through Lava on ``Loihi2HwCfg`` only where lava-loihi is installed."""

    name = "loihi2"
    own_process = True

    def evaluate(self, graph, evals, cfg, *, reference):
        graph = pipeline(graph)  # Lava's timing pass once: the estimate and run_lava find it done (idempotent)
        estimate = estimate_resources(graph)
        _log_estimate(estimate)
        missing = lava_loihi_missing()
        if missing is not None:
            log.warning("loihi2: %s; writing the resource estimate only", missing)
            return None, {"loihi2": {**estimate, "board_run": False, "reason": missing}}
        ev, info = self._run(graph, evals, cfg, reference)
        return ev, {"loihi2": {**estimate, "board_run": True, **info}}

    def _run(self, graph, evals, cfg, reference):
        """Same lowering and streaming as ``lava-sim``, compiled with ``Loihi2HwCfg`` (needs a board)."""
        from lava.magma.core.run_configs import Loihi2HwCfg
        from snncompile.backends.lava.backend import exit_checks, spike_exact_fraction
        from snncompile.backends.lava.runner import run_lava

        from snncompile.evaluate import from_population_sim

        log.warning("loihi2: IFSoft and Passthrough have only PyLoihiProcessModels; Loihi2HwCfg runs them "
                    "on the host CPU, only connections with NeuroCore models go to the chip")
        res = run_lava(graph, evals.x, cfg.timesteps, fixed=True, progress=cfg.progress,
                       run_cfg=Loihi2HwCfg(select_tag="fixed_pt"))
        ev = from_population_sim(graph, res, evals.y, self.name)  # what ran (pipelined by evaluate), relays included
        exact = spike_exact_fraction(reference, ev)
        log.info("loihi2: per-layer spike counts equal to the fixed-point simulator on %.1f %% of %d samples",
                 100 * exact, ev.samples)
        return ev, {"spike_exact_fraction": exact, "seconds": res.seconds,
                    **({} if ev.exit_steps is None else exit_checks(reference, ev))}

    def write(self, result, directory: Path) -> list[Path]:
        est = estimate_resources(result.pop_int)
        path = Path(directory) / "loihi2_resources.json"
        path.write_text(json.dumps(est, indent=1, sort_keys=True))
        return [path]

    def check(self, report: dict, directory: Path) -> None:
        """Raises BackendError if nothing ran on a chip (read from the report: merged shard reports too)."""
        info = report.get("loihi2", {})
        if not info.get("board_run", False):
            raise BackendError(f"loihi2: {info.get('reason', 'no board run')}; resource estimate and compiled "
                               f"artifact were written to {directory}")
