"""The method x T search (snncompile/search.py, issue 19) on the example MLP: what it chooses, what it
fixes, that it is deterministic, that it deploys what a fixed run builds, and its report section."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from PIL import Image

from snncompile import load_onnx
from snncompile.convert import convert
from snncompile.energy import estimate, load_constants
from snncompile.evaluate import ann_macs, input_macs
from snncompile.ir import IF
from snncompile.report import render_markdown, schema, write_plots
from snncompile.search import search
from snncompile.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "mnist_mlp.onnx"
DATA = ROOT / "examples" / "data" / "mnist_test.npz"
CALIB = ROOT / "examples" / "data" / "mnist_calib.npz"
GRID = (1, 2, 4)
METHODS = ("deng", "calib-light")
E = load_constants("horowitz45nm")


@pytest.fixture(scope="module")
def setup():
    ann = load_onnx(MODEL)
    with np.load(CALIB) as f:
        x, y = f["x"], f["y"]
    return ann, x[:64], x[64:224], y[64:224]


@pytest.fixture(scope="module")
def full(setup):
    """Every candidate converted (no pruning), 2 methods x 3 T."""
    ann, cx, vx, vy = setup
    return search(ann, cx, vx, vy, E, methods=METHODS, grid=GRID, max_drop=1.0, progress=False, exhaustive=True)


def _thetas(g):
    return {n.name: np.asarray(n.theta).tolist() for n in g.of_type(IF)}


def test_candidates_are_scored_like_a_fixed_conversion(setup, full):
    """Each candidate's accuracy, spikes and energy are those of converting and simulating it alone."""
    ann, cx, vx, vy = setup
    assert [(c.method, c.timesteps) for c in full.candidates] == [(m, t) for m in METHODS for t in GRID]
    assert full.ann_accuracy == pytest.approx(float((ann.run(vx).argmax(-1).numpy() == vy).mean()))
    c = next(c for c in full.candidates if (c.method, c.timesteps) == ("calib-light", 2))
    torch.manual_seed(0)
    snn = convert(ann, cx, method="calib-light", timesteps=2, progress=False)
    res = simulate(snn, vx, 2)
    assert c.accuracy == pytest.approx(float(res.accuracy_vs_t(vy)[-1]))
    assert c.spikes == pytest.approx(res.total_spikes_per_sample())
    want = estimate(E, ann_macs=ann_macs(ann), synops=res.total_synops_per_sample(),
                    spikes=res.total_spikes_per_sample(), neuron_updates=sum(res.neurons.values()) * 2,
                    input_macs=input_macs(ann))  # the analog input's first layer: MACs once per sample
    assert c.energy == pytest.approx(want["snn_joules_per_sample"])
    # only the chosen candidate keeps its SNN: the one a fixed conversion of its method and T builds
    assert [k for k in full.candidates if k.snn is not None] == [full.chosen]
    torch.manual_seed(0)
    fixed = convert(ann, cx, method=full.chosen.method, timesteps=full.chosen.timesteps, progress=False)
    assert _thetas(full.chosen.snn) == _thetas(fixed)


def test_energy_picks_the_cheapest_within_budget(full, setup):
    for c in full.candidates:
        assert c.drop == pytest.approx(full.ann_accuracy - c.accuracy)
    ok = [c for c in full.candidates if c.drop + c.drop_se <= 0.01 + 1e-9]
    assert ok, "the example MLP reaches the budget at some T <= 4"
    assert [c.within_budget for c in full.candidates] == [c in ok for c in full.candidates]
    assert full.chosen.within_budget and full.chosen.energy == min(c.energy for c in ok)
    # a cheaper candidate exists outside the budget: the budget, not the energy alone, decided
    assert min(c.energy for c in full.candidates) < full.chosen.energy
    # pruning larger T of a method that met the budget leaves the choice unchanged here
    ann, cx, vx, vy = setup
    pruned = search(ann, cx, vx, vy, E, methods=METHODS, grid=GRID, progress=False)
    assert (pruned.chosen.method, pruned.chosen.timesteps) == (full.chosen.method, full.chosen.timesteps)
    done = {(c.method, c.timesteps) for c in pruned.candidates}
    assert all((s["method"], s["timesteps"]) not in done for s in pruned.skipped)
    assert len(done) + len(pruned.skipped) == len(METHODS) * len(GRID)


