"""snncompile: compile trained ANNs (ONNX) into spiking networks for neuromorphic hardware.

The conversion is the function ``snncompile.convert.convert`` (``from snncompile.convert import convert``);
``snncompile.convert`` itself is the subpackage, not callable.
"""

__version__ = "0.1.0"

import os

# Before torch loads OpenMP: its worker threads sleep when idle instead of spinning. On a machine shared
# with other jobs (CI runners) spinning threads take the cores the working thread needs: mnist_resnet's
# `--method adafire -T 32` took 147-153 s with spinning and 29-37 s without at load 4-6 on 2 cores
# (docs/benchmarks.md, compile time). A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from snncompile.errors import CompileError, UnsupportedOperator
from snncompile.ir import Graph

__all__ = ["CompileError", "Graph", "UnsupportedOperator", "__version__", "load_onnx", "simulate"]


def load_onnx(path, **kwargs) -> Graph:
    """Parse an ONNX file (or ModelProto) into a :class:`Graph`; see :mod:`snncompile.frontend.onnx`."""
    from snncompile.frontend.onnx import load_onnx as _load

    return _load(path, **kwargs)


def simulate(snn: Graph, x, timesteps: int = 32, **options):
    """Run an SNN graph on a batch for T steps (fast simulator); see :mod:`snncompile.sim`."""
    from snncompile.sim import simulate as _simulate

    return _simulate(snn, x, timesteps, **options)
