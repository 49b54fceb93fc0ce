"""Observables of a density on a grid (cell averages; integrals by the midpoint rule).

* mass ∫ρ, mean ∫θρ, covariance ∫(θ−m)(θ−m)ᵀρ (normalised by the mass),
* probability of a region ∫_R ρ (R a mask or a callable θ → bool on cell centres),
* relative entropy KL(ρ‖π) = ∫ ρ log(ρ/π) (0·log 0 = 0; ρ and π normalised),
* free energy F[ρ] = ∫ U ρ + D ∫ ρ log ρ = D·KL(ρ‖π_Gibbs) − D log Z; for the gradient
  Fokker–Planck flow it decreases monotonically in time (the H-theorem).
"""

from __future__ import annotations

import numpy as np

from shld._validation import check_finite_array
from shld.fokker_planck.first_passage import target_mask

#: Entries of a density below −NEGATIVE_TOL·max ρ are refused; above it they are a time stepper's round-off.
NEGATIVE_TOL = 1e-9


def _rho(grid, rho, name="rho"):
    """``rho`` on the grid's shape, refused when it is not finite, clearly negative somewhere, or of
    mass ≤ 0 (every observable here divides by the mass)."""
    arr = check_finite_array(name, rho)
    if arr.shape == (grid.size,):
        arr = arr.reshape(grid.shape)
    if arr.shape != grid.shape:
        raise ValueError(f"`{name}` must have the grid's shape {grid.shape}, got {arr.shape}")
    top = float(np.max(arr)) if arr.size else 0.0
    if not top > 0:
        raise ValueError(f"`{name}` must have positive mass, got max {top!r}")
    low = float(np.min(arr))
    if low < -NEGATIVE_TOL * top:
        bad = np.unravel_index(int(np.argmin(arr)), arr.shape)
        raise ValueError(f"`{name}` must be a density (>= 0): {low:.3g} at cell {tuple(map(int, bad))}, "
                         f"beyond round-off ({NEGATIVE_TOL:g}·max ρ)")
    return arr


def mass(grid, rho) -> float:
    return grid.integrate(_rho(grid, rho))


def mean(grid, rho) -> np.ndarray:
    """∫θρ / ∫ρ, shape (d,)."""
    r = _rho(grid, rho)
    w = (r / np.sum(r)).reshape(-1)
    return w @ grid.flat_points()


def covariance(grid, rho) -> np.ndarray:
    """Covariance matrix (d, d) of the normalised density."""
    r = _rho(grid, rho)
    w = (r / np.sum(r)).reshape(-1)
    x = grid.flat_points() - mean(grid, r)
    return (x * w[:, None]).T @ x


def variance(grid, rho) -> np.ndarray:
    """Per-axis variances (d,)."""
    return np.diag(covariance(grid, rho)).copy()


def probability(grid, rho, region) -> float:
    """∫_R ρ / ∫ρ for a region mask or callable."""
    r = _rho(grid, rho)
    m = target_mask(grid, region)
    return float(np.sum(r[m]) / np.sum(r))


def relative_entropy(grid, rho, reference) -> float:
    """KL(ρ‖π) = ∫ρ log(ρ/π), both normalised on the grid; +inf if ρ > 0 where π = 0."""
    p = _rho(grid, rho)
    q = _rho(grid, reference, "reference")
    p = p / grid.integrate(p)
    q = q / grid.integrate(q)
    pos = p > 0
    if np.any(q[pos] <= 0):
        return float("inf")
    return float(np.sum(p[pos] * np.log(p[pos] / q[pos])) * grid.cell_volume)


def free_energy(op, rho) -> float:
    """F[ρ] = ∫Uρ + D∫ρ log ρ (loss units; U measured from its grid minimum)."""
    if op.potential is None or op.D is None:
        raise ValueError("`op` needs a potential and a constant D for the free energy")
    g = op.grid
    p = _rho(g, rho)
    p = p / g.integrate(p)
    u = (op.potential - op.potential.min()).reshape(g.shape)
    pos = p > 0
    return float((np.sum(u * p) + op.D * np.sum(p[pos] * np.log(p[pos]))) * g.cell_volume)
