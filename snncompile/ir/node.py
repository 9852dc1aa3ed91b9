"""Base class of every IR node.

A node is a frozen dataclass: ``name``, the names of its ``inputs`` (edges of the graph) and its
parameters. Shapes are per sample (no batch dimension); the batch is always the leading axis of
the tensors ``forward`` receives. Parameters are numpy arrays that are never mutated: passes
derive new nodes with :func:`dataclasses.replace`.

Nodes stay plain values: what is derived from a node for computing (its arrays as tensors on a
device, structural facts such as "this matrix is c times the identity") lives in one explicit cache
outside it, :func:`cached`, keyed by the node's identity and dropped when the node is collected.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import numpy as np
import torch

from snncompile.errors import ShapeError

__all__ = ["Node", "Shape", "cached", "param"]

Shape = tuple[int, ...]
T = TypeVar("T")

# node -> {(kind, key): value}. Nodes hash by identity (eq=False), so a node's entries are its own, and
# they go with it: a replaced node (dataclasses.replace) starts empty, a collected one frees its tensors.
_DERIVED: weakref.WeakKeyDictionary[Node, dict] = weakref.WeakKeyDictionary()


def cached(node: Node, kind: str, key: Hashable, make: Callable[[], T]) -> T:
    """``make()`` computed once per ``node``, ``kind`` and ``key`` (e.g. a device and dtype), then reused
    while the node lives. Nodes are immutable, so a derived value never goes stale."""
    entries = _DERIVED.get(node)
    if entries is None:
        entries = _DERIVED[node] = {}
    k = (kind, key)
    if k not in entries:
        entries[k] = make()
    return entries[k]


def param(node: Node, field: str, like: torch.Tensor) -> torch.Tensor:
    """Parameter ``field`` of ``node`` as a float tensor on ``like``'s device (cached per device)."""
    return cached(node, "param", (field, like.device, like.dtype),
                  lambda: torch.as_tensor(np.asarray(getattr(node, field)), dtype=like.dtype, device=like.device))


@dataclass(frozen=True, eq=False)
class Node:
    """A vertex of the graph. ``inputs`` names the producers, in argument order."""

    name: str
    inputs: tuple[str, ...]

    arity: ClassVar[int | None] = 1  # number of inputs; None = one or more
    op: ClassVar[str] = "Node"  # short operator name used in reports

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.arity is not None and len(self.inputs) != self.arity:
            raise ShapeError(
                f"{self.name} ({self.op}): expects {self.arity} input(s), got {len(self.inputs)}"
            )

    def infer_shape(self, *shapes: Shape) -> Shape:
        """Output shape (per sample) from the input shapes; raises ShapeError naming the node."""
        return shapes[0]

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """Batched float computation of the node (the reference semantics)."""
        raise NotImplementedError(f"{self.name} ({self.op}) has no forward")

    def params(self) -> dict[str, np.ndarray]:
        """The node's array-valued fields (weights, biases, thresholds)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }

    def attrs(self) -> dict[str, object]:
        """The node's scalar/tuple fields other than name and inputs."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("name", "inputs") and not isinstance(getattr(self, f.name), np.ndarray)
        }

    def changed_attrs(self) -> dict[str, object]:
        """Scalar/tuple fields whose value differs from the field's default (for display)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return {k: v for k, v in self.attrs().items() if defaults.get(k, dataclasses.MISSING) != v}

    def num_params(self) -> int:
        return int(sum(a.size for a in self.params().values()))

    def _shape_error(self, msg: str) -> ShapeError:
        return ShapeError(f"{self.name} ({self.op}): {msg}")
