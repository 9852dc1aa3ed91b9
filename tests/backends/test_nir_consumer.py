"""The exported model.nir runs the same in a NIR consumer outside snncompile (issue 17, item 7).

The consumer (benchmarks/peers/run_nir.py) runs in its own venv, benchmarks/peers/.venv-nir
(``benchmarks/peers/setup_venvs.sh nir``: torch 2.13.0, nir 1.0.8, nirtorch 2.6, snnTorch 1.0.0;
no snncompile): ``nir.read``, ``nirtorch.nir_to_torch`` with snnTorch's NIR import for the
synaptic nodes. Skipped when that venv is absent, so ``make test`` never needs it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nir
import numpy as np
import pytest
from snncompile.backends import get_backend
from snncompile.backends.nir import to_nir

from snncompile.convert.for_target import method_for_target
from snncompile.ir.populations import IFPop
from snncompile.pipeline import RunConfig, run
from snncompile.report import derive
from snncompile.sim.popsim import simulate_populations
from tests.backends.test_exports import _graphs, build_conv_chain
from tests.quantize.conftest import build_mlp_snn, build_residual_snn

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "benchmarks" / "peers"
PYTHON = PEERS / ".venv-nir" / "bin" / "python"

pytestmark = pytest.mark.skipif(not PYTHON.exists(), reason="no NIR consumer venv (benchmarks/peers/setup_venvs.sh nir)")


def _consume(graph, x: np.ndarray, y: np.ndarray | None, T: int, tmp: Path):
    """Write ``graph`` and ``x``, run the consumer on them; (summary, mean outputs (N, K), spikes per node)."""
    nir.write(tmp / "model.nir", graph)
    np.savez(tmp / "data.npz", x=x.astype(np.float32), **({} if y is None else {"y": y}))
    cmd = [str(PYTHON), str(PEERS / "run_nir.py"), str(tmp / "model.nir"), str(tmp / "data.npz"), "-T", str(T),
           "--out", str(tmp / "out.json"), "--logits", str(tmp / "logits.npy"), "--spikes", str(tmp / "spikes.npz")]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin"})
    with np.load(tmp / "spikes.npz") as s:
        spikes = dict(s)
    return json.loads((tmp / "out.json").read_text()), np.load(tmp / "logits.npy"), spikes


@pytest.mark.parametrize("build", [build_mlp_snn, build_residual_snn, build_conv_chain])
def test_consumer_runs_the_export_like_the_population_simulator(build, tmp_path):
    pop, _, x = _graphs(build, n=8, seed=1)
    T = 12
    res = simulate_populations(pop, x, T)
    summary, logits, spikes = _consume(to_nir(pop), x, None, T, tmp_path)
    np.testing.assert_allclose(logits, res.outputs[-1].numpy(), rtol=1e-5, atol=1e-5)
    for p in pop.of_type(IFPop):
        np.testing.assert_array_equal(spikes[f"{p.name}.spike"], res.layer_spike_counts[p.name])
    assert summary["spikes_per_sample"] == pytest.approx(sum(res.spikes.values()) / len(x))


def test_mnist_cnn_default_options_consumer_reproduces_sim(tmp_path):
    """The acceptance run, on 200 test samples: `--target nir` with default options (the method the
    backend's supports choose), T = 32; the consumer's accuracy is within 0.5 pt of `sim`'s."""
    method, options = method_for_target("nir", get_backend("nir").supports)
    n = 200
    cfg = RunConfig(model=ROOT / "examples" / "mnist_cnn.onnx", data=ROOT / "examples" / "data" / "mnist_test.npz",
                    calib=ROOT / "examples" / "data" / "mnist_calib.npz", target="nir", method=method, timesteps=32,
                    method_options=options, samples=n, progress=False)
    result = run(cfg)
    sim = derive(result.report)
    with np.load(cfg.data) as d:
        x, y = d["x"][:n], d["y"][:n]
    summary, logits, spikes = _consume(to_nir(result.pop_float), x, y, cfg.timesteps, tmp_path)
    assert abs(summary["accuracy"] - sim["accuracy"]["snn_float"]) <= 0.005
    ref = simulate_populations(result.pop_float, x, cfg.timesteps)
    assert np.array_equal(logits.argmax(1), ref.predictions())
    for p in result.pop_float.of_type(IFPop):  # float32 sums in another order: a few neurons may differ
        got, want = spikes[f"{p.name.strip('/').replace('/', '.')}.spike"].sum(), ref.layer_spike_counts[p.name].sum()
        assert abs(got - want) <= 1e-4 * want
