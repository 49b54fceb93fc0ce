"""Pluggable executors for sweeps: independent members run serially or in worker processes.

An :class:`Executor` is anything with ``map(fn, items) -> iterator of results in item order``.
Experiments never create pools themselves; they call :func:`sweep_map`, which uses the
executor installed for the current process (:func:`use_executor`, or ``SHLD_JOBS=N`` in the
environment, which is how ``shld reproduce --jobs N`` reaches experiments running in a child
process). A cluster engine drops in by implementing ``map``, e.g.::

    class RayExecutor:
        def map(self, fn, items):
            import ray
            remote = ray.remote(fn)
            return iter(ray.get([remote.remote(x) for x in items]))

    with use_executor(RayExecutor()):
        run_experiment("double-descent", "runs/dd")

Results never depend on the number of workers: each sweep member carries its own seed,
derived from the run's root seed and the member's key alone by :func:`member_seed`
(``numpy.random.SeedSequence`` with the key as spawn key), never from a worker's state.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

from shld._validation import check_int


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn`` on every item; yields the results in the order of ``items``."""

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]: ...


class SerialExecutor:
    """Runs members one after another in this process (the default, ``--jobs 1``)."""

    jobs = 1

    def map(self, fn, items):
        for item in items:
            yield fn(item)


class ProcessExecutor:
    """``concurrent.futures.ProcessPoolExecutor`` with ``jobs`` workers ("spawn" start method,
    safe with threads and torch). ``fn`` must be a module-level function and items picklable.

    Workers die with the process that started them (SIGKILL included,
    :func:`shld._process.die_with_parent`), and leaving ``map`` early for any reason (an error, an
    interrupt, the caller dropping the iterator) terminates them instead of waiting for their tasks."""

    def __init__(self, jobs: int):
        self.jobs = check_int("jobs", jobs, minimum=1)

    def map(self, fn, items):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        items = list(items)
        if self.jobs == 1 or len(items) <= 1:
            yield from SerialExecutor().map(fn, items)
            return
        from shld._process import die_with_parent

        pool = ProcessPoolExecutor(max_workers=min(self.jobs, len(items)), mp_context=mp.get_context("spawn"),
                                   initializer=die_with_parent)
        try:
            yield from pool.map(fn, items)
        except BaseException:
            _terminate(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _terminate(pool) -> None:
    """Stop a pool's workers now (their running tasks are abandoned)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()


def make_executor(jobs: int | Executor | None = None) -> Executor:
    """An executor from a worker count (1 → serial) or pass an executor through."""
    if jobs is None:
        return SerialExecutor()
    if isinstance(jobs, Executor) and not isinstance(jobs, (int, np.integer)):
        return jobs
    jobs = check_int("jobs", jobs, minimum=1)
    return SerialExecutor() if jobs == 1 else ProcessExecutor(jobs)


_CURRENT: list[Executor] = []


def current_executor() -> Executor:
    """The executor installed by :func:`use_executor`, else one from ``SHLD_JOBS``, else serial."""
    if _CURRENT:
        return _CURRENT[-1]
    env = os.environ.get("SHLD_JOBS")
    if env:
        try:
            return make_executor(int(env))
        except (TypeError, ValueError):
            raise ValueError(f"environment variable `SHLD_JOBS` must be an integer >= 1, got {env!r}") \
                from None
    return SerialExecutor()


@contextlib.contextmanager
def use_executor(executor: int | Executor):
    """Install an executor (or a worker count) for sweeps run inside the ``with`` block."""
    _CURRENT.append(make_executor(executor))
    try:
        yield _CURRENT[-1]
    finally:
        _CURRENT.pop()


def sweep_map(fn: Callable[[Any], Any], items: Iterable[Any], executor: Executor | int | None = None
              ) -> Iterator[Any]:
    """Map ``fn`` over independent sweep members with ``executor`` (default: the current one);
    results come back in item order."""
    ex = current_executor() if executor is None else make_executor(executor)
    return iter(ex.map(fn, items))


def member_seed(root: int, *key: int) -> np.random.SeedSequence:
    """The seed stream of the sweep member ``key`` (a tuple of non-negative ints) of a run with
    root seed ``root``: ``SeedSequence(root, spawn_key=key)``, i.e. the same stream that
    ``SeedSequence(root).spawn(...)`` hands out along that path, independent of scheduling."""
    root = check_int("root", root, minimum=0)
    key = tuple(check_int("key", k, minimum=0) for k in key)
    return np.random.SeedSequence(root, spawn_key=key)


__all__ = ["Executor", "SerialExecutor", "ProcessExecutor", "make_executor", "current_executor",
           "use_executor", "sweep_map", "member_seed"]
