"""Benchmark: the ensemble Langevin engine against its floor and against the seed's reference class.

Double well U(x) = (x² − 1)², D = 0.25, dt = 1e-3, N walkers, n steps. Measured side by side in one run,
interleaved in blocks so that load on the shared machine hits all contenders alike:

* floor   — drawing the same normal variates alone with the same generator (PCG64, same dtype, in place);
* engine  — ``Simulation.advance`` (Euler–Maruyama, records only at block ends);
* torch   — the same driver on its torch backend (``backend="torch"``, CPU, float32 and float64) against
            its own floor, ``torch.randn`` alone into a buffer of the same shape and dtype (one torch
            thread: on a shared machine torch's thread pool waits for busy cores, and the numpy engine
            keeps its BLAS calls on one thread for the same reason);
* seed    — the seed's ``StochasticHarmonicLearning.step`` verbatim, one walker at a time (timed on a
            few thousand steps and expressed per walker-step).

A second table times what a user gets without choosing anything: whole ``simulate(...)`` calls with
the default recording (10⁴ walkers × 2000 steps and 10⁵ walkers × 400 steps), against the floor (the
same number of normals drawn alone) and against the same call recording only at its start and end
(``record_every=n_steps``); the three run in turn in each round, and the ratio is taken within a round.

Ratios are the figures (absolute times on this machine are noise). Each engine block runs right after a
floor block; the ratio is the median over blocks of the ratio within a pair, in wall time and, beside it, in
this process's CPU time (all contenders are single-threaded; CPU time is what other sessions' load
disturbs least).

    python benchmarks/bench_engine.py                 # N = 1e4 and 1e5, 1e4 steps; then the defaults
    python benchmarks/bench_engine.py --steps 2000    # quicker
    python benchmarks/bench_engine.py --only defaults # the default-recording table alone
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from shld.dynamics import Simulation, simulate
from shld.landscapes import DoubleWell


class SeedReference:
    """The seed's reference ``step``, verbatim apart from the explicit generator argument."""

    def __init__(self, grad_fn, dim, lr=0.01, noise_scale=0.01, rng=None):
        self.grad_fn, self.dim, self.lr, self.D = grad_fn, dim, lr, noise_scale
        self.rng = rng

    def step(self, theta, dt=1.0):
        grad = self.grad_fn(theta)
        drift = -self.lr * grad
        noise = self.rng.standard_normal(self.dim)
        diffusion = np.sqrt(2 * self.D * dt) * noise
        return theta + drift + diffusion


