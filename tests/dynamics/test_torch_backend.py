"""The deprecated ``simulate_torch`` alias: a warning, then the one driver on the torch backend."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from shld.dynamics import SimulationResult, simulate  # noqa: E402
from shld.dynamics.torch_backend import simulate_torch  # noqa: E402
from shld.landscapes import DoubleWell, MullerBrown, Quadratic  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:simulate_torch is deprecated:DeprecationWarning")


def test_alias_warns_and_equals_simulate_with_backend_torch():
    L = DoubleWell(barrier=1.0)
    with pytest.warns(DeprecationWarning, match="backend='torch'"):
        a = simulate_torch(L, np.array([-1.0]), n_walkers=200, D=0.5, dt=5e-3, n_steps=400, seed=3)
    b = simulate(L, np.array([-1.0]), n_walkers=200, D=0.5, dt=5e-3, n_steps=400, seed=3, backend="torch",
                 dtype="float32", record_every=4)
    assert isinstance(a, SimulationResult) and a.final_theta.dtype == np.float32
    assert np.array_equal(a.final_theta, b.final_theta)
    assert np.array_equal(a.records["loss_mean"], b.records["loss_mean"])


def test_quadratic_stationary_variance_float64():
    lam, D, dt, n = np.array([0.5, 2.0, 6.0]), 0.3, 0.02, 8000
    res = simulate_torch(Quadratic(eigenvalues=lam), np.zeros(3), n_walkers=n, D=D, dt=dt, n_steps=600,
                         seed=1, dtype="float64")
    v = D / (lam * (1 - 0.5 * lam * dt))            # exact EM stationary variance
    var = res.final_theta.var(axis=0, ddof=1)
    assert np.all(np.abs(var - v) < 4.5 * v * np.sqrt(2 / (n - 1)))     # 4.5 SE over 3 coordinates


def test_first_passage_other_landscapes_and_errors():
    L = DoubleWell(barrier=0.5)
    res = simulate_torch(L, np.array([-1.0]), n_walkers=500, D=0.5, dt=2e-3, n_steps=5000, seed=0,
                         target=lambda th: th[:, 0] >= 1.0)
    assert res.hit.mean() > 0.5 and np.all(res.first_passage_time[res.hit] > 0)
    mb = simulate_torch(MullerBrown(scale=0.05), np.array([-0.55, 1.44]), n_walkers=10, n_steps=5)
    assert mb.final_theta.shape == (10, 2)
    with pytest.raises(ValueError, match="`dt` must be > 0"):
        simulate_torch(L, np.zeros(1), dt=0.0)
    with pytest.raises(ValueError, match="`dtype` must be float32 or float64"):
        simulate_torch(L, np.zeros(1), dtype="float16")
