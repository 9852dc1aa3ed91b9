"""Merge results/<tool>_<model>.json into docs/peers.md and the two PNGs (any venv with matplotlib).

Usage: report.py [--durations FILE]  (FILE: "stage seconds" lines written by the Makefile target).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import protocol as P

DOCS = Path(os.environ.get("PEERS_DOCS", P.ROOT / "docs"))  # where peers.md and its PNGs go
TOOLS = ("snncompile", "spikingjelly", "sinabs", "snntoolbox")
KEY_T = (4, 8, 16, 32)
PROTOCOL = """\
# snncompile vs. SpikingJelly, sinabs and SNN Toolbox

Written by `make bench-peers` (benchmarks/peers/report.py) from benchmarks/peers/results/*.json.
Do not edit by hand.

## Protocol

- **Models and weights**: the seven example networks, each tool fed exactly the torch module of
  `examples/models.py` with the weights of `examples/<name>.pt` (snncompile reads the ONNX
  export of the same module). SNN Toolbox takes Keras models: each one was rebuilt by hand in
  Keras with the same weights (BN folded; the max softmax difference to torch is in its notes).
  `mnist_qcfs` is `mnist_cnn` trained with QCFS activations (L = 4): snncompile reads them from the
  ONNX export (IF threshold = the trained ceiling lambda); the peers convert `nn.ReLU` modules only
  and know no quantized activation, so they get the same weights with `nn.ReLU` activations (that
  ANN's accuracy is below the QCFS ANN's; see target 5).
- **Data**: calibration on the first {calib} samples of `examples/data/mnist_calib.npz`; test on
  the first {samples} samples of `examples/data/mnist_test.npz`, the same for every tool.
- **Input**: the image as a constant analog current every step (no Poisson coding).
- **Runs**: one run to T_max = {tmax} per mode; the prediction at T is the argmax of the output
  accumulated over the first T steps (SpikingJelly, sinabs; SNN Toolbox: the argmax of the output
  layer's spike counts, no spike yet = wrong, its own rule). snncompile tunes its conversion to T,
  so it runs once per T (its report at that T). SNN Toolbox runs with `softmax_to_relu = True`,
  the setting its documentation recommends.
- **Modes**: SpikingJelly 2.0.0 `ann2snn` with `RateCodingRecipe` modes `max`, `99.9%`, `0.5`;
  sinabs 3.1.3 `from_model` with MultiSpike (its default) and SingleSpike, each without and with
  `normalize_weights(percentile=99.9)`; SNN Toolbox 0.6.0 INI simulator with its 99.9 percentile
  normalization; snncompile with every method of `snncompile.convert.METHODS` on the float
  simulator (`sim`) and its default method also on the fixed-point simulator (`sim-int`).
  snncompile's early exit (`--early-exit iat|precision|both`; no peer has one) is reported as
  modes of its own, `<method> exit <rule>`: the same float-simulator run, each sample stopped at
  the first step at which its readout is confident enough (entropy score; thresholds calibrated on
  one more simulation of the calibration samples against the ANN's predictions), its accuracy
  read and its spikes and synops counted to that step; T is then the most steps a sample may run.
  The plots show the full-T modes only.
- **Spikes per sample**: all spiking layers, cumulative up to T (n spikes in one step count n);
  the output layer is a readout and not counted (for SNN Toolbox, whose output layer spikes, its
  spikes are left out too; its spiking average-pool layers are counted).
- **Synops per sample**: input events x fan-out at every weight layer fed by spikes, counted by the
  harness for SpikingJelly (its SynOpCounter reports 0) and sinabs with the same per-neuron fan-out
  snncompile uses (paths through pools; a max pool counted like a sum pool, which over-counts the
  peers a little on `mnist_resnet`: a max passes one spike of several). SNN Toolbox: its own
  counter. The analog input layer is not counted for anyone.
- **Time**: microseconds per sample-step in timing-only passes (no counters for the peers) of one
  batch of 100 to T_max after an untimed warm-up, the median of 3 runs, for all tools back to back
  with nothing else running (`PEERS_TIMING_ONLY=1`), with `torch.set_num_threads(2)` (TF: 2 intra-op threads) and
  again with 1 thread, as CPU time of the process and as wall time. snncompile's timing run is
  `snncompile.simulate` on its default method's own network at T_max (its spike
  and synop counters and the program setup included); its other rows have no timing. snncompile
  computes layers fed only by the constant input once per batch (the peers recompute them every
  step); SpikingJelly's converted network runs one step per call (its converter keeps torch
  layers, which take no time dimension); sinabs gets 8 steps per call. Accuracy and counting runs
  use one thread each, several side by side (same numbers).
- **Status**: `ok` fully spiking; `partial` = some activations left analog (listed); `error` = the
  tool refused the model (message given); `not run` = not reached in the time of this run.
"""


def _load() -> dict[str, dict[str, dict]]:
    """model -> tool -> result doc; a timing-only doc of each tool goes under doc["timing"][threads]."""
    out: dict[str, dict[str, dict]] = {}
    timing = []
    for path in sorted(P.results_dir().glob("*_*.json")):
        doc = json.loads(path.read_text())
        if doc.get("tool") in TOOLS:
            (
                timing.append(doc)
                if doc.get("timing_only")
                else out.setdefault(doc["model"], {}).__setitem__(doc["tool"], doc)
            )
    for doc in timing:
        main = out.get(doc["model"], {}).get(doc["tool"])
        if main is not None:
            main.setdefault("timing", {})[str(doc["threads"])] = {m["mode"]: m for m in doc["modes"]}
    for docs in out.values():  # the back-to-back timing-only pass at P.THREADS replaces in-run timings
        for doc in docs.values():
            passed = doc.get("timing", {}).get(str(P.THREADS), {})
            for m in doc["modes"]:
                if m["mode"] in passed and passed[m["mode"]].get("cpu_us_per_sample_step") is not None:
                    m["us_per_sample_step"] = passed[m["mode"]]["us_per_sample_step"]
                    m["cpu_us_per_sample_step"] = passed[m["mode"]]["cpu_us_per_sample_step"]
                    m["timed_alone"] = True  # targets.py judges speed only on these
    return out


def us_1t(doc: dict | None, mode: str) -> float | None:
    """CPU us per sample-step of ``mode`` in the 1-thread timing-only run, if there was one."""
    m = ((doc or {}).get("timing", {}).get("1") or {}).get(mode)
    return None if m is None else m.get("cpu_us_per_sample_step")


def _rows(docs: dict[str, dict]):
    """(label, tool, mode record, doc) for every tool and mode, in a fixed order."""
    for tool in TOOLS:
        doc = docs.get(tool)
        if doc is None:
            yield tool, tool, None, None
            continue
        for m in doc["modes"]:
            yield f"{tool} {m['mode']}", tool, m, doc


def _at(m: dict | None, key: str, T: int):
    if m is None or m.get(key) is None or T not in m["T"]:
        return None
    return m[key][m["T"].index(T)]


def _fmt(v, kind: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if kind == "acc":
        return f"{100 * v:.1f}"
    if kind == "us":
        return f"{v:.0f}" if v >= 10 else f"{v:.1f}"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def _status(m: dict | None) -> str:
    if m is None:
        return "not run"
    if m["status"] == "error":
        return (
            "not run" if m["error"] == "RuntimeError: not run" else "error: " + m["error"].replace("|", "/")
        )
    if m["status"] == "partial":
        return "partial, analog: " + ", ".join(m["analog_layers"])
    return "ok" + (", binary" if m.get("binary") else ", multi-spike")


def model_tables(model: str, docs: dict[str, dict], grid: list[int]) -> list[str]:
    ann = docs.get("snncompile", {}).get("ann_accuracy")
    if ann is None:
        ann = next((d["ann_accuracy"] for d in docs.values() if d.get("ann_accuracy") is not None), None)
    lines = [f"## {model}", "", f"ANN accuracy on the test samples: {_fmt(ann, 'acc')} %.", ""]
    head = "| tool / mode | " + " | ".join(f"T={T}" for T in grid)
    lines += [
        "Accuracy (%), and us per sample-step (CPU time and wall time with 2 threads; CPU time with 1 thread):",
        "",
        head + " | us CPU | us wall | us CPU, 1 thread | status |",
        "|---|" + "---:|" * (len(grid) + 3) + "---|",
    ]
    for label, _, m, doc in _rows(docs):
        cells = [_fmt(_at(m, "accuracy", T), "acc") for T in grid]
        cpu = _fmt(m.get("cpu_us_per_sample_step") if m else None, "us")
        wall = _fmt(m.get("us_per_sample_step") if m else None, "us")
        one = _fmt(us_1t(doc, m["mode"]) if m else None, "us")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {cpu} | {wall} | {one} | {_status(m)} |")
    for key, title in (
        ("spikes_per_sample", "Spikes per sample"),
        ("synops_per_sample", "Synops per sample"),
    ):
        lines += ["", f"{title} (cumulative up to T; early exit: up to each sample's exit step):", "",
                  head + " |", "|---|" + "---:|" * len(grid)]
        for label, _, m, _ in _rows(docs):
            if m is not None and m["status"] != "error":
                lines.append(f"| {label} | " + " | ".join(_fmt(_at(m, key, T), "n") for T in grid) + " |")
    exits = [(label, m) for label, _, m, _ in _rows(docs) if m and m.get("early_exit") and m["status"] != "error"]
    if exits:
        m0 = exits[0][1]
        lines += ["", (f"snncompile's early-exit modes (`<method> exit <rule>`, {m0.get('exit_metric')} score, "
                       f"max error {m0.get('exit_max_error')}): mean exit step (of at most T):"), "",
                  head + " |", "|---|" + "---:|" * len(grid)]
        for label, m in exits:
            lines.append(f"| {label} | " + " | ".join(
                "–" if (v := _at(m, "mean_steps", T)) is None else f"{v:.2f}" for T in grid) + " |")
    notes = [f"- {label}: {m['notes']}" for label, _, m, _ in _rows(docs)
             if m and m.get("notes") and not m.get("early_exit")]  # an exit mode's notes are its method's
    return lines + ([""] + notes if notes else []) + [""]


def _jobs_table(path: Path) -> list[str]:
    """Wall seconds of each accuracy job (tool x model); the jobs ran several at a time."""
    secs: dict[tuple[str, str], int] = {}
    for ln in path.read_text().splitlines():
        if len(ln.split()) == 3:
            tool, model, s = ln.split()
            secs[(tool, model)] = int(s)
    models = [m for m in P.MODELS if any(k[1] == m for k in secs)]
    tools = [t for t in TOOLS if any(k[0] == t for k in secs)]
    lines = [
        (
            "Wall seconds of each accuracy job (one process, one thread; the jobs ran side by side, "
            "so these are not speed measurements):"
        ),
        "",
        "| tool | " + " | ".join(models) + " | sum |",
        "|---|" + "---:|" * (len(models) + 1),
    ]
    for t in tools:
        row = [secs.get((t, m)) for m in models]
        lines.append(f"| {t} | " + " | ".join("–" if v is None else str(v) for v in row)
                     + f" | {sum(v for v in row if v is not None)} |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--durations", type=Path)
    ap.add_argument("--jobs", type=Path, help='"tool model seconds" lines of the accuracy phase')
    args = ap.parse_args()
    import plots
    import targets

    data = {m: d for m, d in sorted(_load().items(), key=lambda kv: P.MODELS.index(kv[0]))}
    any_doc = next((d for docs in data.values() for d in docs.values()), None)
    grid = any_doc["T"] if any_doc else P.t_grid()
    n_test = any_doc["samples"] if any_doc else P.n_samples()[0]
    n_calib = any_doc["calib_samples"] if any_doc else P.n_samples()[1]
    text = [PROTOCOL.format(calib=n_calib, samples=n_test, tmax=grid[-1], batch=P.BATCH, threads=P.THREADS)]
    text += targets.section(data, KEY_T)
    remarks = Path(__file__).with_name("remarks.md")
    if remarks.exists():
        text += ["## Remarks", "", remarks.read_text().strip(), ""]
    if args.durations and args.durations.exists():
        text += ["## Duration of `make bench-peers`", "", "| stage | seconds |", "|---|---:|"]
        text += [
            f"| {ln.split()[0]} | {ln.split()[1]} |"
            for ln in args.durations.read_text().splitlines()
            if ln.strip()
        ]
        text += [""]
    if args.jobs and args.jobs.exists():
        text += _jobs_table(args.jobs)
    text += ["![accuracy vs T](peers_accuracy_vs_t.png)", "", "![accuracy vs spikes](peers_frontier.png)", ""]
    for model in P.MODELS:
        if model in data:
            text += model_tables(model, data[model], grid)
    DOCS.mkdir(exist_ok=True)
    (DOCS / "peers.md").write_text("\n".join(text))
    plots.accuracy_vs_t(data, DOCS / "peers_accuracy_vs_t.png")
    plots.frontier(data, DOCS / "peers_frontier.png")
    print(f"wrote {DOCS / 'peers.md'} and its two PNGs")


if __name__ == "__main__":
    main()
