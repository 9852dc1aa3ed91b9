"""Atomic output directories: everything is written to a temporary sibling, then renamed into place.

Safety rules (docs/robustness.md):
- every output directory carries a marker file, ``.snncompile-output``; ``--force`` replaces an
  existing directory only when it carries that marker (what an earlier run of ours wrote), never a
  user's folder;
- ``--out`` may not be a symbolic link, nor be, contain or lie inside an input (model, data,
  calibration, report directories) or contain the current directory;
- on any error (or Ctrl-C / SIGTERM) the temporary directory is removed and ``out`` is left as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from snncompile.errors import DataError
from snncompile.interrupts import checkpoint
from snncompile.safeio import clean

__all__ = ["MARKER", "check_writable", "is_ours", "write_atomically"]

MARKER = ".snncompile-output"
_MARK = {"tool": "snncompile", "kind": "output-directory", "version": 1}


def is_ours(d: Path) -> bool:
    """True when ``d`` is a real directory holding our marker (a regular file with our content)."""
    m = d / MARKER
    try:
        if d.is_symlink() or not d.is_dir() or m.is_symlink() or not m.is_file() or m.stat().st_size > 4096:
            return False
        return json.loads(m.read_text()) == _MARK
    except (OSError, ValueError):
        return False


def _resolved(p: Path) -> Path:
    """``p`` made absolute with its parent's links resolved (``p`` itself need not exist)."""
    return p.parent.resolve() / p.name if p.name not in ("", ".", "..") else p.resolve()


def _check_overlap(out: Path, protect: Iterable[Path]) -> None:
    o = _resolved(out)
    cwd = Path.cwd().resolve()
    if o == cwd or o in cwd.parents:
        raise DataError(f"{clean(out)}: the output directory would replace the current directory "
                        f"{'' if o == cwd else '(it contains it) '}; choose another --out")
    for p in protect:
        if p is None:
            continue
        q = _resolved(Path(p))
        try:
            q = q.resolve()
        except OSError:
            pass
        if o == q or o in q.parents or q in o.parents:
            how = "is" if o == q else ("contains" if o in q.parents else "lies inside")
            raise DataError(f"{clean(out)}: the output directory {how} the input {clean(p)}; choose another --out")


def check_writable(out: Path, *, force: bool, protect: Iterable[Path | None] = ()) -> None:
    """Fail early (DataError) when ``out`` may not be written: see the module doc."""
    try:
        if out.is_symlink():
            raise DataError(f"{clean(out)}: is a symbolic link; --out must name a real directory (or a new name)")
        exists, parent = out.exists(), _resolved(out).parent
    except OSError as e:  # a name too long, a symlink loop
        raise DataError(f"{clean(out)}: unusable as an output directory ({e.strerror})") from None
    _check_overlap(out, protect)
    if exists and not force:
        raise DataError(f"{clean(out)}: output directory exists; pass --force to replace it or choose another --out")
    if exists and not out.is_dir():
        raise DataError(f"{clean(out)}: exists and is not a directory")
    if exists and not is_ours(out):
        raise DataError(f"{clean(out)}: exists and is not an snncompile output directory (no {MARKER} marker); "
                        f"--force replaces only our own output: remove it yourself or choose another --out")
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise DataError(f"{clean(out)}: parent directory {clean(parent)} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{clean(out)}: parent directory {clean(parent)} is not writable")


def write_atomically(out: Path, fill: Callable[[Path], None], *, force: bool,
                     protect: Iterable[Path | None] = ()) -> None:
    """Call ``fill(tmp)`` on a fresh temporary directory beside ``out``, then move it to ``out``.

    On any error the temporary directory is removed and ``out`` is left as it was.
    """
    protect = list(protect)
    check_writable(out, force=force, protect=protect)
    parent = _resolved(out).parent
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as e:  # e.g. a read-only file system, or root's access() check said yes but the FS says no
        raise DataError(f"{clean(out)}: cannot create the output directory in {clean(parent)} ({e.strerror})") from None
    target, backup = parent / out.name, None
    try:
        (tmp / MARKER).write_text(json.dumps(_MARK))
        checkpoint()
        fill(tmp)
        checkpoint()
        check_writable(out, force=force, protect=protect)  # again: the world may have changed while we worked
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp made it 0700; a directory made by mkdir would have this
        if target.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            backup.rmdir()
            target.rename(backup)
        tmp.rename(target)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if backup is not None and not target.exists():
            backup.rename(target)
        if isinstance(e, OSError):  # disk full, quota, permissions changed under us: not a bug of ours
            where = f": {clean(e.filename)}" if e.filename else ""
            raise DataError(f"{clean(out)}: cannot write the output directory ({e.strerror or e}{where})") from None
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
