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


def build_report(*, model: str, target: str, method: str, seed: int, ann_correct: int | None, main: Evaluation,
                 float_ev: Evaluation | None, int_ev: Evaluation | None, ann_macs: int, energy_constants: dict,
                 conversion: list[dict], timing: dict, extra: dict | None = None, shard: str | None = None) -> dict:
    """Assemble the report dict (schema_version 1): additive ``totals`` plus the fields derived from them."""
    tot = {"samples": main.samples, "timesteps": main.timesteps, "ann_correct": ann_correct, "main": totals(main),
           "float_correct": float_ev.correct_vs_t[-1] if float_ev and float_ev.correct_vs_t else None,
           "int_correct": int_ev.correct_vs_t[-1] if int_ev and int_ev.correct_vs_t else None,
           "float": float_ev is not None, "int": int_ev is not None}
    skeleton = {
        "schema_version": SCHEMA_VERSION, "model": model, "target": target, "method": method,
        "timesteps": main.timesteps, "seed": seed, "ann_macs_per_sample": float(ann_macs),
        "energy_constants": energy_constants, "timing": timing, "versions": versions(), "conversion": conversion,
        **(extra or {}), "totals": tot, **({"shard": shard} if shard else {}),
    }
    return derive(skeleton)


def derive(r: dict) -> dict:
    """Recompute every averaged field of report ``r`` from ``r["totals"]`` (used by runs and merges alike)."""
    tot, n = r["totals"], r["totals"]["samples"]
    main, T = tot["main"], r["timesteps"]

    def frac(c):
        return None if c is None else c / n

    layers = [{"name": L["name"], "op": L["op"], "neurons": L["neurons"], "synapses": L["synapses"],
               "spikes_per_sample": L["spikes"] / n, "synops_per_sample": L["synops"] / n,
               "firing_rate": L["spikes"] / n / (L["neurons"] * T) if L["neurons"] else 0.0,
               **({"saturations": L["saturations"]} if "saturations" in L else {})} for L in main["layers"]]
    spikes = sum(L["spikes"] for L in main["layers"]) / n
    synops = sum(L["synops"] for L in main["layers"]) / n
    updates = sum(L["neurons"] for L in main["layers"]) * T
    acc_t = [None] * T if main["correct_vs_t"] is None else [c / n for c in main["correct_vs_t"]]
    out = {k: v for k, v in r.items() if k != "energy_constants"}
    out.update({
        "samples": n, "accuracy_vs_t": acc_t, "layers": layers, "spikes_per_sample": spikes, "synops_per_sample": synops,
        "accuracy": {"ann": frac(tot["ann_correct"]), "snn": acc_t[-1],
                     "snn_float": frac(tot["float_correct"]), "snn_quantized": frac(tot["int_correct"])},
        "energy": estimate(r.get("energy_constants") or r["energy"]["constants"] | {"model": r["energy"]["model"]},
                           ann_macs=r["ann_macs_per_sample"], synops=synops, spikes=spikes, neuron_updates=updates),
    })
    if "lava" in r and "exact_samples" in r["lava"]:
        out["lava"] = {**r["lava"], "spike_exact_fraction": r["lava"]["exact_samples"] / n}
    return out


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
                          "outputs_equal": all(r["lava"]["outputs_equal"] for r in ordered)}
    return derive(merged)


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
    return {**first, "samples": sum(p["samples"] for p in parts), "main": main,
            "ann_correct": add([p["ann_correct"] for p in parts]),
            "float_correct": add([p["float_correct"] for p in parts]),
            "int_correct": add([p["int_correct"] for p in parts])}


