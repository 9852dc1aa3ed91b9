"""cli.main's exit hook: the heap is frozen for the interpreter's shutdown, after every other atexit hook ran."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MODEL = Path(__file__).resolve().parents[2] / "examples" / "mnist_mlp.onnx"

SCRIPT = """
import atexit, gc, sys
atexit.register(lambda: print("at exit: frozen", gc.get_freeze_count() > 0, flush=True))  # first in, last out
import snncompile.cli as cli
if sys.argv[2] == "main":
    for _ in range(2):
        assert cli.main(["inspect", sys.argv[1], "-q"]) == 0
    print("hooks", len(cli._EXIT_HOOK), "frozen now", gc.get_freeze_count() > 0, flush=True)
"""


def _run(how: str) -> list[str]:
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(MODEL), how], capture_output=True, text=True, timeout=300,
                       check=True)
    return [line for line in p.stdout.splitlines() if line.startswith(("hooks", "at exit"))]


def test_main_freezes_the_heap_only_at_exit_and_registers_once():
    assert _run("main") == ["hooks 1 frozen now False", "at exit: frozen True"]
    assert _run("import") == ["at exit: frozen False"]  # importing the CLI changes nothing
