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

Counts: every spiking process records its payload sum and synops (payload x its neurons' fan-out,
:func:`snncompile.backends.lava.lower.fanout`) per window, read once at the end (2 numbers per sample
and population, whatever the population's size). With ``trace`` (on by default when the graph
carries an early-exit policy) it records them per step of each window instead, and the result's
``trace`` holds them per step and sample exactly as ``simulate_populations(trace=True)`` does (step
``t`` of a population's window ``k`` is step ``t`` of sample ``k``: each process's window starts at its
depth), so early exit counts Lava's spikes and synops to each sample's exit step. Lava itself still
runs every sample for the full window.
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
from snncompile.ir.populations import IFPop, Source
from snncompile.sim.popsim import PopulationResult

__all__ = ["run_lava"]


def run_lava(g: Graph, x: np.ndarray, T: int, *, fixed: bool | None = None, progress: bool = False,
             chunk: int = 8, run_cfg=None, trace: bool | None = None) -> PopulationResult:
    """Stream ``x`` through ``g`` on Lava (fixed_pt if the graph is integer, else floating_pt).

    ``run_cfg`` overrides the run configuration (default ``Loihi2SimCfg``; the loihi2 target passes
    ``Loihi2HwCfg``). ``trace``: record every spiking population's (spikes, synops) per step and
    sample (``PopulationResult.trace``: layer -> (pre_steps + T, N, 2)); default: when ``g`` carries an
    early-exit policy (``meta["early_exit"]``)."""
    apply()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from snncompile.backends.lava.fastconv import install
    from snncompile.backends.lava.lower import build_network

    fixed = g.stage == "integer" if fixed is None else fixed
    trace = bool((g.meta or {}).get("early_exit")) if trace is None else trace
    g = pipeline(g)  # Lava's one-step delay per connection (the result counts its relays)
    install(fixed)  # before Lava forks its process models (see fastconv.py)
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    net = build_network(g, x, T, fixed=fixed, per_step=trace)
    spiking = [k for k, v in g.nodes.items() if isinstance(v, (IFPop, Relay))]
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
        counts = {k: net.populations[k].counts.get() for k in spiking}  # (n, period or 1, 2)
    except Exception as e:
        detail = child_tracebacks(net.sink)
        raise BackendError(f"lava run failed: {type(e).__name__}: {e}" + (f" ({detail[-1]})" if detail else "")) from e
    finally:
        bar.close()
        stop(net.sink, force=isinstance(sys.exc_info()[1], KeyboardInterrupt))  # Ctrl-C, SIGTERM: no handshake
    seconds = time.perf_counter() - t0
    return _result(g, x, T, net, raw, counts, seconds, trace)


def _result(g, x, T, net, raw, counts, seconds, trace) -> PopulationResult:
    """The run as simulate_populations reports one; ``counts`` spiking population -> its ``counts`` Var."""
    n, D, P, pre = x.shape[0], net.depth, net.period, net.readout.pre_steps
    out_shape = g.shapes[net.readout.name]
    flat = raw.reshape(-1, raw.shape[-1]) if len(out_shape) == 1 else raw
    per_step = flat[..., D:D + n * P].reshape(-1, n, P)[..., pre:]  # (K, n, T): the counted steps
    acc = np.cumsum(per_step, axis=-1) / (np.arange(1, T + 1) * net.readout.scale)
    outputs = torch.as_tensor(acc.transpose(2, 1, 0), dtype=torch.float32)  # (T, n, K)
    src = next(k for k, v in g.nodes.items() if isinstance(v, Source))
    per = {k: np.asarray(v, np.float64)[:n] for k, v in counts.items()}  # (n, P or 1, 2): (spikes, synops)
    for k in per:
        if origin(g, k) == src:  # a relay of the graded input: one message per non-zero value, as the Source
            step = _input_messages(g, src, k, x)  # the same every step of the window
            per[k] = np.repeat(step[:, None], P, axis=1) if trace else step[:, None] * P
    sums = {k: v.sum(axis=(0, 1)) for k, v in per.items()}
    return PopulationResult(
        outputs=outputs, spikes={k: float(v[0]) for k, v in sums.items()},
        synops={**{k: float(v[1]) for k, v in sums.items()}, src: float(_input_messages(g, src, src, x)[:, 1].sum() * P)},
        saturations={}, neurons={k: int(np.prod(g.shapes[k])) for k in [*per, src]},
        layer_spike_counts={k: v[..., 0].sum(1) for k, v in per.items()},
        samples=n, timesteps=T, seconds=seconds, pre_steps=pre,
        trace={k: torch.from_numpy(v.transpose(1, 0, 2).copy()) for k, v in per.items()} if trace else {})


def _input_messages(g: Graph, src: str, k: str, x: np.ndarray) -> np.ndarray:
    """(n, 2) per sample: the messages population ``k`` (the Source, or a relay of it) sends in one step,
    one per non-zero input value, and the synops they cause (``k``'s fan-out)."""
    from snncompile.backends.lava.lower import fanout

    vals = g.nodes[src].forward(torch.as_tensor(x, dtype=torch.float64)).numpy().reshape(len(x), -1)
    nz = (vals != 0).astype(np.float64)
    return np.stack([nz.sum(1), nz @ fanout(g, k).reshape(-1).astype(np.float64)], axis=1)