def bench(n_walkers: int, n_steps: int, block: int, dtype) -> dict:
    L = DoubleWell(barrier=1.0)
    D, dt = 0.25, 1e-3
    # dtype= makes the engine run in it (without it the engine is float64 whatever the start's dtype)
    sim = Simulation(L, D=D, dt=dt, record_every=block, observables=("loss",), check_every=block, dtype=dtype)
    state = sim.init_state(np.full((n_walkers, 1), -1.0, dtype=dtype), seed=1)
    assert state.theta.dtype == np.dtype(dtype)
    floor_rng = np.random.default_rng(2)
    buf = np.empty((n_walkers, 1), dtype=dtype)
    t_floor, t_engine = [], []
    for _ in range(max(1, n_steps // block)):
        t0 = _clocks()
        for _ in range(block):
            floor_rng.standard_normal(out=buf, dtype=dtype)
        t_floor.append(_clocks() - t0)
        t0 = _clocks()
        sim.advance(state, block)
        t_engine.append(_clocks() - t0)
    return _summary(n_walkers, np.dtype(dtype).name, t_floor, t_engine, block)


def _clocks() -> np.ndarray:
    """(wall time, this process's CPU time): on a shared machine the CPU time of a single-threaded
    contender is what load disturbs least."""
    return np.array([time.perf_counter(), time.process_time()])


def _summary(n_walkers, label, t_floor, t_engine, block) -> dict:
    """Per-step times (medians over blocks) and the ratio engine/floor: the median over blocks of the
    ratio within a pair of adjacent blocks (load that drifts hits both members of a pair alike), with
    the ratio of the fastest blocks beside it."""
    tf, te = np.asarray(t_floor), np.asarray(t_engine)          # (blocks, 2): wall, CPU
    f, e = float(np.median(tf[:, 0])) / block, float(np.median(te[:, 0])) / block
    return {"N": n_walkers, "dtype": label, "floor_step_s": f, "engine_step_s": e,
            "engine_over_floor": float(np.median(te[:, 0] / tf[:, 0])),
            "fastest_ratio": float(te[:, 0].min() / tf[:, 0].min()),
            "cpu_ratio": float(np.median(te[:, 1] / tf[:, 1])),
            "engine_per_walker_step_s": e / n_walkers}


def bench_torch(n_walkers: int, n_steps: int, block: int, dtype: str = "float32", device: str = "cpu") -> dict | None:
    """The engine on its torch backend (``Simulation(..., backend="torch")``, the same driver) against
    its own floor: ``torch.randn`` alone into a buffer of the same shape and dtype, same device, with an
    explicit generator. One torch thread (see ``main``)."""
    try:
        import torch
    except ImportError:
        return None

    L = DoubleWell(barrier=1.0)
    sync = (lambda: torch.cuda.synchronize(device)) if str(device).startswith("cuda") else (lambda: None)
    sim = Simulation(L, D=0.25, dt=1e-3, record_every=block, observables=("loss",), check_every=block,
                     backend="torch", device=device, dtype=dtype)
    state = sim.init_state(np.array([-1.0]), n_walkers=n_walkers, seed=1)
    tdtype = getattr(torch, dtype)
    gen = torch.Generator(device=device).manual_seed(2)
    buf = torch.empty((n_walkers, 1), dtype=tdtype, device=device)
    sim.advance(state, 2)                                        # warm-up
    t_floor, t_engine = [], []
    for _ in range(max(1, n_steps // block)):
        t0 = _clocks()
        for _ in range(block):
            torch.randn(buf.shape, generator=gen, dtype=tdtype, device=device, out=buf)
        sync()
        t_floor.append(_clocks() - t0)
        t0 = _clocks()
        sim.advance(state, block)
        t_engine.append(_clocks() - t0)
    return _summary(n_walkers, f"torch-{dtype[5:]}", t_floor, t_engine, block)


def bench_defaults(n_walkers: int, n_steps: int, rounds: int, D: float = 0.2, dt: float = 1e-3) -> dict:
    """``simulate`` with its default recording, whole runs, against the floor and records at the end."""
    L = DoubleWell(barrier=1.0)
    start = np.array([-1.0])
    buf = np.empty((n_walkers, 1))
    t = {"floor": [], "end": [], "default": []}
    n_records = 0
    for r in range(rounds + 1):                          # round 0 warms up and is not counted
        rng = np.random.default_rng(100 + r)
        t0 = time.perf_counter()
        for _ in range(n_steps):
            rng.standard_normal(out=buf)
        t1 = time.perf_counter()
        simulate(L, start, D=D, dt=dt, n_steps=n_steps, n_walkers=n_walkers, seed=r, record_every=n_steps)
        t2 = time.perf_counter()
        res = simulate(L, start, D=D, dt=dt, n_steps=n_steps, n_walkers=n_walkers, seed=r)
        t3 = time.perf_counter()
        if r:
            t["floor"].append(t1 - t0)
            t["end"].append(t2 - t1)
            t["default"].append(t3 - t2)
        n_records = len(res.steps)
    f, e, d = (np.array(t[k]) for k in ("floor", "end", "default"))
    return {"N": n_walkers, "steps": n_steps, "records": n_records, "rounds": rounds,
            "floor_step_s": float(np.median(f)) / n_steps,
            "end_over_floor": float(np.median(e / f)), "end_fastest": float(e.min() / f.min()),
            "default_over_floor": float(np.median(d / f)), "default_fastest": float(d.min() / f.min()),
            "default_over_end": float(np.median(d / e))}


def bench_seed(n_steps: int = 3000, repeats: int = 5) -> float:
    """Fastest of ``repeats`` timings (the most favourable figure for the seed's code)."""
    ref = SeedReference(lambda th: 4 * th * (th**2 - 1), 1, lr=1e-3, noise_scale=0.25,
                        rng=np.random.default_rng(0))
    best = np.inf
    for _ in range(repeats):
        theta = np.array([-1.0])
        t0 = time.perf_counter()
        for _ in range(n_steps):
            theta = ref.step(theta, dt=1e-3)
        best = min(best, (time.perf_counter() - t0) / n_steps)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--block", type=int, default=500)
    ap.add_argument("--walkers", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--rounds", type=int, default=7, help="rounds of the default-recording table")
    ap.add_argument("--only", choices=["all", "engine", "defaults"], default="all")
    ap.add_argument("--device", default="cpu", help="device of the torch rows (cpu, cuda)")
    args = ap.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    if args.only != "defaults":
        engine_table(args)
    if args.only != "engine":
        defaults_table(args.rounds)


def defaults_table(rounds: int):
    print(f"\ndefault recording: whole simulate() calls, double well D = 0.2, dt = 1e-3, float64, "
          f"{rounds} rounds; ratio = median over rounds of the within-round ratio [ratio of fastest runs]")
    print(f"{'N':>8} {'steps':>6} {'records':>8} {'floor µs/step':>14} {'records at end / floor':>23} "
          f"{'defaults / floor':>17} {'defaults / end':>15}")
    for n, steps in ((10_000, 2000), (100_000, 400)):
        r = bench_defaults(n, steps, rounds)
        end = f"{r['end_over_floor']:.2f} [{r['end_fastest']:.2f}]"
        dflt = f"{r['default_over_floor']:.2f} [{r['default_fastest']:.2f}]"
        print(f"{n:>8} {steps:>6} {r['records']:>8} {r['floor_step_s'] * 1e6:>14.1f} {end:>23} {dflt:>17} "
              f"{r['default_over_end']:>15.2f}")


def engine_table(args):
    seed_step = bench_seed()
    print(f"seed reference: {seed_step * 1e6:.2f} µs per walker-step (one walker at a time, best of 5)")
    print("engine/floor: median over blocks of the within-pair wall-time ratio; [fastest]: ratio of the fastest "
          "blocks; cpu: the same median in process CPU time")
    print(f"{'N':>8} {'dtype':>8} {'floor µs/step':>14} {'engine µs/step':>15} {'engine/floor':>13} "
          f"{'[fastest]':>9} {'cpu':>6} {'speed-up vs seed per walker-step':>33}")
    for n in args.walkers:
        for dtype in (np.float64, np.float32, "torch-float32", "torch-float64"):
            if isinstance(dtype, str):
                r = bench_torch(n, args.steps, args.block, dtype[6:], args.device)
            else:
                r = bench(n, args.steps, args.block, dtype)
            if r is None:
                continue
            print(f"{n:>8} {r['dtype']:>8} {r['floor_step_s'] * 1e6:>14.1f} {r['engine_step_s'] * 1e6:>15.1f} "
                  f"{r['engine_over_floor']:>13.2f} {r['fastest_ratio']:>9.2f} {r['cpu_ratio']:>6.2f} "
                  f"{seed_step / r['engine_per_walker_step_s']:>33.0f}")

if __name__ == "__main__":
    main()
