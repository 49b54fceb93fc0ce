r"""First-passage statistics from an ensemble, aware of censoring.

Each walker either hits the target at time τ_i (``hit`` True) or is censored: it was still out
at the end of the run, c_i = its last observed time (or ``t_max``). Times are dynamics time.

Mean first-passage time:

* no censoring: the plain mean, SE = sd/√n;
* with censoring, assuming exponential escape (a single slow rate, true for Kramers escape over
  a high barrier after a short relaxation): the maximum-likelihood mean
  T̂ = (Σ_hit τ_i + Σ_censored c_i)/n_hit with SE = T̂/√n_hit (Fisher information). If escape is
  not exponential (low barriers, several pathways) this is biased; check with
  :func:`survival_curve` (log S(t) should be linear).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shld._validation import _short, check_finite_array, check_positive

__all__ = ["MFPTEstimate", "mfpt_estimate", "survival_curve"]


@dataclass(frozen=True)
class MFPTEstimate:
    mean: float
    stderr: float
    n: int
    n_hit: int
    n_censored: int
    method: str          # "mean" (no censoring), "exponential-mle", or "no-hits" (mean = inf)


def _times_hit(times, hit, t_max):
    t = np.asarray(times, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"`times` must be a non-empty 1-D array, got shape {t.shape}")
    if np.any(np.isnan(t)):
        raise ValueError(f"`times` must not contain NaN, got {_short(t)}")
    h = np.isfinite(t) if hit is None else np.asarray(hit)
    if h.shape != t.shape or h.dtype != bool:
        raise ValueError(f"`hit` must be a boolean array shaped like `times` {t.shape}, got {_short(hit)}")
    if np.any(~np.isfinite(t[h])) or np.any(t[h] < 0):
        raise ValueError("`times` of walkers that hit must be finite and >= 0")
    c = t.copy()
    if t_max is not None:
        t_max = check_positive("t_max", t_max)
        c[~h] = t_max
        if np.any(t[h] > t_max * (1 + 1e-12)):
            raise ValueError(f"a hit time exceeds `t_max`={t_max}: {float(np.max(t[h]))}")
    elif np.any(~np.isfinite(t[~h])):
        raise ValueError("censored walkers have no finite time: give `t_max` (the run length)")
    elif np.any(t[~h] < 0):
        raise ValueError(f"`times` of censored walkers (their run lengths) must be >= 0, got "
                         f"{float(np.min(t[~h]))}")
    return c, h


def mfpt_estimate(times, hit=None, t_max=None) -> MFPTEstimate:
    """Censoring-aware mean first-passage time (see the module docstring).

    ``times`` (N,): hit time for walkers that hit; for censored ones their censoring time, or
    inf/anything when ``t_max`` (the common censoring time, e.g. the run length) is given.
    ``hit`` (N,) bool; default ``isfinite(times)``.
    """
    c, h = _times_hit(times, hit, t_max)
    n, n_hit = c.size, int(np.sum(h))
    n_cens = n - n_hit
    if n_hit == 0:
        return MFPTEstimate(float("inf"), float("inf"), n, 0, n_cens, "no-hits")
    if n_cens == 0:
        se = float(np.std(c, ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
        return MFPTEstimate(float(np.mean(c)), se, n, n_hit, 0, "mean")
    mean = float(np.sum(c) / n_hit)
    return MFPTEstimate(mean, float(mean / np.sqrt(n_hit)), n, n_hit, n_cens, "exponential-mle")


def survival_curve(times, hit=None, grid=None, t_max=None, return_stderr=False):
    """Kaplan–Meier survival S(t) = P(first passage > t) on ``grid`` (default: the distinct hit
    times); optional Greenwood SE.

    S(t) = Π_{event times t_j ≤ t} (1 − d_j/n_j), n_j = walkers still at risk (time ≥ t_j),
    d_j = hits at t_j; censored walkers leave the risk set after their censoring time.
    Greenwood: Var S = S²·Σ d_j/(n_j(n_j − d_j)). Vectorised (sort + cumulative sums).
    Beyond the last observed time S is held at its last value (not extrapolated).
    """
    c, h = _times_hit(times, hit, t_max)
    g = np.unique(c[h]) if grid is None else check_finite_array("grid", grid, ndim=1)
    order = np.argsort(c, kind="stable")
    cs, hs = c[order], h[order]
    uniq, first = np.unique(cs, return_index=True)
    at_risk = c.size - first                                   # n_j for each distinct time
    d = np.add.reduceat(hs.astype(float), first)               # hits at each distinct time
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.cumsum(np.log1p(-d / at_risk))
        gw = np.cumsum(np.where(at_risk > d, d / (at_risk * (at_risk - d)), np.inf * (d > 0)))
    idx = np.searchsorted(uniq, g, side="right") - 1
    s = np.where(idx >= 0, np.exp(log_s[np.maximum(idx, 0)]), 1.0)
    if not return_stderr:
        return s
    var = np.where(idx >= 0, s * s * gw[np.maximum(idx, 0)], 0.0)
    return s, np.sqrt(np.nan_to_num(var, nan=0.0, posinf=0.0))
