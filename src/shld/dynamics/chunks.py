"""Walkers in chunks: an ensemble larger than a memory budget (``max_memory=``) runs as several
smaller ones, optionally spread over an executor's workers (``executor=``: any object with
``map(fn, items)``), each with a seed spawned from the run's SeedSequence, merged into one
:class:`~shld.dynamics.state.SimulationResult` (means and variances pooled exactly)."""

from __future__ import annotations

import time as _time

import numpy as np

from shld._validation import check_finite_array, check_int, check_positive
from shld.dynamics.state import EnsembleState, SimulationResult, _host
from shld.seeds import child_seed

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(name: str, value) -> float:
    """A byte count from a number or a string such as "512MiB", "4GB" or "1e9"; must be > 0."""
    if isinstance(value, str):
        import re

        m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", value)
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(f"`{name}` must be a number of bytes or a string like '512MiB' or '4GB' "
                             f"(units {sorted(k for k in _UNITS if k)}), got {value!r}")
        try:
            value = float(m.group(1)) * _UNITS[unit]
        except ValueError:
            raise ValueError(f"`{name}` must be a number of bytes or a string like '512MiB', got {value!r}") \
                from None
    return check_positive(name, value)


def _root_seeds(rng, seed, n_chunks: int) -> list:
    """The chunks' seeds: children 0 … n−1 of the run's SeedSequence by spawn key (the package's one rule,
    :func:`shld.seeds.child_seed`), never ``spawn()``, which advances the caller's sequence: the same
    seed object always gives the same chunks."""
    src = rng if rng is not None else seed
    if isinstance(src, np.random.Generator):
        ss = src.bit_generator.seed_seq
    elif isinstance(src, np.random.SeedSequence):
        ss = src
    elif src is None or isinstance(src, (int, np.integer)) and not isinstance(src, bool):
        ss = np.random.SeedSequence(src)
    else:
        raise TypeError(f"`rng`/`seed` of a chunked run must be an int, a SeedSequence or a numpy Generator (its "
                        f"seed sequence is spawned per chunk), got {type(src).__name__}")
    return [child_seed(ss, j) for j in range(n_chunks)]


def _run_chunk(spec: dict):
    """One chunk of a chunked run (module-level, so that executors can ship it to a worker)."""
    from shld.dynamics.simulate import Simulation  # the driver imports this module

    sim = Simulation(spec["landscape"], spec["D"], spec["dt"], backend=spec["backend"], device=spec["device"],
                     **spec["options"])
    st = spec["state"]
    if st is None:
        st = sim.init_state(spec["theta0"], rng=spec["seed"])
    elif isinstance(st, dict):
        st = EnsembleState.from_arrays(st, device=spec["device"])
    res = sim.advance(st, spec["n_steps"], progress=spec["progress"])
    if spec["portable"]:
        res.state = res.state.to_arrays()
    return res


