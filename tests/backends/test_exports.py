"""NIR and netx exports: files read back by the real readers (nir.read, h5py, lava-dl's netx) hold our network.

Graphs (population graphs of ``tests.quantize.conftest`` plus a conv chain)::

    mlp:      x(1x6x6) -> Dense -> IF(20) -> Dense -> readout(7)
    residual: conv-IF, pool+conv-IF, residual block (a skip connection over two levels), two branches, dense readout
    conv:     x(2x6x8) -> Conv -> IF(4x6x8) -> pool+Conv (stride 2) -> IF(5x3x4) -> Dense -> readout(6)
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import sys
import types
import warnings
from graphlib import TopologicalSorter

import h5py
import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from snncompile.backends import get_backend
from snncompile.backends.netx import chain, write_netx
from snncompile.backends.nir import to_nir

from snncompile.errors import BackendError
from snncompile.ir import IF, AvgPool2d, Conv2d, Flatten, Graph, Input, Linear, Output
from snncompile.ir.arrays import expand
from snncompile.ir.populations import ConvConn, DenseConn, IFPop, Readout, Source
from snncompile.lower import lower_populations
from snncompile.pipeline import RunResult
from snncompile.quantize import quantize
from snncompile.sim.popsim import simulate_populations
from tests.quantize.conftest import build_mlp_snn, build_residual_snn


def build_conv_chain(seed: int = 3) -> Graph:
    rng = np.random.default_rng(seed)

    def conv(name, src, cin, cout):
        return Conv2d(name, (src,), weight=rng.normal(0, 0.4, (cout, cin, 3, 3)).astype(np.float32),
                      bias=rng.normal(0, 0.05, cout).astype(np.float32), stride=(1, 1), padding=(1, 1, 1, 1))

    def neuron(name, src, c):
        theta = np.ones(c, np.float32)
        return IF(name, (src,), theta=theta, v0=theta / 2, bias=np.zeros((), np.float32))

    return Graph([Input("x", (), shape=(2, 6, 8)), conv("c1", "x", 2, 4), neuron("r1", "c1", 4),
                  AvgPool2d("p", ("r1",)), conv("c2", "p", 4, 5), neuron("r2", "c2", 5), Flatten("f", ("r2",)),
                  Linear("l", ("f",), weight=rng.normal(0, 0.3, (6, 60)).astype(np.float32),
                         bias=rng.normal(0, 0.1, 6).astype(np.float32)), Output("y", ("l",))], "conv")


@functools.cache  # graphs are immutable; lowering the residual graph takes a while
def _graphs(build, n=3, seed=0):
    pop = lower_populations(build())
    x = np.random.default_rng(seed).uniform(0, 1, (n, *pop.shapes["x"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pop, quantize(pop, x), x


def _result(pop, q):
    return RunResult(report={}, ann=pop, snn=pop, pop_float=pop, pop_int=q)


# ------------------------------------------------------------------------------------------- NIR
def _ints(a) -> tuple[int, ...]:
    return tuple(int(i) for i in np.atleast_1d(a))


def _back_edges(graph) -> set[tuple[str, str]]:
    """Edges closing a cycle in a depth-first walk from the inputs (the ones a step-by-step executor delays)."""
    state, back = {}, set()

    def visit(k):
        state[k] = "open"
        for a, b in graph.edges:
            if a == k:
                if state.get(b) == "open":
                    back.add((a, b))
                elif b not in state:
                    visit(b)
        state[k] = "done"

    for k, n in graph.nodes.items():
        if isinstance(n, nir.Input):
            visit(k)
    return back


def _run_nir(graph, x: np.ndarray, T: int, dtype=torch.float64) -> tuple[np.ndarray, dict]:
    """Synchronous executor of a NIR graph by NIR's equations alone (no metadata), dt = 1.

    ``I``: ``v += r * input``; ``Threshold``: ``input > threshold``; ``Scale``: ``input * scale``;
    an edge closing a cycle (met again in a depth-first walk from the input) carries the previous
    step's output (zero at the first step). Returns the mean Output over T steps and spikes per Threshold node.
    """
    back = _back_edges(graph)
    fwd = [e for e in graph.edges if e not in back]
    order = list(TopologicalSorter({k: [a for a, b in fwd if b == k] for k in graph.nodes}).static_order())
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)
    ops = {
        "Conv2d": lambda n, a: F.conv2d(a, t(n.weight), t(n.bias), _ints(n.stride), _ints(n.padding),
                                        _ints(n.dilation), int(n.groups)),
        "Affine": lambda n, a: a @ t(n.weight).T + t(n.bias),
        "Flatten": lambda n, a: a.flatten(1),
        "Threshold": lambda n, a: (a > t(n.threshold)).to(dtype),
        "Scale": lambda n, a: a * t(n.scale),
        "Output": lambda n, a: a,
    }
    v, prev, total, spikes = {}, {}, 0.0, {}
    out_name = next(iter(graph.outputs))
    for _ in range(T):
        out = {}
        for k in order:
            n = graph.nodes[k]
            ins = [out[a] for a, b in fwd if b == k] + [prev[a] for a, b in back if b == k and a in prev]
            a = sum(ins) if ins else None
            if isinstance(n, nir.Input):
                out[k] = t(x)
            elif isinstance(n, nir.I):
                v[k] = v.get(k, 0.0) + t(n.r) * a
                out[k] = v[k]
            else:
                out[k] = ops[type(n).__name__](n, a)
            if isinstance(n, nir.Threshold):
                spikes[k] = spikes.get(k, 0.0) + out[k].sum(tuple(range(1, out[k].dim())))
        total = total + out[out_name]
        prev = out
    return (total / T).numpy(), {k: s.numpy() for k, s in spikes.items()}


@pytest.mark.parametrize("build", [build_mlp_snn, build_residual_snn, build_conv_chain])
def test_nir_file_round_trips_weights_and_runs_like_the_population_simulator(build, tmp_path):
    pop, q, x = _graphs(build)
    backend = get_backend("nir")
    _, extra = backend.evaluate(q, None, None, reference=None)
    assert extra["nir"]["neurons"] == sum(int(np.prod(pop.shapes[n.name])) for n in pop.of_type(IFPop))
    [path] = backend.write(_result(pop, q), tmp_path)
    g = nir.read(path)
    assert not any(isinstance(n, nir.IF) for n in g.nodes.values())
    for n in pop.nodes.values():
        if isinstance(n, (DenseConn, ConvConn)):
            got = g.nodes[n.name]  # no '/' in these names (NIR names replace it by '.')
            assert isinstance(got, nir.Affine if isinstance(n, DenseConn) else nir.Conv2d)
            assert np.array_equal(got.weight, n.weight)
            users = pop.users(n.name)[0]
            if users.inputs[0] == n.name:  # the first connection carries the population's bias
                bias = np.broadcast_to(users.bias, pop.shapes[users.name])
                assert np.array_equal(got.bias, bias[:, 0, 0] if isinstance(n, ConvConn) else bias)
        elif isinstance(n, IFPop):
            shape = pop.shapes[n.name]
            integ, spike, reset = g.nodes[n.name], g.nodes[f"{n.name}.spike"], g.nodes[f"{n.name}.reset"]
            assert isinstance(integ, nir.I) and np.all(integ.r == 1) and integ.r.shape == shape
            assert isinstance(spike, nir.Threshold) and isinstance(reset, nir.Scale)
            theta, v0 = expand(n.theta, shape), expand(n.v0, shape)
            assert np.array_equal(reset.scale, -theta)
            shifted = theta.astype(np.float32) - v0.astype(np.float32)
            assert np.all(spike.threshold < shifted)  # the float32 just below: '>' is our '>='
            assert np.all(np.nextafter(spike.threshold.astype(np.float32), np.float32(np.inf)) == shifted)
            assert {(n.name, f"{n.name}.spike"), (f"{n.name}.spike", f"{n.name}.reset"),
                    (f"{n.name}.reset", n.name)} <= set(g.edges)
        elif isinstance(n, Source):
            assert np.array_equal(g.nodes[n.name].input_type["input"], pop.shapes[n.name])
    res = simulate_populations(pop, x, 4, dtype="float64")
    ref = res.outputs[-1].numpy()
    got, _ = _run_nir(g, x, 4)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)  # the simulator returns float32


def test_nir_neuron_is_exact_at_the_threshold_and_from_v0():
    """One neuron, theta = 1, v0 = 0.5, input 0.25 a step: our IF spikes at v = 1.0 exactly (steps 2, 6, 10);
    NIR's IF (reset to 0, '>', from 0) would spike at steps 5 and 10. The export spikes where we do."""
    theta = np.ones(1, np.float32)
    snn = Graph([Input("x", (), shape=(1,)), Linear("l", ("x",), weight=np.full((1, 1), 0.25, np.float32),
                                                     bias=np.zeros(1, np.float32)),
                 IF("r", ("l",), theta=theta, v0=theta / 2, bias=np.zeros((), np.float32)),
                 Linear("o", ("r",), weight=np.ones((1, 1), np.float32), bias=np.zeros(1, np.float32)),
                 Output("y", ("o",))], "one")
    pop = lower_populations(snn)
    x = np.ones((1, 1))
    g = to_nir(pop)
    for T in (2, 5, 6, 10):
        ref = simulate_populations(pop, x, T).outputs[-1].numpy()
        np.testing.assert_array_equal(_run_nir(g, x, T, dtype=torch.float32)[0], ref)
    assert _run_nir(g, x, 10)[0].item() * 10 == 3.0


