"""Pluggable executors for sweeps: independent members run serially, in worker processes, or on a
Dask or Ray cluster.

An :class:`Executor` is anything with ``map(fn, items) -> iterator of results in item order``.
Experiments never create pools themselves; they call :func:`sweep_map`, which uses the
executor installed for the current process (:func:`use_executor`), else the one the environment
names (``SHLD_EXECUTOR`` = serial | process | dask | ray, ``SHLD_JOBS`` = worker count,
``SHLD_ADDRESS`` = a Dask scheduler or Ray head), which is how ``shld reproduce --executor ...
--jobs N`` reaches experiments running in a child process, else serial.

Engines:

- :class:`SerialExecutor` (``--jobs 1``) and :class:`ProcessExecutor` (``--jobs N``, local
  worker processes started per sweep);
- :class:`DaskExecutor` (``pip install shld[dask]``): a ``dask.distributed`` scheduler given by
  address or ``Client``, or a ``LocalCluster`` of worker processes it starts and closes;
- :class:`RayExecutor` (``pip install shld[ray]``): a Ray cluster given by address, or a local
  Ray instance it starts and shuts down.

For the cluster engines each member is one task; all are submitted at once and result ``i`` is
yielded as soon as members ``0..i`` are done, so a study writing results as they arrive keeps a
prefix of the sweep on disk whatever happens later. A member that raises is retried ``retries``
times (default 2); if it still fails, ``map`` raises :class:`MemberFailedError` (index, item,
attempts, the member's own error) at its place in the order, after yielding every member before
it, and cancels the rest. Raising, not a failure record in place of the result, is the design
because every study consumes ``sweep_map`` results as the member's own return value (a dict it
writes to its metrics); the failure is never dropped, the members before it are kept, and
``--resume`` continues from there. A worker *process* that dies (killed, out of memory) is a
different event: the engine reschedules its member on another worker (Dask: up to the scheduler's
``distributed.scheduler.allowed-failures``, 3 by default; Ray: ``max_retries``, 3), so no member
is lost.

Results never depend on the engine or the number of workers: each sweep member carries its own
seed, derived from the run's root seed and the member's key alone by :func:`shld.seeds.member_seed`
(``numpy.random.SeedSequence`` with the key as spawn key), never from a worker's state.
``docs/scale.md`` covers pointing runs at an existing cluster and when shipping a sweep pays.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

from shld._validation import check_int
from shld.seeds import member_seed  # noqa: F401  (re-exported: studies written before shld.seeds import it here)


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn`` on every item; yields the results in the order of ``items``."""

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]: ...


