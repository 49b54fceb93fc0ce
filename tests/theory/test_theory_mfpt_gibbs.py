import math

import numpy as np
import pytest
from scipy import stats

from shld.landscapes import FunctionLandscape, make_landscape
from shld.theory import (
    gibbs_cdf_1d,
    gibbs_density_1d,
    gibbs_log_density,
    gibbs_log_normaliser,
    gibbs_log_partition,
    mfpt_1d,
)


def free(x):
    return 0.0 * x


@pytest.mark.parametrize("x0", [-1.0, 0.3, 1.9])
def test_free_diffusion_closed_form(x0):
    a, b, D = -1.0, 2.0, 0.7
    exact = ((b - a) ** 2 - (x0 - a) ** 2) / (2 * D)
    assert mfpt_1d(free, D, x0, b, a=a) == pytest.approx(exact, rel=1e-12)
    # mirrored: absorbing below, reflecting above
    assert mfpt_1d(free, D, -x0, -b, a=-a) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("F, D", [(3.0, 0.1), (-2.0, 0.05), (1.0, 0.01)])
def test_linear_potential_closed_form_with_huge_exponents(F, D):
    # U = F x, reflecting at a, absorbing at b: T = (1/F)[(D/F)(e^{F(b-a)/D} - e^{F(x0-a)/D}) - (b - x0)]
    a, x0, b = -1.0, 0.3, 2.0
    log_t = mfpt_1d(lambda x: F * x, D, x0, b, a=a, log=True)
    e = (D / F) * (math.exp(F * (b - a) / D) - math.exp(F * (x0 - a) / D)) if F * (b - a) / D < 700 else None
    if e is not None:
        exact = (e - (b - x0)) / F
        assert math.exp(log_t) == pytest.approx(exact, rel=1e-10)
    else:  # exponent 300: compare logs; the (b - x0) term is negligible
        exact_log = math.log(D / F**2) + F * (b - a) / D + math.log1p(-math.exp(F * (x0 - b) / D))
        assert log_t == pytest.approx(exact_log, rel=1e-12)
        assert mfpt_1d(lambda x: F * x, D, x0, b, a=a) == math.inf


def test_quadrature_converged_on_double_well():
    dw = make_landscape("double-well", barrier=1.0)
    for D in (0.5, 0.05, 0.005):
        coarse, fine = mfpt_1d(dw.u, D, -1.0, 1.0, n=200), mfpt_1d(dw.u, D, -1.0, 1.0, n=1600)
        assert coarse == pytest.approx(fine, rel=1e-10)
    # a 1-D landscape is accepted in place of the callable
    assert mfpt_1d(dw, 0.2, -1.0, 1.0) == pytest.approx(mfpt_1d(dw.u, 0.2, -1.0, 1.0), rel=1e-14)
    assert mfpt_1d(dw.u, 0.2, 0.5, 0.5) == 0.0


@pytest.mark.parametrize("kwargs, name", [
    (dict(D=0.0, x0=0.0, b=1.0), "`D`"),
    (dict(D=0.1, x0=-2.0, b=1.0, a=-1.0), "`x0`"),
    (dict(D=0.1, x0=0.0, b=1.0, a=2.0), "`x0`"),
    (dict(D=0.1, x0=math.nan, b=1.0), "`x0`"),
])
def test_mfpt_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        mfpt_1d(lambda x: x**2, **kwargs)


def test_mfpt_unconfined_tail_and_bad_potential():
    with pytest.raises(ValueError, match="not integrable"):
        mfpt_1d(free, 0.1, 0.0, 1.0)            # free diffusion with a = -inf never returns
    with pytest.raises(ValueError, match="`u`"):
        mfpt_1d(lambda x: np.where(x > 0.5, np.nan, x**2), 0.1, 0.0, 1.0, a=-1.0)
    with pytest.raises(ValueError, match="vectorised"):
        mfpt_1d(lambda x: np.zeros(3), 0.1, 0.0, 1.0, a=-1.0)


