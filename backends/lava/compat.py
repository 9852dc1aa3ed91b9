"""Make lava-nc 0.10.0 importable on Python 3.11, and stoppable after a failed run.

lava-nc 0.10.0 is the last release (the project is archived) and was written for Python <= 3.10.
Three defects get in the way; this module works around each without editing Lava's files.
It imports neither torch nor any Lava process. See ``docs/lava_internals.md`` for the findings.

1. Unhashable dataclass defaults (Python 3.11)
----------------------------------------------
``lava/magma/compiler/var_model.py`` declares dataclasses (``CoreEncoder``, ``ChipEncoder``,
``AxonEncoder``) whose fields default to an *instance* of another dataclass, ``ByteEncoder()``.
A plain ``@dataclass`` sets ``__hash__ = None``, so that instance is unhashable, and since
Python 3.11 ``dataclasses`` rejects every unhashable default with
``ValueError: mutable default ... use default_factory``. ``AbstractProcess``, the compiler and the
runtime all import ``var_model``, so without a fix no Lava program runs.

:func:`apply` imports ``var_model``; if that fails with the error above it swaps
``dataclasses.dataclass`` for a wrapper *only while re-importing that one module*. The wrapper
turns each annotated class attribute holding an unhashable dataclass instance into
``field(default_factory=lambda: copy.deepcopy(value))`` - what the declarations meant: every
object gets its own ``ByteEncoder``. The original decorator is restored in a ``finally``. Modules
that ``var_model`` imports were loaded by the first, failed attempt, so they never see the wrapper.

2. ``multiprocessing.set_start_method('fork')`` at import time
--------------------------------------------------------------
``lava/magma/runtime/message_infrastructure/multiprocessing.py`` calls
``mp.set_start_method('fork')`` when imported. That raises ``RuntimeError: context has already
been set`` if anything fixed the start method earlier - even a mere
``multiprocessing.get_start_method()`` call. :func:`apply` imports that module itself: when the
method is already ``'fork'`` it lets Lava's call through as a no-op; when it is another method it
raises ``ImportError`` saying so, since Lava's runtime only works with ``fork``.

3. ``proc.stop()`` hangs after a ProcessModel raised
----------------------------------------------------
When a model raises, ``Runtime._get_resp_for_run`` (``magma/runtime/runtime.py``) joins every
runtime process and raises ``RuntimeError("1 Exception(s) occurred. See output above ...")`` but
leaves the runtime marked as started. ``proc.stop()`` then sends STOP and waits forever for
replies from processes that no longer exist; ``Runtime.__del__`` does the same at interpreter
exit (compare upstream issue lava-nc/lava#231). :func:`stop` skips that handshake when a runtime
process has ended and still shuts the shared-memory manager down, leaving no child process or
shared-memory block. The child tracebacks, which Lava only logs at INFO level, are returned by
:func:`child_tracebacks`.

Usage (children inherit the patched modules: Lava forks)::

    from snncompile.backends.lava import compat as lava_compat
    lava_compat.apply()                  # idempotent, thread-safe
    from lava.proc.lif.process import LIF
    ...
    try:
        src.run(condition=..., run_cfg=...)
    finally:
        lava_compat.stop(src)
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import multiprocessing
import sys
import threading
import types
from typing import Any

__all__ = ["MP_MODULE", "VAR_MODEL", "apply", "child_tracebacks", "import_lava", "is_applied", "stop"]

VAR_MODEL = "lava.magma.compiler.var_model"
MP_MODULE = "lava.magma.runtime.message_infrastructure.multiprocessing"
_lock = threading.Lock()


# ------------------------------------------------------------------ 1. dataclass defaults
def _is_unhashable_dataclass_instance(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type) and type(value).__hash__ is None


def _copier(value: Any):
    return lambda: copy.deepcopy(value)


def _fix_defaults(cls: type) -> type:
    """Replace unhashable dataclass-instance defaults of ``cls``'s fields by default factories."""
    for name in inspect.get_annotations(cls):
        value = cls.__dict__.get(name)
        if _is_unhashable_dataclass_instance(value):
            setattr(cls, name, dataclasses.field(default_factory=_copier(value)))
    return cls


def _tolerant_dataclass(original):
    """A stand-in for ``dataclasses.dataclass`` that applies :func:`_fix_defaults` first."""

    def dataclass(cls=None, /, **kwargs):
        if cls is None:
            return lambda c: original(_fix_defaults(c), **kwargs)
        return original(_fix_defaults(cls), **kwargs)

    return dataclass


