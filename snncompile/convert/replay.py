"""Partial simulation for conversion decisions: replayed spike trains, forks and layer-at-a-time runs.

A decision about IF layer l (its burst size, threshold, bias or initial potential) changes only
layer l and the layers downstream of it; everything upstream spikes exactly as before. The
conversion passes therefore never re-simulate the whole network for one decision:

* **Replay.** A run records the spike counts ``n[t]`` of every IF layer (uint8, shape
  (T, B, *shape)); a later run that changes layer l re-simulates only the nodes it needs and
  feeds every upstream IF layer from its recording (``y[t] = n[t] * theta``, bitwise the value the
  full run produced).
* **Forks** (:func:`fork_outputs`, the sensitivity analyses of AdaFire). The K settings of one
  layer are evaluated in one run: the prefix before l is replayed once for B samples, layer l and
  its descendants run on K*B samples (candidate k on rows k*B..(k+1)*B-1), one threshold / burst
  size per candidate. Cost: prefix once + K times the suffix, instead of K whole networks; the
  prefix costs nothing when the base run kept the values the fork reads (:func:`fork_inputs`,
  ``record_run(..., keep)``).
* **Layer at a time** (:class:`LayerwiseSim`, bias / potential / weight calibration of Li et al.
  2021, AdaFire's bias correction). Layer l is calibrated given the already calibrated layers
  before it: its input current is computed once from their recorded trains (kept in memory when
  it fits ``CACHE_BYTES``, else recomputed per pass), every measurement with new IF parameters
  only re-runs the IF dynamics, and the final parameters emit layer l's trains for the layers
  after it. Trains nobody reads any more are dropped. Cost of calibrating all layers: about one
  simulation of the network on the calibration subset (the old prefix runs cost one prefix
  simulation per measurement and layer).

The neuron update is the simulator's (:mod:`snncompile.sim.engine`), operation for operation,
including the static-input case (input + bias summed once per batch), so a replayed run gives the
same spikes as :func:`snncompile.sim.simulate` up to the batch-size dependence of float
convolutions. Analog input coding, no pre-steps (the conversion passes that use this module
simulate without SRP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from snncompile.ir import Graph
from snncompile.ir.arrays import per_channel
from snncompile.ir.neurons import IF, if_step
from snncompile.ir.ops import Add, Input, Output, add_all

__all__ = ["CACHE_BYTES", "LayerwiseSim", "fits_in_memory", "fork_inputs", "fork_outputs", "record_run"]

CACHE_BYTES = 1 << 30  # float values kept for reuse (above: recomputed): a layer's input current between
# its passes (LayerwiseSim), the fork inputs one chunk's recorded run keeps (adafire_search.sensitivity)
TRAIN_BYTES = 3 << 30  # recorded uint8 trains of one run; above this the callers use the old full runs


def fits_in_memory(snn: Graph, samples: int, timesteps: int) -> bool:
    """Whether recording every IF layer's uint8 trains for ``samples`` samples stays under TRAIN_BYTES."""
    neurons = sum(int(np.prod(snn.shapes[n.name])) for n in snn.of_type(IF))
    return neurons * samples * timesteps <= TRAIN_BYTES and max((n.max_spikes for n in snn.of_type(IF)),
                                                                default=1) <= 255


@dataclass
class _Params:
    """One IF layer's tensors, viewed to broadcast over a batch (as the simulator's NeuronLayer)."""

    theta: torch.Tensor
    bias: torch.Tensor | None
    v0: torch.Tensor
    n: int

    @classmethod
    def of(cls, node: IF, shape, device) -> _Params:
        like = torch.zeros((1, *shape), device=device)
        bias = per_channel(node.bias, like) if np.asarray(node.bias).any() else None
        return cls(per_channel(node.theta, like), bias, per_channel(node.v0, like), int(node.max_spikes))

    def fire(self, x: torch.Tensor, v: torch.Tensor, with_bias: bool) -> torch.Tensor:
        """In-place IF update of ``v``; returns the spike counts n (float): the IR's if_step, as the simulator."""
        return if_step(v, x, self.theta, self.bias if with_bias else None, self.n)[0]

    def drive(self, x: torch.Tensor) -> torch.Tensor:
        """A static input with the bias summed once (the simulator's static-drive case)."""
        return x if self.bias is None else x + self.bias


