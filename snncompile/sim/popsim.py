"""Simulator of population graphs, float and fixed point: the numeric oracle of the chip.

``simulate_populations(g, x, timesteps)`` runs a population graph (``snncompile.lower`` /
``snncompile.quantize``) on a batch, synchronously: every population reads the payloads its
sources emitted in the same step, as the population graph means. A sample runs the readout's
``pre_steps`` (SRP's tau: not counted in the outputs, counted in spikes and synops), then
``timesteps`` counted steps. A target whose connections delay adds its own timing: the Lava
backend's pass (``snncompile.backends.lava.timing``) makes Lava's run equal this one shifted by
each population's depth, spike for spike. In fixed-point mode every value is an integer carried in a
float tensor (float64, or float32 when the quantizer proved every sum stays below 2**24, which
float32 represents exactly) and the arithmetic is the Loihi arithmetic stated in
:mod:`snncompile.ir.populations`.

The only Python loops are over batches, time steps and graph nodes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from snncompile.errors import DataError
from snncompile.ir import Graph, Input, Output
from snncompile.ir.node import cached
from snncompile.ir.populations import ConvConn, DenseConn, IFPop, Readout, Source

__all__ = ["PopulationResult", "fanout", "simulate_populations", "synapses_per_neuron"]


@dataclass
class PopulationResult:
    """What a run produced. Counts are totals over all samples and steps."""

    outputs: torch.Tensor  # (T, B, K): average logit after t+1 steps
    spikes: dict[str, float]  # population -> payload sum (a burst of n counts n)
    synops: dict[str, float]  # emitting population -> synaptic operations it caused
    saturations: dict[str, int]  # population -> membrane saturation events (fixed point)
    neurons: dict[str, int]
    layer_spike_counts: dict[str, np.ndarray] = field(default_factory=dict)  # (B,) per sample
    samples: int = 0
    timesteps: int = 0  # counted steps T
    seconds: float = 0.0
    pre_steps: int = 0  # uncounted steps run before them (SRP): latency is pre_steps + T per sample
    # with trace=True: spiking population -> (pre_steps + T, B, 2) per step and sample (spikes, synops)
    trace: dict[str, torch.Tensor] = field(default_factory=dict)
    # spiking population -> per-neuron payload sums over all samples and steps, shaped like the population
    payload_sums: dict[str, np.ndarray] = field(default_factory=dict)
    # population -> those of its saturation events that changed no spike: floor clamps of neurons that
    # stayed silent for the rest of the sample (see simulate_populations)
    silent_saturations: dict[str, int] = field(default_factory=dict)

    def predictions(self, t: int | None = None) -> np.ndarray:
        return self.outputs[(t or self.timesteps) - 1].argmax(-1).numpy()

    def accuracy_vs_t(self, y: np.ndarray) -> np.ndarray:
        return (self.outputs.argmax(-1).numpy() == np.asarray(y)[None, :]).mean(axis=1)


def synapses_per_neuron(conn: DenseConn | ConvConn, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Synapses each source neuron drives through the one connection ``conn`` (non-zero weights),
    shaped like the source (cached per node). Not an SNN's path count, :func:`snncompile.sim.synaptic_paths`."""
    return cached(conn, "synapses_per_neuron", tuple(in_shape), lambda: _count_synapses(conn, tuple(in_shape)))


def _count_synapses(conn: DenseConn | ConvConn, in_shape: tuple[int, ...]) -> torch.Tensor:
    w = torch.as_tensor(np.asarray(conn.weight) != 0, dtype=torch.float64)
    if isinstance(conn, DenseConn):
        return w.sum(0).reshape(in_shape)
    out = conn.infer_shape(in_shape)
    ones = torch.ones((1, *out), dtype=torch.float64)
    fo = F.conv_transpose2d(ones, w, None, conn.stride, conn.padding, 0, conn.groups, conn.dilation)[0]
    pad_h, pad_w = in_shape[1] - fo.shape[1], in_shape[2] - fo.shape[2]
    return F.pad(fo, (0, pad_w, 0, pad_h))


