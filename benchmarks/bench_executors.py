"""Cost of shipping sweep members: per-task overhead of each executor, and a sweep or the quick audit
under a 2-worker Dask LocalCluster and a 2-CPU Ray instance against ``--jobs 2`` (worker processes).

    python benchmarks/bench_executors.py overhead [--n 200]
    python benchmarks/bench_executors.py sweep [--repeat 2]          # double-descent, quick-audit size
    python benchmarks/bench_executors.py audit [--repeat 1] [--out DIR] [--names a,b]
    python benchmarks/bench_executors.py all

``overhead``: the time to start each engine (a local cluster, or ProcessExecutor's pool, which is started
per sweep), the round trip of one no-op member (median of 7), and the dispatch cost per member when 200
no-op members go through 2 workers (wall / n). ``sweep``: ``run_experiment("double-descent")`` at its
quick-audit preset (90 members of ~0.1-0.5 s) on each engine, clusters started beforehand (their start
is reported by ``overhead``). ``audit``: the quick audit under ``--executor process --jobs 2`` and
under a 2-worker Dask LocalCluster and a 2-CPU Ray instance, run study by study in turn (process, dask,
ray, next study) so that other load on the machine weighs on all three alike; like ``shld reproduce
--executor dask|ray --jobs 2``, each cluster is started once (its start counts in its total) and every
study's process connects to it. The ratio is to process.
Target (issue 12): the quick audit under Dask or Ray within 1.15x of ``--jobs 2``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ENGINES = ("process", "dask", "ray")


def _noop(x):
    return x


def _executor(engine: str, jobs: int = 2):
    from shld.experiments.executor import executor_from_args

    return executor_from_args(engine, jobs)


def _available(engines):
    """(engine, executor) for each engine whose optional dependency is installed; the others are reported."""
    for engine in engines:
        try:
            ex = _executor(engine)
        except ModuleNotFoundError as exc:
            print(f"{engine}: skipped ({exc})")
            continue
        yield engine, ex


def overhead(n: int = 200) -> list[dict]:
    rows = []
    for engine, ex in _available(ENGINES):
        t0 = time.perf_counter()
        if engine == "process":
            list(ex.map(_noop, [0, 1]))                 # a pool of 2 is started for every sweep
        else:
            ex.start()
            list(ex.map(_noop, [0]))
        start = time.perf_counter() - t0
        if engine == "process":
            one = start                                 # a one-member sweep runs in this process (no pool)
        else:
            trips = []
            for _ in range(7):
                t0 = time.perf_counter()
                list(ex.map(_noop, [0]))
                trips.append(time.perf_counter() - t0)
            one = statistics.median(trips)
        t0 = time.perf_counter()
        assert list(ex.map(_noop, range(n))) == list(range(n))
        wall = time.perf_counter() - t0
        if hasattr(ex, "close"):
            ex.close()
        rows.append({"engine": engine, "start_s": start, "one_ms": one * 1e3, "wall_n_s": wall,
                     "per_member_ms": wall / n * 1e3})
    return rows


def sweep(repeat: int = 2) -> dict[str, list[float]]:
    from shld.experiments.double_descent import AUDIT
    from shld.experiments.executor import use_executor
    from shld.experiments.registry import run_experiment

    started = {}
    for engine, ex in _available(ENGINES):
        if hasattr(ex, "start"):
            ex.start()
        started[engine] = ex
    times: dict[str, list[float]] = {e: [] for e in started}
    summaries = {}
    with tempfile.TemporaryDirectory(prefix="shld-bench-ex-") as tmp:
        for r in range(repeat):
            for engine, ex in started.items():
                out = Path(tmp) / f"{engine}-{r}"
                t0 = time.perf_counter()
                with use_executor(ex):
                    run_experiment("double-descent", out, progress=False, **AUDIT["quick"])
                times[engine].append(time.perf_counter() - t0)
                summaries.setdefault(engine, (out / "summary.json").read_bytes())
    for ex in started.values():
        if hasattr(ex, "close"):
            ex.close()
    same = len(set(summaries.values())) == 1
    print(f"summary.json byte-identical across engines: {same}")
    return times


def audit(repeat: int = 1, out: str | None = None, names: list[str] | None = None) -> dict[str, list[float]]:
    """The quick audit per engine, interleaved study by study (process, dask, ray, then the next study) so
    that a changing load on the machine weighs on every engine alike. As ``shld reproduce --executor
    dask|ray --jobs 2`` does, one local cluster per engine is started once (its start time is added to
    the engine's total; Ray's includes its pool of two member actors) and each study's process connects
    to it by address."""
    from shld.experiments.registry import audited_studies
    from shld.reporting.audit import reproduce

    base = Path(out or tempfile.mkdtemp(prefix="shld-bench-audit-"))
    names = names or list(audited_studies())
    clusters, start = {}, {}
    pools = {}
    for engine, ex in _available(ENGINES[1:]):
        t0 = time.perf_counter()
        ex.start()
        if engine == "ray":       # reproduce's own local instance makes a pool of member actors too
            pools[engine] = ex.start_pool(2)
        start[engine] = time.perf_counter() - t0
        clusters[engine] = ex
    engines = ["process", *clusters]
    per_study: dict[str, dict[str, list[float]]] = {e: {} for e in engines}
    try:
        for r in range(repeat):
            for name in names:
                for engine in engines:
                    folder = base / f"{engine}-{r}-{name}"
                    kw = {"executor": "process", "jobs": 2} if engine == "process" else \
                        {"executor": engine, "address": clusters[engine].address}
                    if engine in pools:   # the children find the pool as reproduce's own children do
                        os.environ["SHLD_RAY_POOL"] = pools[engine]
                    t0 = time.perf_counter()
                    try:
                        code = reproduce("quick", folder, names=[name], progress=False, **kw)
                    finally:
                        os.environ.pop("SHLD_RAY_POOL", None)
                    wall = time.perf_counter() - t0
                    per_study[engine].setdefault(name, []).append(wall)
                    print(f"#{r} {name:15s} {engine:8s} {wall:7.1f} s (exit {code}, load "
                          f"{os.getloadavg()[0]:.1f})", flush=True)
    finally:
        for ex in clusters.values():
            ex.close()
    print("\n| study | " + " | ".join(f"{e} s" for e in engines) + " |")
    print("|---|" + "---|" * len(engines))
    for name in names:
        print(f"| {name} | " + " | ".join(" / ".join(f"{t:.1f}" for t in per_study[e][name]) for e in engines)
              + " |")
    print("| cluster start | " + " | ".join(f"{start.get(e, 0.0):.1f}" for e in engines) + " |")
    totals = {e: [sum(per_study[e][n][r] for n in names) + start.get(e, 0.0) for r in range(repeat)]
              for e in engines}
    return totals


def _ratio_table(times: dict[str, list[float]], what: str) -> str:
    ref = min(times["process"]) if times.get("process") else None
    lines = [f"| engine | {what} wall s (each run) | best | ratio to process (best/best) |", "|---|---|---|---|"]
    for engine, ts in times.items():
        best = min(ts)
        ratio = f"{best / ref:.2f}" if ref else ""
        lines.append(f"| {engine} | {' / '.join(f'{t:.1f}' for t in ts)} | {best:.1f} | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["overhead", "sweep", "audit", "all"])
    ap.add_argument("--n", type=int, default=200, help="no-op members for the dispatch cost")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--out", default=None, help="audit folders (default: a temporary folder)")
    ap.add_argument("--names", default=None, help="audit: comma-separated studies (default: all audited)")
    args = ap.parse_args(argv)
    import numpy as np

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"numpy {np.__version__}; load average {os.getloadavg()[0]:.1f}")
    for mod in ("dask", "distributed", "ray"):
        try:
            print(f"{mod} {__import__(mod).__version__}", end="; ")
        except ModuleNotFoundError:
            print(f"{mod} not installed", end="; ")
    print()
    if args.what in ("overhead", "all"):
        rows = overhead(args.n)
        print(f"\n| engine | start s | one member round trip ms | {args.n} no-op members on 2 workers: wall s | "
              "per member ms |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['engine']} | {r['start_s']:.2f} | {r['one_ms']:.1f} | {r['wall_n_s']:.2f} | "
                  f"{r['per_member_ms']:.2f} |")
    if args.what in ("sweep", "all"):
        t = sweep(args.repeat or 2)
        print("\ndouble-descent at its quick-audit preset (clusters already started):")
        print(_ratio_table(t, "sweep"))
    if args.what in ("audit", "all"):
        t = audit(args.repeat or 1, args.out, args.names.split(",") if args.names else None)
        print(f"\nquick audit, total of the studies + cluster start (load average now {os.getloadavg()[0]:.1f}):")
        print(_ratio_table(t, "audit"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
