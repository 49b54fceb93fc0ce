"""Benchmark: the SHLD Fokker–Planck solver side by side with fplanck (when installed), in one run.

    python benchmarks/bench_fokker_planck.py             # everything (~5–10 min on 2 busy cores)
    python benchmarks/bench_fokker_planck.py --quick     # smaller scaling table, 200 cells only

fplanck (https://github.com/johnaparker/fplanck) is not a dependency of SHLD; install it only to
run this script (``pip install --no-deps fplanck``). It calls ``np.product``, removed in NumPy 2,
so ``np.product = np.prod`` is set here, inside the benchmark, before it is used.

Problem and conventions. Overdamped dθ = −∇U dt + √(2D) dW, D a temperature in loss units; for
fplanck that is drag γ = 1 and k_B·T = D (``temperature = D / scipy.constants.k``). Both
solvers use the same points: fplanck's grid is centred on 0 with spacing ``resolution``, which
equals SHLD's cell centres on the box when ``resolution = extent/n`` (checked). Potentials not
centred on 0 (Müller–Brown) are shifted for fplanck.

What is measured (each time is the minimum over repeats, contenders interleaved — sub-millisecond
calls in warm blocks of 10 — so that load on the shared machine hits both alike; ratios are the
figures, absolute times are noise):

1. 1-D double well U = (x² − 1)², D = 0.1, box [−2, 2], 200 and 1000 cells:
   operator build; stationary state (time, L1 error vs the Gibbs law at the grid points);
   evolution of a Gaussian (mean −1, sd 0.1) to t = 10: fplanck ``propagate`` (expm_multiply,
   exact in time) against SHLD TR-BDF2 with the largest step Δt ∈ {1, 0.5, …} whose L1 error is no
   larger than fplanck's ("equal accuracy"); the error is against a reference density (mode
   expansion on a 40× finer grid, exact in time; its own error is printed); slowest nonzero
   eigenvalue λ₁ against a Richardson-extrapolated reference (SHLD on 16 000/32 000 cells).
2. 2-D double well (D = 0.25) and Müller–Brown (scale 0.05, D = 1) on 100 × 100 cells:
   build; stationary state; the 3 slowest nonzero eigenvalues (fplanck has no eigen-solver: its
   matrix is given to ``scipy.sparse.linalg.eigs`` with the same shift-invert); eigenvalue
   errors against Richardson references from SHLD at 200² and 400².
3. Scaling of SHLD's 2-D stationary solve + 4 eigenvalues (Müller–Brown) from 64² to 512².
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.interpolate import CubicSpline

from shld.fokker_planck import Grid, evolve, fokker_planck_operator, relaxation_rates, stationary_state
from shld.fokker_planck.spectrum import PERMC
from shld.landscapes import make_landscape

try:  # optional contender
    np.product = np.prod  # noqa: NPY003, NPY201 - fplanck calls np.product (gone in NumPy 2)
    import fplanck
    from scipy import constants
except ImportError:  # pragma: no cover - depends on the environment
    fplanck = None


def best_time(fn, repeats):
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def interleaved(fns, repeats, block=1):
    """Run the contenders in turn, ``repeats`` rounds of ``block`` back-to-back calls each; the time
    of a contender is its minimum over rounds of the per-call mean within a block (warm blocks
    for sub-millisecond calls). Returns the times and the last result of each."""
    best = [math.inf] * len(fns)
    outs = [None] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(block):
                outs[k] = fn()
            best[k] = min(best[k], (time.perf_counter() - t0) / block)
    return best, outs


# ---- fplanck adapter ------------------------------------------------------------------------------
def fplanck_solver(U, bounds, shape, D):
    """fplanck on the same points as ``Grid(bounds, shape)``; U takes arrays x (and y)."""
    bounds = np.asarray(bounds, dtype=float)
    extent = bounds[:, 1] - bounds[:, 0]
    centre = bounds.mean(axis=1)
    res = extent / np.asarray(shape, dtype=float)
    if np.any(np.ceil(extent / res).astype(int) != np.asarray(shape)):
        res = res * (1 + 1e-12)
    if centre.size == 1:
        pot = (lambda x: U(x + centre[0]))  # noqa: E731
    else:
        pot = (lambda x, y: U(x + centre[0], y + centre[1]))  # noqa: E731
    sim = fplanck.fokker_planck(temperature=D / constants.k, drag=1.0, extent=list(extent),
                                resolution=res if res.size > 1 else float(res[0]), potential=pot,
                                boundary=fplanck.boundary.reflecting)
    assert tuple(sim.Ngrid) == tuple(shape), (sim.Ngrid, shape)
    return sim


def scipy_rates(M, k):
    """k slowest rates of a generator matrix M (dp/dt = M p) by shift-invert ``eigs``."""
    M = (-M).tocsc()
    sigma = -1e-9 * float(np.max(np.abs(M.diagonal())))
    lu = spla.splu((M - sigma * sp.identity(M.shape[0], format="csc")).tocsc(), permc_spec=PERMC)
    op = spla.LinearOperator(M.shape, matvec=lu.solve, dtype=float)
    w = spla.eigs(M, k=k, sigma=sigma, OPinv=op, which="LM", ncv=max(2 * k + 1, 20), return_eigenvectors=False)
    return np.sort(w.real)


# ---- references ---------------------------------------------------------------------------------
def reference_density(L, D, bounds, n_fine, x0, s0, t):
    """ρ(t) by mode expansion on a fine grid (exact in time): ρ = G^{1/2} Σ e^{−λ_k t} v_k v_kᵀ G^{−1/2} ρ0."""
    g = Grid(bounds, n_fine)
    op = fokker_planck_operator(g, L, D=D)
    S = op.symmetric_matrix()
    k = 12
    sigma = -1e-9 * float(np.max(np.abs(S.diagonal())))
    w, v = spla.eigsh((-S).tocsc(), k=k, sigma=sigma, which="LM")
    assert np.max(w) * t > 60, "mode expansion truncated too early"
    u = op.potential - op.potential.min()
    x = g.axes[0]
    rho0 = np.exp(-((x - x0) ** 2) / (2 * s0 * s0))
    rho0 /= g.integrate(rho0)
    coef = v.T @ (np.exp(0.5 * u / D) * rho0)
    rho = np.exp(-0.5 * u / D) * (v @ (np.exp(-w * t) * coef))
    return CubicSpline(x, rho)


def richardson_rates(L, D, bounds, n1, n2, k):
    r1 = relaxation_rates(fokker_planck_operator(Grid(bounds, n1), L, D=D, peclet_warn=None), k=k + 1).rates
    r2 = relaxation_rates(fokker_planck_operator(Grid(bounds, n2), L, D=D, peclet_warn=None), k=k + 1).rates
    return (4 * r2[1:] - r1[1:]) / 3, np.abs(r2[1:] - r1[1:]) / 3


# ---- section 1 ----------------------------------------------------------------------------------
def bench_1d(n, D=0.1, t_final=10.0, reps=5):
    L = make_landscape("double-well", barrier=1.0)
    bounds = [[-2.0, 2.0]]
    grid = Grid(bounds, n)
    x = grid.axes[0]
    h = grid.spacing[0]
    rows = {}
    fns = [lambda: fokker_planck_operator(grid, L, D=D)]
    if fplanck:
        fns.append(lambda: fplanck_solver(L.u, bounds, (n,), D))
    times, outs = interleaved(fns, 8, block=10)  # sub-millisecond calls: warm blocks of 10
    op = outs[0]
    sim = outs[1] if fplanck else None
    rows["build"] = times
    gibbs = np.exp(-(L.u(x) - L.u(x).min()) / D)
    gibbs /= gibbs.sum() * h
    fns = [lambda: stationary_state(op, check_unique=False)]
    if fplanck:
        fns.append(lambda: sim.steady_state() / h)
    times, outs = interleaved(fns, reps)
    rows["stationary"] = times
    rows["stationary_err"] = [float(np.sum(np.abs(o.reshape(-1) - gibbs)) * h) for o in outs]

    # evolution at equal accuracy
    x0, s0 = -1.0, 0.1
    ref = reference_density(L, D, bounds, 40 * n + 1 if n < 1000 else 40 * n, x0, s0, t_final)
    ref2 = reference_density(L, D, bounds, 20 * n + 1 if n < 1000 else 20 * n, x0, s0, t_final)
    ref_err = float(np.sum(np.abs(ref(x) - ref2(x))) * h)
    rho0 = np.exp(-((x - x0) ** 2) / (2 * s0 * s0))
    target = None
    if fplanck:
        t_f, pf = best_time(lambda: sim.propagate(lambda xx: np.exp(-((xx - x0) ** 2) / (2 * s0 * s0)), t_final),
                            1 if n >= 1000 else 2)
        err_f = float(np.sum(np.abs(pf / h - ref(x))) * h)
        rows["evolve_fplanck"] = (t_f, err_f)
        target = err_f
    chosen = None
    for dt in (1.0, 0.5, 0.25, 0.1, 0.05, 0.025, 0.01, 0.005):
        ev = evolve(op, rho0, t_final, dt, n_records=2)
        err = float(np.sum(np.abs(ev.final - ref(x))) * h)
        chosen = (dt, err)
        if target is None or err <= target:
            break
    dt = chosen[0]
    t_o, _ = best_time(lambda: evolve(op, rho0, t_final, dt, n_records=2), reps)
    rows["evolve_shld"] = (t_o, chosen[1], dt, target is None or chosen[1] <= target)
    rows["ref_err"] = ref_err

    # slowest eigenvalue
    lam_ref, lam_ref_err = richardson_rates(L, D, bounds, 16000, 32000, 1)
    fns = [lambda: relaxation_rates(op, k=2).rates[1]]
    if fplanck:
        fns.append(lambda: scipy_rates(sim.master_matrix, 2)[1])
    times, outs = interleaved(fns, reps)
    rows["eig"] = times
    rows["eig_err"] = [abs(o / lam_ref[0] - 1) for o in outs]
    op_sqra = fokker_planck_operator(grid, L, D=D, scheme="sqra", peclet_warn=None)
    rows["eig_err_sqra"] = abs(relaxation_rates(op_sqra, k=2).rates[1] / lam_ref[0] - 1)
    rows["eig_ref"] = (float(lam_ref[0]), float(lam_ref_err[0] / lam_ref[0]))
    return rows


# ---- section 2 ----------------------------------------------------------------------------------
def bench_2d(name, L, D, n=100, reps=3):
    bounds = L.bounds
    grid = Grid(bounds, (n, n))
    h2 = grid.cell_volume

    def U2(x, y):
        return L.value(np.stack([x, y], axis=-1))

    rows = {}
    fns = [lambda: fokker_planck_operator(grid, L, D=D)]
    if fplanck:
        fns.append(lambda: fplanck_solver(U2, bounds, (n, n), D))
    times, outs = interleaved(fns, reps)
    op, sim = outs[0], (outs[1] if fplanck else None)
    rows["build"] = times
    u = op.potential.reshape(grid.shape)
    gibbs = np.exp(-(u - u.min()) / D)
    gibbs /= gibbs.sum() * h2
    fns = [lambda: stationary_state(op, check_unique=False)]
    if fplanck:
        fns.append(lambda: sim.steady_state() / h2)
    times, outs = interleaved(fns, reps)
    rows["stationary"] = times
    rows["stationary_err"] = [float(np.sum(np.abs(o - gibbs)) * h2) for o in outs]
    ref, ref_err = richardson_rates(L, D, bounds, (2 * n, 2 * n), (4 * n, 4 * n), 3)
    op_sqra = fokker_planck_operator(grid, L, D=D, scheme="sqra")
    fns = [lambda: relaxation_rates(op, k=4).rates[1:], lambda: relaxation_rates(op_sqra, k=4).rates[1:]]
    if fplanck:
        fns.append(lambda: scipy_rates(sim.master_matrix, 4)[1:])
    times, outs = interleaved(fns, reps)
    rows["eig"] = [times[0]] + times[2:]
    rows["eig_err"] = [float(np.max(np.abs(o / ref - 1))) for o in (outs[0],) + tuple(outs[2:])]
    rows["eig_each"] = [o / ref - 1 for o in outs]  # SG, SqRA, fplanck
    rows["eig_ref"] = (ref, float(np.max(ref_err / ref)))
    rows["name"] = name
    return rows


# ---- section 3 ----------------------------------------------------------------------------------
def _scale_one(L, n, reps):
    grid = Grid(L.bounds, (n, n))
    tb, op = best_time(lambda: fokker_planck_operator(grid, L, D=1.0, peclet_warn=None), reps)
    ts, _ = best_time(lambda: stationary_state(op, check_unique=False), reps)
    te, _ = best_time(lambda: relaxation_rates(op, k=5), reps)
    S = (-op.symmetric_matrix()).tocsc()
    shifted = (S + 1e-3 * sp.identity(S.shape[0], format="csc")).tocsc()
    tl, lu = best_time(lambda: spla.splu(shifted, permc_spec=PERMC), reps)
    rhs = np.ones(S.shape[0])
    tsolve, _ = best_time(lambda: lu.solve(rhs), reps)
    return {"n": n, "cells": n * n, "build": tb, "stationary": ts, "eig4": te, "lu": tl,
            "solve": tsolve, "fill": (lu.L.nnz + lu.U.nnz) / S.nnz}


def bench_scaling(sizes, reps=2):
    L = make_landscape("muller-brown", scale=0.05)
    return [_scale_one(L, n, reps) for n in sizes]


def fmt_ratio(a, b):
    return f"{b / a:.0f}×" if b / a >= 10 else f"{b / a:.1f}×"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 cells only, scaling up to 256²")
    args = ap.parse_args()
    print(f"fplanck: {'installed ' + getattr(fplanck, '__version__', '') if fplanck else 'NOT installed'}")
    print(f"numpy {np.__version__}, scipy {sp.__name__ and __import__('scipy').__version__}\n")

    print("## 1-D double well, D = 0.1 (times: best of repeats, seconds)\n")
    print("| cells | quantity | SHLD | fplanck | ratio (fplanck/SHLD) |")
    print("|---|---|---|---|---|")
    for n in ((200,) if args.quick else (200, 1000)):
        r = bench_1d(n)
        fp = bool(fplanck)
        b = r["build"]
        print(f"| {n} | operator build | {b[0]:.2e} s | {b[1]:.2e} s | {fmt_ratio(b[0], b[1])} |" if fp else
              f"| {n} | operator build | {b[0]:.2e} s | – | – |")
        s, e = r["stationary"], r["stationary_err"]
        print(f"| {n} | stationary: time | {s[0]:.2e} s | {s[1]:.2e} s | {fmt_ratio(s[0], s[1])} |" if fp else
              f"| {n} | stationary: time | {s[0]:.2e} s | – | – |")
        print(f"| {n} | stationary: L1 error vs Gibbs | {e[0]:.1e} | {e[1]:.1e} | |" if fp else
              f"| {n} | stationary: L1 error vs Gibbs | {e[0]:.1e} | – | |")
        to, eo, dt, ok = r["evolve_shld"]
        if fp:
            tf, ef = r["evolve_fplanck"]
            print(f"| {n} | evolve to t=10: time | {to:.2e} s (TR-BDF2, Δt={dt:g}) | {tf:.2e} s (expm_multiply) "
                  f"| {fmt_ratio(to, tf)} |")
            print(f"| {n} | evolve to t=10: L1 error vs reference | {eo:.1e} | {ef:.1e} | "
                  f"{'equal accuracy met' if ok else 'SHLD less accurate'} |")
        else:
            print(f"| {n} | evolve to t=10 | {to:.2e} s (Δt={dt:g}), L1 error {eo:.1e} | – | – |")
        print(f"| {n} | (reference density's own error) | {r['ref_err']:.1e} | | |")
        t, e = r["eig"], r["eig_err"]
        lam, lam_e = r["eig_ref"]
        print(f"| {n} | λ₁: time | {t[0]:.2e} s | {t[1]:.2e} s (scipy eigs) | {fmt_ratio(t[0], t[1])} |" if fp else
              f"| {n} | λ₁: time | {t[0]:.2e} s | – | – |")
        print(f"| {n} | λ₁: relative error (ref {lam:.6e} ± {lam_e:.0e} rel) | {e[0]:.1e} "
              f"(scheme=sqra: {r['eig_err_sqra']:.1e}) | "
              f"{e[1]:.1e} | |" if fp else f"| {n} | λ₁: relative error | {e[0]:.1e} | – | |")

    print("\n## 2-D, 100 × 100 cells (times in seconds)\n")
    print("| landscape | quantity | SHLD | fplanck | ratio (fplanck/SHLD) |")
    print("|---|---|---|---|---|")
    for name, L, D in (("double well (d=2)", make_landscape("double-well", barrier=1.0, dim=2), 0.25),
                       ("Müller–Brown ×0.05", make_landscape("muller-brown", scale=0.05), 1.0)):
        r = bench_2d(name, L, D)
        fp = bool(fplanck)
        for key, label in (("build", "operator build"), ("stationary", "stationary: time"),
                           ("eig", "3 eigenvalues: time")):
            t = r[key]
            print(f"| {name} | {label} | {t[0]:.2e} | {t[1]:.2e} | {fmt_ratio(t[0], t[1])} |" if fp else
                  f"| {name} | {label} | {t[0]:.2e} | – | – |")
        e = r["stationary_err"]
        print(f"| {name} | stationary: L1 error vs Gibbs | {e[0]:.1e} | {e[1]:.1e} | |" if fp else
              f"| {name} | stationary: L1 error vs Gibbs | {e[0]:.1e} | – | |")
        e = r["eig_err"]
        ref, ref_e = r["eig_ref"]
        print(f"| {name} | 3 eigenvalues: max rel. error (ref {np.array2string(ref, precision=5)} ± {ref_e:.0e}) "
              f"| {e[0]:.1e} | {e[1]:.1e} | |" if fp else f"| {name} | 3 eigenvalues: max rel. error | {e[0]:.1e} | – | |")
        each = r["eig_each"]
        labels = ("SHLD scheme=sg", "SHLD scheme=sqra", "fplanck")[:len(each)]
        txt = "; ".join(f"{lab}: " + ", ".join(f"{v:+.1e}" for v in e_k) for lab, e_k in zip(labels, each))
        print(f"| {name} | rel. error of λ₁, λ₂, λ₃ | {txt} | | |")

    sizes = (64, 128, 256) if args.quick else (64, 128, 256, 512)
    rows = bench_scaling(sizes)
    print("\n## Scaling: Müller–Brown ×0.05, D = 1: stationary solve + 4 eigenvalues (SHLD)\n")
    print("| grid | cells | build s | stationary s | 4 eigenvalues s | total s | µs / cell | LU factor s | "
          "one LU solve s | LU fill (nnz(L+U)/nnz(A)) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tot = r["build"] + r["stationary"] + r["eig4"]
        print(f"| {r['n']}² | {r['cells']} | {r['build']:.3f} | {r['stationary']:.3f} | {r['eig4']:.3f} | {tot:.3f} | "
              f"{1e6 * tot / r['cells']:.1f} | {r['lu']:.3f} | {r['solve']:.4f} | {r['fill']:.1f} |")
    cells = np.array([r["cells"] for r in rows], dtype=float)
    tot = np.array([r["build"] + r["stationary"] + r["eig4"] for r in rows])
    slope = np.polyfit(np.log(cells[1:]), np.log(tot[1:]), 1)[0]
    print(f"\nfitted exponent: total time ∝ cells^{slope:.2f} (from {rows[1]['n']}² up)")


if __name__ == "__main__":
    main()
