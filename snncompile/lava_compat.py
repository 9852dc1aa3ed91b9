"""Make lava-nc 0.10.0 importable on Python 3.11.

Why this exists
---------------
lava-nc 0.10.0 (the last release; the project is archived) was written for Python <= 3.10.
``lava/magma/compiler/var_model.py`` declares dataclasses (``CoreEncoder``, ``ChipEncoder``,
``AxonEncoder``) whose fields default to an *instance* of another dataclass, ``ByteEncoder()``.
A plain ``@dataclass`` sets ``__hash__ = None``, so that instance is unhashable, and since
Python 3.11 ``dataclasses`` rejects every unhashable default with
``ValueError: mutable default ... use default_factory``. Almost every Lava entry point
(``AbstractProcess``, the compiler, the runtime) imports ``var_model``, so without a fix no Lava
program can run.

What the shim does
------------------
:func:`apply` imports ``lava.magma.compiler.var_model``. If that fails with the error above, it
swaps ``dataclasses.dataclass`` for a wrapper *only while re-importing that one module*; the
wrapper turns each class attribute that is an (unhashable) dataclass instance into
``field(default_factory=lambda: copy.deepcopy(value))``, which is what those declarations meant
(every object gets its own ``ByteEncoder``). The original decorator is restored in a ``finally``
before :func:`apply` returns. Modules that ``var_model`` imports are loaded by the first, failed
attempt, so they never see the wrapper.

:func:`apply` is idempotent and thread-safe, and does nothing when ``var_model`` already imports
(older Python, or already imported). Call it before importing anything from ``lava``, e.g.::

    from snncompile.lava_compat import apply
    apply()
    from lava.proc.lif.process import LIF

Lava's runtime forks (``multiprocessing`` start method ``fork``), so children inherit the patched
module and need no shim of their own. This module imports neither torch nor any Lava process.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import sys
import threading
import types
from typing import Any

__all__ = ["VAR_MODEL", "apply", "import_lava", "is_applied"]

VAR_MODEL = "lava.magma.compiler.var_model"
_lock = threading.Lock()


def _is_unhashable_dataclass_instance(value: Any) -> bool:
    return (
        dataclasses.is_dataclass(value)
        and not isinstance(value, type)
        and type(value).__hash__ is None
    )


def _fix_defaults(cls: type) -> type:
    """Replace unhashable dataclass-instance defaults of ``cls``'s fields by default factories."""
    for name in cls.__dict__.get("__annotations__", {}):
        value = cls.__dict__.get(name)
        if _is_unhashable_dataclass_instance(value):
            setattr(cls, name, dataclasses.field(default_factory=_copier(value)))
    return cls


def _copier(value: Any):
    return lambda: copy.deepcopy(value)


def _tolerant_dataclass(original):
    """A stand-in for ``dataclasses.dataclass`` that applies :func:`_fix_defaults` first."""

    def dataclass(cls=None, /, **kwargs):
        if cls is None:
            return lambda c: original(_fix_defaults(c), **kwargs)
        return original(_fix_defaults(cls), **kwargs)

    return dataclass


def _is_mutable_default_error(err: ValueError) -> bool:
    return "mutable default" in str(err) and "default_factory" in str(err)


def _import_var_model_patched() -> None:
    original = dataclasses.dataclass
    dataclasses.dataclass = _tolerant_dataclass(original)
    try:
        importlib.import_module(VAR_MODEL)
    finally:
        dataclasses.dataclass = original


def is_applied() -> bool:
    """True once ``lava.magma.compiler.var_model`` is importable (patched or not)."""
    return VAR_MODEL in sys.modules


def apply() -> None:
    """Make ``lava.magma.compiler.var_model`` importable; safe to call any number of times.

    Raises:
        ImportError: lava-nc is not installed (the message says which package to install).
    """
    if VAR_MODEL in sys.modules:
        return
    with _lock:
        if VAR_MODEL in sys.modules:
            return
        try:
            importlib.import_module(VAR_MODEL)
        except ModuleNotFoundError as err:
            raise ImportError(
                f"lava_compat: cannot import {VAR_MODEL} ({err}); install lava-nc==0.10.0 "
                "(pip install --ignore-requires-python lava-nc==0.10.0)"
            ) from err
        except ValueError as err:
            if not _is_mutable_default_error(err):
                raise
            sys.modules.pop(VAR_MODEL, None)
            _import_var_model_patched()


def import_lava(module: str) -> types.ModuleType:
    """Apply the shim, then import and return a Lava module, e.g. ``import_lava("lava.proc.io")``.

    Raises:
        ValueError: ``module`` is not inside the ``lava`` namespace.
    """
    if module != "lava" and not module.startswith("lava."):
        raise ValueError(f"lava_compat.import_lava: {module!r} is not a Lava module")
    apply()
    return importlib.import_module(module)
