r"""The seed's Theorems 1 and 4 and its α_opt, each next to what actually holds.

Dynamics: dθ = −∇L dt + √(2D) dW, D a temperature in loss units, t dynamics time.

Theorem 1 (uncertainty relation)
--------------------------------
SEED: "for any distribution ρ(θ): √Var[θ]·√Var[∇L] ≥ D/2".  FALSE in general: a point mass
(every walker at one θ, e.g. the ensemble at t = 0) has both variances 0, so 0 ≥ D/2 fails;
an OU ensemble started at a point has √Var θ_i·√Var ∂_iL = λ·v(t) = D(1 − e^{−2λt}) < D/2
for t < ln 2/(2λ) (:func:`theorem1_ou_product`).

WHAT HOLDS at stationarity: under the Gibbs law ρ* ∝ e^{−L/D}, integrating by parts (boundary
terms θ_i e^{−L/D} → 0 at infinity, i.e. L confining and E|θ_i ∂_iL| < ∞)

    E[∂_iL] = −D ∫ ∂_i e^{−L/D} / Z = 0,      E[θ_i ∂_iL] = D ∫ e^{−L/D} / Z = D,

so Cov(θ_i, ∂_iL) = D exactly, and Cauchy–Schwarz gives, per coordinate i,

    √Var θ_i · √Var ∂_iL ≥ |Cov(θ_i, ∂_iL)| = D         (:func:`theorem1_stationary_bound`)

with equality for a quadratic (θ_i and ∂_iL are then linearly related when A is diagonal:
Var θ_i = D/λ_i, Var ∂_iL = λ_i D). This is twice the seed's D/2, and holds only for ρ*.

Theorem 4 (convergence)
-----------------------
SEED: E[L(θ(t))] − L* ≤ (L₀ − L*)·e^{−λ_min t} + D·d/λ_min.

EXACT for a quadratic L = L* + ½ Σ λ_i x_i² (:func:`theorem4_exact_quadratic`):

    E[L(t)] − L* = Σ_i ½λ_i (m_i(0)² + v_i(0)) e^{−2λ_i t} + (D/2) Σ_i (1 − e^{−2λ_i t})

so the floor is D·d/2 (equipartition, independent of the curvature), and the transient decays
like e^{−2λ_min t} (the loss is quadratic in θ), not e^{−λ_min t}. The seed's floor D·d/λ_min
is (2/λ_min)× the true floor (:func:`theorem4_floor_ratio`): a valid but loose upper bound only
when λ_min ≤ 2; for λ_min > 2 the seed's bound is violated as t → ∞. For λ_min ≤ 2 the seed's
whole bound holds for a quadratic (e^{−2λt} ≤ e^{−λt} and D·d/2 ≤ D·d/λ_min), with L₀
read as E[L(θ(0))].

A CORRECT BOUND for any λ_min-strongly convex L with ∇²L ≼ λ_max (:func:`theorem4_bound_smooth`):
Itô's formula gives dE[L]/dt = −E‖∇L‖² + D·E[ΔL] ≤ −2λ_min(E[L] − L*) + D·d·λ_max (using the
Polyak–Łojasiewicz inequality ‖∇L‖² ≥ 2λ_min(L − L*) and ΔL ≤ d·λ_max); Grönwall then gives

    E[L(t)] − L* ≤ (L₀ − L*) e^{−2λ_min t} + (D·d·λ_max/(2λ_min))(1 − e^{−2λ_min t}),

tight (equal) for an isotropic quadratic λ_min = λ_max. Continuous time; Euler–Maruyama adds its
own O(dt) bias (see :func:`shld.theory.em_stationary_variance`).

Learning rate
-------------
SEED: α_opt ≈ 2D/λ_max (:func:`alpha_opt_seed`). It has units of D × time (loss·time), so it
is not a dimensionless step size, and it shrinks to 0 as the noise D → 0, where plain gradient
descent works best. The hard fact nearby is the stability limit: gradient descent on a
quadratic diverges for η > 2/λ_max (:func:`stability_limit`); the seed's value equals it only
when D = 1.
"""

from __future__ import annotations

import numpy as np

from shld._validation import check_int, check_positive
from shld.theory._common import exp_clean, real_array, scalar_or_array
from shld.theory.ornstein_uhlenbeck import ou_expected_loss, ou_variance

__all__ = [
    "theorem1_bound_seed", "theorem1_stationary_bound", "theorem1_ou_product",
    "point_mass_counterexample",
    "theorem4_bound_seed", "theorem4_floor_seed", "theorem4_floor_exact", "theorem4_floor_ratio",
    "theorem4_exact_quadratic", "theorem4_bound_smooth",
    "alpha_opt_seed", "stability_limit",
]


# -- Theorem 1 -------------------------------------------------------------------------------
def theorem1_bound_seed(D):
    """THE SEED'S FORM: √Var θ·√Var ∇L ≥ D/2, claimed for any distribution (false; see module)."""
    return 0.5 * check_positive("D", D)


