"""report.json (schema in report_schema.json, docs/report-schema.md), report.md, plots, and compare."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from snncompile.energy import estimate
from snncompile.evaluate import Evaluation

__all__ = [
    "SCHEMA_VERSION",
    "build_report",
    "compare",
    "derive",
    "load_report",
    "merge",
    "render_markdown",
    "schema",
    "totals",
    "versions",
    "write_plots",
]

SCHEMA_VERSION = 1


def schema() -> dict:
    return json.loads((Path(__file__).with_name("report_schema.json")).read_text())


def versions() -> dict[str, str | None]:
    out = {}
    for dist, key in (("snncompile", "snncompile"), ("lava-nc", "lava"), ("torch", "torch"), ("onnx", "onnx"),
                      ("numpy", "numpy")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    out["python"] = platform.python_version()
    return out


def totals(ev: Evaluation) -> dict:
    """The additive part of an evaluation: sums over samples, from which every average is derived."""
    return {"samples": ev.samples, "correct_vs_t": ev.correct_vs_t,
            "layers": [{"name": k, "op": ev.ops.get(k, "?"), "neurons": int(n), "synapses": int(ev.synapses.get(k, 0)),
                        "spikes": ev.spikes.get(k, 0.0), "synops": ev.synops.get(k, 0.0),
                        **({"saturations": ev.saturations[k]} if k in ev.saturations else {})}
                       for k, n in ev.neurons.items()]}


def exit_totals(ev: Evaluation) -> dict:
    """The additive part of an early-exit evaluation: how many samples exited at each step t = 1..T and how
    many of them were right, with the policy and what the counts cover (``exit_step`` or ``full_window``)."""
    hist = np.bincount(np.asarray(ev.exit_steps, dtype=np.int64) - 1, minlength=ev.timesteps)[: ev.timesteps]
    return {"policy": dict(ev.exit_policy or {}), "counts": ev.exit_counts or "exit_step",
            "histogram": [int(v) for v in hist], "correct": ev.exit_correct}


def build_report(*, model: str, target: str, method: str, seed: int, ann_correct: int | None, main: Evaluation,
                 float_ev: Evaluation | None, int_ev: Evaluation | None, ann_macs: int, energy_constants: dict,
                 conversion: list[dict], timing: dict, extra: dict | None = None, shard: str | None = None,
                 input_macs: int = 0) -> dict:
    """Assemble the report dict (schema_version 1): additive ``totals`` plus the fields derived from them."""
    tot = {"samples": main.samples, "timesteps": main.timesteps, "pre_steps": int(getattr(main, "pre_steps", 0)),
           "ann_correct": ann_correct, "main": totals(main),
           "float_correct": float_ev.correct if float_ev else None,
           "int_correct": int_ev.correct if int_ev else None,
           "float": float_ev is not None, "int": int_ev is not None,
           **({"early_exit": exit_totals(main)} if main.exit_steps is not None else {})}
    skeleton = {
        "schema_version": SCHEMA_VERSION, "model": model, "target": target, "method": method,
        "timesteps": main.timesteps, "seed": seed, "ann_macs_per_sample": float(ann_macs),
        "input_macs_per_sample": float(input_macs),
        "energy_constants": energy_constants, "timing": timing, "versions": versions(), "conversion": conversion,
        **(extra or {}), "totals": tot, **({"shard": shard} if shard else {}),
    }
    return derive(skeleton)


def derive(r: dict) -> dict:
    """Recompute every averaged field of report ``r`` from ``r["totals"]`` (used by runs and merges alike)."""
    tot, n = r["totals"], r["totals"]["samples"]
    main, T = tot["main"], r["timesteps"]
    pre = int(tot.get("pre_steps", 0))
    steps = T + pre  # SRP's pre-steps run (and spike) before the T counted ones
    ee = tot.get("early_exit")
    if ee is not None:  # each sample stops at its exit step: counts (and neuron updates) over pre + mean steps
        mean_exit = sum((t + 1) * k for t, k in enumerate(ee["histogram"])) / n
        if ee["counts"] == "exit_step":
            steps = pre + mean_exit

    def frac(c):
        return None if c is None else c / n

    layers = [{"name": L["name"], "op": L["op"], "neurons": L["neurons"], "synapses": L["synapses"],
               "spikes_per_sample": L["spikes"] / n, "synops_per_sample": L["synops"] / n,
               "firing_rate": L["spikes"] / n / (L["neurons"] * steps) if L["neurons"] else 0.0,
               **({"saturations": L["saturations"]} if "saturations" in L else {})} for L in main["layers"]]
    spikes = sum(L["spikes"] for L in main["layers"]) / n
    synops = sum(L["synops"] for L in main["layers"]) / n
    updates = sum(L["neurons"] for L in main["layers"]) * steps
    acc_t = [None] * T if main["correct_vs_t"] is None else [c / n for c in main["correct_vs_t"]]
    out = {k: v for k, v in r.items() if k != "energy_constants"}
    if ee is not None:
        out["early_exit"] = {**ee["policy"], "counts": ee["counts"], "mean_steps": mean_exit,
                             "histogram": list(ee["histogram"]), "accuracy_full_t": acc_t[-1],
                             "note": _EXIT_NOTES[_exit_note_key(r, ee["counts"])]}
        acc_t_snn = None if ee["correct"] is None else ee["correct"] / n
    else:
        acc_t_snn = acc_t[-1]
    out.update({
        "samples": n, "latency_steps": steps, "accuracy_vs_t": acc_t, "layers": layers, "spikes_per_sample": spikes, "synops_per_sample": synops,
        "accuracy": {"ann": frac(tot["ann_correct"]), "snn": acc_t_snn,
                     "snn_float": frac(tot["float_correct"]), "snn_quantized": frac(tot["int_correct"])},
        "energy": estimate(r.get("energy_constants") or r["energy"]["constants"] | {"model": r["energy"]["model"]},
                           ann_macs=r["ann_macs_per_sample"], synops=synops, spikes=spikes, neuron_updates=updates,
                           input_macs=r.get("input_macs_per_sample", 0.0)),
    })
    if "lava" in r and "exact_samples" in r["lava"]:
        out["lava"] = {**r["lava"], "spike_exact_fraction": r["lava"]["exact_samples"] / n}
    return out


_EXIT_NOTES = {
    "exit_step": ("each sample stopped at its exit step: its prediction is the readout there, its spikes, synops "
                  "and neuron updates are counted to that step (latency_steps = pre-steps + mean_steps)"),
    "exit_step_full_run": ("the target ran every sample for the full window (Lava streams samples back to back with "
                           "a fixed period and cannot end one early); the predictions are read at the exit steps of "
                           "the recorded readout, and spikes, synops, neuron updates and latency_steps are counted "
                           "to each sample's exit step from the per-step counts the processes recorded: what a chip "
                           "that ends the window at the exit step spends"),
    "full_window": ("the target ran every sample for the full window (samples run back to back with a fixed "
                    "period): the predictions are read at the exit steps of the recorded readout, but spikes, "
                    "synops, energy and latency_steps are those of all T steps"),
}


def _exit_note_key(r: dict, counts: str) -> str:
    """Which note explains the early-exit counts: a target that ran the full window but counted to each exit
    step (``lava.ran_full_window``, ``loihi2.ran_full_window``) has its own."""
    ran_full = any(isinstance(r.get(k), dict) and r[k].get("ran_full_window") for k in ("lava", "loihi2"))
    return "exit_step_full_run" if counts == "exit_step" and ran_full else counts


def merge(reports: list[dict]) -> dict:
    """One report from the reports of shards ``i/n`` of one run: sums of totals, averages re-derived.

    Equals the single-machine report of the same samples and seed except for ``timing`` (summed)
    and ``shard`` (dropped). Raises DataError when the shards do not belong together or miss one.
    """
    from snncompile.errors import DataError

    if not reports:
        raise DataError("report --merge: no reports given")
    key = ("model", "target", "method", "timesteps", "seed", "conversion", "quantization")
    first = reports[0]
    for r in reports[1:]:
        bad = [k for k in key if r.get(k) != first.get(k)]
        if bad:
            raise DataError(f"report --merge: shard {r.get('shard')} differs from {first.get('shard')} in {bad[0]}")
    shards = sorted(r.get("shard", "0/1") for r in reports)
    n = int(shards[0].split("/")[1])
    want = sorted(f"{i}/{n}" for i in range(n))
    if shards != want:
        raise DataError(f"report --merge: shards {', '.join(shards)} do not cover {n} shards exactly once")
    ordered = sorted(reports, key=lambda r: int(r.get("shard", "0/1").split("/")[0]))
    tot = _sum_totals([r["totals"] for r in ordered])
    merged = {k: v for k, v in ordered[0].items() if k != "shard"}
    merged["totals"] = tot
    merged["timing"] = {k: sum(r["timing"].get(k, 0.0) for r in ordered) for k in ordered[0]["timing"]}
    if "lava" in merged:
        merged["lava"] = {**merged["lava"], "exact_samples": sum(r["lava"]["exact_samples"] for r in ordered),
                          "seconds": sum(r["lava"]["seconds"] for r in ordered),
                          "outputs_equal": all(r["lava"]["outputs_equal"] for r in ordered),
                          **{k: all(r["lava"].get(k, False) for r in ordered) for k in _LAVA_EXIT_FLAGS
                             if k in merged["lava"]}}
    return derive(merged)


_LAVA_EXIT_FLAGS = ("exit_steps_equal", "exit_counts_equal", "ran_full_window")  # --early-exit; merged by all()


def _sum_totals(parts: list[dict]) -> dict:
    def add(vals):
        return None if any(v is None for v in vals) else sum(vals)

    first = parts[0]
    main = {"samples": sum(p["main"]["samples"] for p in parts),
            "correct_vs_t": None if first["main"]["correct_vs_t"] is None else
            [sum(c) for c in zip(*(p["main"]["correct_vs_t"] for p in parts))],
            "layers": [{**L, "spikes": sum(p["main"]["layers"][i]["spikes"] for p in parts),
                        "synops": sum(p["main"]["layers"][i]["synops"] for p in parts),
                        **({"saturations": sum(p["main"]["layers"][i]["saturations"] for p in parts)}
                           if "saturations" in L else {})}
                       for i, L in enumerate(first["main"]["layers"])]}
    if "early_exit" in first:
        from snncompile.errors import DataError

        if any(p.get("early_exit", {}).get("policy") != first["early_exit"]["policy"] for p in parts):
            raise DataError("report --merge: the shards differ in their early-exit policy")
        ee = first["early_exit"]
        first = {**first, "early_exit": {**ee, "histogram": [sum(h) for h in zip(*(p["early_exit"]["histogram"]
                                                                                   for p in parts))],
                                         "correct": add([p["early_exit"]["correct"] for p in parts])}}
    return {**first, "samples": sum(p["samples"] for p in parts), "main": main,
            "ann_correct": add([p["ann_correct"] for p in parts]),
            "float_correct": add([p["float_correct"] for p in parts]),
            "int_correct": add([p["int_correct"] for p in parts])}


def load_report(path: str | Path, *, full: bool = True) -> dict:
    """Read report.json (or DIR/report.json), at most 64 MiB, and check it against the schema.

    ``full=False`` (what ``compare`` uses) checks only that the file is a JSON object: compare
    checks its metrics itself, so that a missing or NaN metric is a regression, not a crash."""
    import jsonschema

    from snncompile.errors import DataError
    from snncompile.safeio import JSON_CAP, clean, first_nonfinite, read_bounded

    p = Path(path)
    p = p / "report.json" if p.is_dir() else p
    raw = read_bounded(p, JSON_CAP, "report")
    try:
        r = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise DataError(f"{clean(p)}: cannot read report ({clean(e, 160)})") from None
    if not isinstance(r, dict):
        raise DataError(f"{clean(p)}: cannot read report (a JSON {type(r).__name__}, not an object)")
    if full:
        err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema()).iter_errors(r))
        if err is not None:
            where = "/".join(str(k) for k in err.absolute_path) or "(top level)"
            raise DataError(f"{clean(p)}: not a valid snncompile report at {clean(where, 80)}: {clean(err.message, 160)}")
        bad = first_nonfinite(r)
        if bad:
            raise DataError(f"{clean(p)}: not a valid snncompile report: {clean(bad, 80)} is NaN or infinite")
    return r


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def render_markdown(r: dict) -> str:
    """report.md; every string taken from the report is escaped for one markdown table cell (safeio.md)."""
    from snncompile.safeio import md

    acc = r["accuracy"]
    lines = [f"# snncompile report: {md(Path(r['model']).name)} on {md(r['target'])}", "",
             f"method `{md(r['method'])}`, T = {int(r['timesteps'])}, {int(r['samples'])} samples, seed {int(r['seed'])}",
             "", "| accuracy | value |", "|---|---|", f"| ANN | {_pct(acc['ann'])} |",
             f"| SNN ({md(r['target'])}) | {_pct(acc['snn'])} |", f"| SNN float simulator | {_pct(acc.get('snn_float'))} |",
             f"| SNN quantized (fixed point) | {_pct(acc.get('snn_quantized'))} |", "",
             *_exit_markdown(r),
             "| layer | op | neurons | synapses | spikes/sample | synops/sample | firing rate |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for L in r["layers"]:
        lines.append(f"| {md(L['name'])} | {md(L['op'])} | {L['neurons']} | {L['synapses']} | "
                     f"{L['spikes_per_sample']:.1f} | {L['synops_per_sample']:.1f} | {L['firing_rate']:.4f} |")
    e = r["energy"]
    ratio = "n/a" if e["ratio"] is None else f"{e['ratio']:.2f}x"
    lines += ["", (f"Totals per sample: {r['spikes_per_sample']:.1f} spikes, {r['synops_per_sample']:.1f} synops, "
              f"ANN {r['ann_macs_per_sample']:.0f} MACs."), "",
              (f"Energy ({md(e['model'])}: {md(e['constants'].get('citation', ''), 300)}): ANN "
               f"{e['ann_joules_per_sample']:.3e} J, SNN {e['snn_joules_per_sample']:.3e} J per sample "
               f"(ANN/SNN = {ratio})."), "",
              "## Conversion", "", "| layer | from | to | notes |", "|---|---|---|---|"]
    for c in r["conversion"]:
        lines.append(f"| {md(c.get('node'))} | {md(c.get('from_op', c.get('from')))} | {md(c.get('to'))} | "
                     f"{md(c.get('notes', ''), 300)} |")
    if "lava" in r and "spike_exact_fraction" in r["lava"]:
        # the simulator Lava was checked against: lava-sim-float's is the float population simulator
        ref = "float population" if r["lava"].get("select_tag") == "floating_pt" else "fixed-point"
        lines += ["", "## Lava", "", (f"Per-layer spike counts equal to the {ref} simulator on "
                  f"{100 * float(r['lava']['spike_exact_fraction']):.1f} % of samples"
                  + _lava_exit(r["lava"], ref) + ".")]
    if isinstance(r.get("search"), dict):
        lines += _search_markdown(r["search"])
    timing = ", ".join(f"{md(k, 60)} {v:.2f} s" for k, v in r["timing"].items() if isinstance(v, (int, float)))
    lines += ["", f"Timing: {timing}.", ""]
    return "\n".join(lines)


def _lava_exit(lava: dict, ref: str) -> str:
    if "exit_steps_equal" not in lava:
        return ""
    same = {True: "equal to", False: "NOT equal to"}
    out = f"; early-exit steps {same[bool(lava['exit_steps_equal'])]} the {ref} simulator's on every sample"
    if "exit_counts_equal" in lava:
        out += f", spikes and synops counted to them {same[bool(lava['exit_counts_equal'])]} the simulator's"
    if lava.get("ran_full_window"):
        out += ("; Lava ran every sample for its full window (it cannot end one early): the counts are what a "
                "chip that ends the window at the exit step spends")
    return out


def _exit_markdown(r: dict) -> list[str]:
    """The early-exit paragraph of report.md: rule, mean steps, accuracy against the full T, the histogram."""
    from snncompile.safeio import md

    e = r.get("early_exit")
    if not isinstance(e, dict):
        return []
    hist = e["histogram"]
    shown = [(t + 1, k) for t, k in enumerate(hist) if k]
    return [(f"Early exit `{md(e['rule'])}` (metric {md(e['metric'])}, max error {e['max_error']:g}; thresholds "
             f"calibrated on {md(e.get('calibration', ''), 200)}): mean {e['mean_steps']:.2f} of {len(hist)} steps, "
             f"accuracy {_pct(r['accuracy']['snn'])} (all {len(hist)} steps: {_pct(e['accuracy_full_t'])}); "
             f"{md(e['note'], 300)}."), "",
            "| exit step | " + " | ".join(str(t) for t, _ in shown) + " |",
            "|---|" + "---:|" * len(shown),
            "| samples | " + " | ".join(str(k) for _, k in shown) + " |", ""]


def _search_markdown(s: dict) -> list[str]:
    """The search section of report.md: objective, budget, validation data and every candidate."""
    from snncompile.safeio import md

    c, ann_e = s["chosen"], s["ann_joules_per_sample"]
    ref = "agreement with the ANN's predictions" if s["reference"] == "ann" else "accuracy against the labels"
    fixed = ", ".join(f"{k} fixed to {md(v)}" for k, v in s["fixed"].items() if v is not None) or "nothing fixed"
    ee = s.get("early_exit")
    exits = isinstance(ee, dict)  # the candidates were scored with early exit: a column of their mean exit step
    chosen_exit = f" with early exit `{md(c['early_exit'])}`" if c.get("early_exit") else ""
    lines = ["", "## Search", "",
             (f"Objective `{md(s['objective'])}`, budget: drop + one standard error <= {s['max_drop']:g} points "
              f"below the ANN's validation accuracy ({_pct(s['ann_accuracy'])}; {ref}) on {int(s['validation_samples'])} validation samples: "
              f"{md(s['validation'], 300)}; {fixed}. Chosen: `{md(c['method'])}` T = {int(c['timesteps'])}"
              f"{chosen_exit}"
              f"{'' if s['in_budget'] else ' (no candidate met the budget: the most accurate)'}; "
              f"{len(s['candidates'])} candidates in {s['seconds']:.1f} s."
              + (f" Candidates scored {'for the full T and ' if ee.get('searched') else ''}with early exit "
                 f"`{md(ee.get('rule'))}` (exit thresholds calibrated on {_exit_calibration(ee.get('folds'))}; "
                 "accuracy, counts and energy at each sample's exit step; exit `none`: the full T)."
                 if exits else "")),
             "",
             (f"| method | T |{' exit (mean steps) |' if exits else ''} validation accuracy | drop (points, +- se) | "
              "spikes/sample | synops/sample | energy J/sample | ANN/SNN | in budget | seconds |"),
             "|---|---:|" + ("---:|" if exits else "") + "---:|---:|---:|---:|---:|---:|---|---:|"]
    for k in s["candidates"]:
        mark = " **(chosen)**" if (k["method"], k["timesteps"], k.get("early_exit")) == (
            c["method"], c["timesteps"], c.get("early_exit")) else ""
        ratio = f"{ann_e / k['joules_per_sample']:.2f}x" if k["joules_per_sample"] else "n/a"
        mean = "" if not exits else f" {md(k.get('early_exit') or ee.get('rule'))} ({k['mean_steps']:.2f}) |" if "mean_steps" in k else " none |"
        lines.append(f"| {md(k['method'])}{mark} | {int(k['timesteps'])} |{mean} {_pct(k['accuracy'])} | "
                     f"{k['drop_points']:.2f} +- {k['drop_se_points']:.2f} | {k['spikes_per_sample']:.1f} | {k['synops_per_sample']:.1f} | {k['joules_per_sample']:.3e} | "
                     f"{ratio} | {'yes' if k['within_budget'] else 'no'} | {k['seconds']:.2f} |")
    if s.get("skipped"):
        groups: dict[tuple[str, str], list[int]] = {}
        for k in s["skipped"]:
            groups.setdefault((k["method"], k["reason"]), []).append(int(k["timesteps"]))
        lines += ["", "Not converted: " + "; ".join(f"{md(m)} T = {', '.join(map(str, ts))} ({md(why, 120)})"
                                                    for (m, why), ts in groups.items()) + "."]
    return lines


def _exit_calibration(folds) -> str:
    """Where the search calibrated its exit thresholds (its ``early_exit.folds``; None: calibration samples)."""
    if folds is None:
        return "the calibration samples"
    if int(folds) > 1:
        return f"the validation samples, each candidate's score cross-fitted over {int(folds)} folds of them"
    return "the one validation sample, and scored there"


def _label(text: object, limit: int = 60) -> str:
    """A report string as a matplotlib label: one line, and no mathtext ($ is literal)."""
    from snncompile.safeio import clean

    return clean(text, limit).replace("$", r"\$")


SCATTER_POINTS = 4000  # at most, per layer of activations_vs_rates.png


def write_plots(r: dict, out: Path, scatter: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> list[Path]:
    """accuracy_vs_t.png, spikes_per_layer.png and (with ``scatter``) activations_vs_rates.png.

    The figures are built on matplotlib's object API and drawn by Agg (no pyplot: its import and global
    figure state cost time and buy nothing here). A scatter layer with more than SCATTER_POINTS points
    shows a fixed subset of them (:func:`_subsample`), and its title says how many of how many. The cyclic
    garbage collector pauses meanwhile: matplotlib's import and figures add some 60,000 objects, and the
    collections they trigger (one of them full) walk the whole heap of the run (0.15-0.25 s of a compile
    of mnist_resnet); it resumes, as it was, when the files are written."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        return _draw_plots(r, out, scatter)
    finally:
        if was:
            gc.enable()


