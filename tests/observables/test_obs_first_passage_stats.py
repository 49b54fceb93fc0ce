import math

import numpy as np
import pytest
from scipy import stats

from shld.observables import binomial_ci, mfpt_estimate, moments_with_stderr, survival_curve


def test_censored_exponential_mle_recovers_the_mean():
    rng = np.random.default_rng(21)
    tau, t_max = 5.0, 6.0
    times = rng.exponential(tau, 5000)
    hit = times <= t_max
    est = mfpt_estimate(np.where(hit, times, np.inf), hit, t_max=t_max)
    assert est.method == "exponential-mle" and est.n_censored == int(np.sum(~hit)) > 1000
    assert abs(est.mean - tau) < 4 * est.stderr                        # 4 standard errors
    # the naive mean over hits is badly biased low
    assert np.mean(times[hit]) < tau - 10 * est.stderr
    # per-walker censoring times (times given, hit flags)
    c = rng.uniform(2.0, 12.0, 5000)
    hit2 = times <= c
    est2 = mfpt_estimate(np.where(hit2, times, c), hit2)
    assert abs(est2.mean - tau) < 4 * est2.stderr                      # 4 standard errors


def test_uncensored_mean_and_edge_cases():
    rng = np.random.default_rng(22)
    times = rng.gamma(2.0, 1.5, 3000)                                   # not exponential: plain mean
    est = mfpt_estimate(times)
    assert est.method == "mean" and abs(est.mean - 3.0) < 4 * est.stderr   # 4 standard errors
    none = mfpt_estimate(np.full(5, np.inf), t_max=1.0)
    assert none.method == "no-hits" and none.mean == math.inf
    with pytest.raises(ValueError, match="t_max"):
        mfpt_estimate(np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="`hit`"):
        mfpt_estimate(np.array([1.0, 2.0]), hit=np.array([1, 0]))
    with pytest.raises(ValueError, match="`t_max`"):
        mfpt_estimate(np.array([1.0, 2.0]), t_max=1.5)


def test_kaplan_meier_matches_exponential_survival():
    rng = np.random.default_rng(23)
    tau, t_max, n = 2.0, 3.0, 4000
    times = rng.exponential(tau, n)
    hit = times <= t_max
    grid = np.array([0.0, 0.5, 1.0, 2.0, 2.9])
    s, se = survival_curve(np.where(hit, times, np.inf), hit, grid, t_max=t_max, return_stderr=True)
    assert s[0] == 1.0
    assert np.all(np.abs(s[1:] - np.exp(-grid[1:] / tau)) < 4 * se[1:])    # 4 (Greenwood) standard errors
    # with one censoring time for all and no ties, KM is the empirical survival function
    assert np.allclose(s, np.mean(times[None, :] > grid[:, None], axis=1))
    # with mid-run censoring KM still tracks the truth; the naive fraction does not
    c = rng.uniform(0.0, 3.0, n)
    h2 = times <= c
    s2, se2 = survival_curve(np.where(h2, times, c), h2, grid, return_stderr=True)
    assert np.all(np.abs(s2[1:4] - np.exp(-grid[1:4] / tau)) < 4 * se2[1:4])  # 4 standard errors


def test_wilson_interval_exact_coverage():
    # exact coverage: sum of binomial pmf over k whose interval contains p (no Monte Carlo)
    for n, p in ((20, 0.1), (50, 0.3), (200, 0.5)):
        k = np.arange(n + 1)
        lo, hi = binomial_ci(k, n)
        cover = float(np.sum(stats.binom.pmf(k, n, p)[(lo <= p) & (p <= hi)]))
        assert 0.92 < cover < 0.98                                     # Wilson: close to nominal 0.95
    assert binomial_ci(0, 10)[0] == 0.0 and binomial_ci(10, 10)[1] == 1.0
    lo, hi = binomial_ci(3, 10, level=0.9)
    assert lo < 0.3 < hi
    lo99, hi99 = binomial_ci(3, 10, level=0.99)
    assert lo99 < lo and hi99 > hi
    with pytest.raises(ValueError, match="`k`"):
        binomial_ci(11, 10)
    with pytest.raises(ValueError, match="`level`"):
        binomial_ci(1, 10, level=1.5)


def test_moments_with_stderr():
    rng = np.random.default_rng(24)
    x = rng.normal(2.0, 3.0, size=(20_000, 2))
    m = moments_with_stderr(x)
    assert np.all(np.abs(m.mean - 2.0) < 4 * m.mean_stderr)            # 4 standard errors
    assert np.all(np.abs(m.var - 9.0) < 4 * m.var_stderr)              # 4 standard errors
    assert np.allclose(m.var_stderr, 9.0 * math.sqrt(2 / 20_000), rtol=0.05)
    with pytest.raises(ValueError, match="`x`"):
        moments_with_stderr(np.array([1.0]))


def test_negative_run_lengths_and_fractional_counts_are_refused():
    """A censored walker's time is its run length: −5 gave a negative MFPT (mean −4, stderr −4)."""
    import numpy as np
    import pytest

    from shld.observables import mfpt_estimate, survival_curve
    from shld.observables.stats import binomial_ci

    for f in (mfpt_estimate, survival_curve):
        with pytest.raises(ValueError, match="censored walkers .* must be >= 0, got -5.0"):
            f(np.array([1.0, -5.0]), np.array([True, False]))
    with pytest.raises(ValueError, match="`n` must be whole numbers"):
        binomial_ci(np.array([3]), np.array([10.5]))
