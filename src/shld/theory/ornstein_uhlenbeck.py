r"""Exact moments of the Ornstein–Uhlenbeck process: Langevin dynamics on a quadratic.

L(θ) = L* + ½ Σ_i λ_i (θ_i − c_i)² in its eigenbasis; dθ = −∇L dt + √(2D) dW. Coordinates here
are x_i = θ_i − c_i (pass ``center`` to work in θ). Each coordinate is independent:

    mean      m_i(t) = m_i(0)·e^{−λ_i t}
    variance  v_i(t) = (D/λ_i)(1 − e^{−2λ_i t}) + v_i(0)·e^{−2λ_i t}     (→ 2Dt as λ_i → 0)
    E[L(t)] − L* = ½ Σ_i λ_i (m_i(t)² + v_i(t))   →   D·d/2 as t → ∞ (equipartition)

Time t is dynamics time (an SGD step with learning rate η is dt = η). Valid for any real λ_i
(λ_i < 0 grows; the stationary limits need λ_i > 0).

The Euler–Maruyama recursion x ← r·x + √(2D·dt)·ξ with r = 1 − λ·dt has its own exact moments
(no O(dt) approximation), used to test the engine exactly:

    mean after n steps      r^n·m0
    variance after n steps  r^{2n}·v0 + 2D·dt·(1 − r^{2n})/(1 − r²)
    stationary variance     D/(λ(1 − λ·dt/2))          (stable iff 0 < λ·dt < 2)

so EM overestimates the stationary variance D/λ by the factor 1/(1 − λ·dt/2).
"""

from __future__ import annotations

import numpy as np

from shld._validation import check_positive
from shld.theory._common import real_array

__all__ = [
    "ou_mean", "ou_variance", "ou_expected_loss", "ou_stationary_variance",
    "em_mean", "em_variance", "em_stationary_variance", "em_expected_loss",
]


def _lam(eigenvalues):
    lam = real_array("eigenvalues", eigenvalues)
    if lam.ndim != 1:
        raise ValueError(f"`eigenvalues` must be a 1-D array (d,), got shape {lam.shape}")
    return lam


def _t(name, t):
    return real_array(name, t, nonnegative=True)[..., None]


def ou_mean(theta0, eigenvalues, t, center=None):
    """E[θ(t)] = c + (θ0 − c)·e^{−λ t}; shape ``t.shape + (d,)``."""
    lam = _lam(eigenvalues)
    c = 0.0 if center is None else real_array("center", center)
    th0 = np.broadcast_to(real_array("theta0", theta0), lam.shape)
    return c + (th0 - c) * np.exp(-lam * _t("t", t))


def _phi(lam, t):
    """(1 − e^{−2λt})/λ with the λ → 0 limit 2t, computed without cancellation."""
    x = -2.0 * lam * t
    with np.errstate(divide="ignore", invalid="ignore"):
        val = -np.expm1(x) / np.where(lam == 0, 1.0, lam)
    return np.where(lam == 0, 2.0 * t, val)


def ou_variance(eigenvalues, D, t, var0=0.0):
    """Var θ_i(t) = (D/λ_i)(1 − e^{−2λ_i t}) + var0·e^{−2λ_i t}; shape ``t.shape + (d,)``."""
    lam = _lam(eigenvalues)
    D = check_positive("D", D, allow_zero=True)
    v0 = real_array("var0", var0, nonnegative=True)
    tt = _t("t", t)
    return D * _phi(lam, tt) + v0 * np.exp(-2.0 * lam * tt)


def ou_stationary_variance(eigenvalues, D):
    """D/λ_i (the Gibbs variance); needs every λ_i > 0."""
    lam = real_array("eigenvalues", eigenvalues, positive=True)
    return check_positive("D", D, allow_zero=True) / lam


def ou_expected_loss(eigenvalues, D, t, mean0, var0=0.0):
    """E[L(θ(t))] − L* = ½ Σ_i λ_i (m_i(t)² + v_i(t)); ``mean0`` = E[θ(0)] − c, ``var0`` = Var θ(0).

    The deterministic part decays like e^{−2λ t} (loss is quadratic in θ), the noise part rises
    to the floor D·d/2. Shape ``t.shape``.
    """
    lam = _lam(eigenvalues)
    m = ou_mean(mean0, lam, t)
    v = ou_variance(lam, D, t, var0)
    return 0.5 * np.sum(lam * (m * m + v), axis=-1)


def _r(lam, dt):
    dt = check_positive("dt", dt)
    return 1.0 - lam * dt, dt


def _n(n_steps):
    n = real_array("n_steps", n_steps, nonnegative=True)
    if np.any(n != np.round(n)):
        raise ValueError(f"`n_steps` must be whole numbers, got {n_steps!r}")
    return n[..., None]


def em_mean(theta0, eigenvalues, dt, n_steps, center=None):
    """Euler–Maruyama mean after n steps: c + (1 − λ dt)^n (θ0 − c); shape ``n.shape + (d,)``."""
    lam = _lam(eigenvalues)
    r, _ = _r(lam, dt)
    c = 0.0 if center is None else real_array("center", center)
    th0 = np.broadcast_to(real_array("theta0", theta0), lam.shape)
    return c + (th0 - c) * r ** _n(n_steps)


def em_variance(eigenvalues, D, dt, n_steps, var0=0.0):
    """Euler–Maruyama variance after n steps: r^{2n} v0 + 2D dt (1 − r^{2n})/(1 − r²), r = 1 − λ dt.

    Exact for the recursion x ← r x + √(2D dt) ξ (ξ standard normal); at r² = 1 the sum is 2D dt·n.
    """
    lam = _lam(eigenvalues)
    r, dt = _r(lam, dt)
    D = check_positive("D", D, allow_zero=True)
    v0 = real_array("var0", var0, nonnegative=True)
    n = _n(n_steps)
    r2 = r * r
    r2n = r2 ** n
    one = np.isclose(r2, 1.0, rtol=0, atol=1e-14)
    with np.errstate(divide="ignore", invalid="ignore"):
        geo = np.where(one, n, (1.0 - r2n) / np.where(one, 1.0, 1.0 - r2))
    return r2n * v0 + 2.0 * D * dt * geo


def em_stationary_variance(eigenvalues, D, dt):
    """D/(λ(1 − λ dt/2)) = 2D dt/(1 − (1 − λ dt)²), the EM fixed point; needs 0 < λ·dt < 2."""
    lam = real_array("eigenvalues", eigenvalues, positive=True)
    dt = check_positive("dt", dt)
    D = check_positive("D", D, allow_zero=True)
    if np.any(lam * dt >= 2):
        raise ValueError(f"Euler–Maruyama is unstable: need eigenvalues*dt < 2, got max λ·dt = "
                         f"{float(np.max(lam * dt))} (dt={dt})")
    return D / (lam * (1.0 - 0.5 * lam * dt))


def em_expected_loss(eigenvalues, D, dt, n_steps, mean0, var0=0.0):
    """E[L] − L* after n Euler–Maruyama steps: ½ Σ λ (mean² + variance), exact for the recursion."""
    lam = _lam(eigenvalues)
    m = em_mean(mean0, lam, dt, n_steps)
    v = em_variance(lam, D, dt, n_steps, var0)
    return 0.5 * np.sum(lam * (m * m + v), axis=-1)
