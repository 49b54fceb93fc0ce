import math

import numpy as np
import pytest

from shld.observables import uncertainty_product
from shld.theory import (
    alpha_opt_seed,
    em_expected_loss,
    em_mean,
    em_stationary_variance,
    em_variance,
    ou_expected_loss,
    ou_mean,
    ou_stationary_variance,
    ou_variance,
    point_mass_counterexample,
    stability_limit,
    theorem1_bound_seed,
    theorem1_ou_product,
    theorem1_stationary_bound,
    theorem4_bound_seed,
    theorem4_bound_smooth,
    theorem4_exact_quadratic,
    theorem4_floor_exact,
    theorem4_floor_ratio,
    theorem4_floor_seed,
)

LAM = np.array([0.0, 0.3, 1.0, 5.0])


def test_ou_limits():
    D, m0, v0 = 0.2, np.array([1.0, -2.0, 0.5, 3.0]), 0.7
    assert np.allclose(ou_mean(m0, LAM, 0.0), m0)
    assert np.allclose(ou_variance(LAM, D, 0.0, v0), v0)
    # lambda = 0 is free diffusion: variance grows as 2Dt; lambda > 0 saturates at D/lambda
    t = 1e3
    v = ou_variance(LAM, D, t)
    assert v[0] == pytest.approx(2 * D * t, rel=1e-12)
    assert np.allclose(v[1:], D / LAM[1:], rtol=1e-12)
    assert np.allclose(ou_stationary_variance(LAM[1:], D), D / LAM[1:])
    # small t: v = 2Dt + O(t^2) for every lambda
    assert np.allclose(ou_variance(LAM, D, 1e-8), 2 * D * 1e-8, rtol=1e-6)
    # broadcasting over a time grid
    assert ou_variance(LAM, D, np.linspace(0, 1, 7)).shape == (7, 4)
    lam = LAM[1:]
    assert ou_expected_loss(lam, D, 1e4, m0[1:], v0) == pytest.approx(D * lam.size / 2, rel=1e-12)
    assert ou_expected_loss(lam, D, 0.0, m0[1:], v0) == pytest.approx(0.5 * np.sum(lam * (m0[1:] ** 2 + v0)))


def test_em_moments_exact_vs_monte_carlo():
    rng = np.random.default_rng(20260)
    lam = np.array([0.5, 2.0, 15.0])
    D, dt, n, N = 0.3, 0.1, 40, 10_000
    x0 = np.array([1.0, -1.0, 0.2])
    x = np.broadcast_to(x0, (N, 3)).copy()
    for _ in range(n):  # loop over time steps only; walkers are vectorised
        x = (1 - lam * dt) * x + math.sqrt(2 * D * dt) * rng.standard_normal((N, 3))
    m_exact, v_exact = em_mean(x0, lam, dt, n), em_variance(lam, D, dt, n)
    se_m = np.sqrt(v_exact / N)
    se_v = v_exact * math.sqrt(2 / (N - 1))          # Gaussian: SE of the sample variance
    assert np.all(np.abs(x.mean(0) - m_exact) < 4 * se_m)                  # 4 standard errors
    assert np.all(np.abs(x.var(0, ddof=1) - v_exact) < 4 * se_v)           # 4 standard errors
    # lambda*dt = 1.5: EM variance is 4x the continuous D/lambda
    assert em_stationary_variance(lam, D, dt)[2] == pytest.approx(D / lam[2] / (1 - 0.75), rel=1e-12)
    assert np.allclose(em_variance(lam, D, dt, 10_000), em_stationary_variance(lam, D, dt), rtol=1e-12)
    # dt -> 0 recovers the continuous OU law at the same time t = n*dt
    assert np.allclose(em_variance(lam, D, 1e-6, 10**6, var0=0.3), ou_variance(lam, D, 1.0, 0.3), rtol=1e-4)
    assert em_expected_loss(lam, D, dt, 0, x0) == pytest.approx(0.5 * np.sum(lam * x0**2))
    with pytest.raises(ValueError, match="unstable"):
        em_stationary_variance([30.0], D, dt)


