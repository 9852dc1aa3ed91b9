"""Counting and stepping for the torch peers (SpikingJelly, sinabs): our own counters, not theirs.

Spikes: every spiking module's output, summed (a MultiSpike output of n in one step counts n).
Synops: input events x fan-out at every weight layer fed by spikes. The fan-out of a neuron of an
activation site is computed once on the ANN, the same way for every tool: one vector-Jacobian
product of the *structural* network (weights -> their non-zero pattern, biases -> 0, BN scale ->
its non-zero pattern, average and max pools -> sum pools, so a spike through a 2x2 pool reaches
the fan-out of its pool output) from the site to the next activation sites and the output.
Spiking modules are matched to the ANN's activation sites by execution order and shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import protocol as P
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = [
    "Recorder",
    "activation_sites",
    "ann_accuracy",
    "fold_bn",
    "run_protocol",
    "run_tool",
    "site_fanouts",
    "time_protocol",
]

_ACT_MODULES = (nn.ReLU, nn.ReLU6)
_ACT_FUNCTIONS = (F.relu, torch.relu, F.relu6)


def _is_site(node: fx.Node, modules: dict) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _ACT_MODULES)
    if node.op == "call_function":
        return node.target in _ACT_FUNCTIONS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def activation_sites(model: nn.Module) -> dict[str, str | None]:
    """The ANN's activation nodes (ReLU, ReLU6, F.relu) in execution order: fx node name -> module
    path (None for a functional call)."""
    gm = fx.symbolic_trace(model)
    modules = dict(gm.named_modules())
    return {
        n.name: (n.target if n.op == "call_module" else None) for n in gm.graph.nodes if _is_site(n, modules)
    }


def _structural(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(mod, nn.Conv2d):
        return F.conv2d(x, (mod.weight != 0).float(), None, mod.stride, mod.padding, mod.dilation, mod.groups)
    if isinstance(mod, nn.Linear):
        return F.linear(x, (mod.weight != 0).float())
    if isinstance(mod, nn.BatchNorm2d):
        return x * (mod.weight != 0).float().view(1, -1, 1, 1)
    if isinstance(mod, (nn.AvgPool2d, nn.MaxPool2d)):
        k = mod.kernel_size if isinstance(mod.kernel_size, tuple) else (mod.kernel_size,) * 2
        return F.avg_pool2d(x, k, mod.stride, mod.padding) * (k[0] * k[1])
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        if mod.output_size not in (1, (1, 1)):
            raise NotImplementedError(f"structural AdaptiveAvgPool2d({mod.output_size})")
        return x.sum((2, 3), keepdim=True)
    if isinstance(mod, (nn.Flatten, nn.Identity, nn.Dropout)):
        return mod(x)
    raise NotImplementedError(f"no structural rule for {type(mod).__name__}")


class _FanoutInterpreter(fx.Interpreter):
    """Runs the structural network; the chosen site emits ``s``, later sites are sinks."""

    def __init__(self, gm: fx.GraphModule, site: str, s: torch.Tensor):
        super().__init__(gm)
        self.site, self.s, self.sinks, self.modules = site, s, [], dict(gm.named_modules())

    def run_node(self, n: fx.Node):
        if _is_site(n, self.modules):
            x = self.env[n.args[0]]
            if n.name == self.site:
                return self.s
            self.sinks.append(x.sum())
            return torch.zeros_like(x)
        if n.op == "call_module":
            return _structural(self.modules[n.target], self.env[n.args[0]])
        if n.op == "output":
            out = self.env[n.args[0]]
            self.sinks.append(out.sum())
            return out
        return super().run_node(n)


def site_fanouts(model: nn.Module, input_shape=(1, 28, 28)) -> dict[str, torch.Tensor]:
    """Per-neuron fan-out (site's per-sample shape) of every activation site, by site name."""
    gm = fx.symbolic_trace(model)
    shapes: dict[str, tuple] = {}
    with torch.no_grad():
        modules = dict(gm.named_modules())

        class _Shapes(fx.Interpreter):
            def run_node(self, n):
                out = super().run_node(n)
                if _is_site(n, modules):
                    shapes[n.name] = tuple(out.shape[1:])
                return out

        _Shapes(gm).run(torch.zeros(1, *input_shape))
    fan = {}
    for site, shape in shapes.items():
        s = torch.ones(1, *shape, requires_grad=True)
        interp = _FanoutInterpreter(gm, site, s)
        with torch.enable_grad():
            interp.run(torch.zeros(1, *input_shape))
            (g,) = torch.autograd.grad(torch.stack(interp.sinks).sum(), s, allow_unused=True)
        fan[site] = torch.zeros(shape) if g is None else g[0].detach()
    return fan


class Recorder:
    """Forward hooks on spiking modules: spikes and synops per step, summed over samples.

    ``fanouts`` maps each spiking module to the fan-out of the activation site it replaced (its
    output shape is checked on every call). A module called with ``k`` steps folded into the
    batch (sinabs) gives outputs of shape (B*k, ...) in batch-major order; the caller sets ``k``
    and the first step ``t0`` before each call.
    """

    def __init__(self, fanouts: dict[nn.Module, torch.Tensor], T: int):
        self.fanouts = {id(m): f for m, f in fanouts.items()}
        self.t0, self.k = 0, 1
        self.spikes, self.synops = np.zeros(T), np.zeros(T)
        self.handles = [m.register_forward_hook(self._hook) for m in fanouts]

    def _hook(self, module, _inputs, out):
        f = self.fanouts[id(module)]
        ev = out.detach().reshape(-1, self.k, *f.shape)  # (B, k, *site)
        dims = (0, *range(2, ev.dim()))
        steps = slice(self.t0, self.t0 + self.k)
        self.spikes[steps] += ev.sum(dim=dims).double().numpy()
        self.synops[steps] += (ev * f).sum(dim=dims).double().numpy()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def fold_bn(model: nn.Module) -> nn.Module:
    """Each BatchNorm2d folded into the Conv2d registered just before it (eval mode; same function)."""
    prev, pairs = None, []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.BatchNorm2d) and prev is not None and isinstance(prev[1], nn.Conv2d):
            pairs.append((prev[0], name))
        if isinstance(mod, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            prev = (name, mod)
    for conv_name, bn_name in pairs:
        fused = fuse_conv_bn_eval(model.get_submodule(conv_name), model.get_submodule(bn_name))
        for name, new in ((conv_name, fused), (bn_name, nn.Identity())):
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, new)
    return model


