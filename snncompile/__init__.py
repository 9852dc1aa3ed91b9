"""snncompile: compile trained ANNs (ONNX) into spiking networks for neuromorphic hardware."""

__version__ = "0.1.0"

from snncompile.errors import CompileError, UnsupportedOperator  # noqa: E402
from snncompile.ir import Graph  # noqa: E402

__all__ = ["__version__", "CompileError", "UnsupportedOperator", "Graph", "load_onnx"]


def load_onnx(path, **kwargs) -> Graph:
    """Parse an ONNX file (or ModelProto) into a :class:`Graph`; see :mod:`snncompile.frontend.onnx`."""
    from snncompile.frontend.onnx import load_onnx as _load

    return _load(path, **kwargs)