def test_gibbs_normaliser_and_density():
    D = 0.3
    assert gibbs_log_normaliser(lambda x: 0.5 * 4.0 * (x - 7.0) ** 2, D) == pytest.approx(
        0.5 * math.log(2 * math.pi * D / 4.0), rel=1e-12)
    # on an interval: uniform potential
    assert gibbs_log_normaliser(free, D, -1.0, 2.0) == pytest.approx(math.log(3.0), rel=1e-12)
    dw = make_landscape("double-well", barrier=2.0)
    x = np.linspace(-3, 3, 6001)
    p_grid = gibbs_density_1d(dw.u, D, x)
    assert np.trapezoid(p_grid, x) == pytest.approx(1.0, rel=1e-12)
    p_exact = gibbs_density_1d(dw.u, D, x, lo=-math.inf, hi=math.inf)
    assert np.trapezoid(p_exact, x) == pytest.approx(1.0, rel=1e-8)   # trapezoid error O(h^2)
    assert np.max(np.abs(p_grid - p_exact)) < 1e-6 * np.max(p_exact)
    assert np.all(gibbs_density_1d(dw.u, D, x, lo=0.0, hi=1.0)[(x < 0) | (x > 1)] == 0)
    xi = np.linspace(0.0, 1.0, 4001)
    assert np.trapezoid(gibbs_density_1d(dw.u, D, xi, lo=0.0, hi=1.0), xi) == pytest.approx(1.0, rel=1e-6)


def test_gibbs_log_density_quadratic_is_the_gaussian():
    lam = np.array([0.5, 2.0, 9.0])
    q = make_landscape("quadratic", eigenvalues=lam, center=[1.0, -1.0, 0.5])
    D = 0.4
    th = np.random.default_rng(0).normal(size=(5, 3))
    var = D / lam
    gauss = -0.5 * np.sum((th - q.center) ** 2 / var + np.log(2 * math.pi * var), axis=-1)
    assert np.allclose(gibbs_log_density(q, D, th), gauss, rtol=1e-12)


def test_gibbs_partition_double_well_and_2d_box():
    D = 0.25
    dw = make_landscape("double-well", barrier=1.0, dim=2, k_perp=3.0)
    z1 = gibbs_log_normaliser(make_landscape("double-well", barrier=1.0).u, D)
    assert gibbs_log_partition(dw, D) == pytest.approx(z1 + 0.5 * math.log(2 * math.pi * D / 3.0), rel=1e-12)
    # the generic 2-D tensor rule on the bounds box agrees with the factorised result
    class Boxed(FunctionLandscape):
        bounds = dw.bounds

    fl = Boxed(dw.value, dw.grad, 2)
    assert gibbs_log_partition(fl, D) == pytest.approx(gibbs_log_partition(dw, D), abs=1e-9)


@pytest.mark.parametrize("D", [0.05, 0.3, 2.0])
def test_gibbs_mean_of_homogeneous_potentials_is_d_over_degree(D):
    """For U = c|x|^k, E[U] = D/k exactly (the Gamma integral); the variance of x under U = λx²/2 is D/λ."""
    from shld.theory import gibbs_mean_1d

    assert gibbs_mean_1d(lambda x: 3.0 * x ** 2, D) == pytest.approx(D / 2, rel=1e-10)
    assert gibbs_mean_1d(lambda x: 0.25 * x ** 4, D) == pytest.approx(D / 4, rel=1e-10)
    assert gibbs_mean_1d(lambda x: np.abs(x) ** 6, D) == pytest.approx(D / 6, rel=1e-10)
    assert gibbs_mean_1d(lambda x: 2.5 * x ** 2, D, g=lambda x: x ** 2) == pytest.approx(D / 5, rel=1e-10)
    # off-centre minimum: the cut-off probe starts from `center`
    assert gibbs_mean_1d(lambda x: (x - 40.0) ** 2, D, center=40.0) == pytest.approx(D / 2, rel=1e-10)


def test_gibbs_cdf_1d_is_the_normal_cdf_for_a_harmonic_well():
    D = 0.3                                           # U = x²/2: the Gibbs law is N(0, D)
    F = gibbs_cdf_1d(lambda x: 0.5 * x * x, D, -6.0, 6.0)
    q = np.array([-1.0, -0.2, 0.0, 0.4, 1.3])
    # trapezoid on 200 001 points: error O(h²) ≈ 1e-9; the tails beyond ±6/√0.3 carry < 1e-27
    np.testing.assert_allclose(F(q), stats.norm.cdf(q, scale=np.sqrt(D)), atol=1e-8)
    assert not np.allclose(F(q), stats.norm.cdf(q, scale=np.sqrt(D / 2)), atol=1e-3)   # power: D/2 differs
    assert F(-7.0) == 0.0 and F(7.0) == 1.0


