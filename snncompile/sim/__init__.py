"""Time-stepped SNN simulator (torch): ``simulate(snn, x, T) -> SimResult``."""

from snncompile.sim.early_exit import EarlyExit, early_exit
from snncompile.sim.rates import mean_rates
from snncompile.sim.result import SimResult
from snncompile.sim.simulate import simulate
from snncompile.sim.synaptic_paths import synaptic_paths

__all__ = ["EarlyExit", "SimResult", "early_exit", "mean_rates", "simulate", "synaptic_paths"]
