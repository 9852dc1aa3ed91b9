"""The result of a simulation run: readout over time, spike and synaptic-operation counts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from snncompile.errors import DataError

__all__ = ["SimResult"]


@dataclass
class SimResult:
    """Outputs and activity of ``simulate`` over N samples.

    ``outputs[t-1]`` is the readout (the layer feeding the Output, a non-spiking membrane
    integrator) accumulated over the first t counted steps divided by t, so
    ``outputs[t-1].argmax(-1)`` is the prediction after t steps, for every t <= T, from one run.

    Counts are totals over all N samples and all ``pre_steps + T`` steps; a burst spike of size
    n counts n. ``synops[l] = sum_t n_l[t] . f_l`` with f_l the per-neuron fan-out (synaptic
    paths to the next IF layers or the readout; see :mod:`snncompile.sim.synaptic_paths`). The part
    spent during the pre-steps is also given separately (``pre_spikes``, ``pre_synops``).
    ``trace[l]`` holds per-sample, per-step (spikes, synops): shape (pre_steps + T, N, 2).

    With analog input coding the input is a current, not spikes: ``input_macs`` is the dense
    multiply-accumulate count of the weighted layers fed by the Input, computed once per sample
    (the input is constant over time), summed over the N samples. With Poisson coding the input
    spikes and their synops are counted under the Input node's name and ``input_macs`` is 0.
    """

    outputs: torch.Tensor  # (T, N, *out) float32, CPU
    timesteps: int  # T, counted steps
    pre_steps: int  # steps run before the counted ones
    readout: str  # node whose output the readout integrates
    neurons: dict[str, int]  # IF layer -> number of neurons per sample
    trace: dict[str, torch.Tensor]  # layer -> (pre_steps + T, N, 2) per-sample (spikes, synops)
    input_macs: int  # see class doc
    input_coding: str
    wall_s: float  # seconds spent simulating (all batches)
    spikes: dict[str, float] = field(init=False)
    synops: dict[str, float] = field(init=False)
    pre_spikes: dict[str, float] = field(init=False)
    pre_synops: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        tot = {k: v.double().sum(dim=(0, 1)) for k, v in self.trace.items()}
        pre = {k: v[: self.pre_steps].double().sum(dim=(0, 1)) for k, v in self.trace.items()}
        self.spikes = {k: float(v[0]) for k, v in tot.items()}
        self.synops = {k: float(v[1]) for k, v in tot.items()}
        self.pre_spikes = {k: float(v[0]) for k, v in pre.items()}
        self.pre_synops = {k: float(v[1]) for k, v in pre.items()}

    @property
    def num_samples(self) -> int:
        return int(self.outputs.shape[1])

    @property
    def steps_per_s(self) -> float:
        """Throughput in samples x steps (pre-steps included) per second."""
        return self.num_samples * (self.timesteps + self.pre_steps) / max(self.wall_s, 1e-12)

    def predictions(self) -> torch.Tensor:
        """(T, N) int64: the predicted class after each number of counted steps."""
        return self.outputs.reshape(self.timesteps, self.num_samples, -1).argmax(-1)

    def accuracy_vs_t(self, y: np.ndarray | torch.Tensor) -> np.ndarray:
        """(T,) float64: top-1 accuracy after t = 1..T counted steps against labels ``y`` (N,)."""
        y = torch.as_tensor(np.asarray(y), dtype=torch.int64).reshape(1, -1)
        return (self.predictions() == y).double().mean(1).numpy()

    def spikes_per_sample(self) -> dict[str, float]:
        """Mean spikes per sample per layer (all steps, pre-steps included)."""
        return {k: v / self.num_samples for k, v in self.spikes.items()}

    def synops_per_sample(self) -> dict[str, float]:
        """Mean synaptic operations per sample per layer (all steps, pre-steps included)."""
        return {k: v / self.num_samples for k, v in self.synops.items()}

    def total_spikes_per_sample(self) -> float:
        return sum(self.spikes.values()) / self.num_samples

    def total_synops_per_sample(self) -> float:
        return sum(self.synops.values()) / self.num_samples

    def spikes_until(self, steps: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N,) spikes each sample emitted (all layers, pre-steps included) up to its own
        counted step ``steps[i]`` in 1..T (for per-input early exit)."""
        steps = torch.as_tensor(np.asarray(steps), dtype=torch.int64)
        per_step = sum(v[..., 0].double() for v in self.trace.values())  # (pre+T, N)
        cum = per_step.cumsum(0)[self.pre_steps:]  # cum[t-1] = spikes up to counted step t
        return cum.gather(0, (steps - 1).clamp(0, self.timesteps - 1).reshape(1, -1))[0]

    def truncated(self, timesteps: int) -> SimResult:
        """The result of the same run read after its first ``timesteps`` counted steps."""
        if not 1 <= timesteps <= self.timesteps:
            raise DataError(f"timesteps must be in 1..{self.timesteps}, got {timesteps}")
        trace = {k: v[: self.pre_steps + timesteps] for k, v in self.trace.items()}
        return SimResult(self.outputs[:timesteps], timesteps, self.pre_steps, self.readout, self.neurons, trace,
                         self.input_macs, self.input_coding, self.wall_s * timesteps / self.timesteps)

    def summary(self) -> str:
        """Human-readable per-layer table (the readout is listed as a membrane integrator)."""
        n = self.num_samples
        w = max([len(k) for k in self.trace] + [len(self.readout), 5]) + 2
        rows = [f"{'layer':<{w}}{'neurons':>10}{'spikes/sample':>16}{'synops/sample':>16}"]
        for k in self.trace:
            rows.append(f"{k:<{w}}{self.neurons.get(k, 0):>10}{self.spikes[k] / n:>16.1f}"
                        f"{self.synops[k] / n:>16.1f}")
        rows.append(f"{self.readout:<{w}}  readout: membrane integrator (non-spiking)")
        if self.input_macs:
            rows.append(f"input layer dense MACs/sample: {self.input_macs / n:.0f} (analog input, once per sample)")
        return "\n".join(rows)
