r"""The uncertainty product √Var θ_i·√Var ∂_iL and the covariance Cov(θ_i, ∂_iL) over an ensemble.

At stationarity (Gibbs law ∝ e^{−L/D}) Cov(θ_i, ∂_iL) = D exactly and the product is ≥ D
(:mod:`shld.theory.bounds`); the seed's "≥ D/2 for any distribution" is false. Comparing the
measured covariance with D is therefore also a D estimate (and an equilibrium check).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shld._validation import check_finite_array

__all__ = ["UncertaintyProduct", "uncertainty_product"]


@dataclass(frozen=True)
class UncertaintyProduct:
    """Per-coordinate arrays (d,). Standard errors are delta-method, first order in 1/N."""

    product: np.ndarray
    product_stderr: np.ndarray
    cov: np.ndarray
    cov_stderr: np.ndarray
    std_theta: np.ndarray
    std_grad: np.ndarray
    n: int


def uncertainty_product(theta, grad):
    """√Var θ_i·√Var ∂_iL and Cov(θ_i, ∂_iL) per coordinate from an ensemble (N, d) of walkers.

    ``grad`` is ∇L evaluated at ``theta`` (same shape). Variances and covariance use 1/N
    (plug-in); standard errors: SE(cov) = sd[(θ−θ̄)(g−ḡ)]/√N, SE(product) =
    product·sd[½(a/Var θ + b/Var g)]/√N with a = (θ−θ̄)² − Var θ, b = (g−ḡ)² − Var g
    (NaN where a variance is 0, e.g. a point mass).
    """
    x = check_finite_array("theta", theta, ndim=2)
    g = check_finite_array("grad", grad, ndim=2)
    if g.shape != x.shape:
        raise ValueError(f"`grad` must have the shape of `theta` {x.shape}, got {g.shape}")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"`theta` needs at least 2 walkers (rows), got {n}")
    dx = x - x.mean(axis=0)
    dg = g - g.mean(axis=0)
    vx = np.mean(dx * dx, axis=0)
    vg = np.mean(dg * dg, axis=0)
    prod = np.sqrt(vx * vg)
    cross = dx * dg
    cov = cross.mean(axis=0)
    cov_se = np.std(cross, axis=0, ddof=1) / np.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        infl = 0.5 * ((dx * dx - vx) / vx + (dg * dg - vg) / vg)
        prod_se = np.where((vx > 0) & (vg > 0), prod * np.std(infl, axis=0, ddof=1) / np.sqrt(n), np.nan)
    return UncertaintyProduct(product=prod, product_stderr=prod_se, cov=cov, cov_stderr=cov_se,
                              std_theta=np.sqrt(vx), std_grad=np.sqrt(vg), n=n)
