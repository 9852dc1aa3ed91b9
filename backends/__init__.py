"""Backends: every ``--target`` is one :class:`Backend` (installed as ``snncompile.backends``).

A backend owns everything about its target: which graph it takes (:attr:`Backend.graph`), which
hardware profile it is quantized for (:attr:`Backend.profile`), what it can carry
(:attr:`Backend.supports`), whether each run needs processes of its own (:attr:`Backend.own_process`),
and how it runs, writes and checks a compiled network. Backends keep no state between calls: what
``evaluate`` learns goes into the report, which ``write`` and ``check`` read back.

The core (pipeline, commands, distributed) only goes through this interface and :data:`BACKENDS`;
it names no target. A new target is one file with a Backend subclass plus one line in
:data:`BACKENDS` (or a call to :func:`register`); ``backends/example.py`` is a complete one.

Heavy dependencies (Lava, nir, h5py) are imported only when their target runs, so
``import snncompile`` stays light.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from snncompile.errors import BackendError
from snncompile.quantize.profile import LOIHI2, HardwareProfile

__all__ = ["BACKENDS", "Backend", "Supports", "get_backend", "register", "targets"]


@dataclass(frozen=True)
class Supports:
    """What a target can carry; the conversion and lowering read it (e.g. no bursts for NIR)."""

    bursts: bool = True  # graded spikes (an IF layer emitting up to N > 1 spikes per step)
    srp: bool = True  # SRP's suppression mask and pre-steps
    soft_reset: bool = True  # reset by subtracting the threshold (else reset to a value)
    initial_potential: bool = True  # membranes starting at v0 != 0
    early_exit: bool = True  # runs each sample to an exit step and counts to it (else the export runs the full T)


class Backend(ABC):
    """A compilation target.

    ``graph`` says what ``evaluate`` and ``run`` take: ``"snn"`` (the float SNN graph of the
    conversion), ``"populations"`` (the float population graph) or ``"integer"`` (the quantized
    population graph for :attr:`profile`).
    """

    name: str = ""
    graph: str = "integer"
    profile: HardwareProfile | None = LOIHI2
    supports: Supports = Supports()
    own_process: bool = False  # each run needs fresh worker processes (Ray: one task per worker, max_calls=1)
    runs_artifacts: bool = False  # `snncompile run DIR --target NAME` can re-run a compiled integer artifact

    @property
    def integer(self) -> bool:
        return self.graph == "integer"

    @abstractmethod
    def evaluate(self, graph, evals, cfg, *, reference):
        """Run ``graph`` (see :attr:`graph`) on ``evals``; returns (Evaluation or None, extra report fields).

        ``reference`` is the simulator's Evaluation of the same graph (the fixed-point one for
        integer targets, the float one otherwise): what a target's own run is compared against."""

    def run(self, graph, x, timesteps: int, *, progress: bool = False):
        """Run an integer population graph on ``x`` (``snncompile run``); a PopulationResult."""
        raise BackendError(f"target {self.name}: cannot re-run a compiled artifact")

    def write(self, result, directory: Path) -> list[Path]:
        """Write target-specific files (exports, hardware artifacts) into the new output ``directory``."""
        return []

    def check(self, report: dict, directory: Path) -> None:
        """After the output directory is in place: raise (BackendError) if the run did not do what the
        target promises (e.g. loihi2 without a board), reading only ``report``."""


# target -> (module, class, keyword arguments), in the order `--target` lists them
BACKENDS: dict[str, tuple[str, str, dict]] = {
    "sim": ("snncompile.backends.sim", "SimBackend", {}),
    "sim-int": ("snncompile.backends.sim", "SimIntBackend", {}),
    "lava-sim": ("snncompile.backends.lava.backend", "LavaBackend", {"fixed": True}),
    "lava-sim-float": ("snncompile.backends.lava.backend", "LavaBackend", {"fixed": False}),
    "loihi2": ("snncompile.backends.loihi2", "Loihi2Backend", {}),
    "nir": ("snncompile.backends.nir", "NirBackend", {}),
    "netx": ("snncompile.backends.netx", "NetxBackend", {}),
}


def targets() -> tuple[str, ...]:
    """Every target name, as ``--target`` accepts them."""
    return tuple(BACKENDS)


def register(target: str, module: str, cls: str, **kwargs) -> None:
    """Add a target at run time (a plugin, or a test's example backend)."""
    BACKENDS[target] = (module, cls, kwargs)


def get_backend(target: str) -> Backend:
    """A new Backend for ``target`` (backends hold no state, so a fresh one per call is the same one)."""
    if target not in BACKENDS:
        raise BackendError(f"unknown target {target!r}; choose one of {', '.join(BACKENDS)}")
    module, cls, kwargs = BACKENDS[target]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise BackendError(f"target {target}: cannot import its backend ({e})") from None
    backend = getattr(mod, cls)(**kwargs)
    backend.name = target
    return backend