class _Net:
    """Which nodes of an SNN are static (computed once per batch) and what a partial run needs."""

    def __init__(self, snn: Graph) -> None:
        self.g = snn
        self.order = list(snn.nodes)
        self.static: set[str] = set()
        for name, node in snn.nodes.items():
            if isinstance(node, Input) or (not isinstance(node, (IF, Output))
                                           and all(i in self.static for i in node.inputs)):
                self.static.add(name)
        self.output = snn.outputs[0]

    def plan(self, simulated: set[str], output: bool, given: frozenset[str] = frozenset()) -> tuple[list[str], set[str]]:
        """(nodes to evaluate every step, in topological order; IF layers replayed from trains).
        ``given``: nodes whose per-step values the caller supplies (neither evaluated nor walked past)."""
        need, replay = set(simulated), set()
        stack = list(simulated) + ([self.output.name] if output else [])
        if output:
            need.add(self.output.name)
        while stack:
            for i in self.g.nodes[stack.pop()].inputs:
                if i in self.static or i in need or i in given:
                    continue
                if isinstance(self.g.nodes[i], IF):
                    replay.add(i)
                else:
                    need.add(i)
                    stack.append(i)
        return [n for n in self.order if n in need], replay

    def static_values(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        vals = {}
        for name in self.order:
            if name in self.static:
                node = self.g.nodes[name]
                vals[name] = x if isinstance(node, Input) else node.forward(*(vals[i] for i in node.inputs))
        return vals

    def descendants(self, name: str) -> set[str]:
        seen, stack = {name}, [name]
        while stack:
            for u in self.g.users(stack.pop()):
                if u.name not in seen:
                    seen.add(u.name)
                    stack.append(u.name)
        return seen


def _replayed(trains: torch.Tensor, t: int, theta: torch.Tensor) -> torch.Tensor:
    return trains[t].to(theta.dtype).mul_(theta)


def _tile(val: torch.Tensor, k: int) -> torch.Tensor:
    return val.repeat(k, *([1] * (val.dim() - 1))) if k > 1 else val


def record_run(snn: Graph, x: torch.Tensor, timesteps: int, keep: Sequence[str] = ()
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor | list[torch.Tensor]]]:
    """Simulate the whole ``snn`` on the batch ``x``: (readout at T (B, K), per-sample spikes per IF
    layer (B,) float64, uint8 trains (T, B, *shape) per IF layer). ``keep``: non-IF nodes (e.g. the
    :func:`fork_inputs` of the layers that will be forked) whose float values at every step are also
    returned in the trains' dict, as the list of T tensors (B, *shape) of every step."""
    return _run(_Net(snn), snn, x, timesteps, None, {}, record=True, keep=keep)


def fork_inputs(snn: Graph, layer: str) -> list[str]:
    """The nodes a fork of ``layer`` reads but does not change: non-IF, not static, outside ``layer``'s
    descendants and read by one of them (``layer``'s own input among them). Given their values from
    the base run (:func:`record_run` ``keep``), the fork evaluates nothing upstream of ``layer``."""
    net = _Net(snn)
    forked = net.descendants(layer)
    order, _ = net.plan({n.name for n in snn.of_type(IF) if n.name in forked}, output=True)
    return [i for i in order if i not in forked and not isinstance(snn.nodes[i], IF)
            and any(i in snn.nodes[n].inputs for n in order if n in forked)]


