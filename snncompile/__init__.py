"""snncompile: compile trained ANNs (ONNX) into spiking networks for neuromorphic hardware."""

__version__ = "0.1.0"

from snncompile.errors import CompileError, UnsupportedOperator
from snncompile.ir import Graph

__all__ = ["CompileError", "Graph", "UnsupportedOperator", "__version__", "convert", "load_onnx", "simulate"]


def load_onnx(path, **kwargs) -> Graph:
    """Parse an ONNX file (or ModelProto) into a :class:`Graph`; see :mod:`snncompile.frontend.onnx`."""
    from snncompile.frontend.onnx import load_onnx as _load

    return _load(path, **kwargs)


def convert(graph: Graph, calib_x, method: str | None = None, timesteps: int = 32, **options) -> Graph:
    """ANN graph -> SNN graph with a conversion method; see :mod:`snncompile.convert`."""
    from snncompile.convert import DEFAULT_METHOD
    from snncompile.convert import convert as _convert

    return _convert(graph, calib_x, method=method or DEFAULT_METHOD, timesteps=timesteps, **options)


def simulate(snn: Graph, x, timesteps: int = 32, **options):
    """Run an SNN graph on a batch for T steps (fast simulator); see :mod:`snncompile.sim`."""
    from snncompile.sim import simulate as _simulate

    return _simulate(snn, x, timesteps, **options)