def theorem1_stationary_bound(D):
    """What holds under the Gibbs law ∝ e^{−L/D}: √Var θ_i·√Var ∂_iL ≥ Cov(θ_i, ∂_iL) = D."""
    return check_positive("D", D)


def theorem1_ou_product(eigenvalues, D, t, var0=0.0):
    """√Var θ_i(t)·√Var ∂_iL(t) = λ_i·v_i(t) for the OU ensemble of a diagonal quadratic.

    Started from a point mass (var0 = 0) it equals D(1 − e^{−2λ_i t}): 0 at t = 0, below the
    seed's D/2 until t = ln 2/(2λ_i), and → D (the stationary bound, with equality) as t → ∞.
    """
    lam = real_array("eigenvalues", eigenvalues, positive=True)
    return np.abs(lam) * ou_variance(lam, D, t, var0)


def point_mass_counterexample(D, theta=0.0, n_walkers=100):
    """An ensemble of ``n_walkers`` copies of one point θ on L = ½θ² violates the seed's Theorem 1.

    Returns a dict with the measured product √Var θ·√Var ∇L (= 0), the seed's bound D/2 and
    ``violated`` (True). A point mass is a legitimate distribution (the ensemble at t = 0).
    """
    D = check_positive("D", D)
    n = check_int("n_walkers", n_walkers, minimum=2)
    th = np.full(n, float(theta))
    grad = th                                           # ∇(½θ²) = θ
    product = float(np.sqrt(np.var(th)) * np.sqrt(np.var(grad)))
    bound = theorem1_bound_seed(D)
    return {"product": product, "seed_bound": bound, "stationary_bound": D,
            "violated": bool(product < bound)}


# -- Theorem 4 -------------------------------------------------------------------------------
def theorem4_bound_seed(L0_minus_Lstar, lam_min, D, d, t):
    """THE SEED'S FORM: (L₀ − L*)·e^{−λ_min t} + D·d/λ_min. Wrong floor and rate (see module)."""
    l0 = real_array("L0_minus_Lstar", L0_minus_Lstar, nonnegative=True)
    lam = check_positive("lam_min", lam_min)
    D = check_positive("D", D, allow_zero=True)
    d = check_int("d", d, minimum=1)
    tt = real_array("t", t, nonnegative=True)
    return scalar_or_array(l0 * exp_clean(-lam * tt) + D * d / lam)


def theorem4_floor_seed(D, d, lam_min):
    """The seed's floor D·d/λ_min."""
    return check_positive("D", D, allow_zero=True) * check_int("d", d, minimum=1) / check_positive(
        "lam_min", lam_min)


def theorem4_floor_exact(D, d):
    """The true stationary floor E[L] − L* = D·d/2 of Langevin dynamics on any quadratic."""
    return 0.5 * check_positive("D", D, allow_zero=True) * check_int("d", d, minimum=1)


def theorem4_floor_ratio(lam_min):
    """Seed floor / true floor = 2/λ_min (> 1: loose but valid; < 1, i.e. λ_min > 2: violated)."""
    return 2.0 / check_positive("lam_min", lam_min)


def theorem4_exact_quadratic(eigenvalues, D, t, mean0, var0=0.0):
    """EXACT E[L(θ(t))] − L* for a quadratic with Hessian eigenvalues λ_i (eigenbasis coordinates).

    ``mean0`` = E[θ(0)] − θ* per eigen-coordinate, ``var0`` = Var θ(0). Same as
    :func:`shld.theory.ou_expected_loss`; → D·d/2.
    """
    lam = real_array("eigenvalues", eigenvalues, positive=True)
    return ou_expected_loss(lam, D, t, mean0, var0)


def theorem4_bound_smooth(L0_minus_Lstar, lam_min, lam_max, D, d, t):
    """Correct bound for λ_min-strongly convex, λ_max-smooth L (see module):

    (L₀ − L*)e^{−2λ_min t} + (D·d·λ_max/(2λ_min))(1 − e^{−2λ_min t}).
    """
    l0 = real_array("L0_minus_Lstar", L0_minus_Lstar, nonnegative=True)
    lo = check_positive("lam_min", lam_min)
    hi = check_positive("lam_max", lam_max)
    if hi < lo:
        raise ValueError(f"`lam_max`={hi} must be >= `lam_min`={lo}")
    D = check_positive("D", D, allow_zero=True)
    d = check_int("d", d, minimum=1)
    tt = real_array("t", t, nonnegative=True)
    decay = exp_clean(-2.0 * lo * tt)
    return scalar_or_array(l0 * decay + D * d * hi / (2.0 * lo) * (1.0 - decay))


# -- learning rate ---------------------------------------------------------------------------
def alpha_opt_seed(D, lam_max):
    """THE SEED'S α_opt = 2D/λ_max (units of D·time; shrinks with the noise — see module)."""
    return 2.0 * check_positive("D", D, allow_zero=True) / check_positive("lam_max", lam_max)


def stability_limit(lam_max):
    """Gradient descent θ ← θ − η∇L on a quadratic diverges for η > 2/λ_max (|1 − ηλ_max| > 1)."""
    return 2.0 / check_positive("lam_max", lam_max)


