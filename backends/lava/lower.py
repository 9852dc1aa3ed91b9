"""Lower a population graph to Lava processes (source, custom neurons, Dense/Conv, readout sink).

Layout: our per-sample tensors are (C, H, W); Lava's Conv works on (X, Y, C) = (W, H, C), so every
3-D population is created with shape (W, H, C) and every array is transposed with ``to_lava``.
Dense connections act on flattened ports (C order of the Lava shape), so their weight matrices are
permuted accordingly. Lava's Conv computes a true convolution, so kernels are flipped. Each
connection is one Lava Dense/Conv process: one step of delay; the graph must come through
:func:`snncompile.backends.lava.timing.pipeline` (relays on skip connections), and each
population's depth (:func:`~snncompile.backends.lava.timing.depths`) is its process's ``offset``.
Every spiking population (IFSoft, relay) gets its fan-out (:func:`fanout`) and records its payload
sum and synaptic operations per window, or per step of each window with ``per_step`` (early exit).
Node types without a rule here raise BackendError.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from snncompile.backends.lava.compat import apply
from snncompile.backends.lava.timing import Relay, depths

from snncompile.errors import BackendError
from snncompile.ir import Graph, Input, Output
from snncompile.ir.arrays import expand
from snncompile.ir.populations import ConvConn, DenseConn, IFPop, Readout, Source

__all__ = ["LavaNetwork", "build_network", "fanout", "lava_shape", "to_lava"]


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[2], shape[1], shape[0]) if len(shape) == 3 else tuple(shape)


def to_lava(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A scalar, per-channel or per-neuron array as the full ``shape`` (C, H, W) in Lava's layout."""
    a = expand(arr, shape, dtype=None)
    return a.transpose(2, 1, 0).copy() if len(shape) == 3 else a


def _lava_order(shape: tuple[int, ...]) -> np.ndarray:
    """Our flat index of each element of the flattened Lava layout."""
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    return (idx.transpose(2, 1, 0) if len(shape) == 3 else idx).reshape(-1)


@dataclass
class LavaNetwork:
    """The processes of a lowered graph and what the runner needs to read them back."""

    source: object
    sink: object
    readout: Readout
    populations: dict[str, object] = field(default_factory=dict)  # name -> IFSoft / Passthrough
    depth: int = 0  # depth of the readout
    steps: int = 0  # total steps to run (all samples + the pipeline's depth)
    period: int = 0  # steps per sample: the readout's pre-steps (SRP) + T


def fanout(g: Graph, name: str) -> np.ndarray:
    """:func:`snncompile.sim.popsim.fanout` as int64 numpy, shaped like the population (our layout;
    :func:`to_lava` converts it)."""
    from snncompile.sim.popsim import fanout as synapses_out

    return synapses_out(g, name).numpy().astype(np.int64)


