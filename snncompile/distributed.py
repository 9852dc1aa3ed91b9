"""Evaluate one compiled run in contiguous shards, as Ray tasks (``--ray``) or one after another here, and merge.

The driver compiles once (:func:`snncompile.pipeline.compile_model`) and ``ray.put``s the Compiled
object (graphs with their integer parameters, without the evaluation samples) into Ray's object
store. Shard i/n is one task ``_evaluate_shard(compiled, cfg, data)`` with ``cfg.shard = (i, n)``:
samples held in memory travel with the task through the object store; samples read on demand
from a directory (:class:`snncompile.data.Samples`) travel as a file reference and the task reads
its own slice (on a cluster the directory must be on storage every node sees). A task asks for
``num_cpus=1`` (``num_gpus=1`` with ``--device cuda``); Lava tasks also set ``max_calls=1``, so every
Lava shard runs its one Lava runtime in a fresh worker process. A worker that dies, or an exception
that is not a CompileError, is retried ``retries`` times; a CompileError is returned instead of
raised (the same input fails the same way again) and fails the run with its one-line message.

The shard reports are merged with :func:`snncompile.report.merge`: the report equals the one of a
single-process run on the same samples apart from ``timing`` (compile times once, evaluation times
summed over shards, plus ``evaluate_wall_s``) and ``lava.seconds`` (summed). A merged sample count
that differs from the evaluated count is an error, never a smaller report.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
from tqdm.auto import tqdm

from snncompile import errors
from snncompile.backends import get_backend
from snncompile.data import Dataset
from snncompile.errors import BackendError, CompileError, DataError
from snncompile.pipeline import Compiled, RunConfig, RunResult, compile_model, evaluate, shard_of
from snncompile.report import merge

__all__ = ["LOCAL", "MAX_SHARD_SAMPLES", "default_shards", "evaluate_here", "evaluate_on_ray", "ray_session",
           "run_sharded"]

log = logging.getLogger("snncompile")
LOCAL = "local"  # --ray without an address: start a Ray instance on this machine
MAX_SHARD_SAMPLES = 2048  # bounds a task's memory (Lava's source buffer holds samples x T steps)


def run_sharded(cfg: RunConfig, *, shards: int | None = None, ray_address: str | None = None,
                ray_cpus: int | None = None) -> RunResult:
    """Compile once, evaluate in shards (on Ray with ``ray_address``, else here one after another), merge."""
    if ray_address is None:
        if ray_cpus is not None:
            raise DataError("--ray-cpus N sizes the local Ray instance of --ray; it needs --ray")
        return evaluate_here(compile_model(cfg), cfg, shards=shards or 1)
    with ray_session(ray_address, ray_cpus):
        return evaluate_on_ray(compile_model(cfg), cfg, shards=shards)


def default_shards(samples: int, workers: int) -> int:
    """One shard per worker, more (a multiple of ``workers``) when a shard would exceed MAX_SHARD_SAMPLES."""
    rounds = math.ceil(samples / (max(1, workers) * MAX_SHARD_SAMPLES))
    return max(1, min(samples, workers * rounds))


@contextmanager
def ray_session(address: str, cpus: int | None) -> Iterator[None]:
    """Start a local Ray instance (``address == LOCAL``) or join a cluster (``auto``, ``ray://host:port``).

    An already initialized Ray (a notebook's, a test's) is used as it is and left running.
    """
    try:
        import ray
    except ImportError:
        raise BackendError("--ray: Ray is not installed; install it with pip install 'snncompile[ray]'") from None
    if ray.is_initialized():
        yield
        return
    if address != LOCAL and cpus is not None:
        raise DataError(f"--ray-cpus N sizes a local Ray instance; it cannot resize the cluster at {address}")
    kwargs = {"num_cpus": cpus, "include_dashboard": False} if address == LOCAL else {"address": address}
    try:
        ray.init(**kwargs, logging_level=logging.WARNING)
    except ConnectionError as e:
        raise BackendError(f"--ray {address}: cannot connect to a Ray cluster ({str(e).splitlines()[0]})") from None
    try:
        yield
    finally:
        ray.shutdown()


def evaluate_here(c: Compiled, cfg: RunConfig, *, shards: int) -> RunResult:
    """Evaluate the shards one after another in this process: memory is bounded by one shard."""
    t0 = time.perf_counter()
    parts = _parts(c, shards)
    outs = [_checked(_evaluate_shard(c, _shard_cfg(cfg, i, shards), part), i, shards)
            for i, part in enumerate(tqdm(parts, desc="shards", unit="shard", disable=not cfg.progress))]
    return _merged(c, cfg, outs, time.perf_counter() - t0)


def evaluate_on_ray(c: Compiled, cfg: RunConfig, *, shards: int | None = None, retries: int = 3) -> RunResult:
    """Evaluate ``c.evals`` as Ray tasks, one per shard (default: :func:`default_shards`), on the connected Ray."""
    import ray

    gpu = str(cfg.device).startswith("cuda")
    have = ray.cluster_resources()
    if gpu and have.get("GPU", 0) < 1:
        raise BackendError(f"--device {cfg.device} --ray: the Ray cluster has no GPU ({have.get('CPU', 0):.0f} CPUs)")
    n = shards or default_shards(len(c.evals), int(have.get("GPU" if gpu else "CPU", 1)))
    parts = _parts(c, n)
    t0 = time.perf_counter()
    # Pickled bytes, not the object: Ray would hand every task read-only views of the parameter arrays.
    compiled = ray.put(pickle.dumps(replace(c, evals=c.evals.take(0, 0)), protocol=pickle.HIGHEST_PROTOCOL))
    options = {"num_cpus": 1, "num_gpus": 1 if gpu else 0, "max_retries": retries, "retry_exceptions": True,
               **({"max_calls": 1} if get_backend(cfg.target).own_process else {})}
    task = ray.remote(**options)(_evaluate_shard)
    refs = {task.remote(compiled, _shard_cfg(cfg, i, n), part): i for i, part in enumerate(parts)}
    log.info("evaluating %d samples in %d shards on Ray (%s)", len(c.evals), n,
             ", ".join(f"{k} {v:g}" for k, v in sorted(have.items()) if k in ("CPU", "GPU")))
    outs, pending = {}, list(refs)
    bar = tqdm(total=n, desc="shards", unit="shard", disable=not cfg.progress)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                outs[refs[ref]] = _checked(_get(ref, refs[ref], n, retries), refs[ref], n)
            bar.update(len(done))
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        raise
    finally:
        bar.close()
    return _merged(c, cfg, [outs[i] for i in range(n)], time.perf_counter() - t0)


def _parts(c: Compiled, n: int) -> list:
    if not 1 <= n <= len(c.evals):
        raise DataError(f"--shards {n}: need 1 <= K <= {len(c.evals)} (the number of evaluated samples)")
    return [shard_of(c.evals, (i, n)) for i in range(n)]


def _shard_cfg(cfg: RunConfig, i: int, n: int) -> RunConfig:
    return replace(cfg, shard=(i, n), progress=False)


def _evaluate_shard(compiled: Compiled | bytes, cfg: RunConfig, data: Dataset) -> dict:
    """One shard (a Ray task): {"report", "scatter"}, or {"error": (class name, message)} for a CompileError."""
    if isinstance(compiled, bytes):
        compiled = pickle.loads(compiled)
    if isinstance(data.x, np.ndarray) and not data.x.flags.writeable:  # a zero-copy view of Ray's object store
        data = replace(data, x=data.x.copy())
    try:
        res = evaluate(compiled, cfg, data)
    except CompileError as e:
        return {"error": (type(e).__name__, str(e).splitlines()[0] if str(e) else type(e).__name__)}
    return {"report": res.report, "scatter": res.scatter if cfg.shard[0] == 0 else {}}


def _get(ref, i: int, n: int, retries: int) -> dict:
    """The task's result; a task that failed on every attempt raises here, naming its shard."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:  # a bug, raised on every attempt: internal error (exit 3)
        cause = e.cause if e.cause is not None else e
        raise RuntimeError(f"shard {i}/{n} failed on all {retries + 1} attempts: {type(cause).__name__}: "
                           f"{str(cause).splitlines()[0] if str(cause) else ''}") from e
    except ray.exceptions.RayError as e:  # the worker or its node died on every attempt
        raise RuntimeError(f"shard {i}/{n}: its Ray worker died on all {retries + 1} attempts ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})") from e


def _checked(out: dict, i: int, n: int) -> dict:
    """``out`` of shard i/n, or its CompileError raised again here (same class where it takes a plain message)."""
    if "error" not in out:
        return out
    name, message = out["error"]
    cls = getattr(errors, name, CompileError)
    plain = isinstance(cls, type) and issubclass(cls, CompileError) and cls.__init__ is Exception.__init__
    raise (cls if plain else CompileError)(f"{message} (shard {i}/{n})")


def _merged(c: Compiled, cfg: RunConfig, outs: list[dict], wall_s: float) -> RunResult:
    report = merge([out["report"] for out in outs])
    if report["samples"] != len(c.evals):
        raise RuntimeError(f"merged report counts {report['samples']} samples, {len(c.evals)} were evaluated")
    report["timing"] = {**report["timing"], **c.timing, "evaluate_wall_s": wall_s}
    log.info("merged %d shards: %d samples in %.1f s", len(outs), report["samples"], wall_s)
    backend = get_backend(cfg.target)  # stateless: the merged report tells check() what happened
    return RunResult(report=report, ann=c.ann, snn=c.snn, pop_float=c.pop_float, pop_int=c.pop_int,
                     scatter=outs[0]["scatter"], backend=backend)
