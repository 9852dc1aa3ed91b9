"""The compiled artifact: a graph's nodes as ``manifest.json`` plus ``params.npz`` (integer parameters).

Serialization is derived from each node's dataclass fields: arrays go to the npz, every other
field to the manifest. ``load_artifact`` rebuilds the same Graph, so a deployment can be re-run
(``snncompile run DIR``) without the ONNX file.

Older artifacts, written when the population graph still carried Lava's timing, hold ``Relay``
nodes (each fed by an identity connection) and ``meta.depth``. They still load: the depths are
dropped, and every relay chain is removed with its identity connections, the connection that read
the relay reading the relay's origin instead. That is the same network (a relay forwards its
payload unchanged; only Lava needs it, and the Lava backend adds it again), logged at INFO. A
``Relay`` whose connection is not the identity is refused with a one-line ModelFileError.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from snncompile.errors import CompileError, DataError, ModelFileError
from snncompile.ir import Graph, Node
from snncompile.safeio import clean, read_json

__all__ = ["FORMAT", "load_artifact", "save_artifact"]

log = logging.getLogger("snncompile")

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
    meta = {k: v for k, v in g.meta.items()
            if k in ("quantization", "float32_exact", "timesteps", "stage", "early_exit")}
    manifest = {"format": FORMAT, "graph": g.name, "nodes": nodes, "meta": meta, **(extra or {})}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1, default=float))
    np.savez_compressed(directory / "params.npz", **arrays)


MAX_NODES = 100_000
MAX_T = 1_000_000


def _fail(d: Path, what: str) -> ModelFileError:
    return ModelFileError(f"{clean(d)}: not a valid compiled artifact: {clean(what, 240)}")


def _read_params(d: Path) -> dict[str, np.ndarray]:
    """params.npz: every member an .npy array, declared sizes summing to at most the memory limit."""
    import zipfile

    from snncompile.data import memory_limit

    p = d / "params.npz"
    try:
        if not p.is_file():
            raise _fail(d, "params.npz is missing or not a regular file")
        with zipfile.ZipFile(p) as z:
            infos = z.infolist()
            total = sum(i.file_size for i in infos)
            if total > memory_limit():
                raise _fail(d, f"params.npz unpacks to {total} bytes, more than the limit of {memory_limit()}")
            bad = [i.filename for i in infos if not i.filename.endswith(".npy")]
            if bad:
                raise _fail(d, f"params.npz member {bad[0]!r} is not an .npy array")
        with np.load(p, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as e:
        raise _fail(d, f"params.npz is unreadable ({type(e).__name__}: {e})") from None


def _check_value(d: Path, node: str, field: str, hint, v) -> None:
    """The JSON value of a scalar field against its annotation (int, float, bool, str, tuple)."""
    h = hint.__name__ if isinstance(hint, type) else str(hint)
    ok = True
    if h == "int":
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif h == "float":
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and not np.isnan(v)
    elif h == "bool":
        ok = isinstance(v, bool)
    elif h == "str":
        ok = isinstance(v, str)
    elif h.startswith("tuple"):
        ok = isinstance(v, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in v)
    if not ok:
        raise _fail(d, f"node {node}: field {field} = {str(v)[:40]!r} is not of type {h}")


# integer fields of a fixed-point (Loihi 2 profile) node and their allowed ranges
def _int_ranges() -> dict[str, tuple[int, int]]:
    from snncompile.quantize.profile import LOIHI2 as P

    return {"weight": (-(2**P.weight_bits), 2**P.weight_bits - 1), "weight_exp": (P.weight_exp_min, P.weight_exp_max),
            "bias": (-P.bias_mant_max, P.bias_mant_max), "bias_exp": (0, P.bias_exp_max), "theta": (1, P.vth_max),
            "v0": (-P.v_max, P.v_max), "v_max": (1, P.v_max), "shift": (0, P.membrane_bits),
            "vth_shift": (0, P.membrane_bits), "max_spikes": (1, 2 ** (P.payload_bits - 1) - 1),
            "srp_steps": (0, MAX_T), "pre_steps": (0, MAX_T), "bits": (0, P.payload_bits)}


def _check_fixed(d: Path, n: Node) -> None:
    """A fixed-point node's numbers: finite integers (stored as floats or ints) within the profile's ranges."""
    ranges = _int_ranges()
    for f in dataclasses.fields(n):
        v = getattr(n, f.name)
        if f.name not in ranges or isinstance(v, (bool, str)) or v is None:
            continue
        a = np.asarray(v)
        if a.dtype.kind not in "iuf":
            raise _fail(d, f"node {n.name}: {f.name} has dtype {a.dtype}, not integers")
        if a.size and not (np.isfinite(a).all() and (a == np.floor(a)).all()):
            raise _fail(d, f"node {n.name}: {f.name} holds non-integer or NaN values in a fixed-point node")
        lo, hi = ranges[f.name]
        if a.size and (a.min() < lo or a.max() > hi):
            raise _fail(d, f"node {n.name}: {f.name} spans [{a.min():g}, {a.max():g}], outside the Loihi 2 "
                           f"range [{lo}, {hi}]")


def _small_array(d: Path, node: str, field: str, v) -> np.ndarray:
    """A numeric scalar or (nested) list of numbers from the manifest, as a finite float64 array."""
    ok = isinstance(v, (int, float, list)) and not isinstance(v, bool)
    try:
        a = np.asarray(v, dtype=np.float64) if ok else None
    except (ValueError, TypeError):
        a = None
    if a is None or not np.isfinite(a).all():
        raise _fail(d, f"node {node}: field {field} = {str(v)[:40]!r} is not a finite number or list of numbers")
    return a


def _check_broadcast(d: Path, n: Node, shape: tuple[int, ...]) -> None:
    """A neuron population's per-neuron arrays: a scalar, per channel (C,), or the full shape."""
    for f in ("theta", "bias", "v0"):
        v = getattr(n, f, None)
        if v is None or isinstance(v, (bool, str)):
            continue
        a = np.asarray(v)
        if not (a.size == 1 or a.shape == tuple(shape) or a.shape == tuple(shape[:1])
                or a.shape == (1, *shape)):
            raise _fail(d, f"node {n.name}: {f} has shape {a.shape}, expected a scalar, ({shape[0]},) or {shape}")
        if f == "theta" and a.size and not (a > 0).all():
            raise _fail(d, f"node {n.name}: theta must be > 0")