def build_network(g: Graph, x: np.ndarray, T: int, *, fixed: bool, per_step: bool = False) -> LavaNetwork:
    """Create and connect the Lava processes for ``g`` (a pipelined graph: every connection spans one
    depth level) fed with samples ``x`` for T counted steps each (plus the readout's ``pre_steps``:
    every window is ``pre_steps + T`` steps long). ``per_step``: the spiking populations record their
    counts per step of each window, else per window."""
    apply()
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as SourceBuffer
    from snncompile.backends.lava.procs import IFSoft, Passthrough

    readout = next((n for n in g.nodes.values() if isinstance(n, Readout)), None)
    if readout is None:
        raise BackendError(f"{g.name}: no readout population")
    depth = depths(g)
    n, D = x.shape[0], depth[readout.name]
    T = readout.pre_steps + T  # from here on, the window length
    steps = n * T + D
    procs = {}
    for node in g.nodes.values():
        shape = g.shapes[node.name]
        if isinstance(node, (Input, Output)):
            continue
        if isinstance(node, Source):
            procs[node.name] = SourceBuffer(data=_source_data(node, x, T, steps, fixed))
        elif isinstance(node, IFPop):
            procs[node.name] = IFSoft(
                shape=lava_shape(shape), vth=to_lava(node.theta, shape), bias_mant=to_lava(node.bias, shape),
                bias_exp=node.bias_exp, v0=to_lava(node.v0, shape), max_spikes=node.max_spikes, period=T,
                offset=depth[node.name], act_shift=node.shift, vth_shift=node.vth_shift,
                v_max=node.v_max, n_windows=n, srp_steps=node.srp_steps,
                srp_level=to_lava(node.srp_level(), shape), fanout=to_lava(fanout(g, node.name), shape),
                per_step=per_step, name=_safe(node.name))
            _connect_inputs(g, node, procs, Dense, Conv, fixed)
        elif isinstance(node, (Readout, Relay)):
            relay = isinstance(node, Relay)  # a spiking population; the readout's counts are not read
            procs[node.name] = Passthrough(
                shape=lava_shape(shape), bias_mant=0 if relay else to_lava(node.bias, shape),
                bias_exp=getattr(node, "bias_exp", 0), offset=depth[node.name], period=T, n_windows=n,
                fanout=to_lava(fanout(g, node.name), shape) if relay else 0, per_step=per_step and relay,
                name=_safe(node.name))
            _connect_inputs(g, node, procs, Dense, Conv, fixed)
        elif not isinstance(node, (DenseConn, ConvConn)):
            raise BackendError(f"{node.name} ({node.op}): no Lava lowering for this node type")
    sink = Sink(shape=lava_shape(g.shapes[readout.name]), buffer=steps)
    procs[readout.name].s_out.connect(sink.a_in)
    source = next(k for k in procs if isinstance(g.nodes[k], Source))
    return LavaNetwork(source=procs[source], sink=sink, readout=readout,
                       populations={k: v for k, v in procs.items() if k != source}, depth=D, steps=steps,
                       period=T)


def _safe(name: str) -> str:
    return name.replace("/", "_").strip("_") or "pop"


def _source_data(node: Source, x: np.ndarray, T: int, steps: int, fixed: bool) -> np.ndarray:
    """(*lava_shape, steps): sample k held during steps kT+1..kT+T, zeros while the pipeline drains."""
    import torch

    vals = node.forward(torch.as_tensor(x, dtype=torch.float64)).numpy()
    shape = tuple(x.shape[1:])
    lava = np.stack([to_lava(v, shape) for v in vals], axis=-1)  # (*lava_shape, n)
    data = np.zeros((*lava.shape[:-1], steps), dtype=np.int32 if fixed else np.float64)
    data[..., : x.shape[0] * T] = np.repeat(lava, T, axis=-1)
    return data


def _graded(g: Graph, src: str) -> bool:
    node = g.nodes[src]
    return not (isinstance(node, IFPop) and node.max_spikes == 1)


def _connect_inputs(g: Graph, pop, procs: dict, Dense, Conv, fixed: bool) -> None:
    target_shape = g.shapes[pop.name]
    for cname in pop.inputs:
        c = g.nodes[cname]
        src = c.inputs[0]
        src_shape = g.shapes[src]
        bits = 24 if _graded(g, src) else 0
        if isinstance(c, DenseConn):
            w = np.asarray(c.weight)[np.ix_(_lava_order(target_shape), _lava_order(src_shape))]
            kw = {"weight_exp": int(c.weight_exp), "num_weight_bits": 8} if fixed else {}
            conn = Dense(weights=w.astype(np.int32) if fixed else w, num_message_bits=bits, name=_safe(cname), **kw)
            procs[src].s_out.flatten().connect(conn.s_in)
            conn.a_out.reshape(lava_shape(target_shape)).connect(procs[pop.name].a_in)
        elif isinstance(c, ConvConn):
            w = np.asarray(c.weight) * (2.0 ** c.weight_exp if fixed else 1.0)
            w = w.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :]
            conn = Conv(weight=w.astype(np.int32) if fixed else w.copy(), input_shape=lava_shape(src_shape),
                        padding=(c.padding[1], c.padding[0]), stride=(c.stride[1], c.stride[0]),
                        dilation=(c.dilation[1], c.dilation[0]), groups=c.groups, num_message_bits=bits,
                        name=_safe(cname))
            procs[src].s_out.connect(conn.s_in)
            conn.a_out.connect(procs[pop.name].a_in)
        else:
            raise BackendError(f"{cname} ({c.op}): no Lava lowering for this connection type")
