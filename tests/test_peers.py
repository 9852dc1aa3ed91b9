"""The peer benchmark harness (benchmarks/peers/): fan-out counting against snncompile's own, and
one peer run on a tiny model when that peer's venv exists (skipped otherwise: `make test` never
needs the peers installed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "benchmarks" / "peers"
SJ_PYTHON = PEERS / ".venv-spikingjelly" / "bin" / "python"


@pytest.fixture(scope="module")
def harness():
    sys.path.insert(0, str(PEERS))
    try:
        import harness
        import protocol

        yield harness, protocol
    finally:
        sys.path.remove(str(PEERS))


def test_fanout_matches_snncompile(harness):
    """The harness's per-neuron fan-out of mnist_cnn equals snncompile's (same convention)."""
    from snncompile import load_onnx
    from snncompile.convert import convert
    from snncompile.sim import synaptic_paths

    H, P = harness
    ours = H.site_fanouts(P.load_model("mnist_cnn"))
    x = np.load(ROOT / "examples" / "data" / "mnist_calib.npz")["x"][:16]
    snn = convert(
        load_onnx(ROOT / "examples" / "mnist_cnn.onnx"), x, method="max", timesteps=4, progress=False
    )
    theirs = synaptic_paths(snn)
    assert len(ours) == len(theirs) == 3
    for (_, a), (_, b) in zip(ours.items(), theirs.items()):  # both in execution order
        assert torch.equal(a, b.reshape(a.shape))


def test_recorder_counts_multispikes(harness):
    """n spikes in one step count n; synops = spikes . fan-out; k steps folded batch-major."""
    H, _ = harness
    relu = torch.nn.ReLU()
    fan = torch.tensor([1.0, 2.0, 3.0])
    rec = H.Recorder({relu: fan}, T=2)
    rec.t0, rec.k = 0, 2
    relu(torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))  # one sample, steps 0 and 1
    rec.remove()
    assert rec.spikes.tolist() == [3.0, 1.0]
    assert rec.synops.tolist() == [5.0, 2.0]


@pytest.mark.skipif(
    not SJ_PYTHON.exists(),
    reason="SpikingJelly venv absent: run benchmarks/peers/setup_venvs.sh "
    "spikingjelly (or make bench-peers) to enable this test",
)
def test_spikingjelly_runner_tiny(tmp_path):
    """run_spikingjelly.py on mnist_mlp, 20 samples, T=4: every mode written with sane numbers."""
    env = dict(
        os.environ,
        PEERS_MODELS="mnist_mlp",
        PEERS_SAMPLES="20",
        PEERS_CALIB="100",
        PEERS_T="1,4",
        PEERS_RESULTS=str(tmp_path),
    )
    subprocess.run(
        [str(SJ_PYTHON), "run_spikingjelly.py"],
        cwd=PEERS,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    doc = json.loads((tmp_path / "spikingjelly_mnist_mlp.json").read_text())
    assert doc["T"] == [1, 4] and doc["samples"] == 20
    assert [m["mode"] for m in doc["modes"]] == ["max", "99.9%", "0.5"]
    for m in doc["modes"]:
        assert m["status"] == "ok" and m["binary"]
        assert 0.0 <= m["accuracy"][1] <= 1.0
        assert (
            0 < m["spikes_per_sample"][1] <= (256 + 128) * 4
        )  # binary: at most one spike per neuron and step
        assert m["synops_per_sample"][1] >= m["spikes_per_sample"][1]


def test_qcfs_model_reaches_the_peers_with_relu(harness):
    """mnist_qcfs goes to the peers with nn.ReLU in place of each QCFS module, same weights: its ANN is
    the QCFS network with unquantized, unclipped activations."""
    H, P = harness
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from models import QCFS, build_model
    finally:
        sys.path.remove(str(ROOT / "examples"))
    peer = P.load_model("mnist_qcfs")
    assert not any(isinstance(m, QCFS) for m in peer.modules())
    assert sum(isinstance(m, torch.nn.ReLU) for m in peer.modules()) == 3
    ref = build_model("mnist_qcfs")
    ref.load_state_dict(torch.load(ROOT / "examples" / "mnist_qcfs.pt", map_location="cpu"))
    assert all(torch.equal(a, b) for a, b in zip(peer.state_dict().values(),
                                                 (v for k, v in ref.state_dict().items() if "lam" not in k)))
    assert len(H.site_fanouts(peer)) == 3
