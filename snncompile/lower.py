"""Lower an SNN graph (IF nodes between synaptic operators) to a population graph.

``lower_populations(snn) -> Graph`` finds the populations (the input, every IF node, and the
readout that feeds the Output), and for each population the *region* of synaptic operators
(Conv2d, Linear, BatchNorm, pooling, Add, Concat, Flatten, Reshape) between it and the populations
it reads from. Because a region is affine in its sources, it splits exactly into

    input(P) = sum_S  L_S(payload_S) + b_P

with one linear map ``L_S`` per source population S (``payload_S = n``, the spike count; the
source's threshold is folded into ``L_S``) and a per-neuron bias ``b_P`` (the region evaluated
with every source silent). Each ``L_S`` becomes a ``ConvConn`` when the path from S is a chain of
convolutions, non-overlapping pools, per-channel scalings, Adds and Concats (the composed kernel
is read off by probing the region with unit impulses, then verified on random inputs), and a
``DenseConn`` (the materialized matrix) otherwise. MaxPool must have been removed by conversion.

The population graph is synchronous: every population reads what its sources emit in the same
step, whatever their distance from the input. A target whose connections delay (Lava: one step per
connection) adds its own timing (``snncompile.backends.lava.timing``); nothing here models it.
This module lowers, it does not quantize (``snncompile.quantize`` turns its float graph into integers).

SRP (Hao et al. 2023): the conversion's simulator hints ``meta["pre_steps"]`` (tau) and
``meta["srp_nodes"]`` become node fields here: ``IFPop.srp_steps = tau`` on those populations and
``Readout.pre_steps = tau`` (the steps of each sample that the output does not count).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from snncompile.errors import CompileError, ConversionError
from snncompile.ir import IF, Add, AvgPool2d, BatchNorm, Concat, Conv2d, Graph, Input, MaxPool2d, Node, Output
from snncompile.ir.arrays import expand, per_channel
from snncompile.ir.populations import ConvConn, DenseConn, IFPop, Readout, Source

__all__ = ["DENSE_LIMIT", "lower_populations"]

DENSE_LIMIT = 64_000_000  # largest dense matrix (entries) materialized for one connection
_CONV_LIKE = (Conv2d, AvgPool2d, BatchNorm, Add, Concat)


def lower_populations(snn: Graph) -> Graph:
    """SNN graph -> float population graph (see module docstring)."""
    if len(snn.outputs) != 1:
        raise ConversionError(f"{snn.name}: exactly one output is supported, got {len(snn.outputs)}")
    for n in snn.of_type(MaxPool2d):
        raise ConversionError(f"{n.name} (MaxPool2d): convert MaxPool before lowering (maxpool='relu-tree'|'avg')")
    pre = int(snn.meta.get("pre_steps", 0))
    srp = set(snn.meta.get("srp_nodes", ()))
    src = snn.input
    nodes: list[Node] = [src, Source(f"{src.name}.src", (src.name,))]
    pop_name = {src.name: f"{src.name}.src"}
    out = snn.outputs[0]
    for p in [n for n in snn.nodes.values() if isinstance(n, IF)] + [out]:
        root = p.inputs[0]
        conns = _connections(snn, root, pop_name)
        name = p.name if isinstance(p, IF) else f"{root}.readout"
        bias = _region_bias(snn, root)
        if isinstance(p, IF):
            pop = IFPop(name, (), theta=np.asarray(p.theta, np.float64),
                        bias=bias + expand(p.bias, snn.shapes[root]), v0=np.asarray(p.v0, np.float64),
                        max_spikes=p.max_spikes, srp_steps=pre if p.name in srp else 0)
        else:
            pop = Readout(name, (), bias=bias, pre_steps=pre)
        ins = []
        for s, conn in conns:
            c = dataclasses.replace(conn, name=f"{pop_name[s]}->{name}", inputs=(pop_name[s],))
            nodes.append(c)
            ins.append(c.name)
        pop_name[p.name] = name
        nodes.append(dataclasses.replace(pop, inputs=tuple(ins)))
    nodes.append(Output(out.name, (pop_name[out.name],)))
    g = Graph(nodes, snn.name)
    g.meta["stage"] = "populations"
    return g


# ---- regions -----------------------------------------------------------------------------------
def _region(snn: Graph, root: str) -> tuple[list[Node], list[str]]:
    """Synaptic nodes between ``root`` and the populations it reads (in topological order), and those populations."""
    seen, leaves, stack = set(), [], [root]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        n = snn.nodes[name]
        if isinstance(n, (IF, Input)):
            leaves.append(name)
        else:
            stack.extend(n.inputs)
    region = [n for n in snn.nodes.values() if n.name in seen and not isinstance(n, (IF, Input))]
    return region, [n for n in snn.nodes if n in leaves]


def _evaluate(snn: Graph, root: str, values: dict[str, torch.Tensor], batch: int, grad: bool = False) -> torch.Tensor:
    """Run the region of ``root`` with the given source values (missing sources are zero)."""
    region, leaves = _region(snn, root)
    acts = {}
    for leaf in leaves:
        acts[leaf] = values.get(leaf, torch.zeros((batch, *snn.shapes[leaf]), dtype=torch.float64))
    with torch.set_grad_enabled(grad):
        for n in region:
            acts[n.name] = n.forward(*(acts[i] for i in n.inputs))
    return acts[root]


def _region_bias(snn: Graph, root: str) -> np.ndarray:
    return _evaluate(snn, root, {}, 1)[0].numpy().astype(np.float64)


def _leaf_scale(snn: Graph, leaf: str, n: torch.Tensor) -> torch.Tensor:
    """Source value y for payload n: ``n * theta`` for an IF population, ``x`` for the input."""
    node = snn.nodes[leaf]
    return n * per_channel(node.theta, n) if isinstance(node, IF) else n


def _linear_map(snn: Graph, root: str, leaf: str, bias: torch.Tensor):
    def f(n: torch.Tensor, grad: bool = False) -> torch.Tensor:
        return _evaluate(snn, root, {leaf: _leaf_scale(snn, leaf, n)}, n.shape[0], grad) - bias
    return f


def _connections(snn: Graph, root: str, pop_name: dict[str, str]) -> list[tuple[str, Node]]:
    region, leaves = _region(snn, root)
    if not leaves:
        raise ConversionError(f"{root} ({snn.nodes[root].op}): reads no population (constant input)")
    bias = torch.as_tensor(_region_bias(snn, root))
    out = []
    for leaf in leaves:
        f = _linear_map(snn, root, leaf, bias)
        conn = _as_conv(snn, region, root, leaf, f) or _as_dense(snn, root, leaf, f)
        out.append((leaf, conn))
    return out


# ---- connection construction -------------------------------------------------------------------
def _path(snn: Graph, region: list[Node], root: str, leaf: str) -> list[Node] | None:
    """Region nodes on the way from leaf to root if they form one chain, else None."""
    depends = {leaf}
    chain = []
    for n in region:
        hits = [i for i in n.inputs if i in depends]
        if len(hits) > 1:
            return None
        if hits:
            depends.add(n.name)
            chain.append(n)
    return chain if (chain and chain[-1].name == root) or (not chain and root == leaf) else None


def _window(n: Node) -> tuple[int, int, int] | None:
    """(kernel, stride, pad) of a conv-like node along both axes, None if not square/symmetric."""
    if isinstance(n, Conv2d):
        t, l, b, r = n.padding
        k = [d * (k - 1) + 1 for d, k in zip(n.dilation, n.weight.shape[2:])]
        if t != b or l != r or k[0] != k[1] or n.stride[0] != n.stride[1] or t != l:
            return None
        return k[0], n.stride[0], t
    if isinstance(n, AvgPool2d):
        k = [d * (k - 1) + 1 for d, k in zip(n.dilation, n.kernel)]
        if k[0] != k[1] or n.stride[0] != n.stride[1] or any(n.padding):
            return None
        return k[0], n.stride[0], 0
    return 1, 1, 0


def _as_conv(snn: Graph, region, root: str, leaf: str, f) -> ConvConn | None:
    in_shape, out_shape = snn.shapes[leaf], snn.shapes[root]
    if len(in_shape) != 3 or len(out_shape) != 3:
        return None
    chain = _path(snn, region, root, leaf)
    if chain is None or not all(isinstance(n, _CONV_LIKE) for n in chain):
        return None
    if any(isinstance(n, Concat) and n.axis != 0 for n in chain):
        return None
    K, S, P = 1, 1, 0
    for n in chain:
        w = _window(n)
        if w is None:
            return None
        k, s, p = w
        K, P, S = K + S * (k - 1), P + S * p, S * s
    c, h, w_ = in_shape
    i0 = -(-P // S)
    side = i0 * S - P + K  # the smallest input holding output i0's whole receptive field
    if side > min(h, w_) or i0 >= min(out_shape[1:]):
        return None
    resp = torch.cat([_chain_map(snn, chain, leaf, _impulses(start, min(c * K * K, start + 512), c, K, side,
                                                             i0 * S - P))[:, :, i0, i0]
                      for start in range(0, c * K * K, 512)])  # (c*K*K, O)
    weight = resp.T.reshape(out_shape[0], c, K, K).numpy()
    conv = ConvConn("probe", (leaf,), weight=weight, stride=(S, S), padding=(P, P))
    try:
        if conv.infer_shape(in_shape) != out_shape:
            return None
    except CompileError:  # the composed window does not fit the input: not a convolution
        return None
    test = torch.randint(0, 3, (2, *in_shape)).to(torch.float64)
    ref, got = f(test), conv.forward(test)
    tol = 1e-6 * (1.0 + ref.abs().max().item())
    return conv if torch.allclose(ref, got, atol=tol, rtol=0) else None


def _impulses(start: int, stop: int, c: int, K: int, side: int, offset: int) -> torch.Tensor:
    """Unit inputs (c, side, side), one per (channel, row, col) of a K x K window at ``offset``."""
    idx = torch.arange(start, stop)
    probe = torch.zeros((stop - start, c, side, side), dtype=torch.float64)
    probe[idx - start, idx // (K * K), offset + (idx // K) % K, offset + idx % K] = 1.0
    return probe


def _chain_map(snn: Graph, chain: list[Node], leaf: str, n: torch.Tensor) -> torch.Tensor:
    """The linear part of a conv-like chain (biases and other branches at zero) on a small input.

    Exact for impulses away from the border: padding and the cropped-away input are both zeros.
    """
    x = _leaf_scale(snn, leaf, n)
    prev = leaf
    with torch.no_grad():
        for node in chain:
            if isinstance(node, Conv2d):
                x = dataclasses.replace(node, bias=np.zeros_like(node.bias)).forward(x)
            elif isinstance(node, BatchNorm):
                x = dataclasses.replace(node, shift=np.zeros_like(node.shift)).forward(x)
            elif isinstance(node, Concat):
                parts = [x if i == prev else x.new_zeros((x.shape[0], snn.shapes[i][0], *x.shape[2:]))
                         for i in node.inputs]
                x = torch.cat(parts, dim=1)
            elif not isinstance(node, Add):  # AvgPool2d; an Add's other inputs are zero here
                x = node.forward(x)
            prev = node.name
    return x


def _as_dense(snn: Graph, root: str, leaf: str, f) -> DenseConn:
    in_shape, out_shape = snn.shapes[leaf], snn.shapes[root]
    n_in, n_out = math.prod(in_shape), math.prod(out_shape)
    if n_in * n_out > DENSE_LIMIT:
        raise ConversionError(
            f"{root} ({snn.nodes[root].op}): the projection from {leaf} is not a convolution and its dense "
            f"matrix would have {n_in * n_out:,} entries (limit {DENSE_LIMIT:,})")
    if n_out < n_in:  # fewer outputs: read rows by back-propagating output impulses (one pass per chunk)
        n = torch.zeros((1, *in_shape), dtype=torch.float64, requires_grad=True)
        out = f(n, grad=True).reshape(-1)
        rows = [torch.autograd.grad(out, n, _basis(start, min(n_out, start + 2048), n_out), retain_graph=True,
                                    is_grads_batched=True)[0].reshape(-1, n_in)
                for start in range(0, n_out, 2048)]
        weight = torch.cat(rows).detach().numpy()
    else:
        cols = [f(_basis(start, min(n_in, start + 2048), n_in).reshape(-1, *in_shape)).reshape(-1, n_out)
                for start in range(0, n_in, 2048)]
        weight = torch.cat(cols).T.numpy()
    return DenseConn("probe", (leaf,), weight=weight, out_shape=tuple(out_shape))


def _basis(start: int, stop: int, size: int) -> torch.Tensor:
    """Unit vectors e_start .. e_{stop-1} of length ``size`` (float64 rows)."""
    basis = torch.zeros((stop - start, size), dtype=torch.float64)
    basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
    return basis

