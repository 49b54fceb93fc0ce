import math

import numpy as np
import pytest

from shld.observables import (
    d_eff_seed,
    d_sde,
    estimate_D_gradient_variance,
    estimate_D_msd,
    estimate_D_variance_seed,
)


def brownian(rng, D, dt, T, N, d):
    steps = math.sqrt(2 * D * dt) * rng.standard_normal((T - 1, N, d))
    return np.concatenate([np.zeros((1, N, d)), np.cumsum(steps, axis=0)])


def ou_paths(rng, lam, D, dt, T, N):
    """Exact OU paths from the stationary law: x <- x e^{-lam dt} + sqrt(D/lam (1 - e^{-2 lam dt})) xi."""
    r, s = math.exp(-lam * dt), math.sqrt(D / lam * -math.expm1(-2 * lam * dt))
    xi = rng.standard_normal((T, N, 1))
    x = np.empty((T, N, 1))
    x[0] = math.sqrt(D / lam) * xi[0]
    for k in range(1, T):  # loop over time; walkers vectorised
        x[k] = r * x[k - 1] + s * xi[k]
    return x


def test_msd_on_free_brownian_motion():
    rng = np.random.default_rng(11)
    D, dt = 0.3, 0.01
    x = brownian(rng, D, dt, 1001, 100, 2)
    t = np.arange(1001) * dt
    for lag in (1, 10):
        e = estimate_D_msd(t, x, max_lag=lag)
        assert abs(e.D - D) < 4 * e.stderr                           # 4 standard errors
        assert e.stderr < 0.02 * D
        assert e.msd == pytest.approx(2 * D * e.lags, rel=0.05)
    single = estimate_D_msd(t, x[:, 0, :])                            # one walker: time blocks
    assert single.method.endswith("time blocks") and abs(single.D - D) < 4 * single.stderr
    # the seed's var(theta)/T is not D: for free diffusion its mean is D*dt/3 (x mean over walkers)
    seed = np.mean([estimate_D_variance_seed(x[:, i, :]) for i in range(100)])
    assert seed == pytest.approx(D * dt / 3, rel=0.15)               # ~ 4 SE of a mean of 200 variances


def test_msd_on_ou_short_lag_and_seed_failure():
    rng = np.random.default_rng(12)
    lam, D, dt, T, N = 2.0, 0.5, 0.005, 2001, 200
    x = ou_paths(rng, lam, D, dt, T, N)
    t = np.arange(T) * dt
    e = estimate_D_msd(t, x)
    expected = D * -math.expm1(-lam * dt) / (lam * dt)               # exact mean of the lag-1 estimator
    assert abs(e.D - expected) < 4 * e.stderr                        # 4 standard errors
    assert abs(e.D - D) < 4 * e.stderr + D * lam * dt / 2            # SE plus the O(lam*dt) drift bias
    long = estimate_D_msd(t, x, max_lag=400)                         # long lags saturate: far too small
    assert long.D < 0.5 * D
    # the seed's var/T -> (D/lambda)/T: tiny, and shrinking with T
    seed = estimate_D_variance_seed(x[:, 0, :])
    assert seed < 0.01 * D


def test_gradient_variance_and_sgd_dictionary():
    rng = np.random.default_rng(13)
    sigma2 = np.array([0.5, 2.0, 4.0])
    n = 40_000
    g = rng.normal(1.0, np.sqrt(sigma2), size=(n, 3))
    est = estimate_D_gradient_variance(g)
    # SE of a Gaussian sample variance: s^2 sqrt(2/(n-1)); averaged over independent coordinates
    se = math.sqrt(np.sum((sigma2 * math.sqrt(2 / (n - 1))) ** 2)) / 3 / 2
    assert abs(est - sigma2.mean() / 2) < 4 * se                     # 4 standard errors
    assert estimate_D_gradient_variance(g, lr=0.1) == pytest.approx(0.1 * est)
    # D_eff (per-step variance) and D_sde (temperature with dt = lr) are consistent: alpha^2 s2/B = 2 D dt
    lr, B, s2 = 0.05, 32, 3.0
    assert d_eff_seed(lr, s2, B) == pytest.approx(lr**2 * s2 / B)
    assert d_eff_seed(lr, s2, B) == pytest.approx(2 * d_sde(lr, s2 * 10, B, 10) * lr)
    with pytest.raises(ValueError, match="`batch_size`"):
        d_eff_seed(lr, s2, 0)
    with pytest.raises(ValueError, match="`lr`"):
        d_sde(-1.0, 1.0, 4, 2)


def test_bad_input_names_the_argument():
    t = np.arange(10.0)
    with pytest.raises(ValueError, match="`times`"):
        estimate_D_msd(t[::-1], np.zeros(10))
    with pytest.raises(ValueError, match="`times`"):
        estimate_D_msd(t ** 2, np.zeros(10))
    with pytest.raises(ValueError, match="`positions`"):
        estimate_D_msd(t, np.full(10, np.nan))
    with pytest.raises(ValueError, match="`max_lag`"):
        estimate_D_msd(t, np.zeros((10, 3, 1)), max_lag=10)
    with pytest.raises(ValueError, match="`grads`"):
        estimate_D_gradient_variance(np.ones((1, 3)))


def test_noise_isotropy_against_known_covariances():
    """Σ = diag(4, 1, 1, 1): r = (tr Σ)²/tr Σ² = 49/19 and λ₁/tr Σ = 4/7, up to the sample covariance's
    O(d/n) bias (n = 200 000: < 0.1 %); isotropic noise gives r = d/(1 + d/n) (Marchenko–Pastur's tr S²),
    and noise along one direction r = 1 — the three cases the batch-scaling rule separates."""
    from shld.observables import noise_isotropy

    rng = np.random.default_rng(3)
    n = 200_000
    g = rng.standard_normal((n, 4)) * np.sqrt([4.0, 1.0, 1.0, 1.0]) + 5.0      # the mean is removed
    iso = noise_isotropy(g)
    assert iso.participation_ratio == pytest.approx(49 / 19, rel=5e-3)
    assert iso.top_share == pytest.approx(4 / 7, rel=5e-3) and iso.trace == pytest.approx(7.0, rel=5e-3)
    d, n = 50, 400
    r = noise_isotropy(rng.standard_normal((n, d))).participation_ratio
    assert r == pytest.approx(d / (1 + d / n), rel=0.03)          # 44.4; the sampling spread is ~1 %
    one = noise_isotropy(rng.standard_normal((n, 1)) * rng.standard_normal(d))
    assert one.participation_ratio == pytest.approx(1.0, rel=1e-9) and one.top_share == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no spread"):
        noise_isotropy(np.ones((5, 3)))