def load_artifact(directory: str | Path) -> tuple[Graph, dict]:
    """Rebuild the graph written by :func:`save_artifact`; returns (graph, manifest).

    The artifact is untrusted input: the manifest is read bounded (safeio.JSON_CAP), every field is
    checked against its node class, arrays must be finite, fixed-point numbers integers within the
    profile's ranges, and the graph is checked like any other (names, edges, shapes). Any problem
    is a one-line ModelFileError."""
    import typing

    d = Path(directory)
    if not (d / "manifest.json").exists():
        raise ModelFileError(f"{clean(d)}: not a compiled artifact (no manifest.json)")
    try:
        manifest = read_json(d / "manifest.json", "artifact manifest")
    except CompileError as e:
        raise ModelFileError(str(e)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ModelFileError(f"{clean(d)}: unknown artifact format {clean(got, 60)!r}, expected {FORMAT}")
    specs = manifest.get("nodes")
    if not isinstance(specs, list) or not 0 < len(specs) <= MAX_NODES:
        raise _fail(d, f"'nodes' must be a list of 1 to {MAX_NODES} nodes")
    T = manifest.get("timesteps")
    if T is not None and not (isinstance(T, int) and not isinstance(T, bool) and 1 <= T <= MAX_T):
        raise _fail(d, f"timesteps = {str(T)[:20]!r}, expected an integer in [1, {MAX_T}]")
    params = _read_params(d)
    types = _node_types()
    nodes, relays = [], {}
    for i, spec in enumerate(specs):
        if not (isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("type"), str)
                and isinstance(spec.get("inputs"), list) and all(isinstance(k, str) for k in spec["inputs"])
                and isinstance(spec.get("attrs", {}), dict) and isinstance(spec.get("arrays", []), list)):
            raise _fail(d, f"node #{i} is malformed (needs name, type, inputs, attrs, arrays)")
        if spec["type"] == "Relay" and len(spec["inputs"]) == 1:  # an older artifact's Lava relay (docstring)
            relays[spec["name"]] = spec["inputs"][0]
            continue
        cls = types.get(spec["type"])
        if cls is None:
            raise ModelFileError(f"{clean(d)}: node {clean(spec['name'], 80)} has unknown type {clean(spec['type'], 40)}")
        hints = typing.get_type_hints(cls)
        fields = {f.name for f in dataclasses.fields(cls)} - {"name", "inputs"}
        attrs, arrays = spec.get("attrs", {}), spec.get("arrays", [])
        if not all(isinstance(f, str) for f in arrays):
            raise _fail(d, f"node {spec['name']}: 'arrays' must list field names")
        unknown = [k for k in (*attrs, *arrays) if k not in fields]
        if unknown:
            raise _fail(d, f"node {spec['name']} ({spec['type']}) has no field {unknown[0]!r}")
        kw = {}
        for k, v in attrs.items():
            v = float(v) if v in ("inf", "-inf") else v
            if hints.get(k) is np.ndarray:  # a scalar or small per-channel array kept in the manifest
                kw[k] = _small_array(d, spec["name"], k, v)
                continue
            _check_value(d, spec["name"], k, hints.get(k), v)
            kw[k] = tuple(_tuple(v)) if isinstance(v, list) else v
        for f in arrays:
            a = params.get(f"{i}/{f}")
            if a is None:
                raise _fail(d, f"node {spec['name']}: array {f!r} is missing from params.npz")
            if a.dtype.kind not in "iuf" or (a.dtype.kind == "f" and not np.isfinite(a).all()):
                raise _fail(d, f"node {spec['name']}: array {f!r} ({a.dtype}) holds non-numbers, NaN or Inf")
            kw[f] = a
        try:
            node = cls(spec["name"], tuple(spec["inputs"]), **kw)
        except CompileError as e:
            raise _fail(d, str(e)) from None
        except (TypeError, ValueError) as e:
            raise _fail(d, f"node {spec['name']} ({spec['type']}): {e}") from None
        if getattr(node, "fixed", False):
            _check_fixed(d, node)
        nodes.append(node)
    if relays:
        nodes = _without_relays(d, nodes, relays)
    name = manifest.get("graph", "graph")
    try:
        g = Graph(nodes, name if isinstance(name, str) else "graph")
    except CompileError as e:
        raise _fail(d, str(e)) from None
    for n in g.nodes.values():
        _check_broadcast(d, n, g.shapes[n.name])
    meta = manifest.get("meta", {})
    meta = {k: v for k, v in meta.items() if k != "depth"} if isinstance(meta, dict) else {}  # depth: older
    stage = meta.get("stage", g.stage)
    if stage not in ("ann", "snn", "populations", "integer"):
        raise _fail(d, f"meta.stage = {str(stage)[:30]!r}, expected ann, snn, populations or integer")
    fixed = any(getattr(n, "fixed", False) for n in g.nodes.values())
    if (stage == "integer") != fixed:
        raise _fail(d, f"meta.stage says {stage!r} but the nodes are {'fixed-point' if fixed else 'float'}")
    if "early_exit" in meta:  # --early-exit's calibrated policy: `run` applies it
        from snncompile.sim.early_exit import ExitPolicy

        try:
            meta["early_exit"] = ExitPolicy.from_dict(meta["early_exit"]).as_dict()
        except DataError as e:
            raise _fail(d, f"meta.early_exit: {e}") from None
    g.meta.update(meta)
    return g, manifest


