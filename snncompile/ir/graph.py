"""The graph: named nodes, edges given by each node's ``inputs``, shapes, and the reference executor."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable

import networkx as nx
import numpy as np
import torch

from snncompile.errors import CompileError, GraphError, ShapeError
from snncompile.ir.node import Node, Shape
from snncompile.ir.ops import Input, Output

__all__ = ["Graph", "content_digest", "simulated_digest"]


class Graph:
    """An immutable DAG of :class:`Node` with exactly one :class:`Input` and at least one :class:`Output`.

    Construction checks the graph (unique names, known producers, no cycles, shapes) and orders the
    nodes topologically; ``graph.shapes[name]`` is the per-sample output shape of each node.
    Passes build a new Graph from modified nodes (``graph.replace(...)``) instead of editing one.
    """

    def __init__(self, nodes: Iterable[Node], name: str = "graph"):
        self.name = name
        self.meta: dict = {}  # results of analyses and passes (conversion log, stage, quantization)
        nodes = list(nodes)
        by_name: dict[str, Node] = {}
        for n in nodes:
            if n.name in by_name:
                raise GraphError(f"{n.name} ({n.op}): duplicate node name")
            by_name[n.name] = n
        dag = nx.DiGraph()
        dag.add_nodes_from(by_name)
        for n in nodes:
            for src in n.inputs:
                if src not in by_name:
                    raise GraphError(f"{n.name} ({n.op}): input '{src}' is not produced by any node")
                dag.add_edge(src, n.name)
        if not nx.is_directed_acyclic_graph(dag):
            cycle = " -> ".join(e[0] for e in nx.find_cycle(dag))
            raise GraphError(f"{cycle}: the graph has a cycle")
        position = {n.name: i for i, n in enumerate(nodes)}
        order = nx.lexicographical_topological_sort(dag, key=position.__getitem__)
        self.nodes: dict[str, Node] = {k: by_name[k] for k in order}
        self._dag = dag
        inputs = [n for n in nodes if isinstance(n, Input)]
        if len(inputs) != 1:
            names = ", ".join(n.name for n in inputs) or "none"
            raise GraphError(f"{name}: expected exactly one input, got {len(inputs)} ({names})")
        if not any(isinstance(n, Output) for n in nodes):
            raise GraphError(f"{name}: the graph has no output")
        self.shapes: dict[str, Shape] = {}
        for n in self.nodes.values():
            try:
                self.shapes[n.name] = tuple(n.infer_shape(*(self.shapes[i] for i in n.inputs)))
            except CompileError:
                raise
            except Exception as e:  # a node's shape rule failed in an unforeseen way
                raise ShapeError(f"{n.name} ({n.op}): {e}") from e

    # ---- structure -------------------------------------------------------------------------
    @property
    def input(self) -> Input:
        return next(n for n in self.nodes.values() if isinstance(n, Input))

    @property
    def outputs(self) -> list[Output]:
        return [n for n in self.nodes.values() if isinstance(n, Output)]

    @property
    def stage(self) -> str:
        """Which compilation stage this graph is: ``"ann"`` (imported), ``"snn"`` (converted: IF
        nodes), ``"populations"`` (lowered, float) or ``"integer"`` (quantized for the hardware
        profile ``meta["quantization"]["profile"]``). Lowering and quantization set
        ``meta["stage"]``; the first two are told by the node types."""
        if "stage" in self.meta:
            return self.meta["stage"]
        from snncompile.ir.neurons import IF
        from snncompile.ir.populations import POPULATIONS

        if any(isinstance(n, POPULATIONS) for n in self.nodes.values()):
            return "integer" if any(getattr(n, "fixed", False) for n in self.nodes.values()) else "populations"
        return "snn" if self.of_type(IF) else "ann"

    def users(self, name: str) -> list[Node]:
        """Nodes that consume ``name``'s output, in topological order."""
        return [self.nodes[u] for u in self.nodes if u in self._dag.succ[name]]

    def producers(self, node: Node) -> list[Node]:
        return [self.nodes[i] for i in node.inputs]

    def of_type(self, *types: type) -> list[Node]:
        return [n for n in self.nodes.values() if isinstance(n, types)]

    def replace(self, mapping: dict[str, Node | None] | None = None, *, rename: dict[str, str] | None = None,
                extra: Iterable[Node] = ()) -> Graph:
        """A new graph with nodes swapped (``mapping[name] = node``) or removed (``None``).

        ``rename`` redirects every use of a removed node to another node; ``extra`` adds nodes.
        """
        mapping, rename = mapping or {}, rename or {}

        def resolve(src: str) -> str:
            seen = set()
            while src in rename:
                if src in seen:
                    raise GraphError(f"{src}: circular rename")
                seen.add(src)
                src = rename[src]
            return src

        out = []
        for n in list(self.nodes.values()) + list(extra):
            new = mapping.get(n.name, n) if n.name in mapping else n
            if new is None:
                continue
            ins = tuple(resolve(i) for i in new.inputs)
            out.append(new if ins == new.inputs else dataclasses.replace(new, inputs=ins))
        g = Graph(out, self.name)
        g.meta = dict(self.meta)
        return g

    # ---- execution -------------------------------------------------------------------------
    def run(self, x: np.ndarray | torch.Tensor, *, record: bool = False):
        """Compute the network on a batch ``x`` of shape (B, *input_shape) in float32.

        Returns the output tensor (a tuple if there are several outputs); with ``record=True``
        returns ``(outputs, activations)`` where ``activations[name]`` is every node's output.
        """
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
        want = self.shapes[self.input.name]
        if tuple(x.shape[1:]) != want:
            hint = ""
            if self.input.source_perm and tuple(x.shape[1:]) == self.input.data_shape:
                hint = (" (the model's layout; its input Transpose was folded into the input: pass "
                        "graph.input.to_network(x))")
            raise ShapeError(f"{self.input.name} (Input): expected shape (B, {', '.join(map(str, want))}), "
                             f"got {tuple(x.shape)}{hint}")
        acts: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for n in self.nodes.values():
                if isinstance(n, Input):
                    acts[n.name] = x
                    continue
                try:
                    acts[n.name] = n.forward(*(acts[i] for i in n.inputs))
                except CompileError:
                    raise
                except RuntimeError as e:  # torch's shape and dtype mismatches; anything else is a bug (exit 3)
                    raise ShapeError(f"{n.name} ({n.op}): {e}") from e
        outs = tuple(acts[o.name] for o in self.outputs)
        result = outs[0] if len(outs) == 1 else outs
        return (result, acts) if record else result

    # ---- display ---------------------------------------------------------------------------
    def __str__(self) -> str:
        """A table of the nodes; names from the model are escaped (no control characters reach a terminal)."""
        from snncompile.safeio import clean

        rows = [("name", "op", "inputs", "shape", "params")]
        for n in self.nodes.values():
            attrs = ", ".join(f"{k}={v}" for k, v in n.changed_attrs().items())
            op = f"{n.op}({attrs})" if attrs else n.op
            rows.append((clean(n.name, 200), clean(op, 200), clean(", ".join(n.inputs), 400),
                         "x".join(map(str, self.shapes[n.name])), str(n.num_params())))
        widths = [min(max(len(r[i]) for r in rows), 48) for i in range(5)]
        lines = [f"Graph {clean(self.name, 200)}: {len(self.nodes)} nodes"]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Graph {self.name}: {len(self.nodes)} nodes>"


