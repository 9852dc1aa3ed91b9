"""--ray: shards as Ray tasks on a local 2-CPU instance; the merged report equals the single-process one.

One Ray instance for the module. The single-process reports are computed before it starts: Lava
forks its runtime, and forking a process that holds Ray's client threads is asking for trouble.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import ray

from snncompile import distributed
from snncompile.cli import main
from snncompile.data import load_npz
from snncompile.distributed import LOCAL, default_shards, evaluate_on_ray, ray_session, run_sharded
from snncompile.errors import BackendError
from snncompile.pipeline import RunConfig, compile_model, run

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "mnist_mlp.onnx"
DATA = ROOT / "examples" / "data" / "mnist_test.npz"
CALIB = ROOT / "examples" / "data" / "mnist_calib.npz"
TARGETS = ("sim-int", "lava-sim")
ARGS = ["--data", DATA, "--calib", CALIB, "--samples", 9, "-T", 4, "--method", "deng", "--calib-samples", 32]


def _cfg(target: str, data: Path = DATA) -> RunConfig:
    return RunConfig(model=MODEL, data=data, target=target, calib=CALIB, method="deng", timesteps=4,
                     calib_samples=32, samples=9, progress=False)


def _comparable(report: dict) -> str:
    """The report without what legitimately differs between runs: timings and Lava's wall time."""
    r = json.loads(json.dumps(report))
    r.pop("timing")
    if "lava" in r:
        r["lava"].pop("seconds")
    return json.dumps(r, sort_keys=True)


@pytest.fixture(scope="module")
def single() -> dict[str, str]:
    return {t: _comparable(run(_cfg(t)).report) for t in TARGETS}


@pytest.fixture(scope="module")
def cluster(single):
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def test_missing_ray_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    session = ray_session(LOCAL, None)
    with pytest.raises(BackendError, match=r"Ray is not installed; install it with pip install 'snncompile\[ray\]'"):
        session.__enter__()


def test_default_shards_one_per_worker_and_at_most_2048_samples_each():
    assert [default_shards(9, 2), default_shards(1, 4), default_shards(10_000, 2), default_shards(4096, 2)] == \
        [2, 1, 6, 2]


@pytest.mark.parametrize("target", TARGETS)
def test_three_ray_shards_equal_the_single_process_report(cluster, single, target, tmp_path):
    out = tmp_path / "out"
    assert main([str(MODEL), "--target", target, *map(str, ARGS), "--ray", "--shards", "3", "--out", str(out),
                 "-q"]) == 0
    assert _comparable(json.loads((out / "report.json").read_text())) == single[target]
    for name in ("report.md", "accuracy_vs_t.png", "activations_vs_rates.png", "compiled/manifest.json"):
        assert (out / name).is_file()


def test_a_worker_killed_once_is_retried_and_every_sample_counted(cluster, single, tmp_path, monkeypatch):
    marker = tmp_path / "killed"

    def dies_once(compiled, cfg, data):  # pickled by value: the worker runs this, then the real task
        if cfg.shard[0] == 1 and not marker.exists():
            marker.touch()
            os._exit(1)
        from snncompile.distributed import _evaluate_shard

        return _evaluate_shard(compiled, cfg, data)

    monkeypatch.setattr(distributed, "_evaluate_shard", dies_once)
    report = run_sharded(_cfg("sim-int"), shards=3, ray_address=LOCAL).report
    assert marker.exists() and report["samples"] == 9
    assert _comparable(report) == single["sim-int"]


def test_a_shard_that_keeps_failing_fails_the_run(cluster, monkeypatch):
    def always_dies(compiled, cfg, data):
        if cfg.shard[0] == 1:
            os._exit(1)
        from snncompile.distributed import _evaluate_shard

        return _evaluate_shard(compiled, cfg, data)

    monkeypatch.setattr(distributed, "_evaluate_shard", always_dies)
    with pytest.raises(RuntimeError, match=r"shard 1/3: its Ray worker died on all 2 attempts"):
        evaluate_on_ray(compile_model(_cfg("sim-int")), _cfg("sim-int"), shards=3, retries=1)


def test_a_data_error_in_one_shard_fails_the_run_with_exit_2(cluster, tmp_path, capsys):
    ref = load_npz(DATA).take(0, 9)
    x = ref.x.copy()
    x[4, 0, 10, 10] = np.inf  # in shard 1/3 (samples 3..5); read only by that shard's task
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "x.npy", x)
    np.save(tmp_path / "data" / "y.npy", ref.y)
    args = [str(a) for a in ARGS]
    args[1] = str(tmp_path / "data")
    assert main([str(MODEL), "--target", "sim-int", *args, "--ray", "--shards", "3", "--out", str(tmp_path / "o"),
                 "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "x.npy: 'x' contains 1 NaN/Inf values" in err and err.endswith("(shard 1/3)")
    assert not (tmp_path / "o").exists()
