"""Error types of snncompile.

Every error a user can reach is a :class:`CompileError` whose message is one line that starts with
the node (or file, or tensor) it is about and states the reason, e.g.
``conv3 (Conv): group=4 unsupported, only group=1``. The CLI prints ``error: <message>`` and exits
with status 2; nothing else is needed to explain the failure.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "CompileError",
    "ConversionError",
    "DataError",
    "GraphError",
    "ModelFileError",
    "ShapeError",
    "UnsupportedOperator",
]


class CompileError(Exception):
    """Base class: a problem with the user's model, data or options (exit status 2)."""


class ModelFileError(CompileError):
    """The model file cannot be read: missing, truncated, not ONNX, or structurally invalid."""


class UnsupportedOperator(CompileError):
    """An operator (or an attribute value of it) that snncompile cannot convert."""

    def __init__(self, node: str, op_type: str, reason: str = "", supported: tuple[str, ...] = ()):
        self.node, self.op_type, self.reason = node, op_type, reason
        msg = f"{node} ({op_type}): " + (reason or "unsupported operator")
        if supported:
            msg += "; supported: " + ", ".join(sorted(supported))
        super().__init__(msg)


class ShapeError(CompileError):
    """Tensor shapes that do not fit the operator (names the node and expected vs got)."""


class GraphError(CompileError):
    """A malformed graph: dangling inputs, cycles, duplicate names, wrong number of inputs."""


class DataError(CompileError):
    """Input or calibration data with the wrong shape, dtype, values or size."""


class ConversionError(CompileError):
    """A conversion method cannot be applied to this graph or with these options."""


class BackendError(CompileError):
    """A backend cannot lower or run the graph (missing package, hardware, unsupported node)."""
