"""--data as a directory: x.npy/y.npy (memory-mapped) or .npz shards, read lazily; runs on it equal the .npz run."""

from __future__ import annotations

import itertools
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from snncompile.data import Samples, load_npz
from snncompile.distributed import run_sharded
from snncompile.errors import DataError
from snncompile.pipeline import RunConfig, run

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "mnist_mlp.onnx"
DATA = ROOT / "examples" / "data" / "mnist_test.npz"
CALIB = ROOT / "examples" / "data" / "mnist_calib.npz"
CUTS = (0, 70, 71, 200)  # three shards of 70, 1 and 129 samples


def _pixels(x: np.ndarray) -> np.ndarray:
    return (x * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def ref():
    return load_npz(DATA).take(0, CUTS[-1])


@pytest.fixture(scope="module")
def sources(ref, tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("data")
    pair, shards = base / "pair", base / "shards"
    pair.mkdir()
    shards.mkdir()
    np.save(pair / "x.npy", ref.x)
    np.save(pair / "y.npy", ref.y)
    for i, (a, b) in enumerate(itertools.pairwise(CUTS)):  # integer pixels: converted to float32 when read
        np.savez(shards / f"part{i:02d}.npz", x=_pixels(ref.x[a:b]), y=ref.y[a:b])
    return {"pair": pair, "shards": shards}


@pytest.mark.parametrize("kind", ["pair", "shards"])
def test_directory_reads_like_the_arrays_and_pickles_as_a_reference(ref, sources, kind):
    d = load_npz(sources[kind])
    x = ref.x if kind == "pair" else _pixels(ref.x).astype(np.float32)
    assert isinstance(d.x, Samples) and len(d) == CUTS[-1] and np.array_equal(d.y, ref.y)
    part = d.take(50, 150).take(15, 30)  # samples 65..79: across the 70 / 71 file boundaries
    assert part.x.shape == (15, 1, 28, 28) and part.x.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(part.x), x[65:80])
    np.testing.assert_array_equal(part.x[4:7], x[69:72])
    wire = pickle.dumps(part)
    assert len(wire) < 2000
    np.testing.assert_array_equal(np.asarray(pickle.loads(wire).x), x[65:80])


def test_bad_directories_raise_one_line_data_errors(ref, tmp_path):
    with pytest.raises(DataError, match="neither x.npy nor .npz"):
        load_npz(tmp_path)
    np.savez(tmp_path / "a.npz", x=ref.x[:3], y=ref.y[:3])
    np.savez(tmp_path / "b.npz", x=ref.x[:3])
    with pytest.raises(DataError, match="some .npz shards have 'y'"):
        load_npz(tmp_path)
    np.savez(tmp_path / "b.npz", x=ref.x[:3, :, :27], y=ref.y[:3])
    with pytest.raises(DataError, match=r"per-sample shape \(1, 27, 28\)"):
        load_npz(tmp_path)
    bad = ref.x[:6].copy()
    bad[4, 0, 3, 3] = np.nan
    np.savez(tmp_path / "b.npz", x=bad, y=ref.y[:6])
    d = load_npz(tmp_path)  # samples are checked when read, not when listed
    np.asarray(d.take(0, 7).x)
    with pytest.raises(DataError, match=r"b.npz: 'x' contains 1 NaN/Inf values among samples 0..5 of this file"):
        np.asarray(d.x)


def _cfg(data: Path, samples: int = 9) -> RunConfig:
    return RunConfig(model=MODEL, data=data, target="sim-int", calib=CALIB, method="deng", timesteps=4,
                     calib_samples=32, samples=samples, progress=False)


def _comparable(report: dict) -> str:
    r = json.loads(json.dumps(report))
    r.pop("timing")
    return json.dumps(r, sort_keys=True)


def test_memmap_run_and_local_shards_equal_the_npz_run(sources):
    single = run(_cfg(DATA)).report
    assert _comparable(run(_cfg(sources["pair"])).report) == _comparable(single)
    sharded = run_sharded(_cfg(sources["pair"]), shards=3).report
    assert sharded["samples"] == 9 and _comparable(sharded) == _comparable(single)
