"""Whole compiles as a user runs them: wall, user and kernel seconds of the CLI on the residual example.

Usage (from the repository root; ``make bench-cli``)::

    python benchmarks/cli_time.py                       # 5 runs of the issue-21 command, 1 of each search
    python benchmarks/cli_time.py --runs 3 --baseline /tmp/old   # alternate with an older checkout

Issue 21's target: the residual example's compile at T = 32 (``--method adafire -T 32``, the default
method when the target was set) under 15 s on 2 cores. Each run is a fresh ``snncompile`` process
(``python -m snncompile.cli``: torch's import and the plots count) with the machine's default threads,
on the bundled data (1000 test samples, 256 calibration samples); the process's user and kernel CPU
seconds and peak RSS come from ``wait4``, the stages from report.json's ``timing``. With
``--baseline DIR`` (a checkout of an older commit) every run of the command alternates between it
(run in DIR with ``PYTHONPATH=DIR``; :func:`check_code` makes sure that is the snncompile imported) and this
tree, so both see the same machine. The default compile without flags (the
energy search over method x T) and ``-T 32`` (the method search at T = 32) run ``--search-runs`` times each
(alternating with the baseline too): what a user who leaves the method out waits for. Writes the "cli-time"
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchdoc import write_section

MODEL = "examples/mnist_resnet.onnx"
DATA = ["--data", str(ROOT / "examples/data/mnist_test.npz"), "--calib", str(ROOT / "examples/data/mnist_calib.npz")]
TARGET_S = 15.0
COMMANDS = {  # label -> extra flags
    "--method adafire -T 32": ["--method", "adafire", "-T", "32"],
    "-T 32 (method search)": ["-T", "32"],
    "no flags (energy search)": [],
}


def _env(pythonpath: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    else:
        env.pop("PYTHONPATH", None)
    return env


def check_code(pythonpath: str | None) -> None:
    """The snncompile a run with this PYTHONPATH imports is the one in that checkout."""
    where = Path(pythonpath or ROOT).resolve()
    found = subprocess.run([sys.executable, "-c", "import snncompile; print(snncompile.__file__)"], cwd=where,
                           env=_env(pythonpath), capture_output=True, text=True, check=True).stdout.strip()
    if not Path(found).resolve().is_relative_to(where):
        raise SystemExit(f"{where}: a run there imports snncompile from {found}")


def one_run(flags: list[str], pythonpath: str | None) -> dict:
    env = _env(pythonpath)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.snn"
        load = os.getloadavg()[0]
        with open(Path(tmp) / "stderr", "w+") as err:
            t0 = time.perf_counter()
            # run in the checkout: ``-m`` puts the working directory first on sys.path, before PYTHONPATH
            proc = subprocess.Popen([sys.executable, "-m", "snncompile.cli", str(ROOT / MODEL), *DATA, *flags,
                                     "--out", str(out), "-q"], cwd=pythonpath or ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)  # this run's own CPU seconds and peak RSS
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
            if proc.returncode != 0:
                err.seek(0)
                raise SystemExit(f"snncompile failed ({proc.returncode}): {err.read().strip()[-500:]}")
        report = json.loads((out / "report.json").read_text())
    timing = report.get("timing", {})
    return {"wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
            "rss_gb": usage.ru_maxrss / 2**20, "convert_s": timing.get("convert_s"),
            "simulate_s": timing.get("simulate_s"), "search_s": timing.get("search_s"), "load": load,
            "chosen": f"{report['method']} T={report['timesteps']}"}


def fmt(v, spec=".1f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(rows: list[dict], args, minutes: float) -> str:
    first = next(iter(COMMANDS))
    lines = ["## The residual example's whole compile (CLI, 2 cores)", "",
             f"`python benchmarks/cli_time.py --runs {args.runs} --search-runs {args.search_runs}"
             f"{' --baseline DIR' if args.baseline else ''}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{os.cpu_count()} cores, torch's default threads, {minutes:.1f} min): `snncompile {MODEL} "
             "--data mnist_test.npz --calib mnist_calib.npz FLAGS -q` as fresh processes (torch's import, the "
             "1000 test samples' simulation, report and plots included); user and kernel CPU seconds of the "
             "process, stages from report.json's `timing`, `load` the 1-minute load average before the run (it "
             "lags: after the first run it counts the previous runs too). "
             f"Issue 21's target: `{first}` under {TARGET_S:.0f} s."
             + (f" `before`: the checkout at `{args.baseline_label}`, alternating with this tree (`code`: its "
                f"`git describe`)." if args.baseline
                else ""), "",
             "| command | code | wall s | user s | kernel s | convert s | simulate s | search s | peak RSS GB | load | deployed |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| `{r['command']}` | {r['code']} | {r['wall_s']:.1f} | {r['user_s']:.1f} | {r['sys_s']:.1f} | "
                     f"{fmt(r['convert_s'])} | {fmt(r['simulate_s'])} | {fmt(r['search_s'])} | {r['rss_gb']:.2f} | "
                     f"{r['load']:.1f} | {r['chosen']} |")
    for command in dict.fromkeys(r["command"] for r in rows):
        for code in dict.fromkeys(r["code"] for r in rows):
            walls = [r["wall_s"] for r in rows if r["command"] == command and r["code"] == code]
            if walls:
                under = (f"; under {TARGET_S:.0f} s in {sum(w < TARGET_S for w in walls)} of {len(walls)}"
                         if command == first else "")  # the target is the first command's
                lines += ["", (f"`{command}`, {code}: median {statistics.median(walls):.1f} s, {min(walls):.1f}-"
                               f"{max(walls):.1f} s over {len(walls)} runs{under}.")]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="runs of the issue-21 command (each code, with --baseline)")
    p.add_argument("--baseline", help="checkout of an older commit, alternated with this tree (run there, PYTHONPATH=it)")
    p.add_argument("--baseline-label", default="baseline")
    p.add_argument("--search-runs", type=int, default=1, help="runs of each search command (each code, with --baseline)")
    p.add_argument("--no-searches", action="store_true", help="only the issue-21 command")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = p.parse_args()
    t0 = time.perf_counter()
    head = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, check=False,
                          text=True).stdout.strip() or "this tree"
    codes = ([("before", args.baseline)] if args.baseline else []) + [(head, None)]
    for _, path in codes:
        check_code(path)
    rows = []
    first, *searches = COMMANDS.items()
    plan = [first] * args.runs + ([] if args.no_searches else searches * args.search_runs)
    for label, flags in plan:
        for code, path in codes:
            r = one_run(flags, path) | {"command": label, "code": code}
            rows.append(r)
            print(f"{label:28s} {code:10s} wall {r['wall_s']:5.1f} s  user {r['user_s']:5.1f}  sys {r['sys_s']:4.1f}  "
                  f"convert {fmt(r['convert_s'])}  simulate {fmt(r['simulate_s'])}  search {fmt(r['search_s'])}  "
                  f"load {r['load']:.1f}", flush=True)
    text = markdown(rows, args, (time.perf_counter() - t0) / 60)
    if not args.no_write:
        write_section("cli-time", text, doc=args.doc)
    print(text)


if __name__ == "__main__":
    main()
