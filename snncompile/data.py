"""Loading and checking evaluation/calibration data.

``--data`` is one of
- an ``.npz`` file with ``x`` (N, *input_shape) and optional ``y`` (N,): read into memory;
- a directory holding ``x.npy`` and optional ``y.npy``: ``x`` is memory-mapped (``np.load(mmap_mode="r")``);
- a directory of ``.npz`` shards, each with ``x`` and optional ``y``, concatenated in name order.

From a directory only the labels are read up front; samples are read from disk when a slice of
them is asked for (:class:`Samples`), so a slice costs memory for its own samples only and
pickles as a file reference (how a Ray task reads its shard itself, see ``snncompile.distributed``).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from snncompile.errors import DataError
from snncompile.safeio import clean

__all__ = ["Dataset", "Samples", "check_against", "load_npz"]

EXPECTED = ("an .npz file with array 'x' (N, *input_shape), float, and optionally 'y' (N,) integer class labels; "
            "or a directory with x.npy (and y.npy), or a directory of such .npz shards")


class Samples:
    """Read-on-demand samples (N, *shape) float32 from ``.npy`` / ``.npz`` files, concatenated in order.

    Slicing (``s[a:b]``) and ``np.asarray(s)`` read just those samples from disk and return a
    float32 array; :meth:`window` returns a lazy sub-range. Non-finite values raise DataError when
    read. Only file paths are kept (and pickled); a ``.npz`` shard's ``x`` stays cached, one file at a time.
    """

    def __init__(self, files: tuple[tuple[str, int], ...], shape: tuple[int, ...], start: int = 0,
                 stop: int | None = None, layout=None):
        self.files = files  # (path, samples in that file), in order
        self.sample_shape = shape
        self.starts = np.cumsum([0, *(n for _, n in files)])  # first global index of each file
        self.start, self.stop = start, int(self.starts[-1]) if stop is None else stop
        self.layout = layout  # an Input with a source layout: samples are returned in its network layout

    @property
    def shape(self) -> tuple[int, ...]:
        inner = self.sample_shape if self.layout is None else tuple(self.layout.shape)
        return (self.stop - self.start, *inner)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        return len(self.shape)  # the network layout's rank when a source layout reshapes

    def __len__(self) -> int:
        return self.stop - self.start

    def window(self, start: int, stop: int | None) -> Samples:
        r = range(self.start, self.stop)[start:stop]
        return Samples(self.files, self.sample_shape, r.start, r.stop, self.layout)

    def __getitem__(self, key):
        if isinstance(key, slice) and key.step in (None, 1):
            r = range(self.start, self.stop)[key]
            return self._read(r.start, max(r.start, r.stop))
        return np.asarray(self)[key]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        x = self._read(self.start, self.stop)
        return x if dtype is None else x.astype(dtype, copy=False)

    def _read(self, a: int, b: int) -> np.ndarray:
        """Samples a..b-1 (global indices) as one float32 array."""
        parts = [np.zeros((0, *self.sample_shape), np.float32)]
        for i in np.flatnonzero((self.starts[:-1] < b) & (self.starts[1:] > a)):
            lo, path = int(self.starts[i]), self.files[i][0]
            x = _file_x(path)[max(a, lo) - lo: b - lo].astype(np.float32)
            if not np.isfinite(x).all():
                raise DataError(f"{path}: 'x' contains {int((~np.isfinite(x)).sum())} NaN/Inf values among "
                                f"samples {max(a, lo) - lo}..{min(b, int(self.starts[i + 1])) - lo - 1} of this file")
            parts.append(x)
        x = np.concatenate(parts)
        return x if self.layout is None else self.layout.to_network(x)


def _file_x(path: str) -> np.ndarray:
    """``x`` of one file: a memory map for ``.npy`` (opened per read, so no pages stay mapped), else cached."""
    try:
        return np.load(path, mmap_mode="r") if path.endswith(".npy") else _npz_x(path, os.stat(path).st_mtime_ns)
    except FileNotFoundError as e:
        raise DataError(f"{clean(path)}: cannot open ({e.strerror}); on a cluster the data must be on storage every "
                        f"node sees") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as e:
        raise DataError(f"{clean(path)}: not a readable data file ({type(e).__name__}: {clean(e, 200)})") from None


@lru_cache(maxsize=1)
def _npz_x(path: str, mtime_ns: int) -> np.ndarray:  # mtime in the key: a rewritten file is read again
    with zipfile.ZipFile(path) as z:
        return _whole(z, "x.npy")


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray | Samples  # (N, *shape) float32, in memory or read on demand
    y: np.ndarray | None  # (N,) int64
    source: str
    label_span: tuple[int, int] | None = None  # (min, max) of the labels of the whole file, where more were read

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, start: int, stop: int | None) -> Dataset:
        y = None if self.y is None else self.y[start:stop]
        x = self.x.window(start, stop) if isinstance(self.x, Samples) else self.x[start:stop]
        return Dataset(x, y, f"{self.source}[{start}:{'' if stop is None else stop}]", self.label_span)

    def in_layout(self, inp) -> Dataset:
        """The samples in the network's layout when ``inp`` (the graph's Input) declares a source layout
        (``Input.to_network``): in memory, reordered once here; read from disk, reordered as read."""
        if not inp.source_perm:
            return self
        if isinstance(self.x, Samples):
            if self.x.layout is not None:
                raise ValueError("samples already reordered to the network layout")
            x = Samples(self.x.files, self.x.sample_shape, self.x.start, self.x.stop, inp)
        else:
            x = inp.to_network(self.x)
        return Dataset(x, self.y, self.source, self.label_span)


def memory_limit() -> int:
    """Bytes one array of input samples may take: half of physical memory (or of RLIMIT_AS if lower)."""
    import resource

    try:
        phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        phys = 1 << 34
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return int(min(phys, soft if soft > 0 else phys) // 2)


def _check_size(p: Path, what: str, shape: tuple[int, ...], itemsize: int = 4) -> None:
    need = int(np.prod(shape, dtype=np.float64)) * itemsize
    if need > memory_limit():
        raise DataError(f"{clean(p)}: '{what}' of shape {shape} needs {need / 2**30:.1f} GiB as float32, more than "
                        f"the {memory_limit() / 2**30:.1f} GiB limit (half of this machine's memory); pass --samples N, "
                        f"or give a directory with x.npy, which is read on demand")


def load_npz(path: str | Path, limit: int | None = None) -> Dataset:
    """Read ``path`` (see the module doc); raises DataError (one line) when it is missing, unreadable or malformed.

    Of an .npz file only the members ``x`` and ``y`` are read (others are never decompressed), only
    their first ``limit`` samples (all without a limit), and only after their declared shape and
    size were checked against the memory limit."""
    p = Path(path)
    if p.is_dir():
        return _load_npy_pair(p) if (p / "x.npy").is_file() else _load_npz_shards(p)
    if not p.is_file():
        raise DataError(f"{clean(p)}: no such file; expected {EXPECTED}")
    try:
        with open(p, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise DataError(f"{clean(p)}: cannot read ({e.strerror})") from None
    if magic == b"\x93NUMPY":
        raise DataError(f"{clean(p)}: a single .npy array, not an .npz archive of named arrays; expected {EXPECTED}")
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
            if "x.npy" not in names:
                raise DataError(f"{clean(p)}: has arrays {sorted(clean(n.removesuffix('.npy')) for n in names)} "
                                f"but no 'x'; expected {EXPECTED}")
            shape, dtype = _member_header(z, "x.npy", p)
            _check_x(p, shape, dtype)
            n = shape[0] if limit is None else min(shape[0], limit)
            _check_size(p, "x", (n, *shape[1:]))
            x = _read_member(z, "x.npy", n, p).astype(np.float32)
            y = _member_labels(z, p, shape[0])  # all labels: their range is checked on the whole file
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as e:
        raise DataError(f"{clean(p)}: not a readable .npz file ({type(e).__name__}: {clean(e, 200)}); "
                        f"expected {EXPECTED}") from None
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise DataError(f"{clean(p)}: 'x' contains {bad} NaN/Inf values")
    y = None if y is None else _labels(p, y, shape[0])
    span = None if y is None or not len(y) else (int(y.min()), int(y.max()))
    return Dataset(x, None if y is None else y[:n], str(p), span)


def _member_header(z: zipfile.ZipFile, name: str, p: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an .npy member, from its header only (the data are not decompressed)."""
    with z.open(name) as f:
        try:
            version = np.lib.format.read_magic(f)
            shape, _fortran, dtype = np.lib.format._read_array_header(f, version)
        except ValueError:
            raise DataError(f"{clean(p)}: '{name[:-4]}' in the archive is not a .npy array; expected {EXPECTED}") from None
    if dtype.hasobject:
        raise DataError(f"{clean(p)}: '{name[:-4]}' is an object array (would need pickle); not a readable .npz file")
    return tuple(shape), dtype


