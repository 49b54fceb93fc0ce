"""The ensemble engine against closed forms (fixed seeds; tolerances from standard errors)."""

import numpy as np
import pytest
from scipy import stats

from shld.dynamics import simulate
from shld.landscapes import DoubleWell, Quadratic


def gibbs_cdf(u, D, lo, hi, n=200_001):
    x = np.linspace(lo, hi, n)
    w = np.exp(-(u(x) - u(x).min()) / D)
    c = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(x))])
    c /= c[-1]
    return lambda q: np.interp(q, x, c)


def test_double_well_stationary_ensemble_matches_gibbs():
    L = DoubleWell(barrier=1.0)
    D = 0.5
    n = 4000
    rng = np.random.default_rng(11)
    theta0 = rng.choice([-1.0, 1.0], size=(n, 1))          # both wells, symmetric start
    res = simulate(L, theta0, D=D, dt=2e-3, n_steps=5000, seed=12, record_every=5000)
    x = res.final_theta[:, 0]
    ks = stats.kstest(x, gibbs_cdf(L.u, D, -3.5, 3.5))
    # The Euler–Maruyama bias at dt=2e-3 shifts the CDF by ~1e-3, far below the KS resolution
    # 1.36/sqrt(n) = 0.02; a p-value below 1e-3 would mean a real mismatch.
    assert ks.pvalue > 1e-3, ks


def test_double_well_gibbs_test_has_power():
    # the same test rejects the wrong temperature (D/2): it is not a test that cannot fail
    L = DoubleWell(barrier=1.0)
    rng = np.random.default_rng(11)
    res = simulate(L, rng.choice([-1.0, 1.0], size=(4000, 1)), D=0.5, dt=2e-3, n_steps=5000, seed=12)
    assert stats.kstest(res.final_theta[:, 0], gibbs_cdf(L.u, 0.25, -3.5, 3.5)).pvalue < 1e-6


def em_stationary_variance(lam, D, dt):
    # θ ← (1 − λdt)θ + √(2Ddt)ξ has stationary variance 2Ddt/(1 − (1 − λdt)²) = D/(λ(1 − λdt/2))
    return D / (lam * (1.0 - 0.5 * lam * dt))


def test_quadratic_stationary_moments_euler():
    lam = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    d, D, dt, n = lam.size, 0.3, 0.01, 6000
    L = Quadratic(eigenvalues=lam)
    # start in the exact discrete stationary law, then run 3 relaxation times of the slowest mode
    rng = np.random.default_rng(3)
    v_exact = em_stationary_variance(lam, D, dt)
    theta0 = rng.standard_normal((n, d)) * np.sqrt(v_exact)
    res = simulate(L, theta0, D=D, dt=dt, n_steps=600, seed=4, observables=("loss", "var"))
    x = res.final_theta
    var = x.var(axis=0, ddof=1)
    se_var = v_exact * np.sqrt(2.0 / (n - 1))                # SE of a Gaussian sample variance
    assert np.all(np.abs(var - v_exact) < 4.5 * se_var), (var, v_exact)   # 4.5 SE over 5 coordinates
    # the continuous-time answer D/λ is off by the O(dt) factor 1/(1 − λdt/2): 4 % for λ = 8
    loss = L.value(x)
    expected_loss = 0.5 * np.sum(lam * v_exact)              # = d·D/2 · (1 + O(dt))
    assert abs(loss.mean() - expected_loss) < 4.0 * loss.std(ddof=1) / np.sqrt(n)
    assert abs(expected_loss - d * D / 2) / (d * D / 2) < 0.02   # dt bias on E[L] is below 2 %


