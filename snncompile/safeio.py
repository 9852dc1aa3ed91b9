"""Safe file I/O for untrusted paths and strings.

- :func:`read_bounded` reads a regular file of at most ``cap`` bytes (``/dev/zero``, a FIFO, or a
  multi-gigabyte file named as a JSON input is a one-line error, not a read until memory runs out).
- :func:`write_file` creates a new file beside ``path`` and renames it into place: an existing
  ``path`` (a planted symlink included) is replaced, never opened or written through.
- :func:`clean` makes a string from an input file (node names, report fields) safe for one terminal
  line or a markdown table cell: control characters (newlines, ESC, bidi overrides) are escaped.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tempfile
from pathlib import Path

from snncompile.errors import DataError

__all__ = ["JSON_CAP", "clean", "dumps", "first_nonfinite", "md", "read_bounded", "read_json", "write_file"]

JSON_CAP = 64 << 20  # bytes: report.json, manifest.json, energy constants; ours are far below 1 MiB

# C0/C1 controls, DEL, and the Unicode format characters that reorder or hide text on a terminal
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def clean(text: object, limit: int = 400) -> str:
    """``text`` as one printable line: control characters become ``\\n``, ``\\x1b``, ``\\u202e``...;
    longer than ``limit`` characters: cut with an ellipsis."""

    def esc(m: re.Match) -> str:
        c = m.group()
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c) or (
            f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")

    s = _UNSAFE.sub(esc, str(text))
    return s if len(s) <= limit else s[:limit - 3] + "..."


def md(text: object, limit: int = 200) -> str:
    """``text`` for a markdown table cell or heading: :func:`clean`, with ``|``, backticks and HTML escaped."""
    s = clean(text, limit)
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "&#124;"), ("`", "&#96;")):
        s = s.replace(a, b)
    return s


def read_bounded(path: str | os.PathLike, cap: int, what: str) -> bytes:
    """The bytes of regular file ``path``; DataError (one line) if it is not one, or is larger than ``cap``."""
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except OSError as e:
        raise DataError(f"{clean(p)}: cannot read {what} ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"{clean(p)}: {what} must be a regular file, not a device, FIFO or directory")
        if st.st_size > cap:
            raise DataError(f"{clean(p)}: {what} is {st.st_size} bytes, more than the limit of {cap} bytes")
        chunks, n = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            n += len(chunk)
            if n > cap:  # grew while we read
                raise DataError(f"{clean(p)}: {what} is more than the limit of {cap} bytes")
        return b"".join(chunks)
    except OSError as e:
        raise DataError(f"{clean(p)}: cannot read {what} ({e.strerror})") from None
    finally:
        os.close(fd)


def read_json(path: str | os.PathLike, what: str, cap: int = JSON_CAP):
    """Parse a bounded JSON file; NaN/Infinity literals and malformed text are a DataError."""

    def no_constant(c: str):
        raise ValueError(f"non-standard JSON constant {c}")

    raw = read_bounded(path, cap, what)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise DataError(f"{clean(os.fspath(path))}: {what} is not valid JSON ({clean(e, 160)})") from None


def write_file(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to a new temporary file in ``path``'s directory, then rename it onto ``path``.

    Whatever ``path`` was (a file, a symlink to anywhere) is replaced, not written through; on any
    error the temporary file is removed and ``path`` is unchanged."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def dumps(obj) -> str:
    """JSON text of ``obj``; refuses NaN/Infinity (they are not JSON) with a ValueError naming the key."""
    try:
        return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False)
    except ValueError:
        raise ValueError(f"non-finite number at {first_nonfinite(obj)}") from None


def first_nonfinite(obj, where: str = "$") -> str:
    """JSON path of the first NaN or infinite float in ``obj`` (dicts and lists), "" if none."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for k, v in items:
        found = first_nonfinite(v, f"{where}.{k}" if isinstance(obj, dict) else f"{where}[{k}]")
        if found:
            return found
    return ""
