"""`--early-exit` end to end: the report's early_exit section, counts and energy against the full
run, Lava against the fixed-point simulator, shards, compare, the search, bad options."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from snncompile.report import schema
from tests.cli.test_cli import CALIB, DATA, MODEL, snncompile

ARGS = ("--data", DATA, "--calib", CALIB, "--samples", 60, "-T", 8, "--method", "calib-light",
        "--calib-samples", 128, "-q")


def _run(out: Path, *extra) -> dict:
    p = snncompile(MODEL, *ARGS, "--out", out, *extra)
    assert p.returncode == 0, p.stderr
    r = json.loads((out / "report.json").read_text())
    jsonschema.validate(r, schema())
    return r


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    base = tmp_path_factory.mktemp("early_exit")
    return {"full": _run(base / "full", "--target", "sim-int"),
            "exit": _run(base / "exit", "--target", "sim-int", "--early-exit", "precision", "--exit-max-error", 0.02),
            "lava": _run(base / "lava", "--target", "lava-sim", "--early-exit", "precision",
                         "--exit-max-error", 0.02),
            "dirs": base}


def test_sim_int_counts_to_the_exit_step(runs):
    full, ex = runs["full"], runs["exit"]
    e = ex["early_exit"]
    assert e["rule"] == "precision" and e["metric"] == "entropy" and e["max_error"] == 0.02
    assert e["counts"] == "exit_step" and len(e["histogram"]) == 8 and sum(e["histogram"]) == 60
    assert e["mean_steps"] == pytest.approx(sum((t + 1) * k for t, k in enumerate(e["histogram"])) / 60)
    assert 1 <= e["mean_steps"] < 8  # some samples stop before T
    assert ex["latency_steps"] == pytest.approx(e["mean_steps"]) and full["latency_steps"] == 8
    # the same network, read at each sample's exit step: fewer spikes, synops and joules, the same full-T curve
    assert ex["accuracy_vs_t"] == full["accuracy_vs_t"] and e["accuracy_full_t"] == full["accuracy"]["snn"]
    assert ex["spikes_per_sample"] < full["spikes_per_sample"]
    assert ex["synops_per_sample"] < full["synops_per_sample"]
    assert ex["energy"]["snn_joules_per_sample"] < full["energy"]["snn_joules_per_sample"]
    for a, b in zip(ex["layers"], full["layers"]):
        assert a["spikes_per_sample"] <= b["spikes_per_sample"]
    assert ex["accuracy"]["snn"] == ex["accuracy"]["snn_quantized"]  # the target is the fixed-point simulator
    md = (runs["dirs"] / "exit" / "report.md").read_text()
    assert "Early exit `precision`" in md and "| exit step |" in md


def test_lava_reads_the_same_exit_steps_and_counts_to_them(runs):
    """Lava runs every sample for the full window, but its processes record per-step counts: the report
    counts them to each exit step, equal to the fixed-point simulator's (this MLP needs no relays)."""
    lava, ex = runs["lava"], runs["exit"]
    assert lava["lava"]["spike_exact_fraction"] == 1.0
    assert lava["lava"]["exit_steps_equal"] is lava["lava"]["exit_counts_equal"] is lava["lava"]["ran_full_window"] is True
    e = lava["early_exit"]
    assert e["counts"] == "exit_step" and "full window" in e["note"] and "exit step" in e["note"]
    assert e["histogram"] == ex["early_exit"]["histogram"] and lava["accuracy"]["snn"] == ex["accuracy"]["snn"]
    assert lava["latency_steps"] == ex["latency_steps"] < 8  # counted to the mean exit step, not all T
    for k in ("spikes_per_sample", "synops_per_sample"):
        assert lava[k] == ex[k]
    assert [(L["spikes_per_sample"], L["synops_per_sample"]) for L in lava["layers"]] == [
        (L["spikes_per_sample"], L["synops_per_sample"]) for L in ex["layers"]]
    assert lava["energy"]["snn_joules_per_sample"] == pytest.approx(ex["energy"]["snn_joules_per_sample"], rel=1e-12)
    md = (runs["dirs"] / "lava" / "report.md").read_text()
    assert "early-exit steps equal to" in md and "counted to them equal to" in md
    assert "Lava ran every sample for its full window" in md


def test_merged_lava_shards_keep_the_early_exit_flags(runs):
    """report --merge of Lava shards: the exit checks hold only if they hold in every shard, and the merged
    report still says that Lava ran the full window while counting to the exit steps."""
    from snncompile.report import merge

    lava = runs["lava"]
    parts = [{**lava, "shard": f"{i}/2"} for i in range(2)]
    parts[1]["lava"] = {**lava["lava"], "exit_counts_equal": False}
    m = merge(parts)
    assert m["lava"]["exit_steps_equal"] is m["lava"]["ran_full_window"] is True
    assert m["lava"]["exit_counts_equal"] is False
    assert m["early_exit"]["counts"] == "exit_step" and m["early_exit"]["note"] == lava["early_exit"]["note"]
    assert m["latency_steps"] == lava["latency_steps"] and m["spikes_per_sample"] == lava["spikes_per_sample"]
    jsonschema.validate(m, schema())


