"""Atomic output directories: everything is written to a temporary sibling, then renamed into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from snncompile.errors import DataError

__all__ = ["check_writable", "write_atomically"]


def check_writable(out: Path, *, force: bool) -> None:
    """Fail early (DataError) when ``out`` exists without ``force`` or its parent is not writable."""
    if out.exists() and not force:
        raise DataError(f"{out}: output directory exists; pass --force to replace it or choose another --out")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise DataError(f"{out}: parent directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{out}: parent directory {parent} is not writable")


def write_atomically(out: Path, fill: Callable[[Path], None], *, force: bool) -> None:
    """Call ``fill(tmp)`` on a fresh temporary directory beside ``out``, then move it to ``out``.

    On any error the temporary directory is removed and ``out`` is left as it was.
    """
    check_writable(out, force=force)
    parent = out.resolve().parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    backup = None
    try:
        fill(tmp)
        if out.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            backup.rmdir()
            out.rename(backup)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if backup is not None and not out.exists():
            backup.rename(out)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