def test_theorem4_seed_floor_vs_exact():
    D, d = 0.1, 4
    assert theorem4_floor_exact(D, d) == pytest.approx(0.2)
    for lam_min in (0.5, 2.0, 8.0):
        assert theorem4_floor_seed(D, d, lam_min) / theorem4_floor_exact(D, d) == pytest.approx(
            theorem4_floor_ratio(lam_min))
    lam = np.array([4.0, 6.0, 9.0, 12.0])        # lambda_min > 2: the seed's bound fails
    mean0, t_late = np.ones(4), 50.0
    exact = theorem4_exact_quadratic(lam, D, t_late, mean0)
    l0 = theorem4_exact_quadratic(lam, D, 0.0, mean0)
    assert exact > theorem4_bound_seed(l0, lam.min(), D, d, t_late)
    assert exact <= theorem4_bound_smooth(l0, lam.min(), lam.max(), D, d, t_late)
    lam = np.array([0.5, 1.0, 1.5, 2.0])         # lambda_min <= 2: valid (loose) at all times
    t = np.linspace(0, 20, 201)
    exact = theorem4_exact_quadratic(lam, D, t, mean0)
    l0 = exact[0]
    assert np.all(exact <= theorem4_bound_seed(l0, lam.min(), D, d, t))
    assert np.all(exact <= theorem4_bound_smooth(l0, lam.min(), lam.max(), D, d, t) + 1e-15)
    # isotropic quadratic: the smooth bound is attained
    iso = np.full(4, 3.0)
    assert np.allclose(theorem4_exact_quadratic(iso, D, t, mean0),
                       theorem4_bound_smooth(theorem4_exact_quadratic(iso, D, 0.0, mean0), 3.0, 3.0, D, d, t))
    # transient decays like exp(-2 lambda t) for the loss (D = 0)
    r = theorem4_exact_quadratic([1.0], 0.0, [1.0, 2.0], [1.0])
    assert r[1] / r[0] == pytest.approx(math.exp(-2.0), rel=1e-12)


def test_theorem1_seed_vs_stationary():
    D = 0.3
    assert theorem1_bound_seed(D) == 0.15 and theorem1_stationary_bound(D) == 0.3
    ex = point_mass_counterexample(D)
    assert ex["product"] == 0.0 and ex["violated"]
    # OU from a point: product D(1 - e^{-2 lambda t}) is below D/2 before ln2/(2 lambda), -> D after
    lam = np.array([1.0, 4.0])
    assert np.allclose(theorem1_ou_product(lam, D, 0.1), D * (1 - np.exp(-2 * lam * 0.1)))
    assert theorem1_ou_product(lam, D, 0.5 * math.log(2) / 4.0 * 0.99)[1] < D / 2
    assert np.allclose(theorem1_ou_product(lam, D, 100.0), D)
    # exact Gaussian (Gibbs) samples of a rotated quadratic: Cov(theta_i, d_i L) = D and product >= D
    rng = np.random.default_rng(7)
    c = math.sqrt(0.5)                      # 45-degree rotation mixing axes 0 and 1; axis 2 untouched
    q = np.array([[c, -c, 0.0], [c, c, 0.0], [0.0, 0.0, 1.0]])
    A = (q * np.array([0.1, 10.0, 1.0])) @ q.T
    N = 20_000
    th = rng.multivariate_normal(np.zeros(3), D * np.linalg.inv(A), size=N)
    g = th @ A
    up = uncertainty_product(th, g)
    assert np.all(np.abs(up.cov - D) < 4 * up.cov_stderr)                      # 4 standard errors
    # exact product: sqrt(D (A^-1)_ii * D A_ii) >= D, equality only for a diagonal A
    exact = D * np.sqrt(np.diag(np.linalg.inv(A)) * np.diag(A))
    assert np.all(exact[:2] > D * 2.5) and exact[2] == pytest.approx(D)
    assert np.all(np.abs(up.product - exact) < 4 * up.product_stderr)          # 4 standard errors
    # diagonal quadratic: equality, the product is D
    lam = np.array([0.5, 6.0])
    th = rng.normal(0.0, np.sqrt(D / lam), size=(N, 2))
    up = uncertainty_product(th, th * lam)
    assert np.all(np.abs(up.product - D) < 4 * up.product_stderr)              # 4 standard errors
    assert np.all(up.product > theorem1_bound_seed(D))


def test_learning_rate_forms():
    assert alpha_opt_seed(0.01, 4.0) == pytest.approx(0.005)
    assert stability_limit(4.0) == 0.5
    assert alpha_opt_seed(1.0, 4.0) == stability_limit(4.0)     # equal only when D = 1
    lam, eta = 4.0, stability_limit(4.0)
    assert abs(1 - (eta * 1.01) * lam) > 1 > abs(1 - (eta * 0.99) * lam)
    with pytest.raises(ValueError, match="`lam_max`"):
        stability_limit(0.0)
    with pytest.raises(ValueError, match="`D`"):
        ou_variance(LAM, -1.0, 1.0)
    with pytest.raises(ValueError, match="`t`"):
        ou_mean([1.0], [1.0], -1.0)
    with pytest.raises(ValueError, match="`dt`"):
        em_mean([1.0], [1.0], 0.0, 3)
