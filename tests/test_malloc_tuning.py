"""``import snncompile`` keeps freed tensor memory in the process (glibc's mmap and trim thresholds), so a
simulation's per-step tensors do not fault in fresh pages every time; a user's own malloc tuning stands."""

import ctypes
import subprocess
import sys

import pytest

from snncompile import _MALLOC_ENV, _tune_malloc


def _glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
    except OSError:
        return False


@pytest.mark.parametrize("name", _MALLOC_ENV)
def test_the_users_malloc_tuning_stands(name):
    assert _tune_malloc({name: "1"}) is False


# four 20 MB arrays at once, freed, 20 times: the page faults that the last 20 rounds cost
_PROBE = """
import resource, sys
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

    def faults(how: str) -> int:
        out = subprocess.run([sys.executable, "-c", _PROBE, how], capture_output=True, text=True, check=True)
        return int(out.stdout)

    tuned, default = faults("import"), faults("none")
    # each round maps 80 MB anew without the tuning (about 20,000 pages, fewer with huge pages), none with it
    assert default > 5_000 and tuned < 500, (tuned, default)
