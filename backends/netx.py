"""The ``netx`` target: export an integer population *chain* as a lava-dl netx HDF5 file (``model.net``).

Layout (what ``lava.lib.dl.netx.hdf5.Network`` of lava-dl 0.6.0 reads)::

    layer/0/{type='input', shape}                       shape (C, H, W) or (N,), no neuron
    layer/i/{type='flatten', shape}                     before a dense layer fed by a 3-D layer
    layer/i/{type='dense', shape, weight, bias, neuron/...}
    layer/i/{type='conv', shape, weight, bias, stride, padding, dilation, groups, neuron/...}
    neuron = {type='CUBA', iDecay, vDecay, vThMant, refDelay, gradedSpike}

netx builds each neuron as Lava's LIF with ``du = iDecay - 1``, ``dv = vDecay``, ``vth = vThMant``
and ``bias_exp = 6``: ``u = u*(4096 - (du + 1))/4096 + (a << 6)``, ``v = v*(4096 - dv)/4096 + u +
(bias << 6)``, spike when ``v > vth << 6``, then ``v = 0``. Weights are the effective integers; netx
re-derives Lava's mantissa and exponent itself (``netx.utils.optimize_weight_bits``) and clips a
mixed-sign matrix to [-256, 254], so only 8-bit values survive: the file holds our 8-bit mantissas
and the exponent moves into the neuron's scale. Conv weights are PyTorch-ordered (O, C/groups, kH, kW).

Mapping of a population P fed by connection c (mantissa ``W``, exponent ``e``), with netx's
membrane ``v' = v * 2**j``:

* IF (``iDecay = 4096``: no current memory, ``vDecay = 0``: no leak, a non-leaky IF):
  ``j = 6 - shift - e``, ``vThMant = theta * 2**j``, ``bias' = bias * 2**(bias_exp + j - 6)``, ``W' = W``.
  ``vThMant`` has 17 bits, so ``j`` is capped (theta = 4096: ``j <= 5``, with ``vThMant = 2**17 - 1``);
  beyond the cap ``W' = round(W * 2**(cap - j))`` and the relative weight error is reported.
  Where ``e < 0`` our integer graph floors the shifted sum; netx's scaled ``v`` keeps it exactly.
* Readout (``iDecay = vDecay = 4096``, ``vThMant = 2**17 - 1``: never fires, no memory):
  ``j = -e``, ``W' = W``, ``bias' = bias * 2**(bias_exp + j)``; ``v`` at step t is ``64 * 2**j * s_t``
  and the logits after T steps are ``sum_t v_t / (T * output_scale)`` (file attribute).
* Input: feed ``round(x * input_scale)`` as graded spikes (``input_message_bits`` >= ``input_bits``).

Biases that ``2**k`` turns fractional are rounded half up; each layer's attributes state ``v_scale_log2``
(j), the relative weight and bias rounding errors and ``u_bits``: netx's current ``u = a << 6`` wraps
at 24 signed bits (ours saturates ``v`` instead), so a layer whose worst-case input needs more bits is
logged; it can wrap on inputs that reach that bound.

Semantic gap (also in the file's attributes): netx/Lava's LIF resets to 0 (ours subtracts
theta), fires on ``>`` (ours ``>=``) and starts every sample at ``v = 0`` (ours at ``v0``). Only
chains are exported: every population has one incoming connection from the previous one. SRP
populations (``srp_steps > 0``) are refused: CUBA neurons have no per-neuron suppression mask.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from snncompile.backends import Backend, Supports

from snncompile.errors import BackendError
from snncompile.ir import Graph, Input, Output
from snncompile.ir.arrays import channel_view, expand
from snncompile.ir.populations import ConvConn, DenseConn, IFPop, Readout, Source

__all__ = ["SEMANTICS", "VTH_MAX", "NetxBackend", "chain", "write_netx"]

log = logging.getLogger("snncompile")

VTH_MAX = 2**17 - 1  # netx vThMant: Lava LIF's unsigned 17-bit threshold mantissa
SEMANTICS = {
    "neuron": "CUBA with iDecay=4096, vDecay=0: non-leaky integrate-and-fire (Lava LIF, fixed_pt)",
    "reset": "hard reset to v=0 (Lava LIF); snncompile's IF resets by subtracting the threshold, so rates differ",
    "spike_condition": "v > vThMant << 6 (Lava LIF); snncompile fires on v >= theta",
    "initial_state": "v = 0 at the start; snncompile starts each sample at v0",
    "input": "feed round(x * input_scale) clipped to input_bits as graded spikes (input_message_bits)",
    "readout": "last layer never fires; its v at step t is 64 * 2**j * s_t (j: the layer's v_scale_log2), so the "
               "logits after T steps are sum_t v_t / (T * output_scale)",
    "samples": "use hdf5.Network(..., reset_interval=T) to stream samples back to back",
}
_ALLOWED = (Input, Source, DenseConn, ConvConn, IFPop, Readout, Output)


def chain(g: Graph) -> list[tuple]:
    """The (connection, population) steps of a chain graph; BackendError naming the first other node."""
    steps, prev = [], None
    for n in g.nodes.values():
        if not isinstance(n, _ALLOWED):
            raise BackendError(f"{n.name} ({n.op}): no netx layer for this node type; netx supports chains only")
        if isinstance(n, (Source, IFPop, Readout)) and len(g.shapes[n.name]) not in (1, 3):
            raise BackendError(f"{n.name} ({n.op}): per-sample shape {g.shapes[n.name]} has "
                               f"{len(g.shapes[n.name])} axes; netx layers are (C, H, W) or flat (N,)")
        if isinstance(n, (Source, IFPop)) and len(g.users(n.name)) > 1:
            raise BackendError(f"{n.name} ({n.op}): feeds {len(g.users(n.name))} connections (a branch or skip "
                               f"connection); netx supports chains only")
        if isinstance(n, Source):
            prev = n.name
        elif isinstance(n, (IFPop, Readout)):
            if len(n.inputs) != 1:
                raise BackendError(f"{n.name} ({n.op}): {len(n.inputs)} incoming connections (residual Add or "
                                   f"Concat); netx supports chains only")
            conn = g.nodes[n.inputs[0]]
            if conn.inputs[0] != prev:
                raise BackendError(f"{n.name} ({n.op}): reads {conn.inputs[0]}, not the previous population "
                                   f"{prev}; netx supports chains only")
            steps.append((conn, n))
            prev = n.name
    if not steps or not isinstance(steps[-1][1], Readout):
        raise BackendError(f"{g.name}: the chain does not end in a readout population")
    return steps


def _j_max(theta: float) -> int:
    return max(0, math.floor(math.log2((VTH_MAX + 1) / theta)))


def _scaled(a: np.ndarray, log2: int) -> tuple[np.ndarray, float]:
    """``a * 2**log2`` rounded half up to integers, and the largest error relative to max|exact|."""
    exact = np.asarray(a, np.float64) * 2.0**log2
    q = np.floor(exact + 0.5)
    top = float(np.abs(exact).max()) if exact.size else 0.0
    return q.astype(np.int64), (float(np.abs(q - exact).max()) / top if top else 0.0)


def _neuron(group, i_decay: int, v_decay: int, vth: int) -> None:
    for key, value in {"iDecay": i_decay, "vDecay": v_decay, "vThMant": vth, "refDelay": 1}.items():
        group.create_dataset(key, data=np.int64(value))
    group.create_dataset("gradedSpike", data=np.bool_(False))
    group.create_dataset("type", data=np.array([b"CUBA"]))


def _population_params(g: Graph, conn, pop) -> dict:
    """Integer netx parameters of one (connection, population) step (see module docstring)."""
    if isinstance(pop, IFPop):
        if pop.max_spikes != 1:
            raise BackendError(f"{pop.name} (IF): burst neuron (max_spikes={pop.max_spikes}); netx CUBA neurons "
                               f"emit binary spikes")
        if pop.srp_steps:
            raise BackendError(f"{pop.name} (IF): SRP suppression after {pop.srp_steps} pre-steps (a "
                               f"per-neuron mask set from the membrane); netx CUBA neurons have no such state")
        thetas = np.unique(np.asarray(pop.theta))
        if thetas.size != 1:
            raise BackendError(f"{pop.name} (IF): {thetas.size} distinct thresholds; netx has one vThMant per layer")
        exact_j = 6 - pop.shift - conn.weight_exp
        j = min(exact_j, _j_max(float(thetas[0])))
        vth = float(thetas[0]) * 2.0**j
        if vth < 1 or vth != int(vth):
            raise BackendError(f"{pop.name} (IF): threshold {thetas[0]:g} * 2**{j} is not an integer vThMant")
        vth, bias_log2, decay = min(int(vth), VTH_MAX), pop.bias_exp + j - 6, (4096, 0)
    else:
        exact_j = j = -conn.weight_exp
        vth, bias_log2, decay = VTH_MAX, pop.bias_exp + j, (4096, 4096)
    weight, w_err = _scaled(conn.weight, j - exact_j)
    bias, b_err = _scaled(expand(pop.bias, g.shapes[pop.name]), bias_log2)
    return {"weight": weight, "bias": bias, "vth": vth, "j": j, "weight_rel_error": w_err, "bias_rel_error": b_err,
            "decay": decay, "u_bits": _u_bits(g, conn, weight)}


def _u_bits(g: Graph, conn, weight: np.ndarray) -> int:
    """Bits of netx's synaptic current ``u = a << 6`` in the worst case (Lava wraps u at 24 bits, signed).

    Worst case of one step: every source neuron at its largest payload on the weights of one sign.
    """
    src = g.nodes[conn.inputs[0]]
    payload = 2**src.bits - 1 if isinstance(src, Source) else 1
    w = weight.reshape(weight.shape[0], -1).astype(np.float64)
    bound = max(np.clip(w, 0, None).sum(1).max(), np.clip(-w, 0, None).sum(1).max()) * payload * 64
    return math.ceil(math.log2(bound + 1)) + 1  # + sign bit


def _bias_dataset(bias: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per channel (C,) where constant within channels, else per neuron in netx's (W, H, C) order."""
    if len(shape) != 3:
        return bias.reshape(-1)
    channel = bias[:, 0, 0]
    if np.array_equal(bias, np.broadcast_to(channel_view(channel, bias.ndim), bias.shape)):
        return channel
    return bias.transpose(2, 1, 0)


