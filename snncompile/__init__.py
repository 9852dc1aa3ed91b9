"""snncompile: compile trained ANNs (ONNX) into spiking networks for neuromorphic hardware.

The conversion is the function ``snncompile.convert.convert`` (``from snncompile.convert import convert``);
``snncompile.convert`` itself is the subpackage, not callable.
"""

__version__ = "0.1.0"

import os


def _omp_wait_policy(others: int | None, load: float | None, env, cores: int = 2) -> str | None:
    """OMP_WAIT_POLICY to set before torch loads OpenMP: "PASSIVE" (idle worker threads sleep) when other
    work competes for the cores torch's threads would use, unless the user chose a policy or spin count.

    ``others``: tasks of other processes runnable right now (:func:`_runnable_elsewhere`; None where the
    platform does not say); torch runs ``OMP_NUM_THREADS`` threads (default: one per core), so the machine
    is oversubscribed when ``others`` exceeds the cores left over. Without ``others``, the 1-minute load
    average ``load`` decides (0.5 or more: busy); it lags, so it also counts work that has just ended
    (a previous compile), which is why it is only the fallback.

    torch's OpenMP threads spin between parallel regions; on an idle machine that is what makes two
    threads faster than one, on a shared one (CI runners) the spinning threads take the cores the
    working ones need. mnist_resnet's adafire conversion at T = 8 on 2 cores: idle, 3.4 s spinning and
    5.1 s sleeping; beside one busy process, 24-34 s spinning and 5.8-6.8 s sleeping (docs/benchmarks.md,
    compile time)."""
    if "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env:
        return None
    if others is not None:
        try:
            threads = int(str(env.get("OMP_NUM_THREADS", "")).split(",")[0])
        except ValueError:
            threads = cores
        threads = cores if threads < 1 else min(threads, cores)
        return "PASSIVE" if others > cores - threads else None
    return "PASSIVE" if load is not None and load >= 0.5 else None


def _runnable_elsewhere(reads: int = 5) -> int | None:
    """Tasks runnable right now besides this one: the kernel's count of runnable tasks (/proc/loadavg's
    4th field, ours included) minus one, the least of ``reads`` reads 1 ms apart (a task that is busy is
    runnable in every read, a short-lived one is not); None without /proc/loadavg. The count is the whole
    host's: under a cpuset or taskset narrower than the host, busy tasks on the other cores count too, and
    so do this process's other threads (both err on the passive side)."""
    import time

    seen = []
    try:
        for i in range(reads):
            if i:
                time.sleep(0.001)
            with open("/proc/loadavg") as f:
                seen.append(int(f.read().split()[3].split("/")[0]) - 1)
    except (OSError, ValueError, IndexError):
        return None
    return max(min(seen), 0)


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # no load average on this platform
        return None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# glibc malloc's tunables (mallopt's parameter numbers) and the values _tune_malloc sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MALLOC_MMAP_THRESHOLD = 32 << 20  # glibc's largest accepted value (HEAP_MAX_SIZE / 2 on 64-bit)
MALLOC_TRIM_THRESHOLD = 256 << 20
# glibc's own malloc variables: any of them set (or a glibc.malloc.* entry in GLIBC_TUNABLES) is the user's tuning
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
MALLOC_OPT_OUT = "SNNCOMPILE_NO_MALLOC_TUNING"  # set (not "" or "0"): leave glibc's defaults


def _users_malloc(env) -> bool:
    """Whether the user chose malloc's behaviour: glibc's variables, its malloc tunables, or our opt-out."""
    return (any(k in env for k in _MALLOC_ENV) or "glibc.malloc." in env.get("GLIBC_TUNABLES", "")
            or env.get(MALLOC_OPT_OUT, "") not in ("", "0"))


def _tune_malloc(env) -> bool:
    """Keep freed tensor memory in the process for the next tensor of that size, unless the user tuned
    glibc's malloc or opted out (:func:`_users_malloc`): returns whether it was set.

    A simulation allocates and frees tensors of 0.1-20 MB at every step. glibc serves blocks above its
    mmap threshold (128 KB, raised on the fly up to the size of the largest block freed) with a fresh
    ``mmap`` and gives the heap's free top back to the kernel above its trim threshold; either way the
    next tensor of that size faults in new zeroed pages. mnist_resnet's whole compile at T = 32
    (``--method adafire``, 2 cores) spent 2.5-4.9 s in the kernel, 1.0-1.5 s with the thresholds here (wall
    14.4-18.2 -> 12.4-16.7 s; peak RSS 0.79-1.0 GB either way; docs/benchmarks.md, "Memory reuse"); blocks
    over 32 MB are still mapped and unmapped each time. Only glibc has ``mallopt``; elsewhere nothing
    changes. The values change no result: the same arithmetic runs on memory from another place."""
    if _users_malloc(env):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):  # glibc only: musl and others have no-op mallopts
            return False
        mallopt = libc.mallopt
    except (ImportError, OSError, AttributeError, TypeError):  # no ctypes; TypeError: CDLL(None) on Windows
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD))


_tune_malloc(os.environ)

if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ and \
        (_policy := _omp_wait_policy(_runnable_elsewhere(), _load_average(), os.environ, _cores())) is not None:
    os.environ["OMP_WAIT_POLICY"] = _policy

from snncompile.errors import CompileError, UnsupportedOperator
from snncompile.ir import Graph

__all__ = ["CompileError", "Graph", "UnsupportedOperator", "__version__", "load_onnx", "simulate"]


def load_onnx(path, **kwargs) -> Graph:
    """Parse an ONNX file (or ModelProto) into a :class:`Graph`; see :mod:`snncompile.frontend.onnx`."""
    from snncompile.frontend.onnx import load_onnx as _load

    return _load(path, **kwargs)


def simulate(snn: Graph, x, timesteps: int = 32, **options):
    """Run an SNN graph on a batch for T steps (fast simulator); see :mod:`snncompile.sim`."""
    from snncompile.sim import simulate as _simulate

    return _simulate(snn, x, timesteps, **options)
