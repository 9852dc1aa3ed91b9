"""The CLI's commands, one function each, taking the parsed arguments and returning the exit status."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

from snncompile.errors import DataError

__all__ = ["compare", "compile", "inspect", "report", "run"]

log = logging.getLogger("snncompile")


def compile(args) -> int:
    from snncompile.artifact import save_artifact
    from snncompile.outdir import check_writable, write_atomically
    from snncompile.pipeline import RunConfig, run
    from snncompile.report import render_markdown, write_plots
    from snncompile.safeio import dumps, write_file

    out = args.out or Path(f"{args.model.stem}.snn")
    protect = [args.model, args.data, args.calib, args.validation,
               *([Path(args.energy)] if Path(args.energy).exists() else [])]
    check_writable(out, force=args.force, protect=protect)
    for flag, v in (("--ray-cpus", args.ray_cpus), ("--shards", args.shards)):
        if v is not None and v < 1:
            raise DataError(f"{flag} must be >= 1, got {v}")
    cfg = RunConfig(model=args.model, data=args.data, target=args.target, calib=args.calib, method=args.method,
                    timesteps=args.timesteps, calib_samples=args.calib_samples, samples=args.samples,
                    seed=args.seed, device=args.device, energy=args.energy, batch_size=args.batch_size,
                    progress=not args.quiet, shard=args.shard, objective=args.optimize, max_drop=args.max_drop,
                    method_options=dict(args.method_option), early_exit=args.early_exit,
                    exit_metric=args.exit_metric or RunConfig.exit_metric,  # the flags' defaults: RunConfig's
                    exit_max_error=RunConfig.exit_max_error if args.exit_max_error is None else args.exit_max_error,
                    validation=args.validation)
    searched = args.method is None or args.timesteps is None  # the search scores early-exit candidates
    if (args.exit_metric is not None or args.exit_max_error is not None) and (
            args.early_exit == "off" or (args.early_exit is None and not searched)):
        raise DataError("--exit-metric and --exit-max-error are options of early exit: give --early-exit RULE, or "
                        "leave -T or --method out so that the search scores early-exit candidates")
    if cfg.method_options and cfg.method is None:
        raise DataError("-O/--method-option sets an option of one method; give --method too")
    if args.ray is not None or args.shards is not None or args.ray_cpus is not None:
        from snncompile.distributed import run_sharded

        if args.shard is not None:
            raise DataError("--shard I/N evaluates one shard; it cannot be combined with --ray or --shards")
        result = run_sharded(cfg, shards=args.shards, ray_address=args.ray, ray_cpus=args.ray_cpus)
    else:
        result = run(cfg)
    r = result.report

    def fill(d: Path) -> None:
        write_file(d / "report.json", dumps(r))
        write_file(d / "report.md", render_markdown(r))
        write_plots(r, d, result.scatter)
        artifact = result.pop_int if result.pop_int is not None else result.snn
        save_artifact(artifact, d / "compiled", extra={"target": r["target"], "timesteps": r["timesteps"],
                                                       "method": r["method"]})
        result.backend.write(result, d)

    write_atomically(out, fill, force=args.force, protect=protect)
    result.backend.check(r, out)  # e.g. loihi2 without lava-loihi: a clear error once the files are written
    _summary(r, out)
    if args.json:
        print(dumps(r))
    return 0


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def _summary(r: dict, out: Path) -> None:
    acc = r["accuracy"]
    ratio = r["energy"]["ratio"]
    log.info("ANN accuracy: %s | SNN accuracy on %s (T=%d, %s%s): %s | spikes/sample: %.1f | synops/sample: %.1f | "
             "energy ANN/SNN (%s): %s", _pct(acc["ann"]), r["target"], r["timesteps"], r["method"],
             f", searched: {r['search']['objective']}" if "search" in r else "", _pct(acc["snn"]),
             r["spikes_per_sample"], r["synops_per_sample"], r["energy"]["model"],
             "n/a" if ratio is None else f"{ratio:.2f}x")
    log.info("report: %s", out / "report.md")


def inspect(args) -> int:
    from snncompile import load_onnx
    from snncompile.errors import UnsupportedOperator
    from snncompile.ir import IF, ReLU
    from snncompile.safeio import clean

    try:
        g = load_onnx(args.model)
    except UnsupportedOperator:
        _list_unsupported(args.model)
        raise
    print(g)
    print("\nspiking layers (each ReLU/Clip becomes an IF population):")
    total_n = total_s = 0
    for n in g.nodes.values():
        if isinstance(n, (ReLU, IF)):
            neurons = int(np.prod(g.shapes[n.name]))
            syn = _synapses_into(g, n)
            total_n, total_s = total_n + neurons, total_s + syn
            print(f"  {clean(n.name, 200):<24} {n.op:<6} from {clean(getattr(n, 'source_op', n.op), 40):<6} "
                  f"neurons {neurons:>8}  "
                  f"incoming synapses {syn:>10}")
    print(f"  total: {total_n} neurons, {total_s} synapses (+ readout)")
    return 0


def _list_unsupported(path: Path) -> None:
    """Print every node whose operator type the frontend does not know (all of them, not just the first)."""
    import onnx

    from snncompile.frontend.onnx import SUPPORTED_OPS
    from snncompile.safeio import clean

    for i, n in enumerate(onnx.load(str(path)).graph.node):
        if n.op_type not in SUPPORTED_OPS or n.domain not in ("", "ai.onnx"):
            print(f"unsupported: {clean(n.name or f'{n.op_type}_{i}', 200)} ({clean(n.op_type, 60)})")


def _synapses_into(g, node) -> int:
    """Weights feeding ``node`` through its nearest weighted producer (per-sample synapse count)."""
    prod = g.nodes[node.inputs[0]]
    w = getattr(prod, "weight", None)
    if w is None:
        return 0
    out = g.shapes[prod.name]
    return int(np.prod(out[1:]) if len(out) == 3 else 1) * int(np.prod(w.shape))


def compare(args) -> int:
    from snncompile.report import compare as cmp
    from snncompile.report import load_report

    a, b = load_report(args.baseline, full=False), load_report(args.new, full=False)
    regressed, table = cmp(a, b, max_accuracy_drop=args.max_accuracy_drop, max_spike_increase=args.max_spike_increase,
                           max_synops_increase=args.max_synops_increase, max_energy_increase=args.max_energy_increase)
    print(table)
    print("REGRESSION" if regressed else "no regression")
    return 1 if regressed else 0


def report(args) -> int:
    from snncompile.outdir import write_atomically
    from snncompile.report import load_report, merge, render_markdown, write_plots
    from snncompile.safeio import clean, dumps, write_file

    if not args.merge:
        if len(args.directories) != 1 or args.out:
            raise DataError("report: give one directory to re-render, or --merge DIR... --out DIR")
        d = args.directories[0]
        if not d.is_dir():
            raise DataError(f"{clean(d)}: not a directory; `report` re-renders an output directory")
        r = load_report(d)
        write_file(d / "report.md", render_markdown(r))  # new files renamed into place: never through a link
        write_plots(r, d)
        log.info("re-rendered %s", clean(d / "report.md"))
        return 0
    if args.out is None:
        raise DataError("report --merge: --out DIR is required")
    reports = [load_report(d) for d in args.directories]
    missing = [str(d) for d, r in zip(args.directories, reports) if "totals" not in r]
    if missing:
        raise DataError(f"{clean(missing[0])}: report has no 'totals'; only reports of compile runs can be merged")
    r = merge(reports)

    def fill(d: Path) -> None:
        write_file(d / "report.json", dumps(r))
        write_file(d / "report.md", render_markdown(r))
        write_plots(r, d)

    write_atomically(args.out, fill, force=args.force, protect=args.directories)
    log.info("merged %d shards (%d samples): %s", len(args.directories), r["samples"], clean(args.out / "report.md"))
    return 0


def run(args) -> int:
    from snncompile.artifact import load_artifact
    from snncompile.backends import get_backend
    from snncompile.data import check_against, load_npz
    from snncompile.evaluate import from_population_sim
    from snncompile.safeio import clean

    for flag, v in (("--samples", args.samples), ("--timesteps", args.timesteps)):
        if v is not None and v < 1:
            raise DataError(f"{flag} must be >= 1, got {v}")
    d = args.directory / "compiled" if (args.directory / "compiled").is_dir() else args.directory
    g, manifest = load_artifact(d)
    if g.stage != "integer":
        raise DataError(f"{clean(d)}: not an integer (population) artifact; compile with an integer target")
    data = load_npz(args.data, limit=args.samples)
    if args.samples is not None and args.samples > len(data):
        warnings.warn(f"--samples {args.samples}: {clean(data.source)} holds only {len(data)} samples; evaluating "
                      f"{len(data)}", stacklevel=2)
    data = data.take(0, args.samples) if args.samples else data
    check_against(data, g.input.data_shape, int(np.prod(g.shapes[g.outputs[0].name])))
    data = data.in_layout(g.input)  # a folded input Transpose: the model's samples reordered once
    T = args.timesteps or int(manifest["timesteps"])
    res = get_backend(args.target).run(g, data.x, T, progress=not args.quiet)
    ev = from_population_sim(g, res, data.y, args.target)
    info = {"target": args.target, "timesteps": T, "samples": ev.samples, "accuracy": ev.accuracy,
            "spikes_per_sample": sum(res.spikes.values()) / ev.samples}  # all that ran (Lava: relays too)
    if ev.exit_steps is not None:  # compiled with --early-exit: predictions at each sample's exit step
        info.update({"early_exit": ev.exit_policy["rule"], "mean_steps": float(np.mean(ev.exit_steps)),
                     "counts": ev.exit_counts})
        if ev.exit_counts == "exit_step":  # counted to the exit steps from the run's per-step trace (Lava: relays too)
            from snncompile.sim.early_exit import counts_to_exit

            c = counts_to_exit(res.trace, ev.exit_steps, res.pre_steps)
            info["spikes_per_sample"] = sum(float(v[0]) for v in c.values()) / ev.samples
    print(json.dumps(info, indent=1), file=sys.stdout)
    return 0
