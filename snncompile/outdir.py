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
    try:
        exists, parent = out.exists(), out.resolve().parent
    except OSError as e:  # a name too long, a symlink loop
        raise DataError(f"{out}: unusable as an output directory ({e.strerror})") from None
    if exists and not force:
        raise DataError(f"{out}: output directory exists; pass --force to replace it or choose another --out")
    if exists and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise DataError(f"{out}: parent directory {parent} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{out}: parent directory {parent} is not writable")


def write_atomically(out: Path, fill: Callable[[Path], None], *, force: bool) -> None:
    """Call ``fill(tmp)`` on a fresh temporary directory beside ``out``, then move it to ``out``.

    On any error the temporary directory is removed and ``out`` is left as it was.
    """
    check_writable(out, force=force)
    parent = out.resolve().parent
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as e:  # e.g. a read-only file system, or root's access() check said yes but the FS says no
        raise DataError(f"{out}: cannot create the output directory in {parent} ({e.strerror})") from None
    backup = None
    try:
        fill(tmp)
        if out.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            backup.rmdir()
            out.rename(backup)
        tmp.rename(out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if backup is not None and not out.exists():
            backup.rename(out)
        if isinstance(e, OSError):  # disk full, quota, permissions changed under us: not a bug of ours
            where = f": {e.filename}" if e.filename else ""
            raise DataError(f"{out}: cannot write the output directory ({e.strerror or e}{where})") from None
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