def _with_burst(g: Graph, name: str, n: int) -> Graph:
    return g.replace({name: dataclasses.replace(g.nodes[name], max_spikes=n)})


def test_nir_refuses_burst_neurons():
    pop = _with_burst(_graphs(build_residual_snn)[0], "r1", 3)
    with pytest.raises(BackendError, match=r"^r1 \(IF\): burst neuron \(max_spikes=3\)"):
        to_nir(pop)


def test_nir_refuses_a_bias_that_varies_within_a_channel():
    pop, _, _ = _graphs(build_conv_chain)
    r1 = pop.nodes["r1"]
    bias = np.array(np.broadcast_to(r1.bias, pop.shapes["r1"]))
    bias[0, 0, 0] += 1.0
    bad = pop.replace({"r1": dataclasses.replace(r1, bias=bias)})
    with pytest.raises(BackendError, match=r"^r1 \(IF\): bias varies within a channel"):
        to_nir(bad)


# ------------------------------------------------------------------------------------------ netx
def _netx_params(q):
    from snncompile.backends.netx import _population_params

    return [(c, p, _population_params(q, c, p)) for c, p in chain(q)]


@pytest.mark.parametrize("build", [build_mlp_snn, build_conv_chain])
def test_netx_file_holds_the_integer_mantissas(build, tmp_path):
    _, q, _ = _graphs(build)
    [path] = get_backend("netx").write(_result(None, q), tmp_path)
    with h5py.File(path) as f:
        layers = [f[f"layer/{i}"] for i in range(len(f["layer"]))]
        kinds = [lay["type"][0].decode() for lay in layers]
        assert kinds[0] == "input" and list(layers[0]["shape"][()]) == list(q.shapes["x.src"])
        written = [lay for lay in layers if lay["type"][0] in (b"dense", b"conv")]
        for lay, (conn, pop, p) in zip(written, _netx_params(q), strict=True):
            assert lay.attrs["connection"] == conn.name and lay.attrs["weight_rel_error"] == 0.0
            assert np.array_equal(lay["weight"][()], conn.weight)  # exact: the exponent moved into v's scale
            j = lay.attrs["v_scale_log2"]
            assert j == (6 - pop.shift - conn.weight_exp if isinstance(pop, IFPop) else -conn.weight_exp)
            vth = lay["neuron/vThMant"][()]
            assert vth == (pop.theta.max() * 2.0**j if isinstance(pop, IFPop) else 2**17 - 1)
            assert lay["neuron/type"][0] == b"CUBA" and lay["neuron/iDecay"][()] == 4096
        assert f.attrs["output_scale"] == 64 * 2.0 ** written[-1].attrs["v_scale_log2"] * q.nodes[
            next(n.name for n in q.nodes.values() if isinstance(n, Readout))].scale
        assert "subtract" in f.attrs["reset"]
    if build is build_conv_chain:
        assert kinds == ["input", "conv", "conv", "flatten", "dense"]