def _run(net: _Net, snn: Graph, x: torch.Tensor, timesteps: int, fork: tuple[str, list[IF]] | None,
         replay: dict[str, torch.Tensor | list[torch.Tensor]], record: bool = False, count: bool = True,
         keep: Sequence[str] = ()):
    """Simulate the IF layers that depend on the fork layer (all of them if ``fork`` is None).
    ``replay`` holds uint8 trains of IF layers and, for other nodes, their float values (B, *shape)
    at each step, which a fork reads instead of evaluating the node and what feeds it."""
    dev, b, shapes = x.device, x.shape[0], snn.shapes
    ifs = [n.name for n in snn.of_type(IF)]
    layer, k = (fork[0], len(fork[1])) if fork else ("", 1)
    forked = net.descendants(layer) if fork else set()
    simulated = {n for n in ifs if n in forked} if fork else set(ifs)
    given = frozenset(n for n in replay if not isinstance(snn.nodes[n], IF)) if fork else frozenset()
    order, replayed = net.plan(simulated, output=True, given=given)
    static = net.static_values(x)
    params = {n: [_Params.of(snn.nodes[n], shapes[n], dev)] for n in simulated | replayed}
    if fork:
        params[layer] = [_Params.of(node, shapes[layer], dev) for node in fork[1]]
    # per simulated layer: membrane (rows = K*B for forked layers, candidate j on rows j*B..), static drive
    v = {n: torch.cat([torch.zeros((b, *shapes[n]), device=dev) + p.v0 for p in params[n]])
         if n == layer else torch.zeros((k * b if n in forked else b, *shapes[n]), device=dev) + params[n][0].v0
         for n in simulated}
    src = {n: snn.nodes[n].inputs[0] for n in simulated}
    drive = {n: [p.drive(static[src[n]]) for p in params[n]] for n in simulated if src[n] in static}
    spikes = {n: torch.zeros(v[n].shape[0], dtype=torch.float64, device=dev) for n in simulated}
    trains = {n: torch.empty((timesteps, b, *shapes[n]), dtype=torch.uint8, device=dev)
              for n in simulated} if record else {}
    kept: dict[str, list[torch.Tensor]] = {n: [] for n in keep}  # each step's value (a new tensor, never changed)
    acc = None
    fork_out = torch.empty_like(v[layer]) if fork else None

    def arg(name: str, i: str, vals) -> torch.Tensor:
        val = vals[i] if i in vals else static[i]
        return _tile(val, k) if name in forked and i not in forked and name != layer else val

    with torch.no_grad():
        for t in range(timesteps):
            vals = {n: _replayed(replay[n], t, params[n][0].theta) for n in replayed}
            vals.update((n, replay[n][t]) for n in given)
            for name in order:
                node = snn.nodes[name]
                if isinstance(node, Output):
                    val = arg(name, node.inputs[0], vals)
                    acc = val.clone() if acc is None else acc.add_(val)
                elif name in simulated:
                    x_in = None if name in drive else arg(name, src[name], vals)
                    ps = params[name]
                    rows = v[name].shape[0] // len(ps)
                    for j, p in enumerate(ps):  # one candidate setting of the fork layer per slice
                        n = p.fire(drive[name][j] if x_in is None else x_in, v[name][j * rows:(j + 1) * rows],
                                   with_bias=x_in is not None)
                        if count:  # float32 sums are exact: integers < 2**24
                            spikes[name][j * rows:(j + 1) * rows] += n.view(rows, -1).sum(1)
                        if record:
                            trains[name][t].copy_(n)
                        if len(ps) == 1:
                            vals[name] = n.mul_(p.theta)
                        else:  # the candidates' outputs side by side in one buffer, rewritten every step
                            torch.mul(n, p.theta, out=fork_out[j * rows:(j + 1) * rows])
                    if len(ps) > 1:
                        vals[name] = fork_out
                elif isinstance(node, Add) and name in forked and any(i not in forked for i in node.inputs):
                    # the candidates' rows (K, B, ...) plus the shared inputs (B, ...) by broadcasting,
                    # in the Add's order: the sums _tile would give, without K copies of the shared inputs
                    vals[name] = add_all([vals[i].reshape(k, -1, *vals[i].shape[1:]) if i in forked
                                          else vals[i] if i in vals else static[i]
                                          for i in node.inputs]).flatten(0, 1)
                else:
                    vals[name] = node.forward(*(arg(name, i, vals) for i in node.inputs))
                    if name in kept:
                        kept[name].append(vals[name])
    out = _tile(acc / timesteps, k if acc.shape[0] == b else 1)
    return out, spikes, {**trains, **kept}


