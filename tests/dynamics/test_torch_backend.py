"""The optional torch backend of the engine against the same closed forms as the numpy engine."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from shld.dynamics.torch_backend import simulate_torch  # noqa: E402
from shld.landscapes import DoubleWell, MullerBrown, Quadratic  # noqa: E402


def test_quadratic_stationary_variance_float64():
    lam, D, dt, n = np.array([0.5, 2.0, 6.0]), 0.3, 0.02, 8000
    res = simulate_torch(Quadratic(eigenvalues=lam), np.zeros(3), n_walkers=n, D=D, dt=dt, n_steps=600,
                         seed=1, dtype="float64")
    v = D / (lam * (1 - 0.5 * lam * dt))            # exact EM stationary variance
    var = res.final_theta.var(axis=0, ddof=1)
    assert np.all(np.abs(var - v) < 4.5 * v * np.sqrt(2 / (n - 1)))     # 4.5 SE over 3 coordinates


def test_double_well_float32_matches_gibbs_fraction_and_is_reproducible():
    L = DoubleWell(barrier=1.0)
    a = simulate_torch(L, np.array([-1.0]), n_walkers=2000, D=0.5, dt=5e-3, n_steps=4000, seed=3)
    b = simulate_torch(L, np.array([-1.0]), n_walkers=2000, D=0.5, dt=5e-3, n_steps=4000, seed=3)
    assert a.final_theta.dtype == np.float32
    assert np.array_equal(a.final_theta, b.final_theta)
    # by symmetry the Gibbs mass right of the barrier is 1/2; relaxation time 1/(2Γ_KL) ≈ 4.1, so after
    # t = 20 the deficit is ≈ e^{-4.9}/2 ≈ 0.004 — allow that plus 4 binomial SE
    frac = np.mean(a.final_theta[:, 0] > 0)
    assert abs(frac - 0.5) < 0.004 + 4 * np.sqrt(0.25 / 2000)
    assert np.isfinite(a.records["C_ensemble"]).all() and a.records["loss_mean"].shape == a.times.shape


def test_first_passage_and_errors():
    L = DoubleWell(barrier=0.5)
    res = simulate_torch(L, np.array([-1.0]), n_walkers=500, D=0.5, dt=2e-3, n_steps=5000, seed=0,
                         target=lambda th: th[:, 0] >= 1.0)
    assert res.hit.mean() > 0.5 and np.all(res.first_passage_time[res.hit] > 0)
    with pytest.raises(NotImplementedError, match="DoubleWell and Quadratic"):
        simulate_torch(MullerBrown(), np.zeros(2), n_steps=1)
    with pytest.raises(ValueError, match="`dt` must be > 0"):
        simulate_torch(L, np.zeros(1), dt=0.0)
    with pytest.raises(ValueError, match="`dtype` must be one of"):
        simulate_torch(L, np.zeros(1), dtype="float16")
