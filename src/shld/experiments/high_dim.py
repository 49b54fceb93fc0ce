"""``shld run high-dim``: the seed's example 2 — a high-dimensional quadratic.

L(θ) = ½ θᵀAθ with A = Q·diag(λ)·Qᵀ, λ log-spaced in [λ_min, λ_max], for several dimensions d.
Every moment is known in closed form (Ornstein–Uhlenbeck, and exactly for the Euler–Maruyama
recursion), so this run measures:

* E[L(t)] of the ensemble against the exact Euler–Maruyama curve and against the seed's
  Theorem 4 bound (L₀ − L*)e^{−λ_min t} + D·d/λ_min; the true floor is D·d/2 (times the scheme's
  1/(1 − λdt/2) factors), so the seed's floor is off by the factor 2/λ_min;
* the stationary C = E‖∇L‖²/(D·d) → tr(A)/d (the mean curvature: at equilibrium C measures the
  landscape's curvature scale, not a "phase");
* D recovered from the ensemble's short-lag mean-squared displacement (the seed's method 2 done
  right) next to the seed's var(θ)/T;
* the scaling of the floor with d ("validates scaling with dimension").

The ensemble runs in A's eigenbasis. With θ = Qφ (Q orthogonal), Euler–Maruyama on A from θ₀ is
φ_{k+1} = φ_k − dt·Λφ_k + √(2D·dt)·Qᵀξ_k, and Qᵀξ_k is again a standard normal vector: the walk on
the diagonal quadratic Λ from φ₀ = Qᵀθ₀ has **exactly the law** of the rotated walk, and every
quantity recorded here is rotation-invariant (L, ‖∇L‖² = ‖Λφ‖², tr Cov, ‖Δθ‖²). The rotated form
costs a dense d×d product per walker and step (about 23 minutes at d = 1000, 1000 walkers, 20 000
steps); the diagonal one costs d. The draws differ, the statistics do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shld.claims import FAILS, HOLDS, PARTLY, claim_row
from shld.dynamics import Simulation
from shld.experiments._langevin_run import EngineParams, engine_options, run_chunked
from shld.experiments.registry import register
from shld.experiments.study import Member, MemberContext, Study, Summary
from shld.landscapes import Quadratic, RandomQuadratic
from shld.observables import regime_label
from shld.runs import read_metrics
from shld.seeds import member_seed

RULE_T4_FLOOR = ("holds if the measured stationary E[L] − L* (mean of the last 20 % of records, ±3 SE) lies at "
                 "or below the seed's floor D·d/λ_min for every d; fails if it exceeds it for any d")
RULE_T4_FORM = ("holds if the seed's floor D·d/λ_min agrees with the measured floor within 10 % for every d; "
                "partly if within a factor 2; fails otherwise (the correct floor is D·d/2)")

AUDIT = {"quick": {"dims": [10, 100], "n_walkers": 100, "n_steps": 3000},
         "full": {"dims": [10, 100, 1000], "n_walkers": 1000, "n_steps": 20000}}


@dataclass
class HighDimParams(EngineParams):
    dims: list[int] = field(default_factory=lambda: [10, 100, 400], metadata={"help": "dimensions d to run", "min": 1})
    lambda_min: float = field(default=0.5, metadata={"help": "smallest Hessian eigenvalue", "gt": 0})
    lambda_max: float = field(default=10.0, metadata={"help": "largest Hessian eigenvalue", "gt": 0})
    D: float = field(default=0.01, metadata={"help": "diffusion coefficient (temperature)", "gt": 0})
    dt: float = field(default=0.01, metadata={"help": "time step (stable below 2/λ_max)", "gt": 0})
    n_steps: int = field(default=6000, metadata={"help": "steps per dimension", "min": 1})
    n_walkers: int = field(default=300, metadata={"help": "ensemble size", "min": 1})
    start_radius: float = field(default=3.0, metadata={"help": "|θ₀| of the common start point", "min": 0})
    record_every: int = field(default=20, metadata={"help": "steps between records", "min": 1})
    seed: int = field(default=0, metadata={"help": "root seed"})


def _validate(p: HighDimParams) -> None:
    if len(set(p.dims)) != len(p.dims):
        raise ValueError(f"`dims` must be distinct (each names a member), got {list(p.dims)}")
    if 2.0 / p.lambda_max <= p.dt:
        raise ValueError(f"`dt`={p.dt} is above the stability limit 2/λ_max = {2 / p.lambda_max:g}")


class HighDimStudy(Study):
    name = "high-dim"
    help = ("Seed example 2: a high-dimensional quadratic; E[L(t)] vs the exact OU/EM curve and the seed's "
            "Theorem 4 bound, stationary C, D from the MSD slope, scaling with d.")
    Params = HighDimParams
    audit = AUDIT

    def validate(self, p: HighDimParams) -> None:
        _validate(p)
        engine_options(p)

    def members(self, p, done):
        return [Member(f"d{d}", {"index": i, "d": d}, folder=f"d{d}") for i, d in enumerate(p.dims)]

    def run_member(self, p: HighDimParams, member: Member, ctx: MemberContext) -> dict:
        from shld.observables import estimate_D_msd
        from shld.theory import em_expected_loss, theorem4_bound_seed

        d = member.task["d"]
        ss = member_seed(p.seed, member.task["index"])
        L = RandomQuadratic(dim=d, lambda_min=p.lambda_min, lambda_max=p.lambda_max,
                            seed=int(ss.generate_state(1)[0]))
        sub = ctx.run_folder({"d": d})
        rng = np.random.default_rng(ss)
        u = rng.standard_normal(d)
        start = p.start_radius * u / np.linalg.norm(u)
        # the walk in A's eigenbasis: same law as the rotated walk (module docstring), d× cheaper
        evals, evecs = np.linalg.eigh(L.matrix)
        start_eig = evecs.T @ start
        diagonal = Quadratic(eigenvalues=evals)
        sim = Simulation(diagonal, D=p.D, dt=p.dt, record_every=p.record_every,
                         observables=("loss", "C", "var"), track_walkers=0, **engine_options(p))
        state, _ = run_chunked(sim, sub, np.tile(start_eig, (p.n_walkers, 1)), p.n_steps, seed=ss.spawn(1)[0],
                               resume=ctx.resume, progress=ctx.progress, n_chunks=5)
        m = read_metrics(sub.path / "metrics.csv")
        t, loss = m["t"], m["loss_mean"]
        steps = np.rint(t / p.dt).astype(int)
        exact = em_expected_loss(evals, p.D, p.dt, steps, start_eig)
        seed_bound = theorem4_bound_seed(float(diagonal.value(start_eig)), p.lambda_min, p.D, d, t)
        tail = slice(int(0.8 * len(t)), None)
        floor_meas = float(np.mean(loss[tail]))
        # records are correlated in time; use batch means over 5 blocks for the SE
        blocks = np.array_split(loss[tail], 5)
        floor_se = float(np.std([b.mean() for b in blocks], ddof=1) / np.sqrt(5))
        # D from the short-lag MSD of the final ensemble: a few extra steps from the final state
        frames = [sim.backend.to_numpy_copy(state.theta)]          # numpy on the host, whatever the backend
        for _ in range(3):
            sim.advance(state, 1)
            frames.append(sim.backend.to_numpy_copy(state.theta))
        D_msd = estimate_D_msd(p.dt * np.arange(4), np.stack(frames, 0))
        numbers = {
            "floor_measured": floor_meas, "floor_stderr": floor_se,
            "floor_exact_em": float(exact[-1]), "floor_exact_continuum": p.D * d / 2,
            "floor_seed": p.D * d / p.lambda_min,
            "C_stationary_measured": float(np.mean(m["C_ensemble"][tail])),
            # E‖∇L‖² = Σλ²·Var θ_i with the EM variance D/(λ(1 − λdt/2)): C → mean of λ/(1 − λdt/2) ≈ tr A/d
            "C_stationary_theory": float(np.mean(evals / (1 - 0.5 * evals * p.dt))),
            "regime_stationary": regime_label(float(np.mean(m["C_ensemble"][tail]))),
            "D_msd": float(D_msd.D), "D_msd_stderr": float(D_msd.stderr),
            "D_seed_var_over_T": float(np.mean(np.var(frames[-1], axis=0)) / (p.n_steps * p.dt)),
            # over the records after the start (at t = 0 every walker sits at θ₀: no spread)
            "max_abs_dev_from_exact_in_se": float(np.max(np.abs(loss - exact)[1:] / (
                m["loss_std"][1:] / np.sqrt(p.n_walkers)))),
        }
        return {"numbers": numbers, "t": t, "loss": loss, "exact": np.asarray(exact, float),
                "seed_bound": np.asarray(seed_bound, float), "C": m["C_ensemble"]}

    def analyse(self, p: HighDimParams, results) -> Summary:
        per_dim = {d: results[f"d{d}"]["numbers"] for d in p.dims}
        below = all(v["floor_measured"] - 3 * v["floor_stderr"] <= v["floor_seed"] for v in per_dim.values())
        ratios = [v["floor_seed"] / v["floor_measured"] for v in per_dim.values()]
        form = (HOLDS if all(abs(r - 1) <= 0.1 for r in ratios)
                else PARTLY if all(0.5 <= r <= 2 for r in ratios) else FAILS)
        claims = [
            claim_row("theorem4-bound", "Theorem 4: E[L]−L* ≤ (L₀−L*)e^{−λ_min t} + D·d/λ_min (as a bound)",
                      "floor D·d/λ_min", "; ".join(f"d={d}: floor {v['floor_measured']:.4g} ± "
                                                   f"{v['floor_stderr']:.1g} vs seed {v['floor_seed']:.4g}"
                                                   for d, v in per_dim.items())
                      + f" (the true floor is D·d/2, so with λ_min = {p.lambda_min:g} "
                      + ("< 2 the seed's floor lies above it by construction and the bound holds whatever the "
                         "dynamics: this verdict follows from λ_min; the theorems study tests λ_min > 2)"
                         if p.lambda_min < 2 else "≥ 2 the seed's floor is at or below it: a real test)"),
                      HOLDS if below else FAILS, RULE_T4_FLOOR, value=ratios[0], figure="figures/theorem4.png"),
            claim_row("theorem4-floor-form", "Theorem 4's noise floor is D·d/λ_min", "D·d/λ_min",
                      f"seed floor / measured floor = {', '.join(f'{r:.3g}' for r in ratios)} (true floor D·d/2, "
                      f"ratio 2/λ_min = {2 / p.lambda_min:.3g})",
                      form, RULE_T4_FORM, value=float(np.mean(ratios)), figure="figures/theorem4.png"),
        ]
        return Summary(claims, {"per_dim": {str(k): v for k, v in per_dim.items()}})

    def figures(self, p: HighDimParams, results, summary, figs) -> None:
        from shld import plotting

        for d in p.dims:
            r = results[f"d{d}"]
            plotting.close(plotting.plot_consolidation(r["t"], r["C"], path=figs / f"consolidation_d{d}.png"))
        plt = plotting.pyplot()
        fig, axes = plt.subplots(1, len(p.dims), figsize=(4.2 * len(p.dims), 3.6), squeeze=False)
        for ax, d in zip(axes[0], p.dims):
            r = results[f"d{d}"]
            ax.plot(r["t"], r["loss"], label="measured E[L]")
            ax.plot(r["t"], r["exact"], "k--", lw=1, label="exact (EM recursion)")
            ax.plot(r["t"], r["seed_bound"], "r:", lw=1.2, label="seed's Theorem 4 bound")
            ax.axhline(p.D * d / 2, color="g", lw=0.8, label="true floor D·d/2")
            ax.set_yscale("log")
            ax.set_title(f"d = {d}")
            ax.set_xlabel("t")
        axes[0][0].set_ylabel("E[L(t)] − L*")
        axes[0][0].legend(fontsize=7)
        plotting.save_figure(fig, figs / "theorem4.png")
        plotting.close(fig)

    def report(self, summary: dict) -> None:
        print()
        print(f"  {'d':>6} {'E[L] floor':>14} {'exact (EM)':>11} {'D·d/2':>9} {'seed D·d/λmin':>13} "
              f"{'C stat':>8} {'tr A/d':>8} {'D (MSD)':>10}")
        for d, v in summary["per_dim"].items():
            print(f"  {d:>6} {v['floor_measured']:>9.4g}±{v['floor_stderr']:<4.1g} {v['floor_exact_em']:>11.4g} "
                  f"{v['floor_exact_continuum']:>9.4g} {v['floor_seed']:>13.4g} "
                  f"{v['C_stationary_measured']:>8.3g} {v['C_stationary_theory']:>8.3g} {v['D_msd']:>10.4g}")


register(HighDimStudy())