def test_budget_margin_is_the_paired_standard_error():
    """drop = (b - c)/n, se = sqrt(((b + c)/n - drop^2)/n): the mnist_cnn calib-light T=1 case."""
    from snncompile.search import _paired_drop

    ann_ok = np.ones(244, bool)
    ann_ok[:5] = False  # the ANN misses 5
    snn_ok = ann_ok.copy()
    snn_ok[10:13] = False  # b = 3: only the ANN is right
    snn_ok[0] = True  # c = 1: only the SNN is right
    drop, se = _paired_drop(ann_ok, snn_ok)
    d = np.asarray(ann_ok, float) - np.asarray(snn_ok, float)
    assert drop == pytest.approx(2 / 244) == pytest.approx(d.mean())
    assert se == pytest.approx(d.std() / np.sqrt(244)) == pytest.approx(0.00818, abs=1e-5)


def test_latency_and_accuracy_objectives(setup, full):
    ann, cx, vx, vy = setup
    lat = search(ann, cx, vx, vy, E, objective="latency", methods=METHODS, grid=GRID, progress=False)
    assert lat.chosen.within_budget
    assert lat.chosen.steps == min(c.steps for c in full.candidates if c.within_budget)
    acc = search(ann, cx, vx, vy, E, objective="accuracy", methods=METHODS, grid=GRID, progress=False)
    assert acc.chosen.accuracy == max(c.accuracy for c in full.candidates)
    assert not acc.skipped  # the most accurate needs every candidate


def test_no_candidate_in_budget_deploys_the_most_accurate(setup):
    ann, cx, vx, vy = setup
    with pytest.warns(UserWarning, match="no candidate is within --max-drop 0"):
        r = search(ann, cx, vx, vy, E, methods=("max",), grid=(1, 2), max_drop=0.0, progress=False)
    assert not r.in_budget and r.chosen.accuracy == max(c.accuracy for c in r.candidates)


def test_fixed_t_and_fixed_method(setup):
    ann, cx, vx, vy = setup
    at2 = search(ann, cx, vx, vy, E, timesteps=2, methods=METHODS, progress=False)
    assert {c.timesteps for c in at2.candidates} == {2} and {c.method for c in at2.candidates} == set(METHODS)
    assert at2.fixed == {"method": None, "timesteps": 2}
    deng = search(ann, cx, vx, vy, E, method="deng", grid=GRID, objective="accuracy", progress=False)
    assert {c.method for c in deng.candidates} == {"deng"} and [c.timesteps for c in deng.candidates] == list(GRID)


def test_t_independent_method_is_read_from_one_run(setup):
    """'max' thresholds do not depend on T: one conversion and simulation at T=4 serve T=1, 2, 4, and
    each read equals converting and simulating for that T alone."""
    ann, cx, vx, vy = setup
    r = search(ann, cx, vx, vy, E, method="max", grid=GRID, objective="accuracy", progress=False)
    for c in r.candidates:
        snn = convert(ann, cx, method="max", timesteps=c.timesteps, progress=False)
        res = simulate(snn, vx, c.timesteps)
        assert c.accuracy == pytest.approx(float(res.accuracy_vs_t(vy)[-1]))
        assert c.spikes == pytest.approx(res.total_spikes_per_sample())
        if c is r.chosen:
            assert c.snn.meta["timesteps"] == c.timesteps and _thetas(c.snn) == _thetas(snn)


