"""Noise-assisted escape from the poor well of a double well, with and without the seed's
adaptive-noise intervention.

Seed's claim ("Noise-Assisted Escape"): starting near a poor local minimum of a double-well
potential, "without intervention: stuck for 5000+ steps (90 % of runs); with intervention
[at C(t) < 0.5 increase D by 10×]: escapes within 100 steps (95 % of runs)".

The seed's setting, fixed here (the seed gives no barrier, no D, no step)
-------------------------------------------------------------------------
* landscapes: ``double-well`` (symmetric, barrier h, a = 1) and ``tilted-double-well`` (the
  right well deeper by the default tilt 0.25·h/a); every walker starts at the *left* minimum
  (the poor one on the tilted well);
* **escape** = first arrival at the other (right) minimum, x ≥ x_right;
* dt = 0.01 and D = 0.1: the seed's reference code uses ``lr=0.01`` and
  ``noise_scale=0.001`` with its own ``dt=1``, i.e. θ ← θ − lr·∇L + √(2·0.001)·ξ. In Langevin
  time (dt = lr) that is D = 0.001/0.01 = 0.1. Barrier h = 1 (the landscape default), so
  ΔE/D = 10; a step is one engine step (dt = lr);
* horizon 5000 steps.

Arms
----
``none``     constant D;
``rule``     the seed's rule as described, with a correct restore: after step 50 (the code's
             ``step > 50``) a walker whose C = ‖∇L‖²/(D·d) < 0.5 gets D × 10 (the text's factor) for
             10 steps (the code's "> 10"), then D is restored
             (:class:`shld.dynamics.AdaptiveNoise` with ``restore=True``);
``literal``  the seed's code as written: D × 5 on every step with C < 0.5 after step 50, never
             restored (``restore=False``, factor 5);
``control``  the same noise budget as ``rule``, spent at random times: walker i of the control
             gets exactly as many boosts (D × 10 for 10 steps) as walker i of the ``rule`` arm,
             placed in distinct 10-step slots drawn uniformly after step 50, independent of C.

Reported per landscape and arm: fractions escaped within 100 and 5000 steps and final
occupancy of the right well (x > saddle) with Wilson 95 % intervals, final loss (mean ± s.e.),
interventions per walker, non-finite walkers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from shld.claims import (
    FAILS,
    HOLDS,
    RULE_AT_LEAST,
    claim_row,
    format_pm,
    fraction_at_least,
    fractions_differ,
    wilson_interval,
)
from shld.dynamics.controllers import AdaptiveNoise
from shld.dynamics.targets import HalfSpace
from shld.experiments.executor import member_seed
from shld.experiments.registry import register
from shld.experiments.study import Member, Study, Summary
from shld.plotting import pyplot, save_figure

LANDSCAPES = ("double-well", "tilted-double-well")
ARMS = ("none", "rule", "literal", "control")

RULE_STUCK = ("fraction of walkers WITHOUT intervention that have not reached the other minimum after 5000 "
              "steps, against 0.90: " + RULE_AT_LEAST + ".")
RULE_ESCAPE = ("fraction of walkers WITH the intervention that reach the other minimum within 100 steps and "
               "stay finite, against 0.95 (a walker that became non-finite never counts as escaped): "
               + RULE_AT_LEAST + ".")
RULE_CONTROL = ("holds if the C-triggered rule escapes (within 5000 steps) more often than the random-time "
                "control with the same noise budget, with non-overlapping Wilson 95% intervals; fails "
                "otherwise (overlap or control higher).")

AUDIT = {
    "quick": {"n_walkers": 2000},
    "full": {"n_walkers": 20000},
}


@dataclass
class EscapeParams:
    seed: int = field(default=0, metadata={"help": "root seed"})
    n_walkers: int = field(default=2000, metadata={"help": "walkers per landscape and arm", "min": 1})
    n_steps: int = field(default=5000, metadata={"help": "steps per run (the seed's 5000)", "min": 1})
    short_steps: int = field(default=100, metadata={"help": "the seed's short horizon (100 steps)", "min": 1})
    barrier: float = field(default=1.0, metadata={"help": "barrier height h (loss units)", "gt": 0})
    D: float = field(default=0.1, metadata={"help": "diffusion coefficient (seed code: 0.001/lr)", "gt": 0})
    dt: float = field(default=0.01, metadata={"help": "time step = learning rate (seed code: 0.01)", "gt": 0})
    threshold: float = field(default=0.5, metadata={"help": "intervention threshold on C", "gt": 0})
    factor: float = field(default=10.0, metadata={"help": "D boost of the rule arm (seed text: 10)", "gt": 0})
    literal_factor: float = field(default=5.0, metadata={"help": "D boost of the literal arm (seed code: 5)", "gt": 0})
    hold_steps: int = field(default=10, metadata={"help": "steps a boost lasts (rule and control arms)"})
    min_step: int = field(default=50, metadata={"help": "no intervention before this step (seed code)"})


class RandomBoosts(AdaptiveNoise):
    """Control arm: walker i is boosted (D × ``factor``) during ``n_boosts[i]`` distinct
    ``hold_steps``-long slots after ``min_step``, chosen uniformly at random with ``rng`` up front;
    C is ignored. Total boosted steps per walker match the paired rule walker's budget."""

    def __init__(self, n_boosts: np.ndarray, n_steps: int, *, factor: float, hold_steps: int, min_step: int,
                 rng: np.random.Generator):
        super().__init__(threshold=1.0, factor=factor, hold_steps=hold_steps, min_step=min_step, restore=True)
        n_slots = max(1, (n_steps - min_step - 1) // hold_steps)
        k = np.minimum(np.asarray(n_boosts, dtype=np.int64), n_slots)
        ranks = np.argsort(np.argsort(rng.random((k.size, n_slots)), axis=1), axis=1)
        self.mask = ranks < k[:, None]
        self.start = min_step + 1
        self.n_slots = n_slots

    def update(self, state, step, C, backend=None):       # numpy runs only (the escape study's)
        slot = (step - self.start) // self.hold_steps
        mult = state["multiplier"]
        if 0 <= slot < self.n_slots and step >= self.start:
            on = self.mask[:, slot]
            mult[:] = np.where(on, self.factor, 1.0)
            fire = on & ((step - self.start) % self.hold_steps == 0)
        else:
            mult[:] = 1.0
            fire = np.zeros(mult.shape, bool)
        state["n_interventions"][fire] += 1
        return np.flatnonzero(fire)


def _landscape(name: str, barrier: float):
    from shld.landscapes import make_landscape

    return make_landscape(name, barrier=barrier)


def _run_arm(task: dict) -> dict:
    """One (landscape, arm) ensemble. Pure function of ``task``."""
    from shld.dynamics import simulate

    p = task["params"]
    L = _landscape(task["landscape"], p["barrier"])
    mins = sorted(L.minima, key=lambda c: c.location[0])
    x_left, x_right = float(mins[0].location[0]), float(mins[-1].location[0])
    x_saddle = float(L.saddles[0].location[0])
    arm = task["arm"]
    rng = np.random.default_rng(member_seed(task["seed"], LANDSCAPES.index(task["landscape"]),
                                            ARMS.index(arm)))
    if arm == "none":
        ctrl = None
    elif arm == "rule":
        ctrl = AdaptiveNoise(threshold=p["threshold"], factor=p["factor"], hold_steps=p["hold_steps"],
                             min_step=p["min_step"], restore=True)
    elif arm == "literal":
        ctrl = AdaptiveNoise(threshold=p["threshold"], factor=p["literal_factor"], hold_steps=p["hold_steps"],
                             min_step=p["min_step"], restore=False)
    else:
        ctrl = RandomBoosts(np.asarray(task["n_boosts"]), p["n_steps"], factor=p["factor"],
                            hold_steps=p["hold_steps"], min_step=p["min_step"], rng=rng)
    res = simulate(L, np.array([x_left]), D=p["D"], dt=p["dt"], n_steps=p["n_steps"],
                   n_walkers=p["n_walkers"], rng=rng, controller=ctrl,
                   target=HalfSpace(axis=0, threshold=x_right), record_every=max(1, p["n_steps"] // 500),
                   observables=("loss", "C"), on_nonfinite="record")
    fpt_steps = np.where(np.isfinite(res.first_passage_time), np.round(res.first_passage_time / p["dt"]),
                         np.inf)
    x_final = res.final_theta[:, 0]
    with np.errstate(all="ignore"):
        loss_final = L.value(res.final_theta)
    n_int = (res.state.controller["n_interventions"] if ctrl is not None
             else np.zeros(p["n_walkers"], np.int64))
    return {"landscape": task["landscape"], "arm": arm, "fpt_steps": fpt_steps, "x_final": x_final,
            "loss_final": loss_final, "n_interventions": np.asarray(n_int), "status": res.status,
            "x_saddle": x_saddle, "x_right": x_right,
            "trace_steps": res.steps, "trace_fraction_hit": res.records.get("fraction_hit"),
            "trace_D": res.D_history}


def _exact_passage_time(params, landscape: str, D: float) -> float:
    """The exact mean passage time from the left minimum to the right one at temperature D (1-D quadrature)."""
    from shld.theory import mfpt_1d

    L = _landscape(landscape, params.barrier)
    mins = sorted(L.minima, key=lambda c: c.location[0])
    return float(mfpt_1d(L.u, D, float(mins[0].location[0]), float(mins[-1].location[0])))


def boost_budget(params, landscape: str, factor: float) -> str:
    """What the setting allows within the short horizon: the boosted time available, (short_steps −
    min_step)·dt, against the exact mean passage time at the boosted temperature D·factor (1-D quadrature).
    When the budget is a small fraction of that time, the verdict follows from the setting (the seed
    gives no dt, start step or boost length), and the row says so."""
    T_boost = _exact_passage_time(params, landscape, params.D * factor)
    budget = max(params.short_steps - params.min_step, 0) * params.dt
    text = (f"the setting allows at most {budget:.3g} time units of boost within {params.short_steps} steps "
            f"(dt = {params.dt:g}, boosts from step {params.min_step}); exact mean passage time at D×{factor:g} "
            f"= {T_boost:.3g}")
    if budget < 0.5 * T_boost:
        text += ": this outcome follows from the setting, not from the claim"
    return text


def stuck_setting(params, landscape: str) -> str:
    """What the setting decides for the "stuck" row: the exact mean passage time at D (1-D quadrature) against
    the horizon n_steps·dt, and the fraction an exponential escape would leave stuck, e^(−horizon/T). When
    that is already ≥ 90 % (the seed's level), the verdict follows from the chosen ΔE/D (the seed gives no
    barrier or D), and the row says so, as :func:`boost_budget` does for the escape rows."""
    T = _exact_passage_time(params, landscape, params.D)
    horizon = params.n_steps * params.dt
    expected = math.exp(-horizon / T)
    text = (f"exact mean passage time at D = {params.D:g} is {T:.4g} against a horizon of {horizon:.3g} time units "
            f"({params.n_steps} steps of dt = {params.dt:g}): an exponential escape leaves {expected:.1%} stuck")
    if expected >= 0.9:
        text += ": this outcome follows from the setting (ΔE/D), not from the claim"
    return text


def _stats(r: dict, short: int, horizon: int) -> dict:
    """Escape counts of one arm. A walker that became non-finite counts as not escaped whatever its
    recorded first passage (a walker thrown to +inf "crosses" every target), and is counted apart."""
    n = r["fpt_steps"].size
    ok = r["status"] == 0
    fpt = np.where(ok, r["fpt_steps"], np.inf)
    k100 = int(np.sum(fpt <= short))
    k5000 = int(np.sum(fpt <= horizon))
    right = int(np.sum(ok & (r["x_final"] > r["x_saddle"])))
    lf = r["loss_final"][ok & np.isfinite(r["loss_final"])]
    return {
        "n": n, "escaped_short": k100, "escaped_horizon": k5000,
        "frac_short": k100 / n, "frac_short_ci": wilson_interval(k100, n),
        "frac_horizon": k5000 / n, "frac_horizon_ci": wilson_interval(k5000, n),
        "right_well_final": right / n, "right_well_final_ci": wilson_interval(right, n),
        "final_loss_mean": float(lf.mean()) if lf.size else math.nan,
        "final_loss_se": float(lf.std(ddof=1) / math.sqrt(lf.size)) if lf.size > 1 else math.nan,
        "interventions_per_walker": float(np.mean(r["n_interventions"])),
        "nonfinite": int(np.sum(~ok)),
        "nonfinite_that_had_crossed": int(np.sum(~ok & (r["fpt_steps"] <= horizon))),
    }


class EscapeStudy(Study):
    name = "escape"
    help = ("Noise-assisted escape from the poor well: no intervention, the seed's C<0.5 rule (restored), the "
            "seed's literal code, and a random-time control")
    Params = EscapeParams
    audit = AUDIT

    def validate(self, params: EscapeParams) -> None:
        from shld._validation import check_int, check_positive

        check_int("n_walkers", params.n_walkers, minimum=1)
        check_int("n_steps", params.n_steps, minimum=1)
        check_int("short_steps", params.short_steps, minimum=1)
        for name in ("barrier", "D", "dt", "threshold", "factor", "literal_factor"):
            check_positive(name, getattr(params, name))
        for name, low in (("hold_steps", 1), ("min_step", 0)):
            v = check_int(name, getattr(params, name), minimum=low)
            if v > params.n_steps:
                raise ValueError(f"`{name}` must be <= n_steps={params.n_steps}, got {v}")

    def members(self, params, done):
        # the control arm of a landscape is sized by its rule arm's boosts, so it appears once that is done
        out = [Member(f"{ln}.{a}", {"landscape": ln, "arm": a}) for ln in LANDSCAPES
               for a in ("none", "rule", "literal")]
        out += [Member(f"{ln}.control", {"landscape": ln, "arm": "control",
                                         "n_boosts": np.asarray(done[f"{ln}.rule"]["n_interventions"]).tolist()})
                for ln in LANDSCAPES if f"{ln}.rule" in done]
        return out

    def run_member(self, params, member, ctx) -> dict:
        prm = {k: getattr(params, k) for k in ("n_walkers", "n_steps", "barrier", "D", "dt", "threshold",
                                               "factor", "literal_factor", "hold_steps", "min_step")}
        return _run_arm({**member.task, "seed": params.seed, "params": prm})

    def analyse(self, params, results) -> Summary:
        done = {(ln, a): results[f"{ln}.{a}"] for ln in LANDSCAPES for a in ARMS}
        stats = {ln: {a: _stats(done[(ln, a)], params.short_steps, params.n_steps) for a in ARMS}
                 for ln in LANDSCAPES}
        claims = []
        short, hor = params.short_steps, params.n_steps
        tag = {"double-well": "symmetric", "tilted-double-well": "tilted"}
        for ln in LANDSCAPES:
            s = stats[ln]["none"]
            stuck = fraction_at_least(s["n"] - s["escaped_horizon"], s["n"], 0.90)
            claims.append(claim_row(
                f"escape-stuck-{tag[ln]}", f"without intervention, stuck {hor}+ steps ({tag[ln]} well)",
                "stuck for 5000+ steps in 90% of runs", f"stuck: {stuck.measured}; " + stuck_setting(params, ln),
                stuck.verdict, RULE_STUCK,
                value=stuck.p, uncertainty=stuck.halfwidth, figure="figures/escape.png"))
        for arm, what, factor in (("rule", "seed's rule, restored", params.factor),
                                  ("literal", "seed's literal code", params.literal_factor)):
            for ln in LANDSCAPES:
                s = stats[ln][arm]
                esc = fraction_at_least(s["escaped_short"], s["n"], 0.95)
                claims.append(claim_row(
                    f"escape-short-{arm}-{tag[ln]}",
                    f"with intervention ({what}), escapes within {short} steps ({tag[ln]} well)",
                    "escapes within 100 steps in 95% of runs",
                    f"escaped: {esc.measured}" + (f"; {s['nonfinite']}/{s['n']} walkers diverged (non-finite) "
                                                  f"by step {hor}, not counted as escaped" if s["nonfinite"]
                                                  else "") + "; " + boost_budget(params, ln, factor),
                    esc.verdict, RULE_ESCAPE, value=esc.p, uncertainty=esc.halfwidth, figure="figures/escape.png"))
        for ln in LANDSCAPES:
            a, c = stats[ln]["rule"], stats[ln]["control"]
            diff = fractions_differ(a["escaped_horizon"], a["n"], c["escaped_horizon"], c["n"])
            claims.append(claim_row(
                f"escape-rule-vs-control-{tag[ln]}",
                f"C-triggered boosts beat the same budget at random times ({tag[ln]} well)",
                "practical strategy: boost noise when C(t) drops",
                f"escaped within {hor}: rule {a['frac_horizon']:.1%} vs random-time control "
                f"{c['frac_horizon']:.1%} (n = {a['n']} each)",
                HOLDS if diff == 1 else FAILS, RULE_CONTROL, value=a["frac_horizon"] - c["frac_horizon"],
                uncertainty=None, figure="figures/escape.png"))

        numbers = {
            "setting": {"barrier": params.barrier, "D": params.D, "dt": params.dt,
                        "barrier_over_D": params.barrier / params.D, "start": "left minimum",
                        "escape": "first arrival at the right minimum",
                        "note": "the seed gives no barrier, D or step size; D = 0.1 and dt = 0.01 are the "
                                "seed code's noise_scale=0.001 and lr=0.01 mapped to Langevin time"},
            "stats": stats,
            "notes": [f"Setting: barrier {params.barrier}, D {params.D}, dt {params.dt} (barrier/D = "
                      f"{params.barrier / params.D:.3g}); the seed states none of these."],
        }
        for ln in LANDSCAPES:
            for a in ARMS:
                s = stats[ln][a]
                (lo1, hi1), (lo2, hi2), (lo3, hi3) = s["frac_short_ci"], s["frac_horizon_ci"], s["right_well_final_ci"]
                numbers["notes"].append(
                    f"{tag[ln]} well, arm {a}: escaped within {short} steps {s['frac_short']:.1%} [{lo1:.1%}, "
                    f"{hi1:.1%}], within {hor} {s['frac_horizon']:.1%} [{lo2:.1%}, {hi2:.1%}]; right well at the "
                    f"end {s['right_well_final']:.1%} [{lo3:.1%}, {hi3:.1%}]; final loss "
                    + (f"{format_pm(s['final_loss_mean'], s['final_loss_se'])} (finite walkers)"
                       if math.isfinite(s["final_loss_mean"]) else "n/a (no walker stayed finite)")
                    + f"; boosts per walker "
                    f"{s['interventions_per_walker']:.3g}; non-finite walkers {s['nonfinite']}")
        return Summary(claims, numbers)

    def figures(self, params, results, summary, figs) -> None:
        done = {(ln, a): results[f"{ln}.{a}"] for ln in LANDSCAPES for a in ARMS}
        _figure(figs, done, summary["stats"], params)


register(EscapeStudy())


def _figure(figs, done, stats, params) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colors = {"none": "C0", "rule": "C1", "literal": "C3", "control": "C2"}
    for ax, ln in zip(axes[:2], LANDSCAPES):
        for a in ARMS:
            r = done[(ln, a)]
            steps = np.arange(0, params.n_steps + 1, max(1, params.n_steps // 500))
            fpt = np.where(np.asarray(r["status"]) == 0, r["fpt_steps"], np.inf)   # diverged: not escaped
            frac = np.mean(fpt[None, :] <= steps[:, None], axis=1)
            ax.plot(steps, frac, color=colors[a], label=a)
        ax.axvline(params.short_steps, color="k", ls=":", lw=1)
        ax.set_xscale("symlog", linthresh=100)
        ax.set_xlim(0, params.n_steps)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.set_ylabel("fraction escaped")
        ax.set_title(ln)
        ax.legend(fontsize=8)
    ax = axes[2]
    x = np.arange(len(ARMS))
    for j, ln in enumerate(LANDSCAPES):
        for key, off, mk in (("frac_short", -0.2, "o"), ("frac_horizon", 0.2, "s")):
            vals = [stats[ln][a][key] for a in ARMS]
            cis = np.array([stats[ln][a][key + "_ci"] for a in ARMS])
            horizon = params.short_steps if key == "frac_short" else params.n_steps
            v = np.array(vals)
            ax.errorbar(x + off + 0.05 * j, v, yerr=[v - cis[:, 0], cis[:, 1] - v],
                        fmt=mk, label=f"{ln}: within {horizon} steps")
    ax.set_xticks(x, ARMS)
    ax.set_ylabel("fraction escaped (95% Wilson CI)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, figs / "escape.png", tight=False, dpi=110)
    plt.close(fig)