def test_lava_paragraph_names_the_simulator_lava_was_checked_against(runs):
    """lava-sim is checked against the fixed-point simulator, lava-sim-float against the float population
    simulator (backends/lava/backend.py); report.md's Lava paragraph names the one its select_tag implies."""
    from snncompile.report import render_markdown

    lava = runs["lava"]
    md = render_markdown(lava)
    assert "equal to the fixed-point simulator on" in md and "the fixed-point simulator's on every sample" in md
    flt = render_markdown({**lava, "target": "lava-sim-float", "lava": {**lava["lava"], "select_tag": "floating_pt"}})
    assert "equal to the float population simulator on" in flt and "the float population simulator's on every" in flt
    assert "fixed-point simulator" not in flt


def test_compare_and_merge_with_early_exit(runs, tmp_path):
    d = runs["dirs"]
    p = snncompile("compare", d / "full", d / "exit", "--max-accuracy-drop", 100)
    assert p.returncode == 0, p.stdout + p.stderr  # fewer spikes, synops: no regression
    for i in range(2):
        _run(tmp_path / f"s{i}", "--target", "sim-int", "--early-exit", "precision", "--exit-max-error", 0.02,
             "--shard", f"{i}/2")
    p = snncompile("report", "--merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "m", "-q")
    assert p.returncode == 0, p.stderr
    m = json.loads((tmp_path / "m" / "report.json").read_text())
    for k in ("mean_steps", "histogram", "thresholds"):
        assert m["early_exit"][k] == runs["exit"]["early_exit"][k]
    assert m["accuracy"] == runs["exit"]["accuracy"] and m["energy"] == runs["exit"]["energy"]


def test_search_scores_candidates_with_early_exit(tmp_path):
    p = snncompile(MODEL, "--data", DATA, "--calib", CALIB, "--samples", 40, "--method", "calib-light",
                   "--calib-samples", 128, "--optimize", "latency", "--early-exit", "both", "--target", "sim",
                   "--out", tmp_path / "s", "-q")
    assert p.returncode == 0, p.stderr
    r = json.loads((tmp_path / "s" / "report.json").read_text())
    jsonschema.validate(r, schema())
    s = r["search"]
    assert s["early_exit"]["rule"] == "both"
    assert all(1 <= c["mean_steps"] <= c["timesteps"] for c in s["candidates"])
    pool = [c for c in s["candidates"] if c["within_budget"]] or s["candidates"]
    assert s["chosen"]["mean_steps"] == min(c["mean_steps"] for c in pool)  # latency = the mean exit step
    assert r["early_exit"]["thresholds"] and r["timesteps"] == s["chosen"]["timesteps"]
    md = (tmp_path / "s" / "report.md").read_text()
    assert "| method | T | exit (mean steps) | validation accuracy |" in md
    assert "candidates in" in md.split("| method | T | exit (mean steps)")[0].rstrip().splitlines()[-1]  # one paragraph


@pytest.mark.parametrize("extra, message", [
    (("--exit-metric", "confidence"), "--early-exit RULE"),
    (("--early-exit", "fast"), "invalid choice"),
    (("--early-exit", "precision", "--exit-max-error", 2), "--exit-max-error"),
    (("--early-exit", "off", "--exit-metric", "confidence"), "--early-exit RULE"),
    (("--target", "nir", "--early-exit", "both"), "the nir export carries no exit rule"),
    (("--target", "netx", "--early-exit", "iat"), "the netx export carries no exit rule"),
])
def test_bad_early_exit_options_are_one_line_errors(tmp_path, extra, message):
    p = snncompile(MODEL, *ARGS, "--out", tmp_path / "o", *extra)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


def test_run_reapplies_the_artifacts_early_exit(runs):
    """`snncompile run` on an artifact compiled with --early-exit: the same exit steps and accuracy."""
    ex = runs["exit"]
    p = snncompile("run", runs["dirs"] / "exit", "--data", DATA, "--samples", 60, "--target", "sim-int", "-q")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["early_exit"] == "precision" and out["counts"] == "exit_step"
    assert out["mean_steps"] == pytest.approx(ex["early_exit"]["mean_steps"])
    assert out["accuracy"] == ex["accuracy"]["snn"]
    assert out["spikes_per_sample"] == pytest.approx(ex["spikes_per_sample"])


@pytest.mark.parametrize("bad", [{"rule": "fast"}, {"thresholds": []}, {"thresholds": ["x"]}, {"metric": [1]},
                                 {"max_error": -1}, "iat"])
def test_run_refuses_a_bad_early_exit_in_the_manifest(runs, tmp_path, bad):
    import shutil

    d = tmp_path / "compiled"
    shutil.copytree(runs["dirs"] / "exit" / "compiled", d)
    m = json.loads((d / "manifest.json").read_text())
    m["meta"]["early_exit"] = {**m["meta"]["early_exit"], **bad} if isinstance(bad, dict) else bad
    (d / "manifest.json").write_text(json.dumps(m))
    p = snncompile("run", d, "--data", DATA, "--samples", 5, "-q")
    assert p.returncode == 2 and "meta.early_exit" in p.stderr and "Traceback" not in p.stderr, p.stderr
