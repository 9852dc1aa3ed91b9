"""Command line: ``snncompile MODEL.onnx --target T --data D`` and the inspect/compare/report/run subcommands.

Exit status: 0 success, 1 regression found by ``compare``, 2 bad usage or input (one-line error),
3 internal error (a bug: rerun with -v for the traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

from snncompile import interrupts
from snncompile.errors import CompileError
from snncompile.interrupts import Terminated

__all__ = ["main"]

log = logging.getLogger("snncompile")

EPILOG = """examples:
  snncompile examples/mnist_cnn.onnx --target lava-sim --data examples/data/mnist_test.npz --samples 50
  snncompile model.onnx --target sim --data test.npz --calib calib.npz --method calib-light -T 8 --json
  snncompile model.onnx --data test.npz --calib calib.npz --optimize energy --max-drop 0.5   (search method x T)
  snncompile model.onnx --target sim-int --data test.npz --calib calib.npz -T 8 --method adafire --early-exit both
  snncompile inspect model.onnx
  snncompile compare baseline/report.json new.snn --max-accuracy-drop 0.5 --max-spike-increase 10%
  snncompile report model.snn
  snncompile model.onnx --data test.npz --calib calib.npz --shard 0/2 --out s0   (and 1/2 -> s1)
  snncompile report --merge s0 s1 --out merged
  snncompile model.onnx --target lava-sim --data test.npz --calib calib.npz --ray auto   (an existing Ray cluster)
  snncompile run model.snn --data test.npz --target sim-int

