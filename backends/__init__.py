"""Backends: lower the population IR to a target and run or export it (installed as ``snncompile.backends``).

Every target implements :class:`Backend`. Heavy dependencies (Lava, nir, h5py) are imported only
when their target is chosen, so ``import snncompile`` stays light.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path

from snncompile.errors import BackendError

__all__ = ["BACKENDS", "Backend", "get_backend"]


class Backend(ABC):
    """A compilation target. ``evaluate`` runs the network (if the target can), ``write`` stores its files."""

    name: str = ""

    @abstractmethod
    def evaluate(self, graph, evals, cfg, *, reference):
        """Run ``graph`` on ``evals``; returns (Evaluation or None, extra report fields)."""

    def write(self, result, directory: Path) -> list[Path]:
        """Write target-specific files (exports, hardware artifacts) into ``directory``."""
        return []

    def finish(self, directory: Path) -> None:
        """Called once the output directory is complete; may raise (e.g. hardware not present)."""


# target -> (module, class, keyword arguments)
BACKENDS: dict[str, tuple[str, str, dict]] = {
    "lava-sim": ("snncompile.backends.lava.backend", "LavaBackend", {"fixed": True}),
    "lava-sim-float": ("snncompile.backends.lava.backend", "LavaBackend", {"fixed": False}),
    "loihi2": ("snncompile.backends.loihi2", "Loihi2Backend", {}),
    "nir": ("snncompile.backends.nir", "NirBackend", {}),
    "netx": ("snncompile.backends.netx", "NetxBackend", {}),
}


def get_backend(target: str) -> Backend:
    if target not in BACKENDS:
        raise BackendError(f"unknown target {target!r}; backends: {', '.join(BACKENDS)}")
    module, cls, kwargs = BACKENDS[target]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise BackendError(f"target {target}: cannot import its backend ({e})") from None
    return getattr(mod, cls)(**kwargs)