def _draw_plots(r: dict, out: Path, scatter: dict[str, tuple[np.ndarray, np.ndarray]] | None) -> list[Path]:
    from matplotlib.figure import Figure

    paths = []
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    t = np.arange(1, len(r["accuracy_vs_t"]) + 1)
    if r["accuracy"]["ann"] is not None:
        ax.axhline(100 * r["accuracy"]["ann"], color="k", ls="--", label="ANN")
    vals = [np.nan if v is None else 100 * v for v in r["accuracy_vs_t"]]
    ax.plot(t, vals, marker=".", label=_label(f"SNN ({r['target']})"))
    ax.set(xlabel="timesteps t", ylabel="accuracy (%)", xscale="log", title=_label(Path(r["model"]).name))
    ax.legend()
    paths.append(_save(fig, out / "accuracy_vs_t.png"))
    fig = Figure(figsize=(max(6, 0.5 * len(r["layers"])), 4))
    ax = fig.subplots()
    ax.bar([_label(L["name"], 40) for L in r["layers"]], [L["spikes_per_sample"] for L in r["layers"]])
    ax.set(ylabel="spikes per sample", title="spikes per layer")
    ax.tick_params(axis="x", rotation=60)
    paths.append(_save(fig, out / "spikes_per_layer.png"))
    if scatter:
        cols = min(4, len(scatter))
        rows = -(-len(scatter) // cols)
        fig = Figure(figsize=(3.2 * cols, 3 * rows))
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, (name, (a, rate)) in zip(axes.flat, scatter.items()):
            top = float(max(a.max(initial=0), rate.max(initial=0), 1e-6))
            a_s, rate_s = _subsample(a, rate, SCATTER_POINTS)
            ax.scatter(a_s, rate_s, s=2, alpha=0.3)
            ax.plot([0, top], [0, top], "k--", lw=0.8)
            shown = "" if len(a_s) == len(a) else f"\n{len(a_s):,} of {len(a):,} points"
            ax.set(title=_label(name, 40) + shown, xlabel="ANN activation", ylabel="SNN rate x theta")
        for ax in list(axes.flat)[len(scatter):]:
            ax.axis("off")
        paths.append(_save(fig, out / "activations_vs_rates.png"))
    if isinstance(r.get("search"), dict):
        paths.append(_frontier_plot(r["search"], out / "frontier.png"))
    return paths


def _subsample(a: np.ndarray, rate: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """About ``k`` of the (activation, rate) pairs, the same ones on every run: a uniform random subset
    drawn with a fixed seed (0), plus the ``k // 80`` pairs with the largest |activation - rate| and those
    with the largest activation and rate, so that the worst mismatches and the range stay in the plot."""
    if len(a) <= k:
        return a, rate
    pick = np.random.default_rng(0).choice(len(a), size=k, replace=False)
    worst = np.argpartition(np.abs(a - rate), len(a) - k // 80)[len(a) - k // 80:]
    keep = np.union1d(np.concatenate([pick, worst]), [np.argmax(a), np.argmax(rate)])  # sorted, unique
    return a[keep], rate[keep]


def _frontier_plot(s: dict, path: Path) -> Path:
    """frontier.png: validation accuracy vs energy per sample (log x) of every candidate, one marker per
    method (and early-exit rule: a dashed line), the chosen point circled, the ANN's energy a vertical line
    and its accuracy a horizontal one."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    series = list(dict.fromkeys((k["method"], k.get("early_exit")) for k in s["candidates"]))
    marks = {m: "osd^v<>"[i % 7] for i, m in enumerate(dict.fromkeys(m for m, _ in series))}
    for m, rule in series:
        pts = sorted(((k["joules_per_sample"], 100 * k["accuracy"], k["timesteps"]) for k in s["candidates"]
                      if (k["method"], k.get("early_exit")) == (m, rule) and k["joules_per_sample"] > 0),
                     key=lambda p: p[2])  # in T order
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marks[m], ls="-" if rule is None else "--",
                lw=0.8, label=_label(m if rule is None else f"{m}, exit {rule}", 40))
        for e, a, t in pts:
            ax.annotate(f"{t}", (e, a), textcoords="offset points", xytext=(3, 3), fontsize=7)
    c = s["chosen"]
    if c["joules_per_sample"] > 0:
        ax.scatter([c["joules_per_sample"]], [100 * c["accuracy"]], s=160, facecolors="none", edgecolors="r",
                   linewidths=2, zorder=5, label=_label(f"chosen: {c['method']} T={c['timesteps']}"
                                                        + (f", exit {c['early_exit']}" if c.get("early_exit") else ""), 60))
    ax.axvline(s["ann_joules_per_sample"], color="k", ls="--", lw=1, label="ANN energy")
    ax.axhline(100 * s["ann_accuracy"], color="gray", ls=":", lw=1, label="ANN accuracy")
    if s["objective"] != "accuracy":
        ax.axhline(100 * s["ann_accuracy"] - s["max_drop"], color="gray", ls="-.", lw=0.8,
                   label=f"budget (-{s['max_drop']:g} points)")
    ax.set(xscale="log", xlabel="energy per sample (J)", ylabel="validation accuracy (%)",
           title=f"accuracy vs energy (numbers: T); objective {_label(s['objective'], 20)}")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from snncompile.safeio import write_file

    FigureCanvasAgg(fig)
    fig.tight_layout()
    # tight_layout leaves a placeholder layout engine behind, and savefig runs a whole extra (unrendered)
    # draw for any engine; the layout is done, so drop it: one draw per figure, the same pixels
    fig.set_layout_engine(None)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    write_file(path, buf.getvalue())  # a new file renamed into place: never written through a planted link
    return path


def _parse_limit(text: str | float | None, flag: str) -> tuple[float, bool] | None:
    """'10%' -> (10, True) relative; '3' -> (3, False) absolute; None -> not checked.

    Anything else (text, NaN, infinity, a negative number) is a DataError naming the flag: a gate
    with a threshold that can never fire must not pass silently."""
    from snncompile.errors import DataError
    from snncompile.safeio import clean

    if text is None:
        return None
    s = str(text).strip()
    rel = s.endswith("%")
    try:
        v = float(s[:-1] if rel else s)
    except ValueError:
        v = float("nan")
    if not (np.isfinite(v) and v >= 0):
        raise DataError(f"{flag} {clean(text, 40)!s}: expected a finite number >= 0, or a percentage such as 10%")
    return v, rel


_METRICS = (("accuracy (points)", ("accuracy", "snn"), "--max-accuracy-drop"),
            ("spikes/sample", ("spikes_per_sample",), "--max-spike-increase"),
            ("synops/sample", ("synops_per_sample",), "--max-synops-increase"),
            ("energy J/sample", ("energy", "snn_joules_per_sample"), "--max-energy-increase"))


def _metric(r: dict, keys: tuple[str, ...], which: str):
    """A metric of a report: a finite number >= 0 (accuracy <= 1), None (absent or null), or NaN.

    A value of the wrong type is a DataError: the file is not a report of ours."""
    from snncompile.errors import DataError

    v = _get(r, *keys)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DataError(f"{which} report: {'/'.join(keys)} is {type(v).__name__} {str(v)[:40]!r}, not a number")
    if np.isfinite(v) and (v < 0 or (keys[0] == "accuracy" and v > 1)):
        raise DataError(f"{which} report: {'/'.join(keys)} = {v} is out of range")
    return float(v)


def compare(a: dict, b: dict, *, max_accuracy_drop: float | str = 0.5, max_spike_increase: str = "10%",
            max_synops_increase: str = "10%", max_energy_increase: str | None = None) -> tuple[bool, str]:
    """Regression check of report ``b`` (new) against ``a`` (baseline). Returns (regressed, table).

    Fails closed: a metric the baseline has that the new report lacks, or holds as NaN, is a
    regression; a baseline metric that is NaN, or a malformed threshold, is a DataError. A metric
    both reports lack (e.g. accuracy without labels) is skipped."""
    from snncompile.errors import DataError

    limits = {"--max-accuracy-drop": _parse_limit(max_accuracy_drop, "--max-accuracy-drop"),
              "--max-spike-increase": _parse_limit(max_spike_increase, "--max-spike-increase"),
              "--max-synops-increase": _parse_limit(max_synops_increase, "--max-synops-increase"),
              "--max-energy-increase": _parse_limit(max_energy_increase, "--max-energy-increase")}
    if limits["--max-accuracy-drop"] is not None and limits["--max-accuracy-drop"][1]:
        raise DataError(f"--max-accuracy-drop {max_accuracy_drop}: give points of accuracy, not a percentage")
    rows, regressed = [("metric", "baseline", "new", "change", "limit", "status")], False
    for name, keys, flag in _METRICS:
        old, new, lim_v = _metric(a, keys, "baseline"), _metric(b, keys, "new"), limits[flag]
        is_acc = keys[0] == "accuracy"
        if old is not None and not np.isfinite(old):
            raise DataError(f"baseline report: {'/'.join(keys)} is NaN or infinite; it cannot serve as a baseline")
        if old is None:
            rows.append((name, "n/a", "n/a" if new is None else f"{new:.4g}", "n/a", "-", "skipped"))
            continue
        if new is None or not np.isfinite(new):
            rows.append((name, f"{100 * old:.2f}" if is_acc else f"{old:.4g}", "missing" if new is None else "NaN",
                         "n/a", "-", "REGRESSED"))
            regressed = True
            continue
        if is_acc:
            change = 100 * (new - old)
            bad = lim_v is not None and 100 * (old - new) > lim_v[0] + 1e-9
            lim = f"drop <= {lim_v[0]:g}" if lim_v else "-"
            old_s, new_s, ch = f"{100 * old:.2f}", f"{100 * new:.2f}", f"{change:+.2f}"
        else:
            rel = (new - old) / old * 100 if old else (0.0 if new == old else float("inf"))
            bad = lim_v is not None and ((rel if lim_v[1] else new - old) > lim_v[0] + 1e-9)
            lim = "-" if lim_v is None else f"increase <= {lim_v[0]:g}{'%' if lim_v[1] else ''}"
            old_s, new_s, ch = f"{old:.4g}", f"{new:.4g}", f"{rel:+.1f} %"
        regressed |= bad
        rows.append((name, old_s, new_s, ch, lim, "REGRESSED" if bad else "ok"))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    return regressed, table


def _get(r: dict, *keys):
    for k in keys:
        r = r.get(k) if isinstance(r, dict) else None
    return r
