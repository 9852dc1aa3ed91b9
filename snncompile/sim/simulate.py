"""Batched, streaming time-stepped simulation of an SNN graph (torch, CPU or CUDA)."""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from snncompile.errors import DataError
from snncompile.ir import Graph
from snncompile.sim.engine import run_batch
from snncompile.sim.program import Program, compile_program
from snncompile.sim.result import SimResult

__all__ = ["INPUT_CODINGS", "as_batches", "simulate"]

INPUT_CODINGS = ("analog", "poisson")


def as_batches(graph: Graph, x, batch_size: int):
    """Validate ``x`` (N, *input_shape) against the graph input and yield float32 CPU batches."""
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    arr = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))
    want = graph.shapes[graph.input.name]
    if arr.dim() != len(want) + 1 or tuple(arr.shape[1:]) != tuple(want):
        raise DataError(f"{graph.input.name} (Input): expected data of shape (N, {', '.join(map(str, want))}), "
                        f"got {tuple(arr.shape)}")
    arr = arr.to(torch.float32)
    for start in range(0, arr.shape[0], batch_size):
        yield arr[start:start + batch_size]


def _pre_steps(snn: Graph, pre_steps: int | None) -> int:
    meta = getattr(snn, "meta", {}) or {}
    steps = meta.get("pre_steps", 0) if pre_steps is None else pre_steps
    if steps < 0:
        raise DataError(f"pre_steps must be >= 0, got {steps}")
    return int(steps)


def simulate(snn: Graph, x, timesteps: int, *, batch_size: int = 256, device: str | torch.device = "cpu",
             input_coding: str = "analog", seed: int = 0, pre_steps: int | None = None,
             progress: bool = False) -> SimResult:
    """Run ``snn`` for ``pre_steps + timesteps`` steps on every sample of ``x`` (N, *input_shape).

    Samples are streamed in batches of ``batch_size`` (memory does not depend on N beyond the
    returned (T, N, K) outputs and (steps, N, 2) traces). Python loops only over batches, time
    steps and nodes. ``pre_steps=None`` uses the graph's ``meta["pre_steps"]`` (set by the SRP
    conversion, Hao et al. 2023) or 0; layers listed in ``meta["srp_nodes"]`` get residual
    membrane potential suppression after the pre-steps (see :mod:`snncompile.sim.engine`).
    ``input_coding``: "analog" (x every step) or "poisson" (Bernoulli spikes, p = clip(x, 0, 1),
    seeded by ``seed``). Thread count is left to the caller (``torch.set_num_threads``).
    """
    if input_coding not in INPUT_CODINGS:
        raise DataError(f"input_coding must be one of {INPUT_CODINGS}, got {input_coding!r}")
    if int(timesteps) < 1:
        raise DataError(f"timesteps must be >= 1, got {timesteps}")
    steps = _pre_steps(snn, pre_steps)
    meta = getattr(snn, "meta", {}) or {}
    prog = compile_program(snn, device, analog=input_coding == "analog",
                           srp_nodes=frozenset(meta.get("srp_nodes", ())))
    gen = torch.Generator(device=prog.device).manual_seed(seed)
    batches = list(as_batches(snn, x, batch_size))
    if not batches:
        raise DataError(f"{snn.input.name} (Input): no samples to simulate")
    outs, traces, wall = _run_batches(prog, batches, int(timesteps), steps, gen, progress)
    neurons = {layer.name: int(layer.counter.shape[1]) for layer in prog.layers}
    readout = snn.nodes[prog.output_name].inputs[0]
    return SimResult(outs, int(timesteps), steps, readout, neurons, traces,
                     prog.input_macs * sum(b.shape[0] for b in batches), input_coding, wall)


def _run_batches(prog: Program, batches, timesteps: int, pre_steps: int, gen: torch.Generator, progress: bool):
    """Stream the batches through the engine; returns (outputs, traces) on CPU and the wall time."""
    outs, traces, wall = [], {}, 0.0
    for xb in tqdm(batches, desc=f"simulate {prog.graph.name}", disable=not progress, leave=False):
        t0 = time.perf_counter()
        tr = run_batch(prog, xb.to(prog.device), timesteps, pre_steps=pre_steps, generator=gen)
        if prog.device.type == "cuda":
            torch.cuda.synchronize(prog.device)
        wall += time.perf_counter() - t0
        outs.append(tr.outputs.cpu())
        for k, v in tr.counts.items():
            traces.setdefault(k, []).append(v.cpu())
    return torch.cat(outs, 1), {k: torch.cat(v, 1) for k, v in traces.items()}, wall