def _member_labels(z: zipfile.ZipFile, p: Path, n: int) -> np.ndarray | None:
    """All of ``y`` (None without one), after checking its header: (n,) integers within the memory limit."""
    if "y.npy" not in z.namelist():
        return None
    y_shape, y_dtype = _member_header(z, "y.npy", p)
    if len(y_shape) != 1 or y_shape[0] != n or not np.issubdtype(y_dtype, np.integer):
        raise DataError(f"{clean(p)}: 'y' has shape {y_shape} dtype {y_dtype}; expected ({n},) integers")
    _check_size(p, "y", y_shape, 8)
    return _read_member(z, "y.npy", n, p)


def _read_member(z: zipfile.ZipFile, name: str, count: int, p: Path) -> np.ndarray:
    """The first ``count`` entries (along axis 0) of an .npy member, decompressing only those."""
    with z.open(name) as f:
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = np.lib.format._read_array_header(f, version)
        if fortran and len(shape) > 1 and count < shape[0]:  # rows are not contiguous: the whole array is needed
            _check_size(p, name[:-4], shape, dtype.itemsize)
            return _whole(z, name)[:count]
        per = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        need = count * per * dtype.itemsize
        buf = f.read(need)
        if len(buf) != need:
            raise DataError(f"{clean(p)}: '{name[:-4]}' is truncated: {len(buf)} of {need} bytes")
    a = np.frombuffer(buf, dtype=dtype)
    return a.reshape((count, *shape[1:]), order="F" if fortran else "C")


