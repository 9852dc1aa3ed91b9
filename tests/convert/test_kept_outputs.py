"""A conversion's kept readout (convert/kept_outputs.py) is bitwise the simulator's on those samples.

Reference: ``snncompile.simulate`` of the converted network on the whole calibration array, which the
search's and the pipeline's exit calibration ran before the kept rows were read instead.
"""

import numpy as np
import pytest
import torch

import snncompile
from snncompile.convert import convert
from snncompile.convert import kept_outputs as ko
from snncompile.convert.kept_outputs import calibration_run, keep_outputs
from snncompile.sim import simulate

from .conftest import EXAMPLES


def _mnist(n):
    return np.load(EXAMPLES / "data" / "mnist_calib.npz")["x"][:n].astype(np.float32)


@pytest.mark.parametrize("model, method, T, calib_samples, batch", [
    ("mnist_resnet", "adafire", 4, None, 256),
    ("mnist_resnet", "calib-light", 8, 200, 64),  # a random subset of the rows, another batch size
    ("mnist_cnn", "adafire+ch", 2, None, 100),
    ("mnist_concat", "calib-light+pc", 4, None, 256),
    ("mnist_mlp", "calib-wc+pc", 2, None, 256),
    ("mnist_qcfs", "calib-light", 2, None, 256),
    ("mnist_relu6", "adafire", 2, None, 50),
    ("mnist_functional", "calib-advanced", 2, None, 256),
    ("keras_cnn", "calib-light", 2, None, 256),
])
def test_kept_rows_are_the_simulators(model, method, T, calib_samples, batch):
    ann = snncompile.load_onnx(EXAMPLES / f"{model}.onnx")
    x = _mnist(300)
    with keep_outputs() as kept:
        snn = convert(ann, x, method=method, timesteps=T, progress=False, calib_samples=calib_samples)
    assert len(kept) == 1
    rows = next(iter(kept.values()))[0]
    assert len(rows) == 128 and len(set(rows.tolist())) == len(rows)  # the methods' default subset
    if calib_samples is not None:
        assert rows.max() >= 128  # the rows of the given array, not the first ones
    full = simulate(snn, x, T, batch_size=batch).outputs
    got = calibration_run(snn, x, T, kept, batch_size=batch)
    assert torch.equal(got.outputs, full)
    assert not kept  # used up


def test_kept_rows_are_used_only_for_their_network_and_samples(monkeypatch):
    ann = snncompile.load_onnx(EXAMPLES / "mnist_cnn.onnx")
    x = _mnist(200)
    calls = []
    from snncompile import sim  # calibration_run imports simulate from here when it runs

    orig = sim.simulate

    def counted(snn, xs, *a, **k):
        calls.append(len(xs))
        return orig(snn, xs, *a, **k)

    monkeypatch.setattr(sim, "simulate", counted)
    with keep_outputs() as kept:
        snn = convert(ann, x, method="calib-light", timesteps=4, progress=False)
    other = convert(ann, x, method="calib-light", timesteps=2, progress=False)  # not collected: no keep_outputs
    assert len(kept) == 1 and not ko.collecting()
    entry = dict(kept)
    # another network: everything simulated, the entry left for its own network
    assert torch.equal(calibration_run(other, x, 2, kept).outputs, orig(other, x, 2).outputs)
    assert calls == [200] and len(kept) == 1
    # other samples than the conversion's (one row changed): everything simulated
    y = x.copy()
    y[int(entry[next(iter(entry))][0][0])] += 0.5
    assert torch.equal(calibration_run(snn, y, 4, kept).outputs, orig(snn, y, 4).outputs)
    assert calls == [200, 200]
    # the right network and samples: only the 72 rows the conversion did not simulate
    assert torch.equal(calibration_run(snn, x, 4, dict(entry)).outputs, orig(snn, x, 4).outputs)
    assert calls == [200, 200, 72]
    # another T than the conversion's, or a GPU on either side: everything simulated
    assert torch.equal(calibration_run(snn, x, 2, dict(entry)).outputs, orig(snn, x, 2).outputs)
    key, (rows, xs, head, _) = next(iter(entry.items()))
    assert torch.equal(calibration_run(snn, x, 4, {key: (rows, xs, head, torch.device("cuda"))}).outputs,
                       orig(snn, x, 4).outputs)
    assert calls == [200, 200, 72, 200, 200]


def test_search_scores_the_same_with_and_without_kept_rows(monkeypatch):
    """The search's exit candidates (calibrated on the calibration samples) are scored identically whether
    the conversions' rows are read or every calibration sample is simulated."""
    from snncompile import sim
    from snncompile.search import search

    ann = snncompile.load_onnx(EXAMPLES / "mnist_cnn.onnx")
    data = np.load(EXAMPLES / "data" / "mnist_calib.npz")
    x, y = data["x"].astype(np.float32), data["y"]
    kw = {"methods": ("calib-light", "adafire"), "grid": (2, 4), "progress": False, "exhaustive": True,
              "early_exit": {"rule": "both", "metric": "entropy", "max_error": 0.002}, "exit_searched": True}
    sizes, orig, real = [], sim.simulate, ko.calibration_run

    def counted(snn, xs, *a, **k):
        sizes.append(len(xs))
        return orig(snn, xs, *a, **k)

    def scores():
        res = search(ann, x[:256], x[256:400], y[256:400], snncompile.energy.load_constants("horowitz45nm"), **kw)
        assert any(c.early_exit for c in res.candidates)
        return [(c.method, c.timesteps, c.early_exit, c.accuracy, c.mean_steps, c.energy,
                 None if c.policy is None else tuple(c.policy["thresholds"])) for c in res.candidates]

    monkeypatch.setattr(sim, "simulate", counted)
    with_rows = scores()
    assert sorted(set(sizes)) == [128, 144]  # validation runs, and the calibration rows no conversion simulated
    sizes.clear()
    monkeypatch.setattr(ko, "calibration_run", lambda snn, xs, T, kept=None, **k: real(snn, xs, T, None, **k))
    assert scores() == with_rows
    assert sorted(set(sizes)) == [144, 256]


def test_nothing_is_kept_where_no_calibration_run_reads_it(monkeypatch):
    """With the exit thresholds calibrated on the validation samples (or no early exit) the conversions'
    readouts are not collected: no digest, copy or extra readout for a run that never comes."""
    from snncompile.search import search

    made = []
    real = ko.kept_entry
    monkeypatch.setattr(ko, "kept_entry", lambda *a, **k: made.append(1) or real(*a, **k))
    ann = snncompile.load_onnx(EXAMPLES / "mnist_mlp.onnx")
    x = _mnist(300)
    for on_val, early_exit in ((True, {"rule": "both", "metric": "entropy", "max_error": 0.002}), (False, None)):
        search(ann, x[:200], x[200:], None, snncompile.energy.load_constants("horowitz45nm"),
               methods=("calib-light", "adafire"), grid=(2,), progress=False, early_exit=early_exit,
               exit_on_validation=on_val)
    assert made == []
    search(ann, x[:200], x[200:], None, snncompile.energy.load_constants("horowitz45nm"),
           methods=("calib-light", "adafire"), grid=(2,), progress=False,
           early_exit={"rule": "both", "metric": "entropy", "max_error": 0.002})
    assert len(made) == 2  # calibrated on the calibration samples: each conversion's rows are kept