def test_deterministic_for_a_seed(setup):
    ann, cx, vx, vy = setup
    runs = [search(ann, cx, vx, vy, E, methods=METHODS, grid=(1, 2), seed=3, progress=False) for _ in range(2)]
    strip = [[{k: v for k, v in c.as_dict().items() if k != "seconds"} for c in r.candidates] for r in runs]
    assert strip[0] == strip[1]
    assert _thetas(runs[0].chosen.snn) == _thetas(runs[1].chosen.snn)


def test_without_labels_accuracy_is_agreement_with_the_ann(setup):
    ann, cx, vx, _ = setup
    r = search(ann, cx, vx, None, E, method="deng", grid=(4,), max_drop=5.0, progress=False)
    snn = convert(ann, cx, method="deng", timesteps=4, progress=False)
    agree = simulate(snn, vx, 4).predictions()[-1].numpy() == ann.run(vx).argmax(-1).numpy()
    assert r.reference == "ann" and r.ann_accuracy == 1.0 and r.chosen.accuracy == pytest.approx(agree.mean())


def test_bad_objective_and_budget_are_data_errors(setup):
    from snncompile.errors import DataError

    ann, cx, vx, vy = setup
    with pytest.raises(DataError, match="--optimize 'speed'"):
        search(ann, cx, vx, vy, E, objective="speed", progress=False)
    with pytest.raises(DataError, match="--max-drop"):
        search(ann, cx, vx, vy, E, max_drop=float("nan"), progress=False)


def _run(tmp_path, **kw):
    from snncompile.pipeline import RunConfig, run

    cfg = RunConfig(model=MODEL, data=DATA, calib=CALIB, samples=50, calib_samples=64, progress=False, **kw)
    return cfg, run(cfg)


def test_pipeline_deploys_the_chosen_candidate_and_reports_the_search(tmp_path, caplog):
    """--method deng (T searched): the report's method/T are the chosen candidate's, the deployed SNN is
    what `--method deng -T <chosen>` builds, and the search section validates against the schema and
    renders into report.md and frontier.png."""
    with caplog.at_level(logging.INFO, logger="snncompile"):
        cfg, res = _run(tmp_path, method="deng")
    r = res.report
    s = r["search"]
    jsonschema.validate(json.loads(json.dumps(r)), schema())
    assert (r["method"], r["timesteps"]) == (s["chosen"]["method"], s["chosen"]["timesteps"]) == ("deng", cfg.timesteps)
    assert s["fixed"] == {"method": "deng", "timesteps": None} and s["objective"] == "energy"
    assert [c["timesteps"] for c in s["candidates"]] == sorted(c["timesteps"] for c in s["candidates"])
    assert "after the 64 calibration samples" in caplog.text and "mnist_calib.npz[64:500]" in s["validation"]
    assert s["validation_samples"] == 436 and "search_s" in r["timing"]
    rule = s["chosen"]["early_exit"]  # early exit is searched by default: the fixed run asks for the chosen one
    assert {c["early_exit"] for c in s["candidates"]} == {None, "iat", "precision", "both"}
    _, fixed = _run(tmp_path, method="deng", timesteps=cfg.timesteps, early_exit=rule)
    assert "search" not in fixed.report
    assert _thetas(res.snn) == _thetas(fixed.snn)
    assert fixed.report["accuracy"] == r["accuracy"] and fixed.report["spikes_per_sample"] == r["spikes_per_sample"]
    md = render_markdown(r)
    assert "## Search" in md and "**(chosen)**" in md
    paths = write_plots(r, tmp_path)
    assert tmp_path / "frontier.png" in paths
    with Image.open(tmp_path / "frontier.png") as im:
        assert im.format == "PNG" and im.size[0] > 100