def test_netx_refuses_non_chains_naming_the_node():
    _, q, _ = _graphs(build_residual_snn)
    with pytest.raises(BackendError, match=r"^r2 \(IF\): feeds 2 connections .*netx supports chains only"):
        get_backend("netx").evaluate(q, None, None, reference=None)


def test_netx_refuses_burst_neurons(tmp_path):
    q = _with_burst(_graphs(build_residual_snn)[1], "r1", 2)
    conn = q.nodes[q.nodes["r1"].inputs[0]]
    chain_q = Graph([q.nodes["x"], q.nodes["x.src"], conn, q.nodes["r1"],
                     DenseConn("r1->ro", ("r1",), weight=np.ones((2, 480)), out_shape=(2,), fixed=True),
                     Readout("ro", ("r1->ro",), bias=np.zeros(2), fixed=True), Output("y", ("ro",))], "burst")
    with pytest.raises(BackendError, match=r"^r1 \(IF\): burst neuron \(max_spikes=2\)"):
        write_netx(chain_q, tmp_path / "m.net")


def _import_netx(monkeypatch):
    """lava-dl's netx, or skip: lava-dl 0.6.0 pins an old torch, so it is not a project dependency."""
    try:
        found = importlib.util.find_spec("lava.lib.dl") is not None
    except ModuleNotFoundError:  # lava.lib itself is missing
        found = False
    if not found:
        pytest.skip("lava-dl is not installed (pip install --no-deps lava-dl==0.6.0 opencv-python-headless ninja)")
    from snncompile.backends.lava.compat import apply

    apply()
    if importlib.util.find_spec("torchvision") is None:  # lava-dl imports it only for object detection
        tv = types.ModuleType("torchvision")
        tv.ops, tv.transforms = types.ModuleType("torchvision.ops"), types.ModuleType("torchvision.transforms")
        for name, module in {"torchvision": tv, "torchvision.ops": tv.ops, "torchvision.transforms": tv.transforms}.items():
            monkeypatch.setitem(sys.modules, name, module)
    from lava.lib.dl import netx

    return netx