def limit_blas_threads(threads: int) -> None:
    """Cap this process's BLAS/OpenMP thread pools at ``threads`` (threadpoolctl). A worker among
    ``jobs`` gets ``cores // jobs``: with more threads than cores, OpenBLAS's spinning threads make
    matrix products several times slower (double-descent's gradient descent at p = 1000 on 2 cores, 2
    workers: 7.9 s with the default 2 threads each, 2.6 s with 1)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=max(1, int(threads)))


def _init_worker(threads: int, parent: int) -> None:
    """Pool worker start-up: die with the parent (its pid ``parent`` is passed in, not read here: a worker
    that starts after its parent was killed would read its new parent, init, and live on), and use
    ``threads`` BLAS threads."""
    from shld._process import die_with_parent

    die_with_parent(parent)
    limit_blas_threads(threads)


def _one_thread_call(fn, item):
    """A cluster task: one BLAS thread (one CPU per task), then the member."""
    limit_blas_threads(1)
    return fn(item)


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
    :func:`shld._process.die_with_parent`) and share the cores (BLAS threads: cores // workers,
    :func:`limit_blas_threads`); leaving ``map`` early for any reason (an error, an
    interrupt, the caller dropping the iterator) terminates them instead of waiting for their tasks.

    As on the cluster engines, a member that raises is retried ``retries`` times and then reported as
    :class:`MemberFailedError` at its place in the order; a worker process that dies (killed, out of
    memory) breaks the pool, which is started again with every member not yet finished resubmitted,
    up to ``max_restarts`` times per sweep (the pool cannot tell which member's worker died)."""

    name = "process"

    def __init__(self, jobs: int, *, retries: int = 2, max_restarts: int = 3):
        self.jobs = check_int("jobs", jobs, minimum=1)
        self.retries = _check_retries(retries)
        self.max_restarts = check_int("max_restarts", max_restarts, minimum=0)

    def _pool(self, workers: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(max(1, (os.cpu_count() or 1) // workers), os.getpid()))

    def map(self, fn, items):
        from concurrent.futures.process import BrokenProcessPool

        items = list(items)
        if self.jobs == 1 or len(items) <= 1:
            yield from SerialExecutor().map(fn, items)
            return
        workers = min(self.jobs, len(items))
        pool = self._pool(workers)
        futures = [pool.submit(fn, item) for item in items]
        tries = [1] * len(items)              # submissions of each member (retries and pool restarts)
        restarts = 0
        try:
            for i in range(len(items)):
                attempt = 1
                while True:
                    try:
                        res = futures[i].result()
                        break
                    except BrokenProcessPool as exc:         # a worker died: every pending member is lost
                        restarts += 1
                        if restarts > self.max_restarts:
                            raise MemberFailedError(i, items[i], exc, tries[i], "process") from exc
                        _terminate(pool)
                        pool = self._pool(workers)
                        for j in range(i, len(items)):
                            f = futures[j]
                            if not (f.done() and not f.cancelled() and f.exception() is None):
                                futures[j] = pool.submit(fn, items[j])
                                tries[j] += 1
                    except Exception as exc:                  # the member raised
                        if attempt > self.retries:
                            raise MemberFailedError(i, items[i], exc, tries[i], "process") from exc
                        attempt += 1
                        futures[i] = pool.submit(fn, items[i])
                        tries[i] += 1
                futures[i] = None
                yield res
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


class MemberFailedError(RuntimeError):
    """A sweep member failed on every attempt; raised by a parallel executor's ``map`` at the
    member's place in the order, after every member before it was yielded.

    Attributes: ``index`` (position in the items), ``item``, ``attempts``, ``error`` (the member's
    own exception where it could be recovered, else the engine's), ``executor`` (its name)."""

    def __init__(self, index: int, item: Any, error: BaseException, attempts: int, executor: str = ""):
        self.index, self.item, self.error, self.attempts, self.executor = index, item, error, attempts, executor
        text = repr(item)
        if len(text) > 200:
            text = text[:197] + "..."
        where = f" on {executor}" if executor else ""
        super().__init__(f"sweep member {index} (item {text}) failed after {attempts} attempt(s){where}: "
                         f"{type(error).__name__}: {error}. The members before it were delivered; the sweep "
                         "stopped here (fix the cause, then rerun with --resume to continue)")

    def __reduce__(self):
        return (type(self), (self.index, self.item, self.error, self.attempts, self.executor))


#: executor names for ``--executor`` / ``SHLD_EXECUTOR``
EXECUTORS = ("serial", "process", "dask", "ray")


def _import_extra(module: str, extra: str):
    """Import an optional engine, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"executor {extra!r} needs the optional dependency {exc.name!r}, which is not "
                                  f"installed: pip install 'shld[{extra}]'", name=exc.name) from None


def _check_retries(retries: Any) -> int:
    return check_int("retries", retries, minimum=0)


class _ClusterExecutor:
    """``with`` support for the cluster executors: ``start()`` on entry, ``close()`` on exit."""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()


class DaskExecutor(_ClusterExecutor):
    """Sweep members as ``dask.distributed`` tasks (``pip install shld[dask]``).

    ``address``: ``None`` starts a ``LocalCluster`` of ``n_workers`` worker processes (one thread
    each; default: the machine's CPU count) on first use and closes it in :meth:`close`; a string
    is a scheduler address (``tcp://host:8786``) to connect to; a ``distributed.Client`` is used as
    is (and left open). ``retries``: extra attempts for a member that raises. A worker process that
    dies has its member rescheduled by the scheduler (up to ``distributed.scheduler.allowed-failures``
    deaths, then ``KilledWorker``). ``fn`` and each item are pickled (cloudpickle) and run on the
    workers, which need ``shld`` importable at the same version.

    Usable as a context manager; :meth:`start` connects (or starts the local cluster) and returns the
    scheduler address.
    """

    name = "dask"

    def __init__(self, address: Any = None, *, n_workers: int | None = None, retries: int = 2):
        self._distributed = _import_extra("dask.distributed", "dask")
        self.retries = _check_retries(retries)
        self._client = self._cluster = None
        self._own_client = False
        if address is None:
            self.address = None
            self.n_workers = check_int("n_workers", n_workers if n_workers is not None else (os.cpu_count() or 1),
                                       minimum=1)
        elif isinstance(address, str):
            if not address.strip():
                raise ValueError("`address` must be a Dask scheduler address such as 'tcp://host:8786', got ''")
            if n_workers is not None:
                raise ValueError(f"`n_workers` ({n_workers!r}) sizes a local cluster; with `address` "
                                 f"{address!r} the scheduler's own workers run the members")
            self.address, self.n_workers = address, None
        elif isinstance(address, self._distributed.Client):
            if n_workers is not None:
                raise ValueError(f"`n_workers` ({n_workers!r}) sizes a local cluster; a given Client brings "
                                 "its own workers")
            self._client, self.address, self.n_workers = address, address.scheduler.address, None
        else:
            raise TypeError("`address` must be None (start a LocalCluster), a scheduler address string or a "
                            f"dask.distributed.Client, got {type(address).__name__}")

    def start(self) -> str:
        """Connect (starting the local cluster if this executor owns one); returns the scheduler address."""
        if self._client is None:
            d = self._distributed
            if self.address is None:
                import logging

                import dask

                # the workers' statistical profiler (a thread sampling the running task's stack every 10 ms)
                # only feeds the dashboard, which is off; it costs Python-heavy members GIL hand-offs (a
                # worker restarted after a crash takes the process's config again, profiler included)
                # dashboard_address=":0": any free port (None still binds :8787, and warns when it is taken)
                with dask.config.set({"distributed.worker.profile.enabled": False}):
                    self._cluster = d.LocalCluster(n_workers=self.n_workers, threads_per_worker=1, processes=True,
                                                   dashboard_address=":0", silence_logs=logging.ERROR)
                self.address = self._cluster.scheduler_address
            if self._cluster is None and (self.address.startswith("tcp://") or "://" not in self.address):
                _probe(self.address, "dask")
            try:
                self._client = d.Client(self.address if self._cluster is None else self._cluster)
            except OSError as exc:         # nothing answered (TimeoutError, refused)
                self.close()
                raise ConnectionError(f"executor 'dask': no Dask scheduler answered at `address` "
                                      f"{self.address!r} ({type(exc).__name__}: {exc})") from exc
            except BaseException:
                self.close()
                raise
            self._own_client = True
        return self.address

    def close(self) -> None:
        """Close the client and the local cluster this executor started (a given Client stays open)."""
        if self._own_client and self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client, self._own_client = None, False
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()
            self._cluster = None
            self.address = None

    def map(self, fn, items):
        items = list(items)
        if not items:
            return
        self.start()
        client = self._client
        tag = uuid.uuid4().hex[:12]
        futures = client.map(functools.partial(_one_thread_call, fn), items,
                             key=[f"shld-member-{tag}-{i}" for i in range(len(items))], retries=self.retries)
        try:
            i = 0
            while i < len(futures):
                # the finished run starting at i comes back in one gather; otherwise wait for member i
                j = i
                while j < len(futures) and futures[j].status == "finished":
                    j += 1
                batch = None
                if j > i:
                    try:
                        batch = client.gather(futures[i:j])
                    except Exception:      # a result lost with its worker failed when recomputed: one by one
                        batch = None
                if batch is None:
                    try:
                        batch = [futures[i].result()]
                    except Exception as exc:
                        raise MemberFailedError(i, items[i], exc, self.retries + 1, "dask") from exc
                for res in batch:
                    futures[i] = None       # let the scheduler forget a delivered result
                    i += 1
                    yield res
        finally:
            left = [f for f in futures if f is not None]
            if left:
                with contextlib.suppress(Exception):
                    client.cancel(left)


def _probe(address: str, engine: str, timeout: float = 10.0) -> None:
    """Fail fast when nothing listens at a ``host:port`` address (Ray retries a dead one for minutes);
    ``auto`` and addresses without a port are left to the engine."""
    import socket

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"executor {engine!r}: nothing answers at `address` {address!r} "
                              f"({type(exc).__name__}: {exc})") from None


def _ray_call(fn, item):
    return _one_thread_call(fn, item)


class _MemberRunner:
    """A Ray actor of a :meth:`RayExecutor.start_pool` pool: runs members one at a time in a process
    that stays up between sweeps (its imports are paid once)."""

    def run(self, fn, item):
        return _one_thread_call(fn, item)

    def pid(self) -> int:
        return os.getpid()


#: name prefix of a pool's actors; their namespace is in the pool's spec ("namespace:count")
_POOL_ACTOR = "shld-member-"


#: run by :func:`_start_reaper` in its own process: collects the descendants of PARENT (pid and start
#: time, so a reused pid is never hit) while it lives, SIGKILLs those still running once it is gone
_REAPER = r"""
import os, signal, sys, time
parent, me = int(sys.argv[1]), os.getpid()
def stat(p):
    try:
        s = open(f"/proc/{p}/stat").read()
    except OSError:
        return None
    f = s[s.rindex(")") + 2:].split()
    return int(f[1]), f[19]
seen = {}
while os.getppid() == parent:
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != me:
            st = stat(int(d))
            if st:
                kids.setdefault(st[0], []).append((int(d), st[1]))
    todo = [parent]
    while todo:
        for pid, start in kids.get(todo.pop(), []):
            if pid not in seen:
                seen[pid] = start
            todo.append(pid)
    time.sleep(1.0)
for pid, start in seen.items():
    st = stat(pid)
    if st and st[1] == start:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


def _start_reaper():
    """A watcher that SIGKILLs every process started below this one once this one dies (Linux).

    A local Ray instance's GCS, raylet and workers die with the driver, but its node agents (dashboard
    and runtime-env agents) outlive a killed driver; this makes them die too. Returns the watcher's
    ``Popen`` (stop it on a clean shutdown) or ``None`` where ``/proc`` is missing."""
    import subprocess
    import sys

    if not os.path.isdir("/proc/self"):
        return None
    return subprocess.Popen([sys.executable, "-c", _REAPER, str(os.getpid())], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


class RayExecutor(_ClusterExecutor):
    """Sweep members as Ray tasks (``pip install shld[ray]``), one CPU each.

    ``address``: ``None`` starts a local Ray instance with ``num_cpus`` CPUs (default: all) on first
    use and shuts it down in :meth:`close`, unless this process is already connected to Ray
    (``ray.init`` called before), whose connection is then used and left open; a string is a cluster
    to connect to (``"auto"``, a head's ``host:6379``, or ``ray://host:10001``). ``retries``: extra
    attempts for a member that raises. A worker process that dies has its task re-run by Ray
    (``max_retries``, default 3). ``fn`` and each item are pickled (cloudpickle); the workers need
    ``shld`` importable at the same version.

    ``pool``: a pool spec from :meth:`start_pool` (``"namespace:count"``) made by another process on
    the same cluster: members then run on that pool's actors instead of as tasks. Ray's task workers
    belong to one driver, so every process that connects (each study of ``shld reproduce`` runs in its
    own) would start new workers and pay their imports again; the pool's actors live as long as the
    process that made them and serve every driver. An actor that dies is restarted and its member
    run again (``max_retries``).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, retries: int = 2,
                 max_retries: int = 3, pool: str | None = None):
        self._ray = _import_extra("ray", "ray")
        self.retries = _check_retries(retries)
        self.max_retries = check_int("max_retries", max_retries, minimum=0)
        self._pool_spec = None if pool is None else _parse_pool(pool)
        self._actors: list = []
        if address is not None:
            if not isinstance(address, str) or not address.strip():
                raise ValueError(f"`address` must be a Ray address such as 'auto', 'host:6379' or "
                                 f"'ray://host:10001', got {address!r}")
            if num_cpus is not None:
                raise ValueError(f"`num_cpus` ({num_cpus!r}) sizes a local Ray instance; with `address` "
                                 f"{address!r} the cluster's own CPUs run the members")
        self.address = address
        self._given_address = address            # None: a local instance, started (and ended) by this executor
        self.num_cpus = None if num_cpus is None else check_int("num_cpus", num_cpus, minimum=1)
        self._owns = False
        self._remote = None
        self._reaper = None

    def start(self) -> str:
        """Connect (starting the local instance if needed); returns the address others can connect to."""
        ray = self._ray
        if not ray.is_initialized():
            if self.address is None and self._pool_spec is not None:
                raise ValueError(f"`pool` {':'.join(map(str, self._pool_spec))!r} lives on a running cluster: "
                                 "pass its `address` (a new local instance has no pool)")
            if self.address is None:
                self._reaper = _start_reaper()      # the local instance dies with this process
                try:
                    ctx = ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False,
                                   logging_level="ERROR")
                except BaseException:
                    self.close()
                    raise
            else:
                _probe(self.address, "ray")
                try:
                    ctx = ray.init(address=self.address, logging_level="ERROR")
                except (ConnectionError, TimeoutError) as exc:
                    raise ConnectionError(f"executor 'ray': no Ray cluster answered at `address` "
                                          f"{self.address!r} ({type(exc).__name__}: {exc})") from exc
            self._owns = True
            self.address = self.address or ctx.address_info["address"]
        elif self.address is None:
            self.address = ray.get_runtime_context().gcs_address
        if self._remote is None:
            self._remote = ray.remote(_ray_call).options(num_cpus=1, max_retries=self.max_retries,
                                                         retry_exceptions=False)
        if self._pool_spec is not None and not self._actors:
            ns, n = self._pool_spec
            try:
                self._actors = [ray.get_actor(f"{_POOL_ACTOR}{i}", namespace=ns) for i in range(n)]
            except ValueError as exc:
                raise ConnectionError(f"executor 'ray': `pool` {ns}:{n} has no actor {exc} on the cluster at "
                                      f"{self.address!r} (its maker has exited?)") from None
        return self.address

    def start_pool(self, n: int) -> str:
        """Start ``n`` member actors owned by this process (they die with it or :meth:`close`) and run
        this executor's members on them; returns the spec (``"namespace:count"``) that other processes
        pass as ``pool`` to use them."""
        n = check_int("n", n, minimum=1)
        self.start()
        if self._actors:
            raise RuntimeError("this RayExecutor already runs on a pool")
        ray = self._ray
        ns = f"shld-pool-{os.getpid()}-{id(self):x}"
        cls = ray.remote(_MemberRunner)
        self._actors = [cls.options(name=f"{_POOL_ACTOR}{i}", namespace=ns, num_cpus=0, max_restarts=-1,
                                    max_task_retries=self.max_retries).remote() for i in range(n)]
        ray.get([a.pid.remote() for a in self._actors])          # up before anyone looks them up
        self._pool_spec = (ns, n)
        self._owns_pool = True
        return f"{ns}:{n}"

    def close(self) -> None:
        """Shut Ray down if this executor started or connected it (and its pool, if it made one)."""
        if getattr(self, "_owns_pool", False):
            for a in self._actors:
                with contextlib.suppress(Exception):
                    self._ray.kill(a)
            self._owns_pool = False
            self._pool_spec = None
        self._actors = []
        if self._owns:
            with contextlib.suppress(Exception):
                self._ray.shutdown()
            self._owns = False
        # the next start() starts a new local instance instead of probing the ended one's address
        self.address = self._given_address
        self._remote = None
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait()
            self._reaper = None

    def map(self, fn, items):
        items = list(items)
        if not items:
            return
        self.start()
        if self._actors:
            yield from self._map_pool(fn, items)
            return
        ray = self._ray
        fn_ref = ray.put(fn)
        # at most `window` members are submitted ahead of the one being waited for, so that a sweep that
        # stops (a failure, or a consumer that stops reading) leaves no more than that many running
        window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        refs: dict = {}
        nxt = 0
        try:
            for i in range(len(items)):
                while nxt < len(items) and nxt < i + window:
                    refs[nxt] = self._remote.remote(fn_ref, items[nxt])
                    nxt += 1
                attempt = 1
                while True:
                    try:
                        res = ray.get(refs[i])
                        break
                    except ray.exceptions.RayTaskError as exc:     # the member raised
                        if attempt > self.retries:
                            raise MemberFailedError(i, items[i], _member_error(exc), attempt, "ray") from exc
                        attempt += 1
                        refs[i] = self._remote.remote(fn_ref, items[i])
                    except ray.exceptions.RayError as exc:         # its worker died max_retries + 1 times
                        raise MemberFailedError(i, items[i], exc, attempt, "ray") from exc
                del refs[i]
                yield res
        finally:
            # members in flight are left to finish rather than cancelled: ray.cancel races with a task's
            # completion (ray-project/ray#54798: a fatal RAY_CHECK in the driver's task manager; the
            # pool below met the same check with actor tasks)
            refs.clear()

    def _map_pool(self, fn, items):
        """Members on the pool's actors, one in flight per actor and at most two per actor started ahead of
        the next member to deliver; results are yielded in member order (a member that finishes early
        waits in memory), and a failure is raised at its place."""
        ray = self._ray
        fn_ref = ray.put(fn)
        free = list(reversed(self._actors))
        window = 2 * len(self._actors)            # members started ahead of the next one to deliver
        inflight: dict = {}                       # ref -> (member, attempt, actor)
        done: dict = {}                           # member -> ("ok", result) | ("failed", error)
        nxt = ready_to_yield = 0
        failed = False                            # a member failed: no new one starts

        def submit(i, attempt, actor):
            inflight[actor.run.remote(fn_ref, items[i])] = (i, attempt, actor)

        try:
            while ready_to_yield < len(items):
                # after a failure no new member starts: the sweep ends at the failure's place
                while free and nxt < min(len(items), ready_to_yield + window) and not failed:
                    submit(nxt, 1, free.pop())
                    nxt += 1
                if ready_to_yield not in done:
                    (ref,), _ = ray.wait(list(inflight), num_returns=1)
                    i, attempt, actor = inflight.pop(ref)
                    try:
                        done[i] = ("ok", ray.get(ref))
                        free.append(actor)
                    except ray.exceptions.RayTaskError as exc:     # the member raised
                        if attempt > self.retries:
                            done[i] = ("failed", MemberFailedError(i, items[i], _member_error(exc), attempt, "ray"))
                            failed = True
                            free.append(actor)
                        else:
                            submit(i, attempt + 1, actor)
                    except ray.exceptions.RayError as exc:         # its actor died max_retries + 1 times
                        done[i] = ("failed", MemberFailedError(i, items[i], exc, attempt, "ray"))
                        failed = True
                        free.append(actor)
                    continue
                kind, value = done.pop(ready_to_yield)
                if kind == "failed":
                    raise value
                ready_to_yield += 1
                yield value
        finally:
            # members still running on actors are left to finish (at most one per actor; no new one
            # starts): cancelling an actor task races with its completion in Ray 2.60 and trips a fatal
            # check in the driver ("Tried to complete task that was not pending"), which ends the driver
            inflight.clear()


def _member_error(exc) -> BaseException:
    """The member's own exception inside Ray's RayTaskError (its ``cause``), or the wrapper itself."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _parse_pool(spec) -> tuple[str, int]:
    """``"namespace:count"`` (from :meth:`RayExecutor.start_pool`) -> (namespace, count)."""
    ns, _, n = spec.rpartition(":") if isinstance(spec, str) else ("", "", "")
    if not ns or not n.isdigit() or int(n) < 1:
        raise ValueError(f"`pool` must be a spec 'namespace:count' from RayExecutor.start_pool(), got {spec!r}")
    return ns, int(n)


def make_executor(jobs: int | Executor | None = None) -> Executor:
    """An executor from a worker count (1 → serial) or pass an executor through."""
    if jobs is None:
        return SerialExecutor()
    if isinstance(jobs, Executor) and not isinstance(jobs, (int, np.integer)):
        return jobs
    jobs = check_int("jobs", jobs, minimum=1)
    return SerialExecutor() if jobs == 1 else ProcessExecutor(jobs)


def check_executor_args(executor: str | None, jobs: Any = None, address: str | None = None
                        ) -> tuple[str, int | None, str | None]:
    """Validate an ``--executor`` / ``--jobs`` / ``--address`` choice before any work; returns
    ``(name, jobs, address)`` resolved: name ``None`` → serial, or process when ``jobs`` > 1; ``jobs``
    ``None`` → 1 for serial, the CPU count for process or a local cluster, ``None`` with an address.

    ``jobs`` is the worker count of ``process`` and the size of a local Dask/Ray cluster; ``address``
    names an existing Dask scheduler or Ray cluster, which brings its own workers."""
    if executor is not None and executor not in EXECUTORS:
        raise ValueError(f"`executor` must be one of {list(EXECUTORS)}, got {executor!r}")
    if jobs is not None:
        jobs = check_int("jobs", jobs, minimum=1)
    if address is not None and not isinstance(address, str):
        raise TypeError(f"`address` must be a string, got {type(address).__name__}")
    if address == "":
        address = None
    if executor is None:
        executor = "process" if jobs is not None and jobs > 1 else "serial"
    if address is not None and executor not in ("dask", "ray"):
        raise ValueError(f"`address` ({address!r}) names a cluster, which only executor 'dask' or 'ray' uses; "
                         f"got executor {executor!r}")
    if executor == "serial" and jobs not in (None, 1):
        raise ValueError(f"`jobs` = {jobs} needs a parallel executor ('process', 'dask' or 'ray'); executor "
                         "'serial' runs one member at a time")
    if address is not None and jobs is not None:
        raise ValueError(f"`jobs` ({jobs}) sizes a local cluster or process pool; with `address` {address!r} "
                         "the cluster's own workers run the members (drop one of them)")
    if executor == "serial":
        jobs = 1
    elif address is None and jobs is None:
        jobs = os.cpu_count() or 1
    return executor, jobs, address


def executor_from_args(executor: str | None = None, jobs: int | None = None, address: str | None = None,
                       **kwargs: Any) -> Executor:
    """The executor that ``--executor``/``--jobs``/``--address`` select (:func:`check_executor_args`);
    ``kwargs`` go to the engine (e.g. ``retries``). A cluster engine connects on first use."""
    name, jobs, address = check_executor_args(executor, jobs, address)
    if name == "serial":
        return SerialExecutor()
    if name == "process":
        return ProcessExecutor(jobs)
    if name == "dask":
        return DaskExecutor(address, n_workers=jobs, **kwargs)
    return RayExecutor(address, num_cpus=jobs, **kwargs)


_CURRENT: list[Executor] = []
_FROM_ENV: dict[tuple, Executor] = {}


def _env_executor() -> Executor:
    name = os.environ.get("SHLD_EXECUTOR") or None
    jobs_text = os.environ.get("SHLD_JOBS") or None
    address = os.environ.get("SHLD_ADDRESS") or None
    pool = os.environ.get("SHLD_RAY_POOL") or None
    key = (name, jobs_text, address, pool)
    if key in _FROM_ENV:
        return _FROM_ENV[key]
    jobs = None
    if jobs_text is not None:
        try:
            jobs = int(jobs_text)
            if jobs < 1:
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"environment variable `SHLD_JOBS` must be an integer >= 1, got {jobs_text!r}") \
                from None
    try:
        if pool is not None and name != "ray":
            raise ValueError("SHLD_RAY_POOL (a pool of Ray actors) needs SHLD_EXECUTOR=ray")
        ex = executor_from_args(name, jobs, address, **({"pool": pool} if pool is not None else {}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"environment variables SHLD_EXECUTOR={name!r}, SHLD_JOBS={jobs_text!r}, "
                         f"SHLD_ADDRESS={address!r}, SHLD_RAY_POOL={pool!r}: {exc}") from None
    _FROM_ENV[key] = ex       # one connection per process, reused by every sweep
    return ex


@atexit.register
def _close_env_executors() -> None:
    for ex in _FROM_ENV.values():
        close = getattr(ex, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
    _FROM_ENV.clear()


def current_executor() -> Executor:
    """The executor installed by :func:`use_executor`, else the one ``SHLD_EXECUTOR`` / ``SHLD_JOBS`` /
    ``SHLD_ADDRESS`` select (cached: one cluster connection per process), else serial."""
    if _CURRENT:
        return _CURRENT[-1]
    if any(os.environ.get(k) for k in ("SHLD_EXECUTOR", "SHLD_JOBS", "SHLD_ADDRESS")):
        return _env_executor()
    return SerialExecutor()


@contextlib.contextmanager
def use_executor(executor: int | Executor):
    """Install an executor (or a worker count) for sweeps run inside the ``with`` block. The caller
    keeps ownership: a cluster executor is not closed on leaving the block."""
    _CURRENT.append(make_executor(executor))
    try:
        yield _CURRENT[-1]
    finally:
        _CURRENT.pop()


class SharedExecutor:
    """The executor choice for child processes (``shld reproduce``): :meth:`env` gives the
    ``SHLD_EXECUTOR`` / ``SHLD_JOBS`` / ``SHLD_ADDRESS`` values to set for them. For a local Dask
    or Ray cluster, the first :meth:`env` starts ONE cluster in this process and hands its address
    to every child (instead of each starting its own); :meth:`close` shuts it down. The cluster's
    worker processes die with this process. A given ``address`` is tried once here (a
    ``ConnectionError`` if nothing answers), so a wrong one fails before any study starts."""

    def __init__(self, executor: str | None = None, jobs: int | None = None, address: str | None = None):
        self.name, self.jobs, self.address = check_executor_args(executor, jobs, address)
        self._local = None
        self._pool = None
        if self.name in ("dask", "ray"):
            ex = executor_from_args(self.name, self.jobs, self.address)   # checks the extra is installed
            if self.address is None:
                self._local = ex
            else:
                with ex:
                    pass

    def env(self) -> dict[str, str]:
        if self._local is not None:
            address = self._local.start()
            env = {"SHLD_EXECUTOR": self.name, "SHLD_JOBS": "", "SHLD_ADDRESS": address}
            if self.name == "ray":
                # one pool of member actors for every child: a child's own tasks would need new workers
                if self._pool is None:
                    self._pool = self._local.start_pool(self.jobs or os.cpu_count() or 1)
                env["SHLD_RAY_POOL"] = self._pool
            return env
        jobs = "" if self.jobs is None else str(self.jobs)
        return {"SHLD_EXECUTOR": self.name, "SHLD_JOBS": jobs, "SHLD_ADDRESS": self.address or ""}

    def close(self) -> None:
        if self._local is not None:
            self._local.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def sweep_map(fn: Callable[[Any], Any], items: Iterable[Any], executor: Executor | int | None = None
              ) -> Iterator[Any]:
    """Map ``fn`` over independent sweep members with ``executor`` (default: the current one);
    results come back in item order. A cluster executor raises :class:`MemberFailedError` for a
    member that failed on every attempt (the members before it are yielded first)."""
    ex = current_executor() if executor is None else make_executor(executor)
    return iter(ex.map(fn, items))


__all__ = ["Executor", "SerialExecutor", "ProcessExecutor", "DaskExecutor", "RayExecutor", "MemberFailedError",
           "EXECUTORS", "make_executor", "check_executor_args", "executor_from_args", "current_executor",
           "use_executor", "SharedExecutor", "sweep_map", "member_seed"]