def _without_relays(d: Path, nodes: list[Node], relays: dict[str, str]) -> list[Node]:
    """An older artifact's nodes without its Lava relays (relay name -> its connection's name), each
    connection that read a relay reading the relay's origin (see the module docstring)."""
    from snncompile.ir.populations import CONNECTIONS, identity_gain

    by_name = {n.name: n for n in nodes}
    for r, c in relays.items():
        conn = by_name.get(c)
        if not isinstance(conn, CONNECTIONS) or identity_gain(conn) != 1.0:
            raise _fail(d, f"node {r} (Relay): its input {c} is not an identity connection")

    def origin(name: str) -> str:
        seen = set()
        while name in relays and name not in seen:
            seen.add(name)
            name = by_name[relays[name]].inputs[0]
        return name

    dropped = set(relays.values())
    out = [dataclasses.replace(n, inputs=tuple(origin(i) for i in n.inputs)) if any(i in relays for i in n.inputs)
           else n for n in nodes if n.name not in dropped]
    log.info("%s: an older artifact with %d Lava delay relays; loaded without them (the same synchronous "
             "network; the Lava backend adds its relays itself)", clean(d), len(relays))
    return out


def _tuple(v):
    return [tuple(_tuple(i)) if isinstance(i, list) else i for i in v]
