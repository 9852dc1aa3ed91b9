"""The Python 3.11 shim for lava-nc 0.10.0 and the safe runtime stop.

Networks are tiny (1-2 Lava processes); each test runs in well under a few seconds.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from snncompile.backends.lava import compat as lava_compat

LAVA_COMPAT_FILE = Path(lava_compat.__file__)


def _run(net_src, condition_steps: int, sinks, tag: str = "fixed_pt") -> list[np.ndarray]:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    try:
        net_src.run(condition=RunSteps(num_steps=condition_steps), run_cfg=Loihi2SimCfg(select_tag=tag))
        return [s.data.get() for s in sinks]
    finally:
        lava_compat.stop(net_src)


def test_apply_is_idempotent_and_restores_dataclass():
    original = dataclasses.dataclass
    for _ in range(3):
        lava_compat.apply()
    assert dataclasses.dataclass is original
    assert lava_compat.is_applied()
    from lava.magma.compiler.var_model import ChipEncoder, CoreEncoder

    a, b = CoreEncoder(), CoreEncoder()
    assert a == b and a.x is not b.x  # one ByteEncoder per object, via default_factory
    assert ChipEncoder().z.len == 0


def test_import_lava_rejects_other_modules():
    assert lava_compat.import_lava("lava.proc.io").__name__ == "lava.proc.io"
    with pytest.raises(ValueError, match="not a Lava module"):
        lava_compat.import_lava("numpy")


def _fresh_python(body: str) -> subprocess.CompletedProcess:
    """Run ``body`` in a new interpreter with lava_compat.py loaded by path as ``lc``.

    Loading by path (not via the snncompile package) shows what the shim itself imports.
    """
    code = (
        "import dataclasses, importlib.util, multiprocessing, sys\n"
        f"spec = importlib.util.spec_from_file_location('lc', {str(LAVA_COMPAT_FILE)!r})\n"
        "lc = importlib.util.module_from_spec(spec); spec.loader.exec_module(lc)\n" + body
    )
    return subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )


def test_shim_in_fresh_interpreter_runs_lava_without_torch():
    """Start method already fixed to 'fork' (a bare get_start_method() does that), apply twice, run."""
    res = _fresh_python(
        "multiprocessing.get_start_method()\n"
        "orig = dataclasses.dataclass\n"
        "lc.apply(); lc.apply()\n"
        "assert dataclasses.dataclass is orig and lc.is_applied()\n"
        "import numpy as np\n"
        "from lava.proc.io.source import RingBuffer as Src\n"
        "from lava.proc.io.sink import RingBuffer as Sink\n"
        "from lava.magma.core.run_conditions import RunSteps\n"
        "from lava.magma.core.run_configs import Loihi2SimCfg\n"
        "src = Src(data=np.array([[4, 5, 6]], np.int32)); snk = Sink(shape=(1,), buffer=3)\n"
        "src.s_out.connect(snk.a_in)\n"
        "try:\n"
        "    src.run(condition=RunSteps(num_steps=3), run_cfg=Loihi2SimCfg(select_tag='fixed_pt'))\n"
        "    print(snk.data.get().astype(int).tolist())\n"
        "finally:\n"
        "    lc.stop(src)\n"
        "assert 'torch' not in sys.modules, 'lava_compat or lava imported torch'\n"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[[4, 5, 6]]"


def test_apply_refuses_non_fork_start_method():
    res = _fresh_python(
        "multiprocessing.set_start_method('spawn')\n"
        "try:\n"
        "    lc.apply()\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    assert res.returncode == 0, res.stderr
    assert "start method is already 'spawn'" in res.stdout


def test_source_to_sink_graded_int_payloads():
    """io.source.RingBuffer sends data[..., t-1] at step t; io.sink.RingBuffer stores it there."""
    lava_compat.apply()
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    data = np.array([[[3, -7, 2**20, 0, 5]], [[-1, 0, 1, -(2**20), 9]]], dtype=np.int32)  # (2, 1, 5)
    src = Source(data=data)
    sink = Sink(shape=(2, 1), buffer=5)
    src.s_out.connect(sink.a_in)
    (got,) = _run(src, 5, [sink])
    np.testing.assert_array_equal(got, data)


def test_source_dense_lif_hard_reset_strict_threshold():
    """Stock LIF (du=4095, dv=0 is a non-leaky IF): v += a_in << 6; spike when v > vth << 6; v = 0."""
    lava_compat.apply()
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    steps = 8
    src = Source(data=np.ones((1, steps), dtype=np.int32))
    dense = Dense(weights=np.array([[1]]))
    lif = LIF(shape=(1,), du=4095, dv=0, vth=2)
    sink = Sink(shape=(1,), buffer=steps)
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    (got,) = _run(src, steps, [sink])
    # a_in = 1 from step 2 on (Dense delay); v = 64, 128, 192 > 128 -> spike at step 4, reset, ...
    np.testing.assert_array_equal(got[0], [0, 0, 0, 1, 0, 0, 1, 0])


def _children() -> list[str]:
    """Command lines of this process's live children, except Python's resource tracker."""
    me, found = str(os.getpid()), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = stat.rsplit(")", 1)[1].split()[1]
        if ppid == me and "resource_tracker" not in cmd:
            found.append(cmd)
    return found


def test_stop_after_failing_model_leaves_no_children():
    """A ProcessModel that raises: run() raises, stop() returns promptly, no child is left.

    The failure is real: a float source forced into a fixed_pt network makes Dense's bit-accurate
    model call np.right_shift on a float accumulator (TypeError in the child).
    """
    lava_compat.apply()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import PySendModelFloat
    from lava.proc.io.source import RingBuffer as Source

    before = _children()
    src = Source(data=np.array([[1.5, 2.0]]))
    dense = Dense(weights=np.array([[3]]), num_message_bits=8)
    sink = Sink(shape=(1,), buffer=2)
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(sink.a_in)
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={Source: PySendModelFloat})
    stopper = threading.Thread(target=lava_compat.stop, args=(src,), daemon=True)
    with pytest.raises(RuntimeError, match="Exception"):
        try:
            src.run(condition=RunSteps(num_steps=2), run_cfg=cfg)
        finally:
            stopper.start()
            stopper.join(timeout=30)
    assert not stopper.is_alive(), "lava_compat.stop hung after a failed run"
    tracebacks = lava_compat.child_tracebacks(src)
    assert len(tracebacks) == 1 and "right_shift" in tracebacks[0]
    assert multiprocessing.active_children() == []
    assert _children() == before