def _write_layer(grp, g: Graph, conn, pop, p: dict, shape: tuple[int, ...]) -> None:
    grp.create_dataset("type", data=np.array([b"conv" if isinstance(conn, ConvConn) else b"dense"]))
    grp.create_dataset("shape", data=np.array(shape))
    grp.create_dataset("weight", data=p["weight"])
    if np.any(p["bias"]):
        grp.create_dataset("bias", data=_bias_dataset(p["bias"].reshape(g.shapes[pop.name]), shape))
    if isinstance(conn, ConvConn):
        for key in ("stride", "padding", "dilation"):
            grp.create_dataset(key, data=np.array(getattr(conn, key)))  # (rows, cols); netx reverses to (x, y)
        grp.create_dataset("groups", data=np.int64(conn.groups))
    _neuron(grp.create_group("neuron"), *p["decay"], p["vth"])
    grp.attrs.update({"v_scale_log2": p["j"], "weight_rel_error": p["weight_rel_error"], "u_bits": p["u_bits"],
                      "bias_rel_error": p["bias_rel_error"], "population": pop.name, "connection": conn.name})


def write_netx(g: Graph, path: Path) -> dict:
    """Write the integer chain ``g`` to ``path`` in netx layout; returns a summary (layers, scales, errors)."""
    import h5py

    steps = chain(g)
    if g.stage != "integer":
        raise BackendError(f"{g.name}: netx needs the integer (quantized) population graph")
    src = next(n for n in g.nodes.values() if isinstance(n, Source))
    params = [_population_params(g, c, p) for c, p in steps]
    layers, prev_shape = [], g.shapes[src.name]
    with h5py.File(path, "w") as f:
        def new(kind: str, shape) -> object:
            grp = f.create_group(f"layer/{len(layers)}")
            layers.append(kind)
            if kind in ("input", "flatten"):
                grp.create_dataset("type", data=np.array([kind.encode()]))
                grp.create_dataset("shape", data=np.array(shape))
            return grp

        new("input", prev_shape)
        for (conn, pop), p in zip(steps, params):
            shape = g.shapes[pop.name]
            if isinstance(conn, DenseConn):
                if len(prev_shape) == 3:
                    new("flatten", prev_shape)
                shape = (math.prod(shape),)
            elif len(prev_shape) != 3:
                raise BackendError(f"{conn.name} (Conv): reads a flattened dense layer; netx dense layers are 1-D")
            _write_layer(new("conv" if isinstance(conn, ConvConn) else "dense", shape), g, conn, pop, p, shape)
            prev_shape = shape
        readout = steps[-1][1]
        out_scale = 64.0 * 2.0 ** params[-1]["j"] * readout.scale
        f.attrs.update({"producer": "snncompile", "format": "lava-dl netx hdf5 (lava-dl 0.6.0)",
                        "input_scale": src.scale, "input_bits": src.bits, "input_signed": src.signed,
                        "output_scale": out_scale, "timesteps": int(g.meta.get("timesteps", 0)), **SEMANTICS})
    return {"file": path.name, "layers": layers, "output_scale": out_scale,
            "v_scale_log2": {p.name: q["j"] for (_, p), q in zip(steps, params)},
            "max_weight_rel_error": max(q["weight_rel_error"] for q in params),
            "max_bias_rel_error": max(q["bias_rel_error"] for q in params),
            "reset": "hard (netx CUBA); snncompile's IF resets by subtraction"}


