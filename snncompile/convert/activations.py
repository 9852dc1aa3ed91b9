"""Streaming statistics of the ANN's ReLU activations over the calibration set.

Per layer (or per channel) we keep the exact running maximum and a uniform random subsample of
bounded size (a reservoir): every activation value gets a random key u ~ U[0, 1) and the values
with the ``k`` smallest keys seen so far are kept (merging each batch with the reservoir by
``topk``), which is a uniform sample without replacement of everything seen. Memory is
O(k) per layer whatever the size of the calibration set; percentile and MSE thresholds are
computed on the subsample (exact when the layer produced at most k values). ``reservoir=0`` keeps
only the maximum (method "max" needs nothing else; drawing and merging the keys is most of its pass).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch

from snncompile.convert.calib_set import CalibSet
from snncompile.convert.stages import stage
from snncompile.ir import Graph
from snncompile.ir.graph import content_digest

__all__ = ["RESERVOIR", "AnnRecord", "LayerStats", "collect_activations", "record_ann", "shared_ann_pass"]

RESERVOIR = 65536  # values kept per layer (split over channels when per_channel)


@dataclass
class LayerStats:
    """Activation statistics of one layer; the leading axis is the channel (size 1 per layer)."""

    max: torch.Tensor  # (C,) running maximum
    sample: torch.Tensor  # (C, k) uniform subsample of the activation values
    keys: torch.Tensor  # (C, k) their random keys
    count: int  # activation values seen per channel
    # (sample, its per-channel sort and prefix sums in float64): the MSE threshold search's, for this sample
    sorted_cache: tuple | None = field(default=None, repr=False, compare=False)

    def update(self, a: torch.Tensor, cap: int, gen: torch.Generator) -> None:
        """Fold a (C, M) batch of values into the running max and the reservoir."""
        self.max = torch.maximum(self.max, a.max(1).values)
        self.count += a.shape[1]
        if cap == 0:  # only the maximum is wanted (reservoir=0): no subsample
            return
        keys = torch.rand(a.shape, generator=gen)
        vals = torch.cat([self.sample, a], 1)
        keys = torch.cat([self.keys, keys], 1)
        if vals.shape[1] > cap:
            keys, idx = torch.topk(keys, cap, dim=1, largest=False)
            vals = vals.gather(1, idx)
        self.sample, self.keys = vals, keys


def _channels_first(a: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """(B, C, ...) -> (C, B*...) per channel, or (1, B*C*...) per layer."""
    if not per_channel or a.dim() < 2:
        return a.reshape(1, -1)
    return a.transpose(0, 1).reshape(a.shape[1], -1)


def collect_activations(graph: Graph, calib: CalibSet, names: list[str], *, per_channel: bool = False,
                        reservoir: int = RESERVOIR, seed: int = 0) -> dict[str, LayerStats]:
    """Run the ANN ``graph`` over the calibration set (in batches) and gather per-layer stats."""
    return record_ann(graph, calib, names, per_channel=per_channel, reservoir=reservoir, seed=seed).stats


@dataclass
class AnnRecord:
    """What one pass of the ANN over the calibration set leaves for the conversion passes."""

    stats: dict[str, LayerStats]
    logits: torch.Tensor  # (N, *out) ANN outputs of every calibration sample, CPU
    head: dict[str, torch.Tensor]  # layer -> (keep, *shape) activations of the first ``keep`` samples


def record_ann(graph: Graph, calib: CalibSet, names: list[str], *, per_channel: bool = False,
               reservoir: int = RESERVOIR, seed: int = 0, keep: int = 0) -> AnnRecord:
    """One ANN pass: the layer statistics of :func:`collect_activations`, the outputs of every sample
    and the full activations of ``names`` on the first ``keep`` samples (the subset the layer-wise
    calibrations measure their errors on)."""
    memo = _SHARED.get()
    if memo is None:
        with stage("ann_pass"):
            return _record_ann(graph, calib, names, per_channel, reservoir, seed, keep)
    key = (_fingerprint(graph, calib), tuple(names), per_channel, reservoir, seed)
    rec = memo.get(key)
    if rec is None or min(keep, len(calib)) > _kept(rec):
        with stage("ann_pass"):
            rec = memo[key] = _record_ann(graph, calib, names, per_channel, reservoir, seed, keep)
    head = {n: v[:keep] for n, v in rec.head.items()} if keep > 0 else {}
    return AnnRecord(rec.stats, rec.logits, head)


_SHARED: ContextVar[dict | None] = ContextVar("snncompile_shared_ann_pass", default=None)


@contextmanager
def shared_ann_pass() -> Iterator[None]:
    """Within this context, :func:`record_ann` runs the ANN over a calibration set once per graph,
    calibration samples, layers and statistics options, and hands every later conversion the same
    record (the statistics do not depend on ``keep``; a larger ``keep`` re-records). Used by the
    frontier search (:mod:`snncompile.search`), which converts one ANN for many methods and T.
    The record is shared, not copied: conversions read it and never modify it."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def _kept(rec: AnnRecord) -> int:
    return min((int(v.shape[0]) for v in rec.head.values()), default=0)


def _fingerprint(graph: Graph, calib: CalibSet) -> tuple:
    """What a record depends on: the graph (:func:`snncompile.ir.graph.content_digest`) and the calibration
    samples."""
    return content_digest(graph, calib.x), tuple(calib.x.shape)


def _record_ann(graph, calib, names, per_channel, reservoir, seed, keep) -> AnnRecord:
    gen = torch.Generator().manual_seed(seed)
    stats: dict[str, LayerStats] = {}
    logits, head, seen = [], {n: [] for n in names}, 0
    for xb in calib.batches(desc="activations"):
        out, acts = graph.run(xb, record=True)
        logits.append(out.cpu())
        for name in names:
            if seen < keep:
                head[name].append(acts[name][: keep - seen].cpu())
            a = _channels_first(acts[name].float().cpu(), per_channel)
            if name not in stats:
                c = a.shape[0]
                stats[name] = LayerStats(torch.full((c,), -torch.inf), a[:, :0], torch.empty(c, 0), 0)
            cap = max(1024, reservoir // a.shape[0]) if reservoir > 0 else 0
            stats[name].update(a, cap, gen)
        seen += xb.shape[0]
    return AnnRecord(stats, torch.cat(logits), {n: torch.cat(v) for n, v in head.items() if v})
