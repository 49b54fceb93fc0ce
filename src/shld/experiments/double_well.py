"""``shld run double-well``: the seed's example 1 — noise-assisted barrier crossing.

An ensemble starts in the left well of U(x) = h·((x/a)² − 1)² (+ tilt·x, + harmonic extra axes)
and evolves by overdamped Langevin dynamics at temperature D. Measured: the ensemble's loss and
C(t); the mean first-passage time into the right well (x ≥ a, censoring-aware) next to the exact
1-D quadrature, the Kramers–Langer rate and the seed's Kramers form; and, at the end, the ensemble
against the Gibbs density exp(−U/D)/Z (KS test). Figures: C(t) with the critical line, loss,
histogram vs Gibbs, paths (phase-space trajectories on the contours for dim = 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from shld.claims import FAILS, HOLDS, NOT_TESTABLE, agreement_verdict, claim_row
from shld.dynamics import AdaptiveNoise, HalfSpace, Simulation
from shld.experiments._langevin_run import EngineParams, engine_options, run_chunked
from shld.experiments.registry import register
from shld.experiments.study import Member, MemberContext, Study, Summary
from shld.landscapes import DoubleWell
from shld.observables import mfpt_estimate, regime_label
from shld.runs import read_metrics

RULE_KRAMERS_SEED = ("holds if the seed's rate (ω₀/2π)·e^{−ΔE/D} is within 3 standard errors (plus the "
                     "scheme's crossing bias) of the measured 1/MFPT; partly if within 25 %; fails otherwise; "
                     "not testable if no walker crossed or if 3 s.e. plus the bias exceed 25 % of the "
                     "measured rate (too few crossings to tell agreement from a 25 % difference)")
RULE_GIBBS = ("holds if the final ensemble passes a KS test against exp(−U/D)/Z at p ≥ 0.01 after at least 5 "
              "relaxation times 1/(Γ_LR + Γ_RL); fails if p < 0.01 then; not testable if the run is shorter")

#: walkers whose paths are recorded for the trajectory figure
TRACKED = 5

AUDIT = {"quick": {"n_walkers": 1000, "n_steps": 60_000}, "full": {"n_walkers": 10_000, "n_steps": 200_000}}


@dataclass
class DoubleWellParams(EngineParams):
    barrier: float = field(default=1.0, metadata={"help": "barrier height h (loss units)", "gt": 0})
    a: float = field(default=1.0, metadata={"help": "well position ±a", "gt": 0})
    tilt: float = field(default=0.0, metadata={"help": "linear tilt c in U + c·x (c < 0 deepens the right well)"})
    dim: int = field(default=1, metadata={"help": "dimension (extra axes are harmonic)", "min": 1})
    D: float = field(default=0.4, metadata={"help": "diffusion coefficient (temperature, loss units)", "gt": 0})
    dt: float = field(default=2e-3, metadata={"help": "time step (t = step·dt)", "gt": 0})
    n_steps: int = field(default=50_000, metadata={"help": "number of steps", "min": 1})
    n_walkers: int = field(default=2000, metadata={"help": "ensemble size", "min": 1})
    record_every: int = field(default=100, metadata={"help": "steps between records", "min": 1})
    integrator: str = field(default="euler", metadata={"help": "euler or baoab", "choices": ["euler", "baoab"]})
    adaptive: bool = field(default=False, metadata={"help": "the seed's C-triggered noise boost (restored)"})
    threshold: float = field(default=0.5, metadata={"help": "C threshold of the adaptive boost", "min": 0})
    factor: float = field(default=5.0, metadata={"help": "D multiplier of the adaptive boost", "gt": 0})
    seed: int = field(default=0, metadata={"help": "root seed"})


def _tracked(p) -> int:
    """Walkers whose paths the run records (TRACKED, or all of them when there are fewer)."""
    return min(TRACKED, p.n_walkers)


def _verdict_rate(rate, measured_rate, se_rate, bias_rate):
    return agreement_verdict(measured_rate, se_rate, rate, z=3.0, allowance=abs(bias_rate), partly=0.25)


class DoubleWellStudy(Study):
    name = "double-well"
    help = ("Seed example 1: ensemble Langevin escape over a double-well barrier, C(t), MFPT vs Kramers forms "
            "and the exact quadrature, final ensemble vs Gibbs.")
    Params = DoubleWellParams
    audit = AUDIT

    def validate(self, p: DoubleWellParams) -> None:
        engine_options(p)

    def members(self, p, done):
        return [Member("ensemble", folder=".")]

    def run_member(self, p: DoubleWellParams, member: Member, ctx: MemberContext) -> dict:
        L = _landscape(p)
        left, right = L.minima[0], L.minima[-1]
        x_right = float(right.location[0])
        controller = AdaptiveNoise(threshold=p.threshold, factor=p.factor) if p.adaptive else None
        sim = Simulation(L, D=p.D, dt=p.dt, integrator=p.integrator, record_every=p.record_every,
                         observables=("loss", "C", "mean", "var"), controller=controller,
                         target=HalfSpace(axis=0, threshold=x_right), track_walkers=TRACKED, **engine_options(p))
        theta0 = np.tile(left.location, (p.n_walkers, 1))
        run = ctx.run_folder()
        state, _ = run_chunked(sim, run, theta0, p.n_steps, seed=p.seed, resume=ctx.resume, progress=ctx.progress)
        m = read_metrics(run.path / "metrics.csv")
        keep = ["t", "C_ensemble", "C_median", "loss_mean", "loss_std"]
        keep += [f"w{i}_{j}" for i in range(_tracked(p)) for j in range(min(p.dim, 2))]
        final = state.to_arrays()                  # numpy on the host, whatever the backend
        return {"first_passage_time": final["first_passage_time"], "hit": final["hit"], "status": final["status"],
                "x_final": final["theta"][:, 0], "metrics": {k: m[k] for k in keep}}

    def analyse(self, p: DoubleWellParams, results) -> Summary:
        from shld.theory import kramers_rates, mfpt_1d

        r = results["ensemble"]
        m = r["metrics"]
        L = _landscape(p)
        left, right = L.minima[0], L.minima[-1]
        x_right = float(right.location[0])
        T = p.n_steps * p.dt

        # first passage left → right, censoring-aware
        est = mfpt_estimate(r["first_passage_time"], r["hit"], t_max=T)
        rates = kramers_rates(L, p.D, minimum=0)
        exact = float(mfpt_1d(L.u, p.D, float(left.location[0]), x_right)) if p.dim == 1 else float("nan")
        # discrete monitoring overshoot (Siegmund): ≈ 0.5826·√(2D·dt) in space, a time bias of that times dT/db
        h = 0.5826 * np.sqrt(2 * p.D * p.dt)
        bias_T = (float(mfpt_1d(L.u, p.D, float(left.location[0]), x_right + h)) - exact) if p.dim == 1 else 0.0
        rate_meas = 1.0 / est.mean if est.mean and np.isfinite(est.mean) else float("nan")
        se_rate = rate_meas * est.stderr / est.mean if np.isfinite(rate_meas) else float("nan")
        bias_rate = rate_meas * bias_T / est.mean if np.isfinite(rate_meas) else 0.0

        # final ensemble vs Gibbs (1-D marginal along the double-well axis)
        ok = r["status"] == 0
        x = r["x_final"][ok]
        relax = 1.0 / (rates.langer + kramers_rates(L, p.D, minimum=-1).langer)
        xs, gib, cdf = _gibbs_grid(L, p)
        ks = stats.kstest(x, lambda q: np.interp(q, xs, cdf))
        p_right_gibbs = float(np.interp(0.0, xs, 1 - cdf))

        C_final = float(m["C_ensemble"][-1])
        claims = [
            claim_row("kramers-seed-form", "Kramers escape rate (seed's form)", "Γ = (ω₀/2π)·exp(−ΔE/D)",
                      (f"1/MFPT = {rate_meas:.4g} ± {se_rate:.2g}" if np.isfinite(rate_meas) else
                       f"no walker crossed in t = {T:g}, so no 1/MFPT") + f"; seed's form {rates.seed:.4g}",
                      _verdict_rate(rates.seed, rate_meas, se_rate, bias_rate), RULE_KRAMERS_SEED,
                      value=rate_meas, uncertainty=se_rate, figure="figures/trajectories.png"),
            claim_row("gibbs-double-well", "stationary law is Gibbs exp(−L/D)", "ρ*(θ) ∝ exp(−ℒ(θ)/D)",
                      f"KS p = {ks.pvalue:.3g} after {T / relax:.1f} relaxation times",
                      (NOT_TESTABLE if T < 5 * relax else HOLDS if ks.pvalue >= 0.01 else FAILS), RULE_GIBBS,
                      value=float(ks.pvalue), figure="figures/histogram_vs_gibbs.png"),
        ]
        numbers = {
            "barrier_over_D": p.barrier / p.D,
            "mfpt": {"mean": est.mean, "stderr": est.stderr, "n_hit": est.n_hit, "n_censored": est.n_censored,
                     "method": est.method},
            "mfpt_exact_quadrature": exact,
            "mfpt_crossing_bias": bias_T,
            "mfpt_kramers_langer": rates.mfpt_langer,
            "mfpt_kramers_seed": rates.mfpt_seed,
            "ks_pvalue_vs_gibbs": float(ks.pvalue),
            "fraction_right_final": float(np.mean(x > 0)),
            "fraction_right_gibbs": p_right_gibbs,
            "relaxation_times_run": T / relax,
            "C_final": C_final,
            "regime_final": regime_label(C_final),
            "n_failed_walkers": int(np.sum(~ok)),
        }
        return Summary(claims, numbers)

    def figures(self, p: DoubleWellParams, results, summary, figs) -> None:
        from shld import plotting

        r = results["ensemble"]
        m = r["metrics"]
        t = m["t"]
        L = _landscape(p)
        xs, gib, _ = _gibbs_grid(L, p)
        x = r["x_final"][r["status"] == 0]
        plotting.close(plotting.plot_consolidation(t, m["C_ensemble"], path=figs / "consolidation.png",
                                                   extra={"median over walkers": (t, m["C_median"])}))
        plotting.close(plotting.plot_curves(t, {"E[L] ensemble": m["loss_mean"]}, path=figs / "loss.png",
                                            bands={"E[L] ensemble": (m["loss_mean"] - m["loss_std"],
                                                                     m["loss_mean"] + m["loss_std"])}))
        plotting.close(plotting.plot_histogram_vs_density(
            x, xs, gib, path=figs / "histogram_vs_gibbs.png",
            title=f"t = {p.n_steps * p.dt:g}, D = {p.D:g}, KS p = {summary['ks_pvalue_vs_gibbs']:.3g}"))
        if p.dim >= 2:
            paths = np.stack([np.stack([m[f"w{i}_0"], m[f"w{i}_1"]], -1) for i in range(_tracked(p))], axis=1)
            plotting.close(plotting.plot_trajectories_2d(L, paths, path=figs / "trajectories.png"))
        else:
            paths = np.stack([m[f"w{i}_0"] for i in range(_tracked(p))], axis=1)
            plotting.close(plotting.plot_paths_1d(t, paths, path=figs / "trajectories.png", barrier_x=0.0))

    def report(self, summary: dict) -> None:
        _print_table(summary)


def _landscape(p: DoubleWellParams) -> DoubleWell:
    return DoubleWell(barrier=p.barrier, a=p.a, dim=p.dim, tilt=p.tilt)


def _gibbs_grid(L: DoubleWell, p: DoubleWellParams):
    """The Gibbs density exp(−U/D)/Z on a grid of the double-well axis, and its CDF."""
    from shld.theory import gibbs_density_1d

    xs = np.linspace(-2.5 * p.a, 2.5 * p.a, 2001)
    gib = gibbs_density_1d(L.u, p.D, xs)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (gib[1:] + gib[:-1]) * np.diff(xs))])
    return xs, gib, cdf / cdf[-1]


register(DoubleWellStudy())


def _print_table(s: dict) -> None:
    rows = [("ΔE/D", f"{s['barrier_over_D']:.3g}"),
            ("MFPT measured", f"{s['mfpt']['mean']:.4g} ± {s['mfpt']['stderr']:.2g} "
                              f"({s['mfpt']['n_hit']} hit, {s['mfpt']['n_censored']} censored)"),
            ("MFPT exact (quadrature)", f"{s['mfpt_exact_quadrature']:.4g}"),
            ("MFPT Kramers–Langer", f"{s['mfpt_kramers_langer']:.4g}"),
            ("MFPT seed's Kramers form", f"{s['mfpt_kramers_seed']:.4g}"),
            ("final fraction right / Gibbs", f"{s['fraction_right_final']:.3f} / {s['fraction_right_gibbs']:.3f}"),
            ("KS p vs Gibbs", f"{s['ks_pvalue_vs_gibbs']:.3g}"),
            ("final C (regime)", f"{s['C_final']:.3g} ({s['regime_final']})")]
    w = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