def content_digest(graph: Graph, *extra) -> str:
    """A digest of everything that defines ``graph``'s computation: every node's type and fields (name,
    inputs, arrays by dtype, shape and bytes, scalars by repr), the outputs, and ``extra`` values (arrays,
    tensors, tuples, dicts, scalars). Equal digests: the same network, whatever objects hold it."""
    h = hashlib.blake2b(digest_size=16)

    def add(v) -> None:
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        if isinstance(v, dict):
            v = tuple(sorted(v.items(), key=lambda kv: repr(kv[0])))
        if isinstance(v, (np.ndarray, np.generic)):
            a = np.ascontiguousarray(v)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        elif isinstance(v, (tuple, list)):
            h.update(b"(")
            for i in v:
                add(i)
            h.update(b")")
        else:
            h.update(f"{type(v).__name__}:{v!r};".encode())

    for node in graph.nodes.values():
        add(type(node).__name__)
        for f in dataclasses.fields(node):
            add(f.name)
            add(getattr(node, f.name))
    add([o.name for o in graph.outputs])
    add(extra)
    return h.hexdigest()


def simulated_digest(snn: Graph) -> str:
    """A digest of everything the simulator reads from ``snn``: its nodes and outputs
    (:func:`content_digest`) and the meta ``pre_steps`` and ``srp_nodes``."""
    meta = getattr(snn, "meta", {}) or {}
    return content_digest(snn, meta.get("pre_steps", 0), tuple(meta.get("srp_nodes", ())))
