import numpy as np
import pytest

from shld.observables import uncertainty_product
from shld.theory import theorem1_bound_seed


def test_point_mass_and_shapes():
    th = np.ones((50, 3))
    up = uncertainty_product(th, 2 * th)
    assert np.all(up.product == 0) and np.all(np.isnan(up.product_stderr))
    assert np.all(up.product < theorem1_bound_seed(0.1))                 # the seed's bound fails
    with pytest.raises(ValueError, match="`grad`"):
        uncertainty_product(th, np.ones((50, 2)))
    with pytest.raises(ValueError, match="`theta`"):
        uncertainty_product(np.ones((1, 3)), np.ones((1, 3)))


def test_stderr_is_calibrated():
    # repeat the estimate on independent ensembles: spread of estimates ~ the reported SE
    rng = np.random.default_rng(31)
    D, lam, N, R = 0.2, np.array([1.0, 3.0]), 500, 400
    th = rng.normal(0.0, np.sqrt(D / lam), size=(R, N, 2))
    g = th * lam + 0.3 * rng.standard_normal((R, N, 2))                  # noisy gradients
    res = [uncertainty_product(th[r], g[r]) for r in range(R)]
    prods = np.array([r.product for r in res])
    ses = np.array([r.product_stderr for r in res])
    covs = np.array([r.cov for r in res])
    cses = np.array([r.cov_stderr for r in res])
    # ratio of empirical spread to mean reported SE within 15% (SE of a SD from 400 reps is ~3.5%)
    assert np.allclose(prods.std(0) / ses.mean(0), 1.0, atol=0.15)
    assert np.allclose(covs.std(0) / cses.mean(0), 1.0, atol=0.15)
    assert np.all(np.abs(covs.mean(0) - D) < 4 * covs.std(0) / np.sqrt(R))  # 4 SE; noise is independent
