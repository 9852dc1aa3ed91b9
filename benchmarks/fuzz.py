"""``make fuzz``: mutation fuzzing of the example models, thousands of cases (see tests/test_fuzz.py).

Uses the hypothesis strategies of ``tests/test_fuzz.py`` but keeps going after a failure: every case
that raises anything but a one-line CompileError is a finding, saved as ``OUT/crash-<n>.onnx`` with
its mutation log, and reported once per (exception type, raising line). Prints the outcome counts
(ok / each CompileError subclass / crashes), the slowest cases and the findings, and exits 1 when
there is a finding.

    python benchmarks/fuzz.py [--cases 3000] [--minutes 20] [--seed 0] [--out fuzz-findings]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import traceback
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.test_fuzz import mutant, outcome  # the strategies live with their test

MODELS = ("mlp", "resnet", "concat", "relu6", "functional", "cnn")
CHUNK = 50  # cases per hypothesis run; the time budget is checked between runs


def _record(e: Exception, model: bytes, log: list[str], findings: dict, out: Path) -> None:
    """One finding per (exception type, raising line); the first model of each is saved."""
    frame = traceback.extract_tb(e.__traceback__)[-1]
    key = f"{type(e).__name__} at {Path(frame.filename).name}:{frame.lineno}"
    if key not in findings:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"crash-{len(findings)}.onnx"
        path.write_bytes(model)
        findings[key] = {
            "error": f"{type(e).__name__}: {str(e)[:300]}",
            "mutations": log,
            "file": str(path),
            "count": 0,
        }
    findings[key]["count"] += 1


def fuzz(cases: int, minutes: float, seed: int, out: Path) -> dict:
    counts: collections.Counter[str] = collections.Counter()
    per_model: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    findings: dict[str, dict] = {}
    slow: list[tuple[float, list[str]]] = []
    t_end = time.monotonic() + 60 * minutes

    def run_chunk(n: int, chunk_seed: int) -> None:
        @hypothesis_seed(chunk_seed)
        @settings(
            max_examples=n,
            deadline=None,
            database=None,
            derandomize=False,
            phases=["generate"],
            suppress_health_check=list(HealthCheck),
        )
        @given(st.data())
        def case(data):
            model, log = mutant(data, MODELS)
            t0 = time.perf_counter()
            try:
                result = outcome(model)
                counts[result] += 1
                per_model[log[0]][result] += 1
            except Exception as e:  # noqa: BLE001 - a finding: anything but a one-line CompileError
                _record(e, model, log, findings, out)
                counts["CRASH"] += 1
            slow.append((time.perf_counter() - t0, log))
            slow.sort(key=lambda s: -s[0])
            del slow[5:]

        case()

    t0, done, i = time.monotonic(), 0, 0
    while done < cases and time.monotonic() < t_end:
        run_chunk(min(CHUNK, cases - done), seed * 100_000 + i)
        done, i = done + min(CHUNK, cases - done), i + 1
    return {
        "cases": sum(counts.values()),
        "seconds": round(time.monotonic() - t0, 1),
        "outcomes": dict(counts),
        "per_model": {k: dict(v) for k, v in per_model.items()},
        "slowest": [{"seconds": round(s, 2), "mutations": m} for s, m in slow],
        "findings": findings,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=3000)
    p.add_argument("--minutes", type=float, default=20.0, help="stop after this long (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("fuzz-findings"), help="where crashing models are saved")
    a = p.parse_args()
    torch.set_num_threads(1)
    r = fuzz(a.cases, a.minutes, a.seed, a.out)
    print(json.dumps(r, indent=1))
    return 1 if r["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
