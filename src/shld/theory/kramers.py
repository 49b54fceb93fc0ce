r"""Kramers escape rates: the seed's form next to the overdamped Kramers–Langer / Eyring–Kramers forms.

Dynamics and conventions
------------------------
Overdamped Langevin dθ = −∇U dt + √(2D) dW (unit friction); D is a temperature in loss units,
so the stationary law is ∝ e^{−U/D}; rates are per unit of dynamics time t (an SGD step with
learning rate η advances t by η).

Which time the rate describes
-----------------------------
* The Kramers rate Γ is 1/MFPT from the minimum A to the *far side*: deep into the other well
  (any point past the saddle by many √(D/|U''(saddle)|)). :func:`shld.theory.mfpt_1d` to the
  other minimum approaches 1/Γ as ΔE/D grows (relative correction O(D/ΔE)).
* The MFPT to the saddle top itself is ≈ 1/(2Γ): a walker on the top falls back half the time.
* For a two-well system the spectral gap of the Fokker–Planck operator (slowest relaxation
  rate) is Γ_AB + Γ_BA.

Validity: every form here is the leading term of an expansion in D/ΔE; it needs ΔE/D ≫ 1
(in practice ≳ 5 for 10 % accuracy) and non-degenerate curvatures. For huge ΔE/D the rates
underflow cleanly to 0 (and the times to inf) without warnings.

The seed's form (its "Theorem 2") is Γ_seed = (ω₀/2π)·e^{−ΔE/D} with ω₀ the curvature at the
minimum. It lacks the barrier curvature: the correct overdamped prefactor is
√(U''(min)·|U''(saddle)|)/(2π), so the seed is off by the factor √(U''(min)/|U''(saddle)|)
(√2 for the symmetric quartic double well, where U''(min) = 8h/a², U''(saddle) = −4h/a²).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shld._validation import check_positive
from shld.theory._common import exp_clean, real_array, scalar_or_array

__all__ = [
    "kramers_rate_seed", "kramers_langer_rate", "eyring_kramers_rate", "escape_time_seed",
    "KramersRates", "kramers_rates",
]


def kramers_rate_seed(omega0, barrier, D):
    """THE SEED'S FORM (its Theorem 2): Γ_seed = (ω₀/2π)·exp(−ΔE/D).

    ``omega0`` > 0 is the curvature U'' at the minimum (a Hessian eigenvalue), ``barrier`` = ΔE ≥ 0,
    ``D`` > 0. Broadcasts over arrays. Lacks the barrier curvature; use
    :func:`kramers_langer_rate` for the correct overdamped rate. Returns 0 (no warning) when
    ΔE/D is huge.
    """
    w = real_array("omega0", omega0, positive=True)
    h = real_array("barrier", barrier, nonnegative=True)
    d = real_array("D", D, positive=True)
    return scalar_or_array(w / (2 * np.pi) * exp_clean(-h / d))


def kramers_langer_rate(curv_min, curv_saddle, barrier, D):
    """Overdamped 1-D Kramers(–Langer) rate Γ = √(U''(min)·|U''(saddle)|)/(2π)·exp(−ΔE/D).

    ``curv_min`` = U''(min) > 0, ``curv_saddle`` = U''(saddle) (its sign is ignored; must be ≠ 0),
    ``barrier`` = ΔE = U(saddle) − U(min) ≥ 0, ``D`` > 0, all broadcastable. Valid for ΔE/D ≫ 1;
    Γ = 1/MFPT(min → far side of the barrier). Returns 0 cleanly when ΔE/D is huge.
    """
    cm = real_array("curv_min", curv_min, positive=True)
    cs = np.abs(real_array("curv_saddle", curv_saddle, nonzero=True))
    h = real_array("barrier", barrier, nonnegative=True)
    d = real_array("D", D, positive=True)
    return scalar_or_array(np.sqrt(cm * cs) / (2 * np.pi) * exp_clean(-h / d))


def _spectrum(name, h):
    arr = real_array(name, h)
    if arr.ndim == 1:
        return arr
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"`{name}` must be a square (d, d) matrix or a vector of eigenvalues, "
                         f"got shape {arr.shape}")
    return np.linalg.eigvalsh(0.5 * (arr + arr.T))


def eyring_kramers_rate(hess_min, hess_saddle, barrier, D):
    """d-dimensional overdamped Eyring–Kramers rate.

    Γ = |λ⁻(saddle)|/(2π) · √(det H_min / |det H_saddle|) · exp(−ΔE/D)

    ``hess_min`` (positive definite) and ``hess_saddle`` (index 1: exactly one negative
    eigenvalue λ⁻) are (d, d) Hessians or vectors of their eigenvalues; ``barrier`` ΔE ≥ 0 and
    ``D`` > 0 are scalars. Valid for ΔE/D ≫ 1 and a single dominant saddle; in d = 1 it equals
    :func:`kramers_langer_rate`. Returns 0 cleanly when ΔE/D is huge.
    """
    lm = _spectrum("hess_min", hess_min)
    ls = _spectrum("hess_saddle", hess_saddle)
    if lm.shape != ls.shape:
        raise ValueError(f"`hess_min` and `hess_saddle` must have the same size, got {lm.size} and {ls.size}")
    if np.any(lm <= 0):
        raise ValueError(f"`hess_min` must be positive definite, got eigenvalues {lm}")
    n_neg = int(np.sum(ls < 0))
    if n_neg != 1 or np.any(ls == 0):
        raise ValueError(f"`hess_saddle` must have exactly one negative and no zero eigenvalue, got {ls}")
    h = check_positive("barrier", barrier, allow_zero=True)
    d = check_positive("D", D)
    lam_minus = float(-ls[ls < 0][0])
    log_ratio = 0.5 * (np.sum(np.log(lm)) - np.sum(np.log(np.abs(ls))))
    return float(lam_minus / (2 * np.pi) * exp_clean(log_ratio - h / d))


def escape_time_seed(barrier, D):
    """THE SEED'S ``escape_time``: τ ≈ exp(ΔE/D), with no prefactor (a scaling, not a time).

    Returns inf (no overflow warning) when ΔE/D is huge; 0 for ΔE < 1e-10 as in the seed.
    The mean escape time to the far side is 1/Γ with Γ from :func:`kramers_langer_rate`.
    """
    h = real_array("barrier", barrier, nonnegative=True)
    d = real_array("D", D, positive=True)
    return scalar_or_array(np.where(h < 1e-10, 0.0, exp_clean(h / d)))


@dataclass(frozen=True)
class KramersRates:
    """Rates out of one minimum over one saddle; ``mfpt_*`` are the inverse rates (far side)."""

    barrier: float
    D: float
    omega0: float          # the seed's ω₀: smallest Hessian eigenvalue at the minimum
    curv_min: float        # curvature at the minimum along the saddle's unstable direction
    curv_saddle: float     # λ⁻ < 0, the saddle's negative eigenvalue
    seed: float            # (ω₀/2π)·e^{−ΔE/D}  (the seed's form)
    langer: float          # √(curv_min·|λ⁻|)/(2π)·e^{−ΔE/D}  (1-D reduction along the unstable axis)
    eyring_kramers: float  # full d-dimensional prefactor
    minimum: object
    saddle: object

    @property
    def mfpt_langer(self) -> float:
        return float(np.inf) if self.langer == 0 else 1.0 / self.langer

    @property
    def mfpt_eyring_kramers(self) -> float:
        return float(np.inf) if self.eyring_kramers == 0 else 1.0 / self.eyring_kramers

    @property
    def mfpt_seed(self) -> float:
        return float(np.inf) if self.seed == 0 else 1.0 / self.seed


def _select(points, which, kind, landscape):
    if not points:
        raise ValueError(f"landscape {landscape!r} lists no known {kind}; pass a CriticalPoint")
    if hasattr(which, "hessian"):
        return which
    if isinstance(which, str):
        for p in points:
            if p.label == which:
                return p
        raise ValueError(f"`{kind}` label {which!r} not found; known: {[p.label for p in points]}")
    if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
        if not -len(points) <= which < len(points):
            raise ValueError(f"`{kind}` index must be in [0, {len(points)}), got {which}")
        return points[which]
    raise TypeError(f"`{kind}` must be an index, a label or a CriticalPoint, got {which!r}")


def kramers_rates(landscape, D, minimum=0, saddle=None) -> KramersRates:
    """All three rate forms out of ``minimum`` over ``saddle`` of a landscape's critical points.

    ``minimum``/``saddle``: index into ``landscape.minima``/``landscape.saddles``, a label
    (e.g. ``"left"``, ``"barrier"``) or a ``CriticalPoint``. ``saddle=None`` takes the known
    saddle above the minimum nearest to it in θ (a heuristic: right for the double wells and
    Müller–Brown, where it picks A→A-C, B→C-B, C→C-B; pass ``saddle`` explicitly otherwise).
    ΔE = U(saddle) − U(minimum). The seed's ω₀ is taken as the
    smallest Hessian eigenvalue at the minimum (the seed leaves it ambiguous in d > 1); the
    Kramers–Langer curvature at the minimum is vᵀH_min v with v the saddle's unstable direction.
    """
    D = check_positive("D", D)
    m = _select(landscape.minima, minimum, "minimum", landscape)
    if saddle is None:
        cands = [s for s in landscape.saddles if s.value >= m.value]
        if not cands:
            raise ValueError(f"landscape {landscape!r} lists no saddle above minimum {m.label!r}")
        s = min(cands, key=lambda p: float(np.linalg.norm(np.asarray(p.location) - m.location)))
    else:
        s = _select(landscape.saddles, saddle, "saddle", landscape)
    barrier = float(s.value - m.value)
    if barrier < 0:
        raise ValueError(f"saddle {s.label!r} lies below minimum {m.label!r} (ΔE={barrier})")
    hm = np.atleast_2d(np.asarray(m.hessian, dtype=float))
    hs = np.atleast_2d(np.asarray(s.hessian, dtype=float))
    ev_s, vec_s = np.linalg.eigh(0.5 * (hs + hs.T))
    v = vec_s[:, 0]
    curv_min = float(v @ hm @ v)
    omega0 = float(np.linalg.eigvalsh(0.5 * (hm + hm.T))[0])
    return KramersRates(
        barrier=barrier, D=D, omega0=omega0, curv_min=curv_min, curv_saddle=float(ev_s[0]),
        seed=kramers_rate_seed(omega0, barrier, D),
        langer=kramers_langer_rate(curv_min, ev_s[0], barrier, D),
        eyring_kramers=eyring_kramers_rate(hm, hs, barrier, D),
        minimum=m, saddle=s,
    )