def fork_outputs(snn: Graph, layer: str, variants: list[IF], x: torch.Tensor, timesteps: int,
                 trains: dict[str, torch.Tensor | list[torch.Tensor]], count: bool = True
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Readout at T (K, B, classes) and per-sample spikes (K, B) of the IF layers downstream of
    ``layer`` (inclusive) with ``layer`` replaced by each of the K ``variants``; every other IF
    layer replays ``trains`` (from :func:`record_run` on the same ``x``), and the non-IF nodes
    ``trains`` holds (its ``keep``; any subset of :func:`fork_inputs`) are read from it, not
    evaluated. ``count=False``: spikes are not counted (zeros), for searches that read only the outputs."""
    inputs = set(fork_inputs(snn, layer))
    given = {n: v for n, v in trains.items() if isinstance(snn.nodes[n], IF) or n in inputs}
    out, spikes, _ = _run(_Net(snn), snn, x, timesteps, (layer, variants), given, count=count)
    k, b = len(variants), x.shape[0]
    return out.reshape(k, b, -1), {n: s.view(k, b) for n, s in spikes.items()}


class LayerwiseSim:
    """The SNN on fixed samples, simulated one IF layer at a time in topological order.

    ``rates(snn, node)`` runs the dynamics of IF ``node`` (its parameters as given) on its input
    current - computed from the trains already emitted upstream through ``snn``'s synapses - and
    returns the per-sample mean output (N, *shape); ``emit(snn, node)`` does the same and records the
    layer's uint8 trains for the layers after it (upstream trains nobody reads any more are
    dropped). ``outputs(snn)``, after the last layer, is the readout after every counted step
    (T, N, K), as ``simulate(...).outputs``.
    """

    def __init__(self, snn: Graph, x: torch.Tensor, timesteps: int, batch_size: int,
                 device: str | torch.device = "cpu") -> None:
        self.T = timesteps
        self.device = torch.device(device)
        self.chunks = [x[s:s + batch_size].to(self.device) for s in range(0, x.shape[0], batch_size)]
        self.trains: dict[str, list[torch.Tensor]] = {}  # IF -> per chunk (T, b, *shape) uint8
        self.theta: dict[str, torch.Tensor] = {}
        self.emitted_rates: dict[str, torch.Tensor] = {}
        self._net = _Net(snn)
        self._static = [self._net.static_values(c) for c in self.chunks]
        self._cached: tuple[str, tuple, list[torch.Tensor]] | None = None
        ifs = [n.name for n in snn.of_type(IF)]
        self._readers: dict[str, set[str]] = {n: set() for n in ifs}  # IF -> layers (or the readout) replaying it
        for n in ifs:
            for r in self._net.plan({n}, output=False)[1]:
                self._readers[r].add(n)
        for r in self._net.plan(set(), output=True)[1]:
            self._readers[r].add(self._net.output.name)

    def _step_fn(self, snn: Graph, target: str, src: str):
        """f(c, t) -> the value of ``src`` (input of ``target``) at step t for chunk c."""
        if target == self._net.output.name:
            order, replay = self._net.plan(set(), output=True)
        else:
            order, replay = self._net.plan({target}, output=False)
        order = [n for n in order if n != target]
        missing = sorted(replay - set(self.trains))
        if missing:
            raise RuntimeError(f"{target}: upstream layer {missing[0]} has not been emitted yet")

        def step(c: int, t: int) -> torch.Tensor:
            vals = {r: _replayed(self.trains[r][c], t, self.theta[r]) for r in replay}
            for n in order:
                node = snn.nodes[n]
                vals[n] = node.forward(*(vals[i] if i in vals else self._static[c][i] for i in node.inputs))
            return vals[src]
        return step

    def _currents(self, snn: Graph, name: str) -> list[torch.Tensor] | None:
        """Per chunk the (T, b, *shape) input current of ``name``, kept while it is the layer being
        calibrated on the same graph; None when the input is static or too large to keep."""
        src = snn.nodes[name].inputs[0]
        if src in self._net.static:
            return None
        key = (name, tuple(snn.nodes[n] for n in self._net.plan({name}, output=False)[0] if n != name))
        if self._cached and self._cached[0] == key[0] and all(a is b for a, b in zip(self._cached[1], key[1])):
            return self._cached[2]
        size = sum(c.shape[0] for c in self.chunks) * self.T * int(np.prod(snn.shapes[src])) * 4
        if size > CACHE_BYTES:
            return None
        step = self._step_fn(snn, name, src)
        cur = [torch.stack([step(c, t) for t in range(self.T)]) for c in range(len(self.chunks))]
        self._cached = (name, key[1], cur)  # valid while the synapses feeding the layer are unchanged
        return cur

    def _pass(self, snn: Graph, node: IF, emit: bool) -> torch.Tensor:
        """One run of IF ``node``'s dynamics over all chunks: per-sample mean output (N, *shape),
        summed step by step and divided by T as :class:`snncompile.sim.rates.RateProbe` does."""
        name, shape = node.name, snn.shapes[node.name]
        p = _Params.of(node, shape, self.device)
        src = snn.nodes[name].inputs[0]
        cached = self._currents(snn, name)
        step = None if cached is not None or src in self._net.static else self._step_fn(snn, name, src)
        sums, trains = [], []
        for c, xc in enumerate(self.chunks):
            b = xc.shape[0]
            v = torch.zeros((b, *shape), device=self.device) + p.v0
            total = torch.zeros_like(v)
            tr = torch.empty((self.T, b, *shape), dtype=torch.uint8, device=self.device) if emit else None
            drive = p.drive(self._static[c][src]) if src in self._net.static else None
            for t in range(self.T):
                if drive is not None:
                    n = p.fire(drive, v, with_bias=False)
                else:
                    n = p.fire(cached[c][t] if cached is not None else step(c, t), v, with_bias=True)
                if emit:
                    tr[t].copy_(n)
                total.add_(n.mul_(p.theta))
            sums.append(total.div_(self.T))
            trains.append(tr)
        if emit:
            self.trains[name], self.theta[name] = trains, p.theta
            self._cached = None
            for users in self._readers.values():
                users.discard(name)
            for r in [r for r, users in self._readers.items() if not users and r in self.trains and r != name]:
                del self.trains[r]
        return torch.cat(sums).cpu()

    def rates(self, snn: Graph, node: IF) -> torch.Tensor:
        """Per-sample mean output sum_t n[t] theta / T of IF ``node`` (N, *shape), on CPU."""
        return self._pass(snn, node, emit=False)

    def emit(self, snn: Graph, node: IF) -> torch.Tensor:
        """Run ``node`` with its final parameters and keep its trains and rates; returns the rates."""
        self.emitted_rates[node.name] = self._pass(snn, node, emit=True)
        return self.emitted_rates[node.name]

    def source_rates(self, name: str) -> torch.Tensor:
        """Mean output (N, *shape) on CPU of an emitted IF layer."""
        return self.emitted_rates[name]

    def outputs(self, snn: Graph) -> torch.Tensor:
        """Readout after each counted step, (T, N, K): accumulated input / t (after the last layer)."""
        out = self._net.output
        src = out.inputs[0]
        step = None if src in self._net.static else self._step_fn(snn, out.name, src)
        res = []
        for c, xc in enumerate(self.chunks):
            acc = None
            steps = torch.empty((self.T, xc.shape[0], *snn.shapes[src]), device=self.device)
            for t in range(self.T):
                val = self._static[c][src] if step is None else step(c, t)
                acc = val.clone() if acc is None else acc.add_(val)
                torch.div(acc, t + 1, out=steps[t])
            res.append(steps.cpu())
        return torch.cat(res, 1)
