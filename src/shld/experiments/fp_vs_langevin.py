"""``shld run fp-vs-langevin``: the seed's Theorem 3 and its master equation, tested on densities.

The Langevin ensemble's histogram at several times against the evolving Fokker–Planck density
(chi-square per snapshot), in 1-D (double well, barrier 1) and 2-D (Müller–Brown), and at equilibrium
(t = 10/λ₁ after the last snapshot) against the stationary (Gibbs) law, together with the check that
the assembled operator annihilates the discrete Gibbs law.

Members: ``1d`` and ``2d`` (the transient views) and ``equilibrium`` (continues the 1-D ensemble from
its last snapshot, so it runs once ``1d`` is done). Time is dynamics time t; D is a temperature in
loss units (stationary law ∝ exp(−L/D)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from shld.claims import FAILS, HOLDS, PARTLY, claim_row
from shld.experiments._langevin_run import EngineParams, engine_options
from shld.experiments.registry import register
from shld.experiments.study import Member, Study, Summary
from shld.seeds import member_seed

SEED_MASTER = "∂ρ/∂t = ∇·(∇ℒ·ρ) + D∇²ρ, exact for SGD with Gaussian noise (continuous time)"
SEED_THEOREM3 = "ρ*(θ) ∝ exp(−ℒ(θ)/D) at equilibrium"

RULE_SNAPSHOTS = ("Chi-square test of the Langevin histogram against the FP bin probabilities at every "
                  "snapshot t > 0 (bins with < 5 expected walkers pooled): holds if every p ≥ 0.001/n_tests "
                  "(Bonferroni over the 1-D and 2-D snapshots); partly if only one of 1-D and 2-D passes; "
                  "fails otherwise.")
RULE_GIBBS = ("The FP operator annihilates the discrete Gibbs law (its stationary state): "
              "‖A·ρ_Gibbs‖∞ ≤ 1e-12·max_i A_ii·max ρ_Gibbs in absolute value; and the Langevin histogram at "
              "t = 10/λ₁ vs the Gibbs bin probabilities: chi-square p ≥ 0.001. Holds if both, partly if "
              "one, fails otherwise.")

AUDIT = {"quick": {"n_walkers": 4000, "mb_walkers": 1500}, "full": {"n_walkers": 50000, "mb_walkers": 10000}}

REFINE_1D = 10      # FP cells per histogram bin (1-D)
REFINE_2D = 4       # FP cells per histogram bin along each axis (2-D)
GRID_2D = (120, 120)
START_1D = (-1.0, 0.1)      # mean and spread of the 1-D start
SPREAD_2D = 0.05            # spread of the 2-D start around minimum B


@dataclass
class FpVsLangevinParams(EngineParams):
    seed: int = field(default=0, metadata={"help": "root seed"})
    D: float = field(default=0.5, metadata={"help": "temperature of the 1-D double well (barrier 1)", "gt": 0})
    n_walkers: int = field(default=20000, metadata={"help": "Langevin walkers (1-D)", "min": 10})
    dt: float = field(default=1e-3, metadata={"help": "Euler–Maruyama step, 1-D", "gt": 0})
    t_final: float = field(default=4.0, metadata={"help": "last snapshot time, 1-D", "gt": 0})
    n_snapshots: int = field(default=5, metadata={"help": "snapshots after t = 0", "min": 1})
    n_bins: int = field(default=40, metadata={"help": "histogram bins (1-D)", "min": 4})
    mb_scale: float = field(default=0.05, metadata={"help": "Müller–Brown energy scale", "gt": 0})
    mb_D: float = field(default=1.0, metadata={"help": "temperature on Müller–Brown", "gt": 0})
    mb_walkers: int = field(default=4000, metadata={"help": "Langevin walkers on Müller–Brown", "min": 10})
    mb_dt: float = field(default=1e-4, metadata={"help": "Euler–Maruyama step on Müller–Brown", "gt": 0})
    mb_t_final: float = field(default=1.0, metadata={"help": "last snapshot time on Müller–Brown", "gt": 0})
    equilibrium: bool = field(default=True,
                              metadata={"help": "also run the 1-D ensemble to t = 10/λ₁ (Theorem 3)"})


def chi2_test(counts, probs, n) -> tuple[float, int, float]:
    """Pearson chi-square of ``counts`` (n draws) against bin probabilities ``probs``; bins with fewer than
    5 expected draws are pooled into one. Returns (statistic, degrees of freedom, p-value)."""
    from scipy.stats import chi2

    probs = np.asarray(probs, dtype=float).ravel()
    counts = np.asarray(counts, dtype=float).ravel()
    probs = probs / probs.sum()
    exp = n * probs
    big = exp >= 5
    o = np.append(counts[big], counts[~big].sum())
    e = np.append(exp[big], exp[~big].sum())
    keep = e > 0
    o, e = o[keep], e[keep]
    stat = float(np.sum((o - e) ** 2 / e))
    dof = max(int(o.size) - 1, 1)
    return stat, dof, float(chi2.sf(stat, dof))


def _block_sum(a, f):
    if a.ndim == 1:
        return a.reshape(-1, f).sum(axis=1)
    n0, n1 = a.shape
    return a.reshape(n0 // f, f, n1 // f, f).sum(axis=(1, 3))


def _setup_1d(p: FpVsLangevinParams):
    from shld.fokker_planck import Grid, fokker_planck_operator
    from shld.landscapes import make_landscape

    L = make_landscape("double-well", barrier=1.0)
    grid = Grid.from_landscape(L, p.n_bins * REFINE_1D)
    op = fokker_planck_operator(grid, L, D=p.D)
    return L, grid, op, grid.edges[0][::REFINE_1D]


def _setup_2d(p: FpVsLangevinParams):
    from shld.fokker_planck import Grid, fokker_planck_operator
    from shld.landscapes import make_landscape

    M = make_landscape("muller-brown", scale=p.mb_scale)
    g2 = Grid.from_landscape(M, GRID_2D)
    return M, g2, fokker_planck_operator(g2, M, D=p.mb_D)


def _view_1d(p: FpVsLangevinParams) -> dict:
    from shld.dynamics import simulate
    from shld.fokker_planck import evolve

    L, grid, op, edges = _setup_1d(p)
    times = np.linspace(0.0, p.t_final, p.n_snapshots + 1)
    x0, s0 = START_1D
    ev = evolve(op, grid.gaussian([x0], [[s0**2]]), p.t_final, min(0.01, p.t_final / 200), record_times=times)
    rng = np.random.default_rng(member_seed(p.seed, 1000, 0))      # disjoint from kramers' ratio streams
    theta0 = x0 + s0 * rng.standard_normal((p.n_walkers, 1))
    every = int(round(p.t_final / p.dt)) // p.n_snapshots
    res = simulate(L, theta0, D=p.D, dt=p.dt, n_steps=every * p.n_snapshots, rng=rng, record_every=every,
                   store_trajectory=True, observables=("loss",), **engine_options(p))
    counts = np.stack([np.histogram(res.trajectory[k][:, 0], bins=edges)[0] for k in range(len(times))])
    probs = np.stack([_block_sum(ev.densities[k] * grid.cell_volume, REFINE_1D) for k in range(len(times))])
    return {"times": times, "counts": counts, "probs": probs, "densities": np.asarray(ev.densities),
            "final_theta": res.final_theta}


def _view_2d(p: FpVsLangevinParams) -> dict:
    from shld.dynamics import simulate
    from shld.fokker_planck import evolve

    M, g2, op2 = _setup_2d(p)
    B = [c for c in M.minima if c.label == "B"][0].location
    times = np.linspace(0.0, p.mb_t_final, p.n_snapshots + 1)
    ev = evolve(op2, g2.gaussian(B, SPREAD_2D**2 * np.eye(2)), p.mb_t_final, p.mb_t_final / 200,
                record_times=times)
    rng = np.random.default_rng(member_seed(p.seed, 1000, 1))
    th = B + SPREAD_2D * rng.standard_normal((p.mb_walkers, 2))
    every = int(round(p.mb_t_final / p.mb_dt)) // p.n_snapshots
    res = simulate(M, th, D=p.mb_D, dt=p.mb_dt, n_steps=every * p.n_snapshots, rng=rng, record_every=every,
                   store_trajectory=True, observables=("loss",), **engine_options(p))
    e2 = [e[::REFINE_2D] for e in g2.edges]
    counts = np.stack([np.histogram2d(res.trajectory[k][:, 0], res.trajectory[k][:, 1], bins=e2)[0]
                       for k in range(len(times))])
    probs = np.stack([_block_sum(ev.densities[k] * g2.cell_volume, REFINE_2D) for k in range(len(times))])
    return {"times": times, "counts": counts, "probs": probs, "densities": np.asarray(ev.densities)}


def _equilibrium(p: FpVsLangevinParams, theta: np.ndarray) -> dict:
    from shld.dynamics import simulate
    from shld.fokker_planck import relaxation_rates, stationary_state

    L, grid, op, edges = _setup_1d(p)
    st = stationary_state(op)
    # stationary_state returns the discrete Gibbs law in closed form for a gradient drift, so the check is
    # on the operator: the assembled A must annihilate it (detailed balance, face by face)
    gib = op.gibbs().reshape(-1)
    resid = float(np.max(np.abs(op.matrix @ gib)) / (np.max(np.abs(op.matrix.diagonal())) * gib.max()))
    lam1 = relaxation_rates(op, k=2).gap
    t_eq = 10.0 / lam1
    n_eq = int(math.ceil(t_eq / p.dt))
    res = simulate(L, theta, D=p.D, dt=p.dt, n_steps=n_eq, rng=np.random.default_rng(member_seed(p.seed, 1000, 2)),
                   record_every=n_eq, observables=("loss",), **engine_options(p))
    counts, _ = np.histogram(res.final_theta[:, 0], bins=edges)
    return {"residual": resid, "lambda1": lam1, "t_equilibrium": t_eq, "counts": counts,
            "probs": _block_sum(op.gibbs() * grid.cell_volume, REFINE_1D), "stationary": np.asarray(st)}


class FpVsLangevinStudy(Study):
    name = "fp-vs-langevin"
    help = ("Theorem 3 and the master equation: Langevin histograms vs the evolving Fokker–Planck density "
            "(1-D double well, 2-D Müller–Brown) and vs the Gibbs law at equilibrium")
    Params = FpVsLangevinParams
    audit = AUDIT

    def validate(self, p) -> None:
        engine_options(p)

    def members(self, p, done):
        out = [Member("1d"), Member("2d")]
        if p.equilibrium and "1d" in done:     # continues the 1-D ensemble from its last snapshot
            out.append(Member("equilibrium", {"theta": np.asarray(done["1d"]["final_theta"]).tolist()}))
        return out

    def run_member(self, p, member, ctx) -> dict:
        if member.key == "1d":
            return _view_1d(p)
        if member.key == "2d":
            return _view_2d(p)
        return _equilibrium(p, np.asarray(member.task["theta"], dtype=float))

    def analyse(self, p, results) -> Summary:
        tests, rows = [], []
        r1, r2 = results["1d"], results["2d"]
        p1, p2 = [], []
        for k in range(1, len(r1["times"])):
            stat, dof, pval = chi2_test(r1["counts"][k], r1["probs"][k], p.n_walkers)
            p1.append(pval)
            tests.append(("1d", float(r1["times"][k]), stat, dof, pval))
        for k in range(1, len(r2["times"])):
            counts, probs = r2["counts"][k], r2["probs"][k]
            outside = p.mb_walkers - counts.sum()  # walkers that left the box (expected ~0)
            stat, dof, pval = chi2_test(np.append(counts.ravel(), outside),
                                        np.append(probs.ravel(), max(1.0 - probs.sum(), 0.0)), p.mb_walkers)
            p2.append(pval)
            tests.append(("2d", float(r2["times"][k]), stat, dof, pval))
        level = 0.001 / (len(p1) + len(p2))
        ok1, ok2 = min(p1) >= level, min(p2) >= level
        rows.append(claim_row(
            "master-equation-density", "Langevin histogram follows the FP density over time", SEED_MASTER,
            f"min p: 1-D {min(p1):.3g} ({len(p1)} snapshots), 2-D Müller–Brown {min(p2):.3g} ({len(p2)}); "
            f"level {level:.2g}",
            HOLDS if (ok1 and ok2) else (PARTLY if (ok1 or ok2) else FAILS), RULE_SNAPSHOTS,
            value=min(p1 + p2), figure="figures/density_2d_muller_brown.png"))
        numbers = {"tests": [dict(zip(("view", "t", "chi2", "dof", "p"), t)) for t in tests]}
        if p.equilibrium:
            eq = results["equilibrium"]
            stat, dof, pval = chi2_test(eq["counts"], eq["probs"], p.n_walkers)
            ok_fp, ok_lv = eq["residual"] <= 1e-12, pval >= 0.001
            rows.append(claim_row(
                "theorem3-gibbs", "Theorem 3: stationary law is Gibbs", SEED_THEOREM3,
                f"FP residual ‖A·ρ_Gibbs‖∞ = {eq['residual']:.1e} (relative); Langevin at t = 10/λ₁ = "
                f"{eq['t_equilibrium']:.3g}: chi2 = {stat:.1f} (dof {dof}), p = {pval:.3g}",
                HOLDS if (ok_fp and ok_lv) else (PARTLY if (ok_fp or ok_lv) else FAILS), RULE_GIBBS,
                value=pval, figure="figures/gibbs_1d.png"))
            numbers.update({"gibbs_residual": eq["residual"], "lambda1": eq["lambda1"],
                            "t_equilibrium": eq["t_equilibrium"], "gibbs_chi2_p": pval})
        return Summary(rows, numbers)

    def figures(self, p, results, summary, figs) -> None:
        from shld.fokker_planck.plots import plot_density_evolution

        L, grid, op, edges = _setup_1d(p)
        r1 = results["1d"]
        hists = [(edges, c / (p.n_walkers * np.diff(edges))) for c in r1["counts"]]
        plot_density_evolution(grid, r1["times"], r1["densities"], reference=op.gibbs(), histograms=hists,
                               path=figs / "density_1d.png",
                               title=f"double well, D={p.D:g}: FP density (lines) vs Langevin histogram "
                                     f"(dotted, N={p.n_walkers})")
        M, g2, _ = _setup_2d(p)
        r2 = results["2d"]
        f2 = REFINE_2D
        # the histogram shown on the FP grid: each bin's density spread over its f2×f2 cells
        hist2 = [np.kron(c / (p.mb_walkers * g2.cell_volume * f2 * f2), np.ones((f2, f2))) for c in r2["counts"]]
        plot_density_evolution(g2, r2["times"], r2["densities"], landscape=M, histograms=hist2,
                               path=figs / "density_2d_muller_brown.png", max_panels=4,
                               title=f"Müller–Brown ×{p.mb_scale:g}, D={p.mb_D:g}: FP (top) vs "
                                     f"Langevin N={p.mb_walkers} (bottom)")
        if p.equilibrium:
            eq = results["equilibrium"]
            t = p.t_final + eq["t_equilibrium"]
            plot_density_evolution(grid, [t], [eq["stationary"]], reference=op.gibbs(),
                                   histograms=[(edges, eq["counts"] / (p.n_walkers * np.diff(edges)))],
                                   path=figs / "gibbs_1d.png",
                                   title=f"equilibrium t = {t:.3g}: FP stationary, Gibbs (dashed), Langevin")


register(FpVsLangevinStudy())