def load_report(path: str | Path) -> dict:
    from snncompile.errors import DataError

    p = Path(path)
    p = p / "report.json" if p.is_dir() else p
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: cannot read report ({e})") from None


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def render_markdown(r: dict) -> str:
    acc = r["accuracy"]
    lines = [f"# snncompile report: {Path(r['model']).name} on {r['target']}", "",
             f"method `{r['method']}`, T = {r['timesteps']}, {r['samples']} samples, seed {r['seed']}", "",
             "| accuracy | value |", "|---|---|", f"| ANN | {_pct(acc['ann'])} |",
             f"| SNN ({r['target']}) | {_pct(acc['snn'])} |", f"| SNN float simulator | {_pct(acc.get('snn_float'))} |",
             f"| SNN quantized (fixed point) | {_pct(acc.get('snn_quantized'))} |", "",
             "| layer | op | neurons | synapses | spikes/sample | synops/sample | firing rate |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for L in r["layers"]:
        lines.append(f"| {L['name']} | {L['op']} | {L['neurons']} | {L['synapses']} | {L['spikes_per_sample']:.1f} "
                     f"| {L['synops_per_sample']:.1f} | {L['firing_rate']:.4f} |")
    e = r["energy"]
    ratio = "n/a" if e["ratio"] is None else f"{e['ratio']:.2f}x"
    lines += ["", (f"Totals per sample: {r['spikes_per_sample']:.1f} spikes, {r['synops_per_sample']:.1f} synops, "
              f"ANN {r['ann_macs_per_sample']:.0f} MACs."), "",
              (f"Energy ({e['model']}: {e['constants']['citation']}): ANN {e['ann_joules_per_sample']:.3e} J, "
              f"SNN {e['snn_joules_per_sample']:.3e} J per sample (ANN/SNN = {ratio})."), "",
              "## Conversion", "", "| layer | from | to | notes |", "|---|---|---|---|"]
    for c in r["conversion"]:
        lines.append(f"| {c.get('node')} | {c.get('from_op', c.get('from'))} | {c.get('to')} | {c.get('notes', '')} |")
    if "lava" in r:
        lines += ["", "## Lava", "", (f"Per-layer spike counts equal to the fixed-point simulator on "
                  f"{100 * r['lava']['spike_exact_fraction']:.1f} % of samples.")]
    lines += ["", f"Timing: {', '.join(f'{k} {v:.2f} s' for k, v in r['timing'].items())}.", ""]
    return "\n".join(lines)


def write_plots(r: dict, out: Path, scatter: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> list[Path]:
    """accuracy_vs_t.png, spikes_per_layer.png and (with ``scatter``) activations_vs_rates.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    t = np.arange(1, len(r["accuracy_vs_t"]) + 1)
    if r["accuracy"]["ann"] is not None:
        ax.axhline(100 * r["accuracy"]["ann"], color="k", ls="--", label="ANN")
    vals = [np.nan if v is None else 100 * v for v in r["accuracy_vs_t"]]
    ax.plot(t, vals, marker=".", label=f"SNN ({r['target']})")
    ax.set(xlabel="timesteps t", ylabel="accuracy (%)", xscale="log", title=Path(r["model"]).name)
    ax.legend()
    paths.append(_save(fig, out / "accuracy_vs_t.png", plt))
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(r["layers"])), 4))
    ax.bar([L["name"] for L in r["layers"]], [L["spikes_per_sample"] for L in r["layers"]])
    ax.set(ylabel="spikes per sample", title="spikes per layer")
    ax.tick_params(axis="x", rotation=60)
    paths.append(_save(fig, out / "spikes_per_layer.png", plt))
    if scatter:
        cols = min(4, len(scatter))
        rows = -(-len(scatter) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3 * rows), squeeze=False)
        for ax, (name, (a, rate)) in zip(axes.flat, scatter.items()):
            ax.scatter(a, rate, s=2, alpha=0.3)
            top = float(max(a.max(initial=0), rate.max(initial=0), 1e-6))
            ax.plot([0, top], [0, top], "k--", lw=0.8)
            ax.set(title=name, xlabel="ANN activation", ylabel="SNN rate x theta")
        for ax in list(axes.flat)[len(scatter):]:
            ax.axis("off")
        paths.append(_save(fig, out / "activations_vs_rates.png", plt))
    return paths


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _parse_limit(text: str | float | None) -> tuple[float, bool] | None:
    """'10%' -> (10, True) relative; '3' -> (3, False) absolute."""
    if text is None:
        return None
    s = str(text).strip()
    return (float(s[:-1]), True) if s.endswith("%") else (float(s), False)


def compare(a: dict, b: dict, *, max_accuracy_drop: float = 0.5, max_spike_increase: str = "10%",
            max_synops_increase: str = "10%", max_energy_increase: str | None = None) -> tuple[bool, str]:
    """Regression check of report ``b`` (new) against ``a`` (baseline). Returns (regressed, table)."""
    checks = [("accuracy (points)", _get(a, "accuracy", "snn"), _get(b, "accuracy", "snn"), max_accuracy_drop, True),
              ("spikes/sample", a["spikes_per_sample"], b["spikes_per_sample"], max_spike_increase, False),
              ("synops/sample", a["synops_per_sample"], b["synops_per_sample"], max_synops_increase, False),
              ("energy J/sample", a["energy"]["snn_joules_per_sample"], b["energy"]["snn_joules_per_sample"],
               max_energy_increase, False)]
    rows, regressed = [("metric", "baseline", "new", "change", "limit", "status")], False
    for name, old, new, limit, is_acc in checks:
        if old is None or new is None:
            rows.append((name, str(old), str(new), "n/a", "-", "skipped"))
            continue
        if is_acc:
            change, bad = 100 * (new - old), 100 * (old - new) > float(limit) + 1e-9
            lim = f"drop <= {limit}"
            old_s, new_s, ch = f"{100 * old:.2f}", f"{100 * new:.2f}", f"{change:+.2f}"
        else:
            lim_v = _parse_limit(limit)
            rel = (new - old) / old * 100 if old else (0.0 if new == old else float("inf"))
            bad = lim_v is not None and ((rel if lim_v[1] else new - old) > lim_v[0] + 1e-9)
            lim = "-" if limit is None else f"increase <= {limit}"
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