def _hard_reset_reference(q, x_int: torch.Tensor, T: int, steps) -> tuple[dict, torch.Tensor]:
    """Our integer chain with netx's neuron: hard reset to 0, fire on v > theta << 6, v starts at 0, one step
    of delay per connection, shifted sums kept exact. Returns spike trains (*shape, T) and the last readout."""
    prev = {c.inputs[0]: torch.zeros(q.shapes[c.inputs[0]], dtype=torch.float64) for c, _, _ in steps}
    v, trains, readout = {}, {p.name: [] for _, p, _ in steps}, None
    for _ in range(T):
        new = {steps[0][0].inputs[0]: x_int}
        for c, p, _ in steps:
            w, s = torch.as_tensor(c.weight, dtype=torch.float64), prev[c.inputs[0]][None]
            a = (s.reshape(1, -1) @ w.T).reshape(q.shapes[p.name]) if isinstance(c, DenseConn) else F.conv2d(
                s, w, None, c.stride, c.padding, c.dilation, c.groups)[0]
            a = a * 2.0**c.weight_exp
            b = torch.as_tensor(np.broadcast_to(p.bias, q.shapes[p.name]), dtype=torch.float64) * 2.0**p.bias_exp
            if isinstance(p, Readout):
                readout = a + b
                continue
            v[p.name] = v.get(p.name, 0.0) + a * 2.0**p.shift + b
            new[p.name] = (v[p.name] > float(p.theta.max()) * 64).double()
            v[p.name] = v[p.name] * (1 - new[p.name])
            trains[p.name].append(new[p.name])
        prev = new
    return {k: torch.stack(s, -1).numpy() for k, s in trains.items() if s}, readout


def test_netx_file_runs_in_lava_dl_like_the_hard_reset_reference(tmp_path, monkeypatch):
    netx = _import_netx(monkeypatch)
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as SourceBuffer
    from snncompile.backends.lava.compat import stop
    from snncompile.backends.lava.lower import to_lava

    _, q, x = _graphs(build_conv_chain)
    write_netx(q, tmp_path / "m.net")
    steps, T = _netx_params(q), 8
    src = next(n for n in q.nodes.values() if isinstance(n, Source))
    x_int = src.forward(torch.as_tensor(x[:1], dtype=torch.float64))[0]
    net = netx.hdf5.Network(net_config=str(tmp_path / "m.net"), input_message_bits=16)
    source = SourceBuffer(data=np.repeat(to_lava(x_int.numpy(), tuple(x_int.shape))[..., None], T, -1).astype(int))
    source.s_out.connect(net.inp)
    sinks = [Sink(shape=layer.out.shape, buffer=T) for layer in net.layers[:-1]]
    for layer, sink in zip(net.layers, sinks):
        layer.out.connect(sink.a_in)
    try:
        net.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        got = [s.data.get() for s in sinks]
        v_last = net.layers[-1].neuron.v.get()
    finally:
        stop(net)
    trains, readout = _hard_reset_reference(q, x_int, T, steps)
    for (_, pop, _), spikes in zip(steps, got):
        assert np.array_equal(spikes.transpose(2, 1, 0, 3), trains[pop.name]), pop.name  # netx is (W, H, C)
    # readout: v = 64 * 2**j * s; the bias rounded to an integer mantissa (error <= 1/2) moves v by <= 32
    np.testing.assert_allclose(v_last, readout.numpy() * 64 * 2.0 ** steps[-1][2]["j"], rtol=0, atol=32)
