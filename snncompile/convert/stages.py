"""Where a conversion spends its time: named stages, recorded into ``snn.meta["timing"]``.

``convert`` opens a :func:`recording` around the conversion method; the passes wrap their parts
in ``with stage("name"):`` (a no-op outside a recording). A stage that runs several times adds
up; a stage inside another is not counted in the outer one (exclusive seconds), so the stages
and ``other_s`` sum to the method's time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["recording", "stage", "timing_meta"]

_current: ContextVar[tuple[dict[str, float], list[float]] | None] = ContextVar("snncompile_stages", default=None)


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """Collect the stages run inside the block into the yielded dict (name -> exclusive seconds)."""
    stages: dict[str, float] = {}
    token = _current.set((stages, []))
    try:
        yield stages
    finally:
        _current.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    rec = _current.get()
    if rec is None:
        yield
        return
    stages, stack = rec
    t0 = time.perf_counter()
    stack.append(0.0)
    try:
        yield
    finally:
        dt = time.perf_counter() - t0
        inner = stack.pop()
        stages[name] = stages.get(name, 0.0) + dt - inner
        if stack:
            stack[-1] += dt


def timing_meta(t_start: float, t_method: float, t_end: float, stages: dict[str, float]) -> dict:
    """``snn.meta["timing"]``: ``convert_s`` (all of convert), ``prepare_s`` (MaxPool rewrite and
    calibration set), ``stages`` (method stages, seconds) and ``other_s`` (the method's remainder:
    building graphs, thresholds, bookkeeping)."""
    method_s = t_end - t_method
    return {"convert_s": round(t_end - t_start, 4), "prepare_s": round(t_method - t_start, 4),
            "stages": {k: round(v, 4) for k, v in stages.items()},
            "other_s": round(max(0.0, method_s - sum(stages.values())), 4)}