class NetxBackend(Backend):
    """Export only: ``evaluate`` checks the chain, ``write`` stores ``model.net`` from the integer graph.

    ``supports``: CUBA neurons emit binary spikes, reset to 0 and start at 0; no SRP mask
    (module docstring: the semantic gap).
    """

    name = "netx"
    supports = Supports(bursts=False, srp=False, soft_reset=False, initial_potential=False, early_exit=False)

    def evaluate(self, graph, evals, cfg, *, reference):
        steps = chain(graph)
        layers = {}
        for conn, pop in steps:  # raises early on what netx cannot hold
            p = _population_params(graph, conn, pop)
            layers[pop.name] = {k: p[k] for k in ("j", "weight_rel_error", "bias_rel_error", "u_bits")}
            if p["weight_rel_error"]:
                log.warning("netx: %s: weights rounded (relative error %.3g): the exact scale needs a threshold "
                            "beyond vThMant's 17 bits", conn.name, p["weight_rel_error"])
            if p["u_bits"] > 24:
                log.warning("netx: %s: the synaptic current can need %d bits; Lava's u wraps at 24", conn.name,
                            p["u_bits"])
        log.info("netx: chain of %d layers; neurons reset to 0 in netx (ours subtract the threshold)", len(steps))
        return None, {"netx": {"file": "model.net", "layers": layers,
                               "reset": "hard (netx CUBA); snncompile's IF resets by subtraction"}}

    def write(self, result, directory: Path) -> list[Path]:
        if result.pop_int is None:
            raise BackendError("netx: the run has no integer population graph to export")
        path = Path(directory) / "model.net"
        write_netx(result.pop_int, path)
        return [path]