def test_quadratic_relaxation_of_the_mean_is_exact():
    # E[θ_n] = (1 − λdt)^n θ_0 for Euler–Maruyama, for every walker count
    lam = np.array([1.0, 3.0])
    L = Quadratic(eigenvalues=lam)
    n, dt, steps = 20000, 0.01, 100
    res = simulate(L, np.array([1.0, -2.0]), n_walkers=n, D=0.2, dt=dt, n_steps=steps, seed=5)
    mean = res.final_theta.mean(axis=0)
    expected = np.array([1.0, -2.0]) * (1 - lam * dt) ** steps
    v = em_stationary_variance(lam, 0.2, dt) * (1 - (1 - lam * dt) ** (2 * steps))
    assert np.all(np.abs(mean - expected) < 4.0 * np.sqrt(v / n))      # 4 standard errors


def test_baoab_configurational_variance_is_exact_for_harmonic():
    # BAOAB samples the exact θ-marginal N(0, D/λ) of a harmonic potential at any stable dt,
    # where Euler–Maruyama at the same dt is biased by 1/(1 − λdt/2).
    lam, D, dt, n = 2.0, 0.5, 0.2, 10000
    L = Quadratic(eigenvalues=[lam])
    rng = np.random.default_rng(8)
    theta0 = rng.standard_normal((n, 1)) * np.sqrt(D / lam)
    res = simulate(L, theta0, D=D, dt=dt, n_steps=300, seed=9, integrator="baoab", friction=1.0)
    var = res.final_theta[:, 0].var(ddof=1)
    se = (D / lam) * np.sqrt(2.0 / (n - 1))
    assert abs(var - D / lam) < 4.0 * se                    # 4 SE around the exact D/λ
    res_em = simulate(L, theta0, D=D, dt=dt, n_steps=300, seed=9)
    assert abs(res_em.final_theta[:, 0].var(ddof=1) - em_stationary_variance(lam, D, dt)) < 4.0 * se


def test_constant_preconditioner_keeps_gibbs_variance():
    lam, D, dt, n = np.array([1.0, 4.0]), 0.2, 0.01, 8000
    P = np.array([2.0, 0.5])
    L = Quadratic(eigenvalues=lam)
    res = simulate(L, np.zeros(2), n_walkers=n, D=D, dt=dt, n_steps=1500, seed=2, preconditioner=P)
    v = D / (lam * (1 - 0.5 * lam * P * dt))                 # EM with effective step P·dt
    var = res.final_theta.var(axis=0, ddof=1)
    assert np.all(np.abs(var - v) < 4.0 * v * np.sqrt(2.0 / n))


@pytest.mark.parametrize("D,dt", [(0.4, 2e-3)])
def test_mfpt_between_wells_matches_exact_quadrature(D, dt):
    L = DoubleWell(barrier=0.5)                  # ΔE/D = 1.25, MFPT ≈ 9.5: 120 time units leave ~e^-12 censored
    n = 1200
    res = simulate(L, np.array([-1.0]), n_walkers=n, D=D, dt=dt, n_steps=60_000, seed=21,
                   target=lambda th: th[:, 0] >= 1.0, stop_when_all_hit=True, record_every=10_000)
    assert res.hit.all()
    T = res.first_passage_time
    # exact MFPT from -1 to +1 (reflecting far left): T = (1/D)∫_{-1}^{1} e^{U(y)/D} ∫_{-∞}^{y} e^{-U(z)/D} dz dy
    y = np.linspace(-4.0, 1.0, 400_001)
    inner = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(y) * (np.exp(-L.u(y) / D)[1:]
                                                                 + np.exp(-L.u(y) / D)[:-1]))])
    f = np.exp(L.u(y) / D) * inner / D
    sel = y >= -1.0
    exact = np.trapezoid(f[sel], y[sel])
    # discrete monitoring detects the crossing late: an overshoot of ≈0.5826·√(2D·dt) in space
    # (Siegmund's constant), i.e. a time bias ≈ 0.5826·√(2D·dt)·(dT/db) with dT/db = f(b)
    bias = 0.5826 * np.sqrt(2 * D * dt) * f[-1]
    se = T.std(ddof=1) / np.sqrt(n)
    assert abs(T.mean() - exact) < 4.0 * se + bias, (T.mean(), exact, se, bias)
