"""OpenMP's idle threads sleep (OMP_WAIT_POLICY=PASSIVE) when other work competes for the cores, unless the
user chose; the choice reads what is runnable now (the load average only where that is unknown), and is
made before torch loads OpenMP."""

import os
import subprocess
import sys

import pytest

from snncompile import _omp_wait_policy, _runnable_elsewhere


@pytest.mark.parametrize("others,load,env,cores,expected", [
    (0, 3.7, {}, 2, None),  # nothing else runnable now: spin, as torch's default, whatever ran a minute ago
    (1, 0.0, {}, 2, "PASSIVE"),  # one busy process beside torch's 2 threads on 2 cores
    (3, 0.0, {}, 2, "PASSIVE"),
    (1, 0.0, {"OMP_NUM_THREADS": "1"}, 2, None),  # one thread leaves a core for the other process
    (2, 0.0, {"OMP_NUM_THREADS": "1"}, 2, "PASSIVE"),
    (1, 0.0, {"OMP_NUM_THREADS": "4"}, 16, None),
    (1, 0.0, {"OMP_NUM_THREADS": "junk"}, 2, "PASSIVE"),  # unreadable: torch's default, one per core
    (5, 3.7, {"OMP_WAIT_POLICY": "ACTIVE"}, 2, None),  # the user's choice stands
    (5, 3.7, {"GOMP_SPINCOUNT": "1000"}, 2, None),
    (None, 0.1, {}, 2, None),  # no runnable count: the load average decides
    (None, 0.5, {}, 2, "PASSIVE"),
    (None, None, {}, 2, None),  # neither on this platform
])
def test_policy_follows_the_machine_and_the_user(others, load, env, cores, expected):
    assert _omp_wait_policy(others, load, env, cores) == expected


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="needs Linux's /proc/loadavg")
def test_runnable_count_sees_a_busy_process():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.5)
        assert _runnable_elsewhere() >= 1
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.parametrize("others,seen", [(5, "PASSIVE"), (0, None)])
def test_policy_is_set_before_torch_is_imported(others, seen):
    # torch's OpenMP reads the variable when it loads: it must be set when torch is first imported;
    # /proc/loadavg is read through builtins.open, which the probe replaces to fake the runnable count
    probe = ("import builtins, io, os, sys\n"
             "os.getloadavg = lambda: (0.0, 0.0, 0.0)\n"
             "real_open = builtins.open\n"
             "def fake_open(f, *a, **k):\n"
             f"    return io.StringIO('0.00 0.00 0.00 {others + 1}/100 1') if f == '/proc/loadavg' "
             "else real_open(f, *a, **k)\n"
             "builtins.open = fake_open\n"
             "seen, orig = [], builtins.__import__\n"
             "def hook(name, *a, **k):\n"
             "    if name.split('.')[0] == 'torch' and 'torch' not in sys.modules and not seen:\n"
             "        seen.append(os.environ.get('OMP_WAIT_POLICY'))\n"
             "    return orig(name, *a, **k)\n"
             "builtins.__import__ = hook\n"
             "import snncompile\n"
             "builtins.open = real_open\n"
             "print(seen)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str([seen])