def test_no_flags_searches_energy_and_says_so(tmp_path, capsys):
    """Neither --optimize, -T nor --method: the default search (energy, --max-drop 1.0), with a log line."""
    from snncompile.cli import main

    out = tmp_path / "o"
    rc = main([str(MODEL), "--data", str(DATA), "--calib", str(CALIB), "--samples", "30", "--calib-samples", "64",
               "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "no --optimize, -T or --method: searching method x T for the least energy" in err
    assert "search (energy, --max-drop 1): " in err
    r = json.loads((out / "report.json").read_text())
    assert r["search"]["objective"] == "energy" and r["search"]["max_drop"] == 1.0
    assert r["search"]["fixed"] == {"method": None, "timesteps": None}
    assert (out / "frontier.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["--max-drop", "-1"], "--max-drop -1.0"),
    (["--optimize", "speed"], "--optimize: invalid choice"),
])
def test_cli_rejects_bad_search_options(tmp_path, capsys, args, message):
    from snncompile.cli import main

    try:  # argparse's own errors exit through SystemExit, ours return the status
        rc = main([str(MODEL), "--data", str(DATA), "--calib", str(CALIB), "--out", str(tmp_path / "o"), "-q", *args])
    except SystemExit as e:
        rc = e.code
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_small_calibration_source_splits_the_calibration_set():
    """Fewer than 100 samples after the calibration ones: the last quarter of the calibration samples
    validates, the first three quarters calibrate (every candidate and the deployed SNN), with a warning."""
    from snncompile.pipeline import RunConfig, compile_model

    cfg = RunConfig(model=MODEL, data=DATA, calib=CALIB, samples=10, calib_samples=480, method="deng",
                    objective="latency", progress=False)
    with pytest.warns(UserWarning, match=r"only 20 samples follow the 480 calibration samples .* the last 120 of "
                                         r"them validate"):
        c = compile_model(cfg)
    assert c.search["validation_samples"] == 120 and "[360:480]" in c.search["validation"]
    assert "[0:360]" in c.search["validation"] and cfg.timesteps == c.search["chosen"]["timesteps"]


def _fresh_key(counter, snn) -> str:
    return str(next(counter))  # every network is new: nothing is identical


def test_identical_conversions_share_their_runs(monkeypatch):
    """mnist_qcfs: adafire and adafire+ch convert to calib-light's network (theta = the QCFS lambda), so
    their validation runs are calib-light's, simulated once per T: the same candidates,
    the same choice and the same deployed network as with every conversion simulated on its own."""
    import functools
    import itertools

    import snncompile.search as search_mod
    from snncompile import sim

    _key = search_mod._network_key

    ann = load_onnx(ROOT / "examples" / "mnist_qcfs.onnx")
    with np.load(CALIB) as f:
        x, y = f["x"], f["y"]
    calls = []
    real = sim.simulate
    monkeypatch.setattr(sim, "simulate", lambda *a, **k: calls.append(a[2]) or real(*a, **k))

    def run(on_val):
        calls.clear()
        r = search(ann, x[:64], x[64:224], y[64:224], E, methods=("calib-light", "adafire", "adafire+ch"),
                   grid=(1, 2), max_drop=5.0, exhaustive=True, progress=False, exit_searched=True,
                   early_exit={"rule": "both", "metric": "entropy", "max_error": 0.002}, exit_on_validation=on_val)
        return r, [{k: v for k, v in c.as_dict().items() if k != "seconds"} for c in r.candidates], len(calls)

    # per T: one validation run; without on_val the exit thresholds read the calibration run, whose 64 samples
    # every conversion here simulated itself (convert/kept_outputs.py): nothing more is simulated for it
    for on_val, runs in ((False, 1), (True, 1)):
        monkeypatch.setattr(search_mod, "_network_key", _key)
        shared, shared_rows, shared_sims = run(on_val)
        monkeypatch.setattr(search_mod, "_network_key", functools.partial(_fresh_key, itertools.count()))
        alone, alone_rows, alone_sims = run(on_val)
        assert shared_rows == alone_rows and len(shared_rows) == 2 * 3 * 4  # (T, method) x (full T + 3 rules)
        assert (shared.chosen.method, shared.chosen.timesteps) == (alone.chosen.method, alone.chosen.timesteps)
        assert _thetas(shared.chosen.snn) == _thetas(alone.chosen.snn)
        assert (shared_sims, alone_sims) == (2 * runs, 2 * 3 * runs)  # once per T, or once per method and T


def test_energy_pruning_lets_cheap_exits_reach_the_next_T():
    """A method whose full-T energy at T exceeds the best within budget is not converted at a larger T,
    unless one of its exit candidates at T is cheaper than the best: then up to twice the smallest T
    within budget (mnist_resnet: adafire T = 8 with exit, after adafire+ch T = 4 met the budget)."""
    from snncompile.search import Candidate, _prune

    def cand(method, T, energy, ok=False, rule=None):
        return Candidate(method, T, 0.9, 0.0, 0.0, energy, T, 0.0, within_budget=ok, early_exit=rule)

    best = cand("adafire+ch", 4, 1.0, ok=True, rule="iat")
    full, cheap_exit, dear_exit = cand("adafire", 4, 1.2), cand("adafire", 4, 0.8, rule="both"), \
        cand("adafire", 4, 1.1, rule="iat")
    done = [cand("adafire+ch", 4, 3.0), best, full, cheap_exit]
    assert _prune("energy", "adafire", 8, [full, cheap_exit], done) is None
    assert "T > 2 x 4" in _prune("energy", "adafire", 16, [full, cheap_exit], done)
    assert "energy grows with T" in _prune("energy", "adafire", 8, [full, dear_exit], done)
    assert _prune("energy", "adafire", 8, [cand("adafire", 4, 0.9)], done) is None  # cheaper at full T
    top = cand("calib-light", 2, 0.5, ok=True)  # the best is a full-T candidate: its method may exit at 2T
    same = cand("calib-light", 2, 0.5, rule="both")
    assert "met the budget" in _prune("energy", "calib-light", 4, [top], [top])  # not scored with early exit
    assert _prune("energy", "calib-light", 4, [top, same], [top, same]) is None
    assert "met the budget" in _prune("energy", "calib-light", 8, [top, same], [top, same])
    # the cheapest within budget is the method's own exit candidate, no sibling rule is cheaper: extended too
    full_a, iat_a, prec_a = cand("a", 4, 2.0), cand("a", 4, 1.0, ok=True, rule="iat"), cand("a", 4, 1.2, rule="precision")
    assert _prune("energy", "a", 8, [full_a, iat_a, prec_a], [full_a, iat_a, prec_a]) is None
    assert "met the budget" in _prune("energy", "a", 16, [full_a, iat_a, prec_a], [full_a, iat_a, prec_a])
    # a fixed --early-exit rule (exit candidates only): cheaper than the cheapest, still bounded by 2 x 4
    only = cand("b", 32, 0.5, rule="iat")
    assert _prune("energy", "b", 8, [cand("b", 4, 0.5, rule="iat")], [iat_a]) is None
    assert "T > 2 x 4" in _prune("energy", "b", 64, [only], [iat_a, only])
    assert _prune("accuracy", "adafire", 64, [full], done) is None


def test_validation_file_serves_the_search_and_early_exit(tmp_path):
    """--validation: the search scores on that file's samples (the calibration source is not split), a fixed
    run with --early-exit calibrates its thresholds there; refused when nothing reads it or when it is the
    evaluation data, and its samples must fit the model."""
    from snncompile.errors import DataError
    from snncompile.pipeline import RunConfig, compile_model

    val = tmp_path / "val.npz"
    with np.load(ROOT / "examples" / "data" / "mnist_val.npz") as f:
        np.savez_compressed(val, x=f["x"][:120], y=f["y"][:120])
    kw = {"model": MODEL, "data": DATA, "calib": CALIB, "samples": 20, "calib_samples": 64, "progress": False}
    c = compile_model(RunConfig(validation=val, timesteps=4, **kw))
    assert c.search["validation_samples"] == 120 and str(val) in c.search["validation"]
    assert c.search["early_exit"]["calibration"] == "120 validation samples" and c.search["early_exit"]["folds"] == 4
    ee = c.snn.meta.get("early_exit")  # the chosen candidate's exit policy, if it exits early
    assert ee is None or ee["calibration"].startswith(f"120 validation samples {val}")
    fixed = compile_model(RunConfig(validation=val, timesteps=4, method="deng", early_exit="precision", **kw))
    assert fixed.snn.meta["early_exit"]["calibration"].startswith(f"120 validation samples {val}")
    assert c.search["early_exit"]["folds"] == 4  # the search's exit candidates: calibrated there, cross-fitted
    with pytest.raises(DataError, match="nothing reads it"):
        compile_model(RunConfig(validation=val, timesteps=4, method="deng", **kw))
    with pytest.raises(DataError, match="is the evaluation data"):
        compile_model(RunConfig(validation=DATA, timesteps=4, **kw))
    with pytest.raises(DataError, match="is the calibration data"):
        compile_model(RunConfig(validation=CALIB, timesteps=4, **kw))
    folder = tmp_path / "valdir"  # a folder of x.npy/y.npy is read whole by load_npz: capped at 1000 here
    folder.mkdir()
    with np.load(ROOT / "examples" / "data" / "mnist_val.npz") as f:
        np.save(folder / "x.npy", np.concatenate([f["x"], f["x"][:200]]))
        np.save(folder / "y.npy", np.concatenate([f["y"], f["y"][:200]]))
    from snncompile.data import load_npz
    from snncompile.pipeline import _split

    _, calib_part, val_part = _split(RunConfig(validation=folder, timesteps=4, **kw), load_npz(DATA))
    assert (len(calib_part), len(val_part)) == (64, 1000)
    bad = tmp_path / "bad.npz"
    np.savez_compressed(bad, x=np.zeros((10, 3, 8, 8), np.float32))
    with pytest.raises(DataError):
        compile_model(RunConfig(validation=bad, timesteps=4, **kw))


def test_exit_scores_are_cross_fitted_on_validation():
    """With exit_on_validation each fold exits by thresholds calibrated on the other folds: scrambling the
    reference of fold 0 leaves fold 0's exit steps as they were (and changes the thresholds that the other
    folds and the deployed policy get); the deployed policy is the one calibrated on every sample."""
    from types import SimpleNamespace

    from snncompile.search import _with_exit
    from snncompile.sim.early_exit import policy_from_outputs

    g = torch.Generator().manual_seed(0)
    T, n, k = 6, 48, 4
    outputs = torch.cumsum(torch.randn(T, n, 10, generator=g), 0) / torch.arange(1, T + 1).view(-1, 1, 1)
    r = SimpleNamespace(outputs=outputs, trace={"l": torch.ones(T, n, 2)}, pre_steps=0, num_samples=n)
    ref = outputs[-1].argmax(-1).numpy()
    opts = {"metric": "entropy", "max_error": 0.05, "folds": k, "calibration": f"{n} validation samples"}
    for rule in ("iat", "precision", "both"):
        pred, mean_steps, policy, spikes, _ = _with_exit(r, None, (opts, ref), rule)
        assert policy["thresholds"] == list(policy_from_outputs(outputs, ref, rule, metric="entropy",
                                                                max_error=0.05).thresholds)
        assert spikes == pytest.approx(mean_steps)  # one spike per step and sample, counted to each exit
        fold0 = np.arange(n) % k == 0
        scrambled = ref.copy()
        scrambled[fold0] = (scrambled[fold0] + 1 + np.arange(fold0.sum()) % 9) % 10
        pred2, _, policy2, _, _ = _with_exit(r, None, (opts, scrambled), rule)
        np.testing.assert_array_equal(pred[fold0], pred2[fold0])  # fold 0 is scored by the other folds alone
        if rule != "iat":  # iat's thresholds read only the samples' entropies where they agree with the reference
            assert policy2["thresholds"] != policy["thresholds"]
