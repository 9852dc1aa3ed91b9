"""The ``lava-sim`` / ``lava-sim-float`` targets: run on Lava's CPU simulator and check it spike for spike.

The graph runs through :func:`snncompile.backends.lava.timing.pipeline` first (delay relays on skip
connections, as Lava delays each connection by one step). The report counts what ran on Lava,
relays included (layers of op ``Relay``: real neurons, messages and synops on the chip), so its
spikes, synops and energy can exceed the simulator's; ``lava.relays`` says how many. The
spike-for-spike check covers the populations of the compiled graph (the simulator's layers).

With ``--early-exit`` Lava still runs every sample for the full window, but its processes record their
spikes and synops per step (``snncompile.backends.lava.runner``), so the evaluation counts them to each
sample's exit step as the simulators do (``lava.ran_full_window``, ``exit_steps_equal``,
``exit_counts_equal``).
"""

from __future__ import annotations

import logging

import numpy as np
from snncompile.backends import Backend
from snncompile.backends.lava.timing import Relay, pipeline

from snncompile.evaluate import Evaluation, from_population_sim

__all__ = ["LavaBackend", "exit_checks", "relays", "spike_exact_fraction"]

log = logging.getLogger("snncompile")


def spike_exact_fraction(a: Evaluation, b: Evaluation) -> float:
    """Fraction of samples whose per-layer spike counts are equal in both runs (layers of ``a``: a
    Lava run's relays, absent from the simulator's evaluation ``a``, are not compared)."""
    same = np.ones(a.samples, dtype=bool)
    for k, v in a.per_sample_spikes.items():
        same &= np.asarray(v) == np.asarray(b.per_sample_spikes[k])
    return float(same.mean())


class LavaBackend(Backend):
    """Lava 0.10 CPU simulation with the custom IFSoft/Passthrough processes (Loihi2SimCfg):
    ``fixed_pt`` models on the integer graph (``lava-sim``), ``floating_pt`` on the float one."""

    own_process = True  # Lava forks its process models; a Ray worker runs one Lava runtime and exits

    def __init__(self, *, fixed: bool):
        self.fixed = fixed
        self.name = "lava-sim" if fixed else "lava-sim-float"
        self.graph = "integer" if fixed else "populations"
        self.runs_artifacts = fixed

    def run(self, graph, x, timesteps: int, *, progress: bool = False):
        from snncompile.backends.lava.runner import run_lava

        return run_lava(graph, x, timesteps, fixed=self.fixed, progress=progress)

    def evaluate(self, graph, evals, cfg, *, reference):
        from snncompile.backends.lava.runner import run_lava

        from snncompile.sim.popsim import simulate_populations

        if not self.fixed:  # the float graph's own oracle
            ref = simulate_populations(graph, evals.x, cfg.timesteps, batch_size=cfg.batch_size, dtype="float64",
                                       trace=bool(graph.meta.get("early_exit")))  # early exit: counts to the exit step
            reference = from_population_sim(graph, ref, evals.y, "sim-float-populations")
        ran = pipeline(graph)  # once: run_lava finds it done (pipeline is idempotent), the evaluation reads it
        res = run_lava(ran, evals.x, cfg.timesteps, fixed=self.fixed, progress=cfg.progress)
        ev = from_population_sim(ran, res, evals.y, self.name)
        exact = spike_exact_fraction(reference, ev)
        log.info("%s: per-layer spike counts equal to the %s simulator on %.1f %% of %d samples (%.2f s)",
                 self.name, "fixed-point" if self.fixed else "float population", 100 * exact, ev.samples, res.seconds)
        if exact < 1.0:
            log.warning("%s differs from the simulator on %d samples", self.name, round((1 - exact) * ev.samples))
        exits = {} if ev.exit_steps is None else exit_checks(reference, ev)
        return ev, {"lava": {"exact_samples": round(exact * ev.samples), "seconds": res.seconds,
                             "select_tag": "fixed_pt" if self.fixed else "floating_pt",
                             "outputs_equal": bool(np.array_equal(reference.predictions, ev.predictions)),
                             "relays": relays(ran), **exits}}


def exit_checks(reference: Evaluation, ev: Evaluation) -> dict:
    """--early-exit on Lava: the rule read on Lava's recorded readout and its counts to each exit step (from
    the per-step counts its processes record) against the simulator's; Lava itself ran every sample for the
    full window (it streams samples with a fixed period and cannot end one early)."""
    layers = list(reference.spikes)  # the simulator's populations (a Lava run's relays are extra)
    return {"exit_steps_equal": bool(np.array_equal(reference.exit_steps, ev.exit_steps)),
            "exit_counts_equal": ev.exit_counts == reference.exit_counts == "exit_step" and all(
                ev.spikes[k] == reference.spikes[k] and ev.synops[k] == reference.synops[k] for k in layers),
            "ran_full_window": True}


def relays(g) -> dict:
    """How many delay relays the Lava pass added to ``g`` (already pipelined), and their neurons."""
    found = g.of_type(Relay)
    return {"populations": len(found), "neurons": sum(int(np.prod(g.shapes[r.name])) for r in found)}
