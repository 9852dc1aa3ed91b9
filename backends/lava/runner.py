"""Run a population graph on Lava's CPU simulator and read back outputs and spike counts.

Compiles once and streams all samples back to back (each neuron process resets itself every T
steps, offset by its depth), in chunks so progress can be shown per sample. The runtime is always
stopped, also on errors and Ctrl-C (``snncompile.backends.lava.compat.stop`` avoids Lava's hang when a
process model raised).

The graph is first passed through :func:`snncompile.backends.lava.timing.pipeline` (delay relays on
skip connections). The result counts what ran on Lava, relays included: a relay's spikes are the
messages it sends (its payload sum, as for the population it relays, or one per non-zero value when
it relays the graded input, as for the Source), and its synops are those messages times its fan-out.
Relays are Lava-internal: the simulators have none, and only the populations of the original graph
are compared spike for spike.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from snncompile.backends.lava.compat import apply, child_tracebacks, stop
from snncompile.backends.lava.timing import Relay, origin, pipeline
from tqdm.auto import tqdm

from snncompile.errors import BackendError
from snncompile.interrupts import checkpoint
from snncompile.ir import Graph
from snncompile.ir.populations import CONNECTIONS, IFPop, Source
from snncompile.sim.popsim import PopulationResult, synapses_per_neuron

__all__ = ["run_lava"]


def run_lava(g: Graph, x: np.ndarray, T: int, *, fixed: bool | None = None, progress: bool = False,
             chunk: int = 8, run_cfg=None) -> PopulationResult:
    """Stream ``x`` through ``g`` on Lava (fixed_pt if the graph is integer, else floating_pt).

    ``run_cfg`` overrides the run configuration (default ``Loihi2SimCfg``; the loihi2 target passes
    ``Loihi2HwCfg``)."""
    apply()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from snncompile.backends.lava.fastconv import install
    from snncompile.backends.lava.lower import build_network, to_lava

    fixed = g.stage == "integer" if fixed is None else fixed
    g = pipeline(g)  # Lava's one-step delay per connection (the result counts its relays)
    install(fixed)  # before Lava forks its process models (see fastconv.py)
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    net = build_network(g, x, T, fixed=fixed)
    cfg = run_cfg if run_cfg is not None else Loihi2SimCfg(select_tag="fixed_pt" if fixed else "floating_pt")
    t0 = time.perf_counter()
    done = 0
    bar = tqdm(total=n, desc="lava", unit="sample", disable=not progress, leave=False)
    try:
        while done < net.steps:
            checkpoint()  # a SIGTERM whose exception was lost while Lava forked (snncompile.interrupts)
            step = min(chunk * net.period if done else chunk * net.period + net.depth, net.steps - done)
            net.sink.run(condition=RunSteps(num_steps=step), run_cfg=cfg)
            done += step
            bar.update(min(n, max(0, (done - net.depth) // net.period)) - bar.n)
        raw = net.sink.data.get()  # (*lava_shape, steps)
        windows = {k: (p.window_spikes if hasattr(p, "window_spikes") else p.window_sum).get()
                   for k, p in net.populations.items()}
        totals = {k: p.totals.get() for k, p in net.populations.items()}
    except Exception as e:
        detail = child_tracebacks(net.sink)
        raise BackendError(f"lava run failed: {type(e).__name__}: {e}" + (f" ({detail[-1]})" if detail else "")) from e
    finally:
        bar.close()
        stop(net.sink, force=isinstance(sys.exc_info()[1], KeyboardInterrupt))  # Ctrl-C, SIGTERM: no handshake
    seconds = time.perf_counter() - t0
    return _result(g, x, T, net, raw, windows, totals, seconds, to_lava)


def _result(g, x, T, net, raw, windows, totals, seconds, to_lava) -> PopulationResult:
    n, D, P, pre = x.shape[0], net.depth, net.period, net.readout.pre_steps
    out_shape = g.shapes[net.readout.name]
    flat = raw.reshape(-1, raw.shape[-1]) if len(out_shape) == 1 else raw
    per_step = flat[..., D:D + n * P].reshape(-1, n, P)[..., pre:]  # (K, n, T): the counted steps
    acc = np.cumsum(per_step, axis=-1) / (np.arange(1, T + 1) * net.readout.scale)
    outputs = torch.as_tensor(acc.transpose(2, 1, 0), dtype=torch.float32)  # (T, n, K)
    spiking = [k for k, v in g.nodes.items() if isinstance(v, (IFPop, Relay))]
    counts = {k: _from_lava(totals[k], g.shapes[k]) for k in spiking}
    src = next(k for k, v in g.nodes.items() if isinstance(v, Source))
    counts[src] = _source_counts(g.nodes[src], x, P)
    for k in spiking:
        if origin(g, k) == src:  # a relay of the graded input: one message per non-zero value, as the Source
            counts[k] = counts[src]
            windows[k] = _source_counts(g.nodes[src], x, P, per_sample=True)
    synops = {k: 0.0 for k in counts}
    for c in g.of_type(*CONNECTIONS):
        s = c.inputs[0]
        synops[s] += float((torch.as_tensor(counts[s], dtype=torch.float64) * synapses_per_neuron(c, g.shapes[s])).sum())
    return PopulationResult(
        outputs=outputs, spikes={k: float(counts[k].sum()) for k in spiking},
        synops=synops, saturations={}, neurons={k: int(np.prod(g.shapes[k])) for k in [*spiking, src]},
        layer_spike_counts={k: np.asarray(windows[k], np.float64)[:n] for k in spiking},
        samples=n, timesteps=T, seconds=seconds, pre_steps=pre)


def _from_lava(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(arr, np.float64)
    return a.transpose(2, 1, 0) if len(shape) == 3 else a.reshape(shape)


def _source_counts(src: Source, x: np.ndarray, T: int, per_sample: bool = False) -> np.ndarray:
    """Messages per input neuron over all samples (per sample with ``per_sample``): non-zero values x T."""
    vals = src.forward(torch.as_tensor(x, dtype=torch.float64)).numpy()
    nz = (vals != 0).reshape(len(vals), -1).sum(1) if per_sample else (vals != 0).sum(0)
    return nz.astype(np.float64) * T