def _simulate_chunked(sim, landscape, theta0, D, dt, n_steps, *, n_walkers, rng, seed, state, on_record,
                      progress, backend, device, max_memory, chunks, executor, options):
    t0 = _time.perf_counter()
    d = landscape.dim
    budget = None if max_memory is None else parse_bytes("max_memory", max_memory)
    if chunks is not None:
        chunks = check_int("chunks", chunks, minimum=1)
    if isinstance(state, (list, tuple)):
        if not state:
            raise ValueError("`state` must be an EnsembleState or a non-empty list of chunk states, got []")
        specs_state = list(state)
        sizes = [int(np.shape(s["theta"] if isinstance(s, dict) else s.theta)[0]) for s in specs_state]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        parts = [None] * len(specs_state)
        seeds = [None] * len(specs_state)
    elif state is not None:
        raise ValueError("`state`: a single EnsembleState cannot be split into chunks; continue it without "
                         "`chunks`/`max_memory`/`executor`, or pass the list of chunk states")
    else:
        theta = check_finite_array("theta0", _host(theta0), dtype=sim.dtype)
        if theta.ndim == 1:
            if theta.shape[0] != d:
                raise ValueError(f"`theta0` must have shape (d,) or (N, d) with d={d}, got {theta.shape}")
            n = 1 if n_walkers is None else check_int("n_walkers", n_walkers, minimum=1)
        elif theta.ndim == 2 and theta.shape[1] == d and theta.shape[0] >= 1:
            n = theta.shape[0]
            if n_walkers is not None and n_walkers != n:
                raise ValueError(f"`n_walkers`={n_walkers} does not match theta0 with {n} rows")
        else:
            raise ValueError(f"`theta0` must have shape (d,) or (N, d) with d={d} and N >= 1, got {theta.shape}")
        per = sim.bytes_per_walker()
        n_chunks = chunks or 1
        if budget is not None:
            if per > budget:
                raise ValueError(f"`max_memory`={max_memory!r} is below one walker's {per:.0f} bytes "
                                 f"(d={d}, {sim.dtype.name})")
            n_chunks = max(n_chunks, -(-int(n * per) // int(budget)))
        n_chunks = min(n_chunks, n)
        if n_chunks == 1 and executor is None:
            # the budget holds the whole ensemble: the plain run, bit for bit (its state is no list)
            st = sim.init_state(theta0, n_walkers=n_walkers, rng=rng, seed=seed)
            return sim.advance(st, n_steps, on_record=on_record, progress=progress)
        starts = np.linspace(0, n, n_chunks + 1).round().astype(np.int64)
        parts = [theta if theta.ndim == 1 else theta[starts[i]:starts[i + 1]] for i in range(n_chunks)]
        parts = [np.broadcast_to(p, (starts[i + 1] - starts[i], d)) if p.ndim == 1 else p
                 for i, p in enumerate(parts)]
        seeds = _root_seeds(rng, seed, n_chunks) if n_chunks > 1 else [rng if rng is not None else seed]
        specs_state = [None] * n_chunks
    portable = executor is not None
    specs = [dict(landscape=landscape, D=D, dt=dt, backend=backend, device=device, options=options,
                  theta0=parts[i], seed=seeds[i], state=specs_state[i], n_steps=n_steps,
                  progress=bool(progress) and not portable, portable=portable)
             for i in range(len(specs_state))]
    if portable:
        # the chunks' own bars would print in the workers: one bar of finished chunks here instead
        from shld.progress import progress_bar

        results = []
        with progress_bar(len(specs), "chunks", "chunk", enabled=bool(progress)) as bar:
            for r in executor.map(_run_chunk, specs):
                results.append(r)
                bar.update(1)
    else:
        results = [_run_chunk(sp) for sp in specs]
    if len(results) != len(specs) or not all(isinstance(r, SimulationResult) for r in results):
        got = [type(r).__name__ for r in results]
        raise RuntimeError(f"`executor`.map(fn, chunks) must yield one SimulationResult per chunk, in order "
                           f"({len(specs)} chunks); got {len(results)} results of types {got[:5]}")
    res = _merge(results, starts, sim)
    res.wall_time = _time.perf_counter() - t0
    if on_record is not None:
        keys = [k for k, v in res.records.items() if v.ndim == 1]
        for i, step in enumerate(res.steps):
            on_record({"step": int(step), "t": float(res.times[i]), **{k: res.records[k][i].item() for k in keys}})
    return res


def _merge(results: list, starts, sim) -> SimulationResult:
    """One result from the chunks' results (see :func:`simulate`, ``executor``)."""
    if len(results) == 1:
        res = results[0]
        res.state = [res.state]
        return res
    common = sorted(set.intersection(*(set(r.steps.tolist()) for r in results)))
    rows = [np.searchsorted(r.steps, common) for r in results]
    sizes = np.array([r.n_walkers for r in results], dtype=float)
    messages = []
    if any(len(r.steps) != len(common) for r in results):
        messages.append(f"chunks stopped at different steps; records kept at the {len(common)} steps "
                        "every chunk recorded")
    R = lambda r, i, k: r.records[k][rows[i]]  # noqa: E731
    recs = {}
    keys = results[0].records.keys()
    alive = np.stack([R(r, i, "n_alive") for i, r in enumerate(results)]).astype(float)   # (chunks, T)
    w_alive = alive / np.maximum(alive.sum(0), 1)
    pooled = lambda k: np.sum([w_alive[i] * np.nan_to_num(R(r, i, k)) for i, r in enumerate(results)], 0)  # noqa
    for k in keys:
        if k in ("loss_mean", "grad_norm2_mean", "C_ensemble"):
            recs[k] = pooled(k)
        elif k == "loss_std":
            second = np.sum([w_alive[i] * np.nan_to_num(R(r, i, "loss_std") ** 2 + R(r, i, "loss_mean") ** 2)
                             for i, r in enumerate(results)], 0)
            recs[k] = np.sqrt(np.maximum(second - pooled("loss_mean") ** 2, 0.0))
        elif k in ("mean", "var"):
            m = np.sum([w_alive[i][:, None] * R(r, i, "mean") for i, r in enumerate(results)], 0) \
                if "mean" in keys else None
            if k == "mean":
                recs[k] = m
            else:
                mm = m if m is not None else None
                if mm is None:   # var without mean: pool the within-chunk variances only
                    recs[k] = np.sum([w_alive[i][:, None] * R(r, i, "var") for i, r in enumerate(results)], 0)
                    messages.append("var pooled without the between-chunk term (record 'mean' too for exact)")
                else:
                    second = np.sum([w_alive[i][:, None] * (R(r, i, "var") + R(r, i, "mean") ** 2)
                                     for i, r in enumerate(results)], 0)
                    recs[k] = np.maximum(second - mm ** 2, 0.0)
        elif k == "n_alive":
            recs[k] = alive.sum(0).astype(np.int64)
        elif k in ("D", "fraction_hit"):
            recs[k] = np.sum([sizes[i] * R(r, i, k) for i, r in enumerate(results)], 0) / sizes.sum()
        elif k in ("loss_walkers", "C_walkers"):
            recs[k] = np.concatenate([R(r, i, k) for i, r in enumerate(results)], axis=1)
        elif k == "C_median":
            if "C_walkers" in keys:
                cw = np.concatenate([R(r, i, "C_walkers") for i, r in enumerate(results)], axis=1)
                recs[k] = np.nanmedian(cw, axis=1)
            else:
                recs[k] = pooled(k)
                messages.append("C_median of a chunked run is the walker-weighted mean of the chunks' "
                                "medians (record_walkers=True gives the exact median)")
    interventions = []
    for i, r in enumerate(results):
        interventions += [(s, idx + starts[i]) for s, idx in r.interventions]
    interventions.sort(key=lambda x: x[0])
    for i, r in enumerate(results):
        messages += [f"chunk {i} (walkers {starts[i]}–{starts[i + 1] - 1}): {m}" for m in r.messages]
    cat = lambda k: np.concatenate([getattr(r, k) for r in results])  # noqa: E731
    first = results[0]
    traj = None
    if all(r.trajectory is not None for r in results):
        traj = np.concatenate([r.trajectory[rows[i]] for i, r in enumerate(results)], axis=1)
    return SimulationResult(
        times=first.times[rows[0]], steps=first.steps[rows[0]], records=recs, final_theta=cat("final_theta"),
        first_passage_time=cat("first_passage_time"), hit=cat("hit"), status=cat("status"),
        failure_step=cat("failure_step"),
        D_history=np.sum([sizes[i] * r.D_history[rows[i]] for i, r in enumerate(results)], 0) / sizes.sum(),
        interventions=interventions, state=[r.state for r in results], dt=first.dt, wall_time=0.0,
        trajectory=traj, messages=messages)