@pytest.mark.parametrize("c, D", [(1000.0, 1e-3), (300.0, 1e-3), (-25.0, 1e-6)])
def test_gibbs_integrals_resolve_a_narrow_well_far_from_center(c, D):
    """The well of U = ½(x − c)² is √D wide and far from the probe's start (center = 0): the rule
    must zoom onto it. Exact: log Z = ½ log 2πD, E[x] = c, Var[x] = D. The old rule (400 panels
    over [−0.01, 1310]) gave log Z = −37.2 instead of −2.53 for c = 1000."""
    from shld.theory import gibbs_mean_1d

    u = lambda x: 0.5 * (x - c) ** 2  # noqa: E731
    assert gibbs_log_normaliser(u, D) == pytest.approx(0.5 * math.log(2 * math.pi * D), abs=1e-9)
    assert gibbs_mean_1d(u, D, g=lambda x: x) == pytest.approx(c, abs=1e-9 * max(1.0, abs(c)))
    assert gibbs_mean_1d(u, D, g=lambda x: (x - c) ** 2) == pytest.approx(D, rel=1e-8)
    fl = FunctionLandscape(lambda t: 0.5 * (t[..., 0] - c) ** 2, lambda t: t - c, dim=1)
    assert gibbs_log_partition(fl, D) == pytest.approx(0.5 * math.log(2 * math.pi * D), abs=1e-9)


def test_gibbs_normaliser_with_one_far_finite_end():
    """lo = −inf, hi = 1e4: the probe starts at the finite end, 10⁴ away from the well of x²."""
    D = 0.5
    assert gibbs_log_normaliser(lambda x: x ** 2, D, hi=1e4) == pytest.approx(0.5 * math.log(math.pi * D), abs=1e-10)
    assert gibbs_log_normaliser(lambda x: x ** 2, D, lo=0.0, hi=1e4) == pytest.approx(
        0.5 * math.log(math.pi * D) - math.log(2), abs=1e-10)


def test_gibbs_quadrature_refuses_what_it_cannot_resolve():
    """A jump of U inside a panel: Gauss–Legendre converges like h, so 400 and 800 panels disagree."""
    jump = lambda x: np.where(x > 0.123456, 1.0, 0.0) + x ** 2 / 100  # noqa: E731
    with pytest.raises(ValueError, match="did not converge.*increase `n`"):
        gibbs_log_normaliser(jump, 1.0)


def test_gibbs_cdf_1d_refuses_bad_bounds_and_an_unresolved_well():
    u = lambda x: 0.5 * x * x  # noqa: E731
    for lo, hi in [(-math.inf, math.inf), (1.0, -1.0), (0.0, 0.0), (math.nan, 1.0)]:
        with pytest.raises(ValueError, match="lo"):
            gibbs_cdf_1d(u, 1.0, lo, hi)
    with pytest.raises(ValueError, match="do not resolve"):    # σ = 1e-4, grid step 1e-4
        gibbs_cdf_1d(u, 1e-8, -10.0, 10.0)
    F = gibbs_cdf_1d(make_landscape("quadratic", eigenvalues=[1.0]), 0.3, -6.0, 6.0)  # a 1-D landscape
    assert F(0.0) == pytest.approx(0.5, abs=1e-9)


def test_mfpt_refuses_an_unresolved_integrand():
    """e^{U/D} at an absorbing point far up a steep wall lives within D/U'(b) ≈ 1e-8 of b: no panel
    count here resolves it, and the old rule returned log T = 8.08e8 for n = 400 (8.06e8 for n = 8)."""
    steep = lambda x: 50 * (x ** 2 - 1) ** 2  # noqa: E731
    with pytest.raises(ValueError, match="did not converge.*increase `n`"):
        mfpt_1d(steep, 0.05, -1.0, 30.0)
    with pytest.raises(ValueError, match="8 panels"):
        mfpt_1d(steep, 0.05, -1.0, 1.0, n=8)     # 8 panels over a barrier of 1000·D
    assert mfpt_1d(steep, 0.05, -1.0, 1.0, log=True) == pytest.approx(
        mfpt_1d(steep, 0.05, -1.0, 1.0, n=3200, log=True), abs=1e-9)