def ann_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        logits = torch.cat([model(torch.as_tensor(x[i : i + P.BATCH])) for i in range(0, len(x), P.BATCH)])
    return float((logits.argmax(1).numpy() == y).mean())


StepFn = Callable[[torch.Tensor, int], torch.Tensor]  # (x batch, k steps) -> outputs (B, k, classes)


def run_protocol(
    step: StepFn,
    reset: Callable[[], None],
    x: np.ndarray,
    y: np.ndarray,
    recorder: Recorder | None,
    chunk: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One run to T_max per batch of 100; (accuracy, spikes/sample, synops/sample) on the T grid."""
    grid = P.t_grid()
    T = grid[-1]
    correct = np.zeros(len(grid))
    with torch.no_grad():
        for i in range(0, len(x), P.BATCH):
            xb, yb = torch.as_tensor(x[i : i + P.BATCH]), torch.as_tensor(y[i : i + P.BATCH])
            reset()
            acc_out = torch.zeros(xb.shape[0], 0)
            outs = []
            for t0 in range(0, T, chunk):
                k = min(chunk, T - t0)
                if recorder is not None:
                    recorder.t0, recorder.k = t0, k
                outs.append(step(xb, k))
            acc_out = torch.cat(outs, 1).cumsum(1)  # (B, T, classes): output summed over the first t steps
            for j, t in enumerate(grid):
                correct[j] += (acc_out[:, t - 1].argmax(1) == yb).sum().item()
    n = len(x)
    if recorder is None:
        return correct / n, np.zeros(len(grid)), np.zeros(len(grid))
    cum_sp, cum_so = np.cumsum(recorder.spikes), np.cumsum(recorder.synops)
    idx = [t - 1 for t in grid]
    return correct / n, cum_sp[idx] / n, cum_so[idx] / n


def time_protocol(
    step: StepFn, reset: Callable[[], None], x: np.ndarray, chunk: int = 1, repeats: int = 3
) -> dict[str, float]:
    """Timing-only run (no hooks) of one batch of 100 to T_max after an untimed warm-up, ``repeats``
    times (state reset untimed before each): the median us per sample-step, wall clock and process
    CPU time (all threads; steadier than wall time on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(P.THREADS)
    T, xb = P.t_grid()[-1], torch.as_tensor(x[: P.BATCH])

    def run() -> None:
        for s in range(0, T, chunk):
            step(xb, min(chunk, T - s))

    with torch.no_grad():
        reset()  # warm-up, untimed: two steps of the batch (as snncompile's timing run)
        step(xb, min(chunk, 2))
        us = P.median_us(run, xb.shape[0] * T, repeats, prepare=reset)
    torch.set_num_threads(threads)
    return us


def run_tool(tool: str, modes: list[str], run_mode: Callable[[str, str, tuple], dict]) -> None:
    """The main loop of a torch peer's runner: every model of the protocol, every mode
    (``run_mode(mode, model, data)`` -> a mode record), one results/<tool>_<model>.json each."""
    # Counting runs on 1 thread (same numbers; on a busy 2-core machine 2 OpenMP threads mostly wait);
    # the timing-only pass switches to P.THREADS.
    torch.set_num_threads(1)
    data = P.load_data()
    for model_name in P.models():
        started = time.time()
        ann = ann_accuracy(P.load_model(model_name), data[1], data[2])
        records = []
        for name in modes:
            r = run_mode(name, model_name, data)
            print(f"  {tool} {model_name} {name}: {P.describe(r)}", flush=True)
            records.append(r)
        path = P.write_result(
            tool, model_name, version=P.version_of(tool), ann_accuracy=ann, modes=records, started=started
        )
        print(f"{tool} {model_name}: wrote {path}", flush=True)