def _import_var_model() -> None:
    try:
        importlib.import_module(VAR_MODEL)
        return
    except ModuleNotFoundError as err:
        raise ImportError(
            f"lava_compat: cannot import {VAR_MODEL} ({err}); install lava-nc==0.10.0 "
            "(pip install --ignore-requires-python lava-nc==0.10.0)"
        ) from err
    except ValueError as err:
        if "mutable default" not in str(err):
            raise
    sys.modules.pop(VAR_MODEL, None)
    original = dataclasses.dataclass
    dataclasses.dataclass = _tolerant_dataclass(original)
    try:
        importlib.import_module(VAR_MODEL)
    finally:
        dataclasses.dataclass = original


# ------------------------------------------------------------------ 2. start method
def _import_runtime_multiprocessing() -> None:
    method = multiprocessing.get_start_method(allow_none=True)
    if method is None:
        importlib.import_module(MP_MODULE)
        return
    if method != "fork":
        raise ImportError(
            f"lava_compat: the multiprocessing start method is already {method!r}; Lava's runtime "
            f"({MP_MODULE}) needs 'fork'. Apply the shim before anything sets the start method."
        )
    original = multiprocessing.set_start_method

    def keep_fork(method: str, force: bool = False) -> None:
        if method != "fork":
            original(method, force=force)

    multiprocessing.set_start_method = keep_fork
    try:
        importlib.import_module(MP_MODULE)
    finally:
        multiprocessing.set_start_method = original


def is_applied() -> bool:
    """True once both patched Lava modules are imported."""
    return VAR_MODEL in sys.modules and MP_MODULE in sys.modules


def apply() -> None:
    """Make Lava importable and runnable here; safe to call any number of times, from any thread.

    Raises:
        ImportError: lava-nc is missing, or the multiprocessing start method is not ``fork``.
    """
    if is_applied():
        return
    with _lock:
        if VAR_MODEL not in sys.modules:
            _import_var_model()
        if MP_MODULE not in sys.modules:
            _import_runtime_multiprocessing()


def import_lava(module: str) -> types.ModuleType:
    """Apply the shim, then import and return a Lava module, e.g. ``import_lava("lava.proc.io")``.

    Raises:
        ValueError: ``module`` is not inside the ``lava`` namespace.
    """
    if module != "lava" and not module.startswith("lava."):
        raise ValueError(f"lava_compat.import_lava: {module!r} is not a Lava module")
    apply()
    return importlib.import_module(module)


# ------------------------------------------------------------------ 3. stopping
def _actors(proc: Any) -> list:
    infra = getattr(getattr(proc, "runtime", None), "_messaging_infrastructure", None)
    return list(getattr(infra, "actors", []))


def _has_ended(actor: Any) -> bool:
    # SystemProcess.join() closes the process object; is_alive() raises on a closed one.
    return bool(getattr(actor, "_is_done", False)) or not actor.is_alive()


def child_tracebacks(proc: Any) -> list[str]:
    """Formatted tracebacks of the runtime processes of ``proc``'s network that raised.

    Lava reports a failing ProcessModel only as ``RuntimeError("N Exception(s) occurred")`` and
    logs the child traceback at INFO level; call this after catching that error.
    """
    return [actor.exception[1] for actor in _actors(proc) if _has_ended(actor) and actor.exception]


def stop(proc: Any, *, force: bool = False) -> None:
    """Stop the Lava runtime of ``proc``'s network; never blocks after a failed run.

    Use in ``finally:`` instead of ``proc.stop()``. A no-op if the network never ran. A stopped
    network cannot run again (Lava 0.10.0 segfaults): build a new one. ``force`` (on Ctrl-C or
    SIGTERM, when the runtime processes may be dying of the same signal right now) skips the STOP
    handshake: the processes are terminated and joined, then the shared memory is released.
    """
    runtime = getattr(proc, "runtime", None)
    if runtime is None:
        return
    actors = _actors(proc)
    if runtime._is_started and (force or any(_has_ended(a) for a in actors)):
        # A runtime process died: nobody can answer the STOP handshake, so skip it.
        for actor in actors:
            if not _has_ended(actor):
                actor.terminate()
        runtime._is_running = False
        runtime._is_started = False
        runtime.join()
    runtime.stop()
