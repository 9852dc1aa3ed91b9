"""``import snncompile`` keeps freed tensor memory in the process (glibc's mmap and trim thresholds), so a
simulation's per-step tensors do not fault in fresh pages every time; a user's own malloc tuning stands."""

import ctypes
import os
import subprocess
import sys

import pytest

from snncompile import _MALLOC_ENV, MALLOC_OPT_OUT, _tune_malloc, _users_malloc


def _glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
    except (OSError, TypeError):  # TypeError: CDLL(None) on Windows
        return False


@pytest.mark.parametrize("env,users", [
    *[({name: "1"}, True) for name in _MALLOC_ENV],
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}, True),
    ({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}, False),  # set for another reason: still tuned
    ({MALLOC_OPT_OUT: "1"}, True),
    ({MALLOC_OPT_OUT: "0"}, False),
    ({MALLOC_OPT_OUT: ""}, False),
    ({}, False),
])
def test_the_users_malloc_tuning_stands(env, users):
    assert _users_malloc(env) is users
    if users:
        assert _tune_malloc(env) is False


# four 20 MB arrays at once, freed, 20 times: the page faults that the last 20 rounds cost. Transparent
# huge pages off (prctl PR_SET_THP_DISABLE; numpy madvises arrays of 4 MB or more as huge otherwise): with
# them, one fault maps 2 MB and the count depends on the kernel's setting and on how fragmented memory is
# (32,000-43,000 faults here untuned with numpy's madvise, 390,000 without huge pages)
_PROBE = """
import ctypes, resource, sys
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE (-1 before Linux 3.15)
if sys.argv[1] == "import":
    import snncompile
import numpy as np

def cycle():
    live = [np.ones(5_000_000, np.float32) for _ in range(4)]
    del live

cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's")
def test_import_keeps_freed_tensor_memory():
    assert _tune_malloc({}) is True

    # the test runner's own malloc tuning (e.g. a CI's GLIBC_TUNABLES) would make the import a no-op
    env = {k: v for k, v in os.environ.items() if k not in (*_MALLOC_ENV, "GLIBC_TUNABLES", MALLOC_OPT_OUT)} | {
        "NUMPY_MADVISE_HUGEPAGE": "0"}

    def faults(how: str) -> int:
        out = subprocess.run([sys.executable, "-c", _PROBE, how], capture_output=True, text=True, check=True,
                             env=env)
        return int(out.stdout)

    tuned, default = faults("import"), faults("none")
    # each round faults in 80 MB anew untuned (about 20,000 pages of 4 KB, 1,200 of 64 KB), none tuned
    assert default > 5_000 and tuned < 500, (tuned, default)
