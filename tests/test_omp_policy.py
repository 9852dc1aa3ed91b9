"""OpenMP's idle threads sleep (OMP_WAIT_POLICY=PASSIVE) on a busy machine unless the user chose, and the
choice is made before torch loads OpenMP."""

import os
import subprocess
import sys

import pytest

from snncompile import _omp_wait_policy


@pytest.mark.parametrize("load,env,expected", [
    (0.1, {}, None),  # idle: the threads spin, as torch's default
    (0.5, {}, "PASSIVE"),
    (3.7, {}, "PASSIVE"),
    (3.7, {"OMP_WAIT_POLICY": "ACTIVE"}, None),  # the user's choice stands
    (3.7, {"GOMP_SPINCOUNT": "1000"}, None),
    (None, {}, None),  # no load average on this platform
])
def test_policy_follows_the_load_and_the_user(load, env, expected):
    assert _omp_wait_policy(load, env) == expected


@pytest.mark.parametrize("load,seen", [(5.0, "PASSIVE"), (0.0, None)])
def test_policy_is_set_before_torch_is_imported(load, seen):
    # torch's OpenMP reads the variable when it loads: it must be set when torch is first imported
    probe = ("import builtins, os, sys\n"
             f"os.getloadavg = lambda: ({load}, {load}, {load})\n"
             "seen, orig = [], builtins.__import__\n"
             "def hook(name, *a, **k):\n"
             "    if name.split('.')[0] == 'torch' and 'torch' not in sys.modules and not seen:\n"
             "        seen.append(os.environ.get('OMP_WAIT_POLICY'))\n"
             "    return orig(name, *a, **k)\n"
             "builtins.__import__ = hook\n"
             "import snncompile\n"
             "print(seen)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str([seen])
