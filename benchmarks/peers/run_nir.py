"""Run an exported ``model.nir`` in a NIR consumer outside snncompile (its own venv: .venv-nir).

Usage (with the venv's python; setup_venvs.sh nir builds it)::

    .venv-nir/bin/python run_nir.py model.nir data.npz -T 32 [--samples N] [--out result.json]
                                    [--logits out.npy] [--spikes out.npz]

The graph is read with ``nir.read`` and built by ``nirtorch.nir_to_torch`` (NIR's PyTorch
interpreter, the graph executor snnTorch and sinabs build on: it sums the edges entering a node and
feeds a recurrent edge the previous step's output). Node modules: snnTorch's own NIR import for
``Affine`` and ``Conv2d`` (``snntorch.import_nir``); the NIR primitives that none of snnTorch,
Norse, sinabs or Spyx maps (``I``, ``Threshold``, ``Scale``) are written here from their NIR
definitions, with ``dt = 1`` (the file's ``time_step`` metadata); ``Flatten`` keeps the batch
dimension (NIR shapes have none). The input is applied at every step; the prediction after T
steps is the argmax of the summed Output. Prints and writes a JSON summary: accuracy, spikes per
sample (all Threshold nodes, and per node).

Nothing from snncompile is imported: this runs in a venv without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path

import nir
import nirtorch
import numpy as np
import torch
from snntorch.import_nir import _nir_to_snntorch_module


class Integrator(torch.nn.Module):
    """NIR ``I``: dv/dt = R I, with dt = 1: v_t = v_{t-1} + r * input_t (state starts at 0)."""

    def __init__(self, r):
        super().__init__()
        self.register_buffer("r", torch.as_tensor(np.asarray(r, np.float32)))

    def forward(self, x, state=None):
        v = self.r * x if state is None else state + self.r * x
        return v, v


class Threshold(torch.nn.Module):
    """NIR ``Threshold``: z = 1 if input > threshold else 0."""

    def __init__(self, threshold):
        super().__init__()
        self.register_buffer("threshold", torch.as_tensor(np.asarray(threshold, np.float32)))

    def forward(self, x):
        return (x > self.threshold).to(x.dtype)


class Scale(torch.nn.Module):
    """NIR ``Scale``: y = x * s."""

    def __init__(self, scale):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale, np.float32)))

    def forward(self, x):
        return x * self.scale


NODE_MAP = {
    nir.Affine: lambda n: _nir_to_snntorch_module(n),
    nir.Conv2d: lambda n: _nir_to_snntorch_module(n),
    nir.Flatten: lambda n: torch.nn.Flatten(n.start_dim + 1 if n.start_dim >= 0 else n.start_dim,
                                            n.end_dim + 1 if n.end_dim >= 0 else n.end_dim),
    nir.I: lambda n: Integrator(n.r),
    nir.Threshold: lambda n: Threshold(n.threshold),
    nir.Scale: lambda n: Scale(n.scale),
}


def run(graph: nir.NIRGraph, x: np.ndarray, timesteps: int, batch_size: int = 100):
    """Mean Output over ``timesteps`` steps (N, K) and spikes per sample of every Threshold node (name -> (N,))."""
    module = nirtorch.nir_to_torch(graph, NODE_MAP)
    modules = dict(module.named_modules())
    # nirtorch names a node's module after the node, '.' -> '_' (and 'nir_node_' before a Python keyword)
    thresholds = {k: next(m for m in (k.replace(".", "_"), "nir_node_" + k) if m in modules)
                  for k, n in graph.nodes.items() if isinstance(n, nir.Threshold)}
    counts: dict[str, torch.Tensor] = {}
    hooks = [modules[m].register_forward_hook(lambda mod, inp, out, k=k: counts.__setitem__(
        k, counts.get(k, 0) + out.flatten(1).sum(1))) for k, m in thresholds.items()]
    outs, spikes = [], {k: [] for k in thresholds}
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(x[i:i + batch_size], dtype=torch.float32)
            counts.clear()
            state, total = None, 0.0
            for _ in range(timesteps):
                res = module(xb, state)
                *ys, state = res  # nirtorch returns (output(s)..., state); several edges into Output: sum them
                total = total + sum(ys)
            outs.append((total / timesteps).numpy())
            for k in spikes:
                spikes[k].append(counts[k].numpy())
    for h in hooks:
        h.remove()
    return np.concatenate(outs), {k: np.concatenate(v) for k, v in spikes.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("data", help=".npz with x (N, ...) and optional y (N,)")
    ap.add_argument("-T", "--timesteps", type=int, default=32)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--out", help="write the JSON summary here")
    ap.add_argument("--logits", help="write the (N, K) mean outputs here (.npy)")
    ap.add_argument("--spikes", help="write spikes per sample of every Threshold node here (.npz, (N,) each)")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    graph = nir.read(args.model)
    with np.load(args.data) as d:
        x = d["x"][:args.samples]
        y = d["y"][:args.samples] if "y" in d else None
    logits, spikes = run(graph, x, args.timesteps, args.batch_size)
    total = sum(spikes.values())
    summary = {
        "consumer": f"nirtorch {version('nirtorch')} + snntorch {version('snntorch')} import_nir (Affine, Conv2d)",
        "nir": version("nir"), "torch": torch.__version__, "samples": len(x), "timesteps": args.timesteps,
        "accuracy": None if y is None else float((logits.argmax(1) == y).mean()),
        "spikes_per_sample": float(total.mean()),
        "spikes_per_sample_by_node": {k: float(v.mean()) for k, v in sorted(spikes.items())},
    }
    if args.logits:
        np.save(args.logits, logits)
    if args.spikes:
        np.savez(args.spikes, **spikes)
    text = json.dumps(summary, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