exit status: 0 ok, 1 regression (compare), 2 usage or input error, 3 internal error, 130 interrupted"""

SUBCOMMANDS = ("inspect", "compare", "report", "run")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one `error:` line like every other bad input, not argparse's usage block
        self.exit(2, f"error: {message} (see `{self.prog} -h`)\n")


def _compile_parser() -> argparse.ArgumentParser:
    from snncompile.backends import targets

    p = _Parser(
        prog="snncompile", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Compile a trained ANN (ONNX) into a spiking network, quantize it for Loihi 2, run it "
                    "on a target and write a report. Subcommands: " + ", ".join(SUBCOMMANDS) + " (see "
                    "`snncompile SUBCOMMAND -h`).")
    p.add_argument("model", type=Path, help="ONNX model file")
    p.add_argument("--target", default="sim", choices=targets(), help="where to run or what to export (default: sim)")
    p.add_argument("--data", type=Path, required=True,
                   help="evaluation data: .npz with 'x' (N, *input_shape) float and optional 'y' (N,) labels")
    p.add_argument("--calib", type=Path, help="calibration data (.npz, 'x'); default: samples of --data "
                                               "that are not evaluated")
    p.add_argument("--validation", type=Path, metavar="FILE",
                   help="held-out data (.npz with 'x' and optional 'y'), never the evaluated or calibration "
                        "samples and ideally none the ANN was trained on: the search scores its candidates on its "
                        "first 1000 samples and early exit calibrates its thresholds there. Without it the search "
                        "validates on the samples after --calib-samples in the calibration source and early exit "
                        "calibrates on the calibration samples")
    p.add_argument("--method", help="conversion method (default: searched with T, see --optimize; methods in "
                                    "docs/methods.md)")
    p.add_argument("-O", "--method-option", action="append", default=[], type=_option, metavar="KEY=VALUE",
                   help="an option of --method, repeatable, e.g. -O tau=8 (srp), -O wc=true (calib-advanced: "
                        "weight calibration at the paper's budget), -O percentile=99.9; see docs/methods.md")
    p.add_argument("-T", "--timesteps", type=int, help="time steps per sample (default: searched, see --optimize)")
    p.add_argument("--optimize", choices=("energy", "latency", "accuracy"),
                   help="search method x T (those not fixed by --method/-T) on the validation samples "
                        "(--validation, else a split of the calibration data) and deploy the candidate with the least energy per sample, the fewest "
                        "steps, or the best accuracy; energy, within --max-drop, when none of the three is given")
    p.add_argument("--max-drop", type=float, default=1.0, metavar="POINTS",
                   help="accuracy budget of the search: points of validation accuracy below the ANN (default 1.0)")
    p.add_argument("--early-exit", metavar="RULE", choices=("iat", "precision", "both", "off"),
                   help="stop each sample at its own step once the readout is confident (AdaFire's input-aware "
                        "adaptive timesteps): per-step thresholds lambda_t on the readout's score, calibrated "
                        "against the ANN's predictions on the --validation samples when given, else on the "
                        "calibration samples. RULE: iat (the AdaFire authors' "
                        "heuristic lambda_t = 0.6 + 0.4 exp(min_t e_t - e_t), e_t the mean entropy of the samples "
                        "right at t), precision (the lowest lambda_t at which at most --exit-max-error of the "
                        "samples that would exit at t disagree with the ANN), both (the larger of the "
                        "two), off (never). sim and sim-int count spikes, synops and energy to each sample's exit step; "
                        "Lava too, from the per-step counts its processes record, though it runs every sample's "
                        "full window (the report says so). The search scores its candidates with "
                        "it. Default: a search for energy or latency scores every candidate with the full T and with "
                        "each rule (iat, precision, both), and deploys the best (not for the nir and netx exports, which run "
                        "the full T); a run with -T and --method fixed runs the full T")
    p.add_argument("--exit-metric", choices=("entropy", "confidence"), default=None,
                   help="score of --early-exit: entropy (1 - normalized entropy of softmax of the readout, "
                        "default) or confidence (its largest probability)")
    p.add_argument("--exit-max-error", type=float, default=None, metavar="FRACTION",
                   help="--early-exit precision/both: the largest fraction of the samples the thresholds are calibrated on exiting at a "
                        "step that may disagree with the ANN (default 0.002)")
    p.add_argument("--calib-samples", type=int, default=256, help="calibration samples (default 256)")
    p.add_argument("--samples", type=int, help="evaluate only the first N samples of --data")
    p.add_argument("--out", type=Path, help="output directory (default: <model-stem>.snn/)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device of the fast simulator (cpu, cuda)")
    p.add_argument("--energy", default="horowitz45nm",
                   help="energy model: horowitz45nm, loihi, or a JSON file of constants")
    p.add_argument("--batch-size", type=int, default=256, help="simulation batch size (default 256)")
    p.add_argument("--json", action="store_true", help="print report.json on stdout")
    p.add_argument("--shard", type=_shard, metavar="I/N",
                   help="evaluate only the I-th of N equal slices of the samples (merge with `report --merge`)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="evaluate the shards as Ray tasks: on a new local Ray instance, or with ADDRESS (auto, "
                        "ray://HOST:10001) on an existing cluster; needs the ray extra (pip install 'snncompile[ray]')")
    p.add_argument("--ray-cpus", type=int, metavar="N", help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--shards", type=int, metavar="K",
                   help="evaluate in K contiguous shards and merge them into one report (default with --ray: one "
                        "per worker, at most 2048 samples each); without --ray one after another in this process")
    _verbosity(p)
    return p


def _option(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as JSON where it parses (8, 99.9, true, [1, 2]), else as a string."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as tau=8, got {text!r}")
    try:
        v = json.loads(value)
    except ValueError:
        v = value
    return key.strip(), tuple(v) if isinstance(v, list) else v


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 0/4, got {text!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"need 0 <= I < N, got {text!r}")
    return i, n


def _verbosity(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors, no progress bars")
    g.add_argument("-v", "--verbose", action="store_true", help="debug output and tracebacks")


def _sub_parser(cmd: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"snncompile {cmd}", formatter_class=argparse.RawDescriptionHelpFormatter)
    if cmd == "inspect":
        p.description = "Show the imported graph, shapes, supported operators and per-layer neurons/synapses."
        p.add_argument("model", type=Path)
    elif cmd == "compare":
        p.description = "Compare two reports (baseline A, new B); exit 1 when B regressed beyond the limits."
        p.add_argument("baseline", type=Path, help="report.json or output directory")
        p.add_argument("new", type=Path, help="report.json or output directory")
        p.add_argument("--max-accuracy-drop", type=float, default=0.5, help="points (default 0.5)")
        p.add_argument("--max-spike-increase", default="10%", help="e.g. 10%% or an absolute number (default 10%%)")
        p.add_argument("--max-synops-increase", default="10%", help="default 10%%")
        p.add_argument("--max-energy-increase", default=None, help="default: not checked")
    elif cmd == "report":
        p.description = ("Re-render report.md and the plots of an output directory from its report.json, or "
                         "merge the directories of shard runs (--shard i/n) into one report (--merge ... --out).")
        p.add_argument("directories", type=Path, nargs="+", help="output directory (several with --merge)")
        p.add_argument("--merge", action="store_true", help="merge shard reports into --out")
        p.add_argument("--out", type=Path, help="output directory of the merged report")
        p.add_argument("--force", action="store_true", help="replace --out if it exists")
    elif cmd == "run":
        p.description = "Re-run a compiled artifact (DIR/compiled) on data, without the ONNX file."
        p.add_argument("directory", type=Path, help="output directory of a compile run, or its compiled/ folder")
        p.add_argument("--data", type=Path, required=True)
        p.add_argument("--target", default="sim-int", choices=_artifact_targets(),
                       help="a target that can re-run an integer artifact (default sim-int)")
        p.add_argument("-T", "--timesteps", type=int)
        p.add_argument("--samples", type=int)
    _verbosity(p)
    return p


class _OneLine(logging.Formatter):
    """Log lines as printed: control characters from inputs (node names, paths) escaped (safeio.clean)."""

    def format(self, record: logging.LogRecord) -> str:
        from snncompile.safeio import clean

        return clean(super().format(record), 4000)


def _artifact_targets() -> tuple[str, ...]:
    from snncompile.backends import get_backend, targets

    out = []
    for t in targets():
        try:
            if get_backend(t).runs_artifacts:
                out.append(t)
        except CompileError:  # a backend whose module cannot be imported here
            continue
    return tuple(out)


def _setup_logging(args) -> None:
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine("%(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    if not args.verbose:
        import warnings

        from snncompile.safeio import clean

        warnings.formatwarning = lambda m, c, *a, **k: f"warning: {clean(m, 4000)}\n"


_MAIN_PID = os.getpid()
_EXIT_HOOK: list = []  # the atexit hook of _freeze_heap_at_exit, once registered


def _freeze_heap_at_exit() -> None:
    """Register, once per process, an atexit hook that moves every live object into gc's permanent generation.

    The interpreter's shutdown then frees objects by reference count only instead of first walking the
    whole heap of torch, onnx and matplotlib objects in its final garbage collections (0.4-0.6 s after a
    compile of examples/mnist_resnet.onnx). Every atexit hook still runs (those registered before this one
    after it); only reference cycles still alive at exit are left to the OS, as Python allows."""
    if not _EXIT_HOOK:
        import atexit
        import gc

        _EXIT_HOOK.append(atexit.register(gc.freeze))


def _on_sigterm(signum, frame):
    if os.getpid() != _MAIN_PID:  # a forked worker (Lava's process models) inherited the handler: die as usual
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if interrupts.pending():  # a second TERM, during the cleanup of the first: let the cleanup finish
        return
    interrupts.request()  # if this exception is lost (inside an at-fork hook), the next checkpoint raises again
    raise Terminated()


def _one_line(e: BaseException) -> str:
    from snncompile.safeio import clean

    return clean(str(e), 2000) if str(e) else type(e).__name__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cmd = argv[0] if argv and argv[0] in SUBCOMMANDS else "compile"
    parser = _compile_parser() if cmd == "compile" else _sub_parser(cmd)
    args = parser.parse_args(argv if cmd == "compile" else argv[1:])
    _setup_logging(args)
    _freeze_heap_at_exit()
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        from snncompile import commands

        return getattr(commands, cmd)(args)
    except CompileError as e:
        if args.verbose:  # the traceback, then the same error line and status as without -v
            traceback.print_exc()
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except MemoryError as e:  # an input too large for this machine: say what did not fit
        if args.verbose:
            traceback.print_exc()
        print(f"error: out of memory ({_one_line(e)}); use fewer --samples, a smaller --batch-size or "
              f"--calib-samples", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug in snncompile, not the user's input: exit 3, never a crash
        if args.verbose:
            traceback.print_exc()
        print(f"internal error: {type(e).__name__}: {_one_line(e)}"
              + ("" if args.verbose else " (rerun with -v for the traceback)"), file=sys.stderr)
        return 3
    finally:
        interrupts.clear()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
