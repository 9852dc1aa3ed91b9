"""The Lava backend's timing pass (backends/lava/timing.py): relays only where Lava needs them.

No Lava run here (the spike-for-spike runs are in test_lava_backend.py and test_srp_targets.py):
these check the graph the pass makes, against the synchronous core graph it starts from.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from snncompile.backends.lava.timing import Relay, depths, origin, pipeline

from snncompile.artifact import load_artifact, save_artifact
from snncompile.errors import BackendError
from snncompile.ir import Graph
from snncompile.ir.populations import CONNECTIONS, ConvConn, DenseConn, identity_gain
from snncompile.lower import lower_populations
from snncompile.quantize import quantize
from snncompile.sim.popsim import simulate_populations
from tests.quantize.conftest import build_input_skip_snn, build_mlp_snn, build_residual_snn


def _graphs(build, n=8, seed=0):
    pop = lower_populations(build())
    x = np.random.default_rng(seed).uniform(0, 1, (n, *pop.shapes[pop.input.name]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pop, quantize(pop, x), x


def _spans_one_level(g: Graph) -> None:
    d = depths(g)
    for c in g.of_type(*CONNECTIONS):
        assert d[c.inputs[0]] == d[g.users(c.name)[0].name] - 1, c.name


@pytest.mark.parametrize("stage", ["float", "integer"])
def test_pipeline_equalizes_depths_with_identity_relays(stage):
    pop, q, _ = _graphs(build_residual_snn)
    g = pop if stage == "float" else q
    with pytest.raises(BackendError, match=r"^r2->r4 \(connection\): spans depth 2 -> 4"):
        depths(g)  # the core graph is synchronous: the residual skip spans two levels
    ran = pipeline(g)
    _spans_one_level(ran)
    assert [r.name for r in ran.of_type(Relay)] == ["r2.relay3"] and origin(ran, "r2.relay3") == "r2"
    ident = ran.nodes["r2->r2.relay3"]
    assert isinstance(ident, ConvConn) and ident.groups == 6 and ident.weight.shape == (6, 1, 1, 1)
    assert identity_gain(ident) == 1.0 and ident.fixed == (stage == "integer") and ident.weight_exp == 0
    # the connection after the relay is the original one, weights untouched
    after = ran.nodes["r2.relay3->r4"]
    assert after.inputs == ("r2.relay3",) and np.array_equal(after.weight, g.nodes["r2->r4"].weight)
    assert after.weight_exp == g.nodes["r2->r4"].weight_exp
    assert ran.stage == g.stage and ran.meta.get("quantization") == g.meta.get("quantization")
    assert pipeline(ran) is ran  # idempotent
    assert pipeline(pop.replace()) is not None


def test_chain_needs_no_relays():
    _, q, _ = _graphs(build_mlp_snn)
    assert pipeline(q) is q
    assert depths(q) == {"x.src": 0, "r1": 1, "l2.readout": 2}


def test_relays_pass_payloads_unchanged():
    """Identity connection + relay carry any integer payload exactly (spike counts, graded values)."""
    _, q, _ = _graphs(build_residual_snn)
    ran = pipeline(q)
    s = torch.randint(0, 256, (3, 6, 2, 3)).double()
    relay = ran.nodes["r2.relay3"]
    assert torch.equal(relay.forward(ran.nodes[relay.inputs[0]].forward(s)), s)


def test_relay_of_the_graded_input_is_a_dense_integer_identity():
    """A skip from the input: relays carry the 8-bit input values unchanged (mantissa 1, exponent 0)."""
    _, q, _ = _graphs(build_input_skip_snn)
    ran = pipeline(q)
    _spans_one_level(ran)
    assert [r.name for r in ran.of_type(Relay)] == ["x.src.relay1", "x.src.relay2"]
    for r in ran.of_type(Relay):
        ident = ran.nodes[r.inputs[0]]
        assert isinstance(ident, DenseConn) and np.array_equal(ident.weight, np.eye(4)) and ident.fixed
        assert origin(ran, r.name) == "x.src"
    s = torch.randint(-127, 256, (5, 4)).double()
    assert torch.equal(ran.nodes["x.src.relay1->x.src.relay2"].forward(s), s)


def test_identity_gain_is_one_test_for_every_identity():
    w = np.zeros((3, 3, 1, 1))
    w[[0, 1, 2], [0, 1, 2]] = 2.0
    assert identity_gain(ConvConn("c", ("s",), weight=w)) == 2.0  # 1x1, groups = 1
    assert identity_gain(ConvConn("c", ("s",), weight=np.full((3, 1, 1, 1), 2.0), groups=3)) == 2.0  # depthwise
    assert identity_gain(ConvConn("c", ("s",), weight=np.array([1.0, 2, 1]).reshape(3, 1, 1, 1), groups=3)) is None
    assert identity_gain(ConvConn("c", ("s",), weight=np.full((3, 1, 1, 1), 1.0), groups=3, stride=(2, 2))) is None
    assert identity_gain(DenseConn("d", ("s",), weight=128 * np.eye(4), out_shape=(4,), weight_exp=-7,
                                   fixed=True)) == 1.0
    assert identity_gain(DenseConn("d", ("s",), weight=np.ones((4, 4)), out_shape=(4,))) is None


def test_older_artifact_with_relays_and_depth_loads_as_the_synchronous_graph(tmp_path, caplog):
    """An artifact written when relays and depths were in the core graph (what the Lava pass makes now)."""
    _, q, x = _graphs(build_residual_snn)
    old = pipeline(q)
    old.meta["depth"] = depths(old)
    save_artifact(old, tmp_path)
    import json

    m = json.loads((tmp_path / "manifest.json").read_text())
    m["meta"]["depth"] = depths(old)  # save_artifact no longer writes depths; older ones did
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with caplog.at_level("INFO", logger="snncompile"):
        g, _ = load_artifact(tmp_path)
    assert "1 Lava delay relays" in caplog.text
    assert "depth" not in g.meta and not [n for n in g.nodes.values() if n.op == "Relay"]
    assert g.nodes["r4"].inputs == ("r2.relay3->r4", "r3->r4") and g.nodes["r2.relay3->r4"].inputs == ("r2",)
    a, b = simulate_populations(q, x, 5, dtype="float64"), simulate_populations(g, x, 5, dtype="float64")
    assert np.array_equal(a.outputs.numpy(), b.outputs.numpy()) and a.spikes == b.spikes
