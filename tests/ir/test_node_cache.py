"""Nodes stay plain values: what computing derives from them lives in ir.node.cached, not in the node."""

from __future__ import annotations

import dataclasses
import gc
import pickle
import weakref

import numpy as np
import torch

from snncompile.ir import Conv2d
from snncompile.ir.node import _DERIVED, cached, param
from snncompile.ir.ops import Permute
from snncompile.ir.populations import ConvConn, DenseConn, IFPop


def _fields(node) -> set[str]:
    return {f.name for f in dataclasses.fields(node)}


def test_forward_leaves_nodes_plain_and_picklable_as_before():
    rng = np.random.default_rng(0)
    conv = ConvConn("c", ("s",), weight=np.repeat(np.repeat(rng.integers(-3, 4, (4, 2, 1, 1)), 2, 2), 2, 3)
                    .astype(np.float64), stride=(2, 2), fixed=True, weight_exp=1)
    dense = DenseConn("d", ("s",), weight=np.eye(8), out_shape=(8,))  # an identity: the relay fast path
    pop = IFPop("p", ("c",), theta=np.full(4, 3.0), bias=np.zeros((4, 2, 2)), v0=np.zeros(4), fixed=True)
    perm = Permute("q", ("s",), index=np.arange(8)[::-1].reshape(2, 4).copy())
    before = {n.name: pickle.dumps(n) for n in (conv, dense, pop, perm)}

    a = conv.forward(torch.ones((3, 2, 4, 4), dtype=torch.float64))
    pop.step(a, pop.init_state(a))
    dense.forward(torch.ones((3, 8)))
    perm.forward(torch.arange(16.0).reshape(2, 8))

    for node in (conv, dense, pop, perm):
        assert set(vars(node)) == _fields(node), node.name  # no cache entries in the node
        assert pickle.dumps(node) == before[node.name]  # what Ray ships is the node alone
        assert node in _DERIVED  # the derived tensors live in the explicit cache instead


def test_cache_is_per_node_and_freed_with_it():
    node = Conv2d("k", ("x",), weight=np.ones((1, 1, 1, 1), np.float32), bias=np.zeros(1, np.float32))
    like = torch.zeros(1)
    assert param(node, "weight", like) is param(node, "weight", like)
    calls = []
    assert cached(node, "probe", 1, lambda: calls.append(1) or "v") == "v"
    assert cached(node, "probe", 1, lambda: calls.append(1) or "w") == "v" and calls == [1]
    other = dataclasses.replace(node, weight=np.full((1, 1, 1, 1), 2.0, np.float32))  # a derived node starts empty
    assert float(param(other, "weight", like)) == 2.0 and float(param(node, "weight", like)) == 1.0
    refs = [weakref.ref(node), weakref.ref(other)]
    gc.collect()  # earlier tests' garbage first, so that only these two nodes go below
    n = len(_DERIVED)
    del node, other
    gc.collect()
    assert [r() for r in refs] == [None, None] and len(_DERIVED) == n - 2
