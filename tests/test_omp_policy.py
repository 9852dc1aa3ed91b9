"""Importing snncompile makes OpenMP's idle threads sleep (OMP_WAIT_POLICY=PASSIVE) unless the user chose."""

import os
import subprocess
import sys

import pytest

PROBE = "import snncompile, os, torch; print(os.environ['OMP_WAIT_POLICY'])"


@pytest.mark.parametrize("given,expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_wait_policy_is_passive_unless_set(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_policy_is_set_before_torch_is_imported():
    # torch's OpenMP reads the variable when it loads: it must be set when torch is first imported
    probe = ("import builtins, os, sys\n"
             "seen, orig = [], builtins.__import__\n"
             "def hook(name, *a, **k):\n"
             "    if name.split('.')[0] == 'torch' and 'torch' not in sys.modules and not seen:\n"
             "        seen.append(os.environ.get('OMP_WAIT_POLICY'))\n"
             "    return orig(name, *a, **k)\n"
             "builtins.__import__ = hook\n"
             "import snncompile\n"
             "print(seen)\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['PASSIVE']"
