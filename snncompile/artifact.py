"""The compiled artifact: a graph's nodes as ``manifest.json`` plus ``params.npz`` (integer parameters).

Serialization is derived from each node's dataclass fields: arrays go to the npz, every other
field to the manifest. ``load_artifact`` rebuilds the same Graph, so a deployment can be re-run
(``snncompile run DIR``) without the ONNX file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from snncompile.errors import ModelFileError
from snncompile.ir import Graph, Node

__all__ = ["FORMAT", "load_artifact", "save_artifact"]

FORMAT = "snncompile-artifact/1"


def _node_types() -> dict[str, type]:
    import snncompile.ir.populations  # noqa: F401  (registers the population node classes)

    found, todo = {}, [Node]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if not sub.__name__.startswith("_"):
                found[sub.__name__] = sub
            todo.append(sub)
    return found


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(i) for i in v]
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    return v


def save_artifact(g: Graph, directory: Path, *, extra: dict | None = None) -> None:
    """Write ``manifest.json`` and ``params.npz`` describing ``g`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    nodes, arrays = [], {}
    for i, n in enumerate(g.nodes.values()):
        attrs, arr_fields = {}, []
        for f in dataclasses.fields(n):
            v = getattr(n, f.name)
            if isinstance(v, np.ndarray):
                arrays[f"{i}/{f.name}"] = v
                arr_fields.append(f.name)
            elif f.name not in ("name", "inputs"):
                attrs[f.name] = _jsonable(v)
        nodes.append({"type": type(n).__name__, "name": n.name, "inputs": list(n.inputs), "attrs": attrs,
                      "arrays": arr_fields})
    meta = {k: v for k, v in g.meta.items() if k in ("depth", "quantization", "float32_exact", "timesteps")}
    manifest = {"format": FORMAT, "graph": g.name, "nodes": nodes, "meta": meta, **(extra or {})}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1, default=float))
    np.savez_compressed(directory / "params.npz", **arrays)


def load_artifact(directory: str | Path) -> tuple[Graph, dict]:
    """Rebuild the graph written by :func:`save_artifact`; returns (graph, manifest)."""
    d = Path(directory)
    try:
        manifest = json.loads((d / "manifest.json").read_text())
        params = np.load(d / "params.npz")
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{d}: not a compiled artifact ({e})") from None
    if manifest.get("format") != FORMAT:
        raise ModelFileError(f"{d}: unknown artifact format {manifest.get('format')!r}, expected {FORMAT}")
    types = _node_types()
    nodes = []
    for i, spec in enumerate(manifest["nodes"]):
        cls = types.get(spec["type"])
        if cls is None:
            raise ModelFileError(f"{d}: node {spec['name']} has unknown type {spec['type']}")
        kw = {k: (tuple(_tuple(v)) if isinstance(v, list) else (float(v) if v in ("inf", "-inf") else v))
              for k, v in spec["attrs"].items()}
        kw.update({f: params[f"{i}/{f}"] for f in spec["arrays"]})
        nodes.append(cls(spec["name"], tuple(spec["inputs"]), **kw))
    g = Graph(nodes, manifest["graph"])
    g.meta.update(manifest.get("meta", {}))
    return g, manifest


def _tuple(v):
    return [tuple(_tuple(i)) if isinstance(i, list) else i for i in v]