def _dtype(g: Graph, dtype: str) -> torch.dtype:
    if dtype == "auto":
        fixed = g.stage == "integer"
        return torch.float32 if (not fixed or g.meta.get("float32_exact")) else torch.float64
    return getattr(torch, dtype)


def simulate_populations(g: Graph, x: np.ndarray | torch.Tensor, timesteps: int, *, batch_size: int = 256,
                         dtype: str = "auto", progress: bool = False, trace: bool = False) -> PopulationResult:
    """Run population graph ``g`` on ``x`` (N, *input_shape) for ``timesteps`` steps per sample.

    ``trace=True`` also records, per step and sample, each spiking population's payload sum and the
    synaptic operations it causes (``PopulationResult.trace``, as the float simulator's; early exit
    counts with it up to each sample's exit step).

    ``x`` may be any array-like that slices (e.g. a memory map): only one batch is materialized at a time.

    Fixed point: ``saturations`` counts every membrane clip at ``-v_max`` or ``v_max``;
    ``silent_saturations`` counts the clips at the floor ``-v_max`` of neurons that emit no spike for the
    rest of their sample (populations without SRP). Those changed no spike: from the clip on, an
    unbounded membrane would sit below the clipped one by the charge cut off and receive the same inputs,
    so while the clipped neuron stays below its threshold the unbounded one does too. The rest
    (ceiling clips, floor clips followed by a spike) may have changed spikes.
    """
    want = g.shapes[g.input.name]
    if tuple(x.shape[1:]) != tuple(want) or x.shape[0] == 0:
        raise DataError(f"{g.input.name} (Input): expected data of shape (N>0, {', '.join(map(str, want))}), "
                        f"got {tuple(x.shape)}")
    dt = _dtype(g, dtype)
    readout = next(n for n in g.nodes.values() if isinstance(n, Readout))
    pops = [n for n in g.nodes.values() if isinstance(n, (IFPop, Source))]
    counts = {p.name: torch.zeros(g.shapes[p.name], dtype=torch.float64) for p in pops}
    per_sample = {p.name: [] for p in pops if isinstance(p, IFPop)}
    sat = {p.name: 0 for p in pops if isinstance(p, IFPop)}
    silent = dict(sat)
    outs, t0 = [], time.perf_counter()
    fo = _trace_fanouts(g, pops) if trace else None
    traces: dict[str, list] = {k: [] for k in (fo or {})}
    bar = tqdm(total=x.shape[0], desc="simulate", unit="sample", disable=not progress, leave=False)
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            xb = torch.as_tensor(np.asarray(x[start:start + batch_size]), dtype=torch.float64).to(dt)
            outs.append(_run_batch(g, xb, timesteps, counts, per_sample, sat, fo, traces, silent))
            bar.update(xb.shape[0])
    bar.close()
    synops = {p.name: 0.0 for p in pops}
    for c in g.of_type(DenseConn, ConvConn):
        src = c.inputs[0]
        synops[src] += float((counts[src] * synapses_per_neuron(c, g.shapes[src])).sum())
    return PopulationResult(
        outputs=torch.cat(outs, dim=1).float(),
        spikes={k: float(v.sum()) for k, v in counts.items() if k in per_sample},
        synops=synops, saturations=sat,
        neurons={p.name: int(np.prod(g.shapes[p.name])) for p in pops},
        layer_spike_counts={k: torch.cat(v).numpy() for k, v in per_sample.items()},
        samples=int(x.shape[0]), timesteps=timesteps, seconds=time.perf_counter() - t0,
        pre_steps=readout.pre_steps, trace={k: torch.cat(v, 1) for k, v in traces.items()},
        payload_sums={k: counts[k].numpy() for k in per_sample}, silent_saturations=silent)


def fanout(g: Graph, name: str) -> torch.Tensor:
    """Synapses each neuron of population ``name`` drives, summed over its outgoing connections
    (:func:`synapses_per_neuron`): float64, shaped like the population."""
    f = torch.zeros(g.shapes[name], dtype=torch.float64)
    for c in g.of_type(DenseConn, ConvConn):
        if c.inputs[0] == name:
            f += synapses_per_neuron(c, g.shapes[name])
    return f