def _whole(z: zipfile.ZipFile, name: str) -> np.ndarray:
    with z.open(name) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _check_x(p: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if len(shape) < 2 or shape[0] == 0:
        raise DataError(f"{p}: 'x' has shape {shape}; expected (N>0, *input_shape)")
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise DataError(f"{p}: 'x' has dtype {dtype}; expected a float or integer array")


def _labels(p: Path, y: np.ndarray | None, n: int) -> np.ndarray | None:
    if y is None:
        return None
    if y.ndim != 1 or y.shape[0] != n or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{p}: 'y' has shape {y.shape} dtype {y.dtype}; expected ({n},) integers")
    return y.astype(np.int64)


def _load_npy_pair(d: Path) -> Dataset:
    try:
        x = np.load(d / "x.npy", mmap_mode="r")
        y = np.load(d / "y.npy") if (d / "y.npy").is_file() else None
    except (OSError, ValueError) as e:
        raise DataError(f"{d}: cannot read x.npy/y.npy ({type(e).__name__}: {e}); expected {EXPECTED}") from None
    _check_x(d / "x.npy", x.shape, x.dtype)
    samples = Samples(((str((d / "x.npy").resolve()), x.shape[0]),), tuple(x.shape[1:]))
    return Dataset(samples, _labels(d / "y.npy", y, x.shape[0]), str(d))


def _load_npz_shards(d: Path) -> Dataset:
    paths = sorted(d.glob("*.npz"))
    if not paths:
        raise DataError(f"{d}: directory holds neither x.npy nor .npz files; expected {EXPECTED}")
    files, labels, shape = [], [], None
    for p in paths:
        n, sample_shape, y = _npz_header(p)
        if shape is not None and sample_shape != shape:
            raise DataError(f"{p}: 'x' has per-sample shape {sample_shape}, {paths[0].name} has {shape}")
        shape = sample_shape
        files.append((str(p.resolve()), n))
        labels.append(y)
    if any(y is None for y in labels) and any(y is not None for y in labels):
        raise DataError(f"{d}: some .npz shards have 'y' and some do not; give labels in all or none")
    y = None if labels[0] is None else np.concatenate(labels)
    return Dataset(Samples(tuple(files), shape), y, str(d))


def _npz_header(p: Path) -> tuple[int, tuple[int, ...], np.ndarray | None]:
    """Samples and per-sample shape of ``x`` (from the .npy header only) and the labels of one shard."""
    try:
        with zipfile.ZipFile(p) as z:
            if "x.npy" not in z.namelist():
                raise DataError(f"{clean(p)}: has arrays {sorted(clean(n[:-4]) for n in z.namelist())} but no 'x'")
            shape, dtype = _member_header(z, "x.npy", p)
            _check_x(p, shape, dtype)
            _check_size(p, "x", shape)  # a shard is read whole when one of its samples is asked for
            y = _member_labels(z, p, shape[0])
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as e:
        raise DataError(f"{clean(p)}: not a readable .npz file ({type(e).__name__}: {clean(e, 200)}); "
                        f"expected {EXPECTED}") from None
    return shape[0], tuple(shape[1:]), _labels(p, y, shape[0])


def check_against(data: Dataset, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Raise DataError if the data does not fit the model's input shape or label range."""
    if tuple(data.x.shape[1:]) != tuple(input_shape):
        raise DataError(f"{data.source}: 'x' has per-sample shape {tuple(data.x.shape[1:])}, the model's input "
                        f"expects {tuple(input_shape)}")
    lo, hi = data.label_span or ((int(data.y.min()), int(data.y.max())) if data.y is not None and len(data.y)
                                 else (0, 0))
    if lo < 0 or hi >= num_classes:
        raise DataError(f"{data.source}: labels 'y' span [{lo}, {hi}], the model has "
                        f"{num_classes} outputs (expected 0..{num_classes - 1})")
