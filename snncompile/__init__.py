"""snncompile: compile trained ANNs (ONNX) into spiking networks for neuromorphic hardware.

The conversion is the function ``snncompile.convert.convert`` (``from snncompile.convert import convert``);
``snncompile.convert`` itself is the subpackage, not callable.
"""

__version__ = "0.1.0"

import os


def _omp_wait_policy(load: float | None, env) -> str | None:
    """OMP_WAIT_POLICY to set before torch loads OpenMP: "PASSIVE" (idle worker threads sleep) unless the
    machine looks idle (1-minute load average below 0.5) or the user chose a policy or spin count.

    torch's OpenMP threads spin between parallel regions; on an idle machine that is what makes two
    threads faster than one, on a shared one (CI runners) the spinning threads take the cores the
    working ones need. mnist_resnet's adafire conversion at T = 8 on 2 cores: idle, 3.4 s spinning and
    5.1 s sleeping; beside one busy process, 24-34 s spinning and 5.8-6.8 s sleeping (docs/benchmarks.md,
    compile time)."""
    if "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env or load is None or load < 0.5:
        return None
    return "PASSIVE"


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # no load average on this platform
        return None


if (_policy := _omp_wait_policy(_load_average(), os.environ)) is not None:
    os.environ["OMP_WAIT_POLICY"] = _policy

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