def _trace_fanouts(g: Graph, pops) -> dict[str, torch.Tensor]:
    """Per spiking population, its (neurons, 2) counter ``[1, f]`` (f = synapses each neuron drives)."""
    out = {}
    for p in pops:
        if not isinstance(p, Source):  # the spiking populations
            f = fanout(g, p.name).reshape(-1)
            out[p.name] = torch.stack([torch.ones_like(f), f], 1)
    return out


def _run_batch(g: Graph, xb: torch.Tensor, T: int, counts, per_sample, sat, fo=None, traces=None,
               silent=None) -> torch.Tensor:
    """One batch for the readout's pre-steps + T steps; accumulates counts (all steps) in place;
    returns (T, B, K) average outputs over the counted steps. With ``fo`` (see :func:`_trace_fanouts`)
    appends to ``traces[name]`` the (steps, B, 2) per-step (spikes, synops) of each population in it;
    with ``silent`` adds each population's floor clips that changed no spike (:func:`simulate_populations`)."""
    s: dict[str, torch.Tensor] = {}
    v: dict[str, torch.Tensor] = {}
    mask: dict[str, torch.Tensor] = {}  # SRP masks, set after each population's srp_steps
    total: dict[str, torch.Tensor] = {}  # per sample and neuron payload sums over the T steps
    readout = next(n for n in g.nodes.values() if isinstance(n, Readout))
    src = next(n for n in g.nodes.values() if isinstance(n, Source))
    s[src.name] = src.forward(xb)
    # connections from the Source see the same input every step: compute them once
    steps = [n for n in g.nodes.values() if not isinstance(n, (Input, Output, Source))]
    for n in [n for n in steps if isinstance(n, (DenseConn, ConvConn)) and n.inputs[0] == src.name]:
        s[n.name] = n.forward(s[src.name])
        steps.remove(n)
    acc, out, pre = None, [], readout.pre_steps
    steps_tr = {k: [] for k in (fo or {})}
    floor: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # population -> (floor clips, spiked after one)
    for t in range(pre + T):
        for n in steps:
            if isinstance(n, IFPop):
                a = n.total(tuple(s[i] for i in n.inputs))
                if n.name not in v:
                    v[n.name] = n.init_state(a)
                if n.srp_steps and t == n.srp_steps:
                    mask[n.name] = n.suppress(v[n.name])
                s[n.name], v[n.name], k = n.step(a, v[n.name], mask.get(n.name))
                sat[n.name] += k
                if silent is not None and n.fixed and not n.srp_steps and (k or n.name in floor):
                    _track_floor(floor, n, s[n.name], v[n.name])
            else:  # connections, Readout
                s[n.name] = n.forward(*(s[i] for i in n.inputs))
            if n.name in counts:
                total[n.name] = s[n.name].clone() if n.name not in total else total[n.name].add_(s[n.name])
            if n.name in steps_tr:
                steps_tr[n.name].append(s[n.name].reshape(xb.shape[0], -1).double() @ fo[n.name])
        if t >= pre:
            r = s[readout.name].double()
            acc = r if acc is None else acc + r
            out.append(acc / ((t - pre + 1) * readout.scale))
    for k, (clips, after) in floor.items():
        silent[k] = min(silent[k] + int(clips[~after].sum()), sat[k])
    counts[src.name] += (s[src.name] != 0).sum(0).double() * (pre + T)
    for k, v in steps_tr.items():
        traces[k].append(torch.stack(v))
    for k, tot in total.items():
        counts[k] += tot.sum(0).double()
        if k in per_sample:
            per_sample[k].append(tot.reshape(xb.shape[0], -1).sum(1).double())
    return torch.stack(out)


def _track_floor(floor: dict, n: IFPop, spikes: torch.Tensor, v: torch.Tensor) -> None:
    """After a step of fixed-point population ``n``: marks the neurons that spike after an earlier clip at
    the floor, then counts this step's floor clips (a clipped membrane sits at exactly ``-v_max``, below
    the threshold, so it did not spike this step)."""
    if n.name not in floor:
        floor[n.name] = (torch.zeros_like(v), torch.zeros_like(v, dtype=torch.bool))
    clips, after = floor[n.name]
    after |= (clips > 0) & (spikes > 0)
    clips += v == -float(n.v_max)
