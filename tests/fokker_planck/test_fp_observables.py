"""Observables on densities against closed forms."""

import numpy as np

from shld.fokker_planck import (
    Grid,
    covariance,
    fokker_planck_operator,
    mass,
    mean,
    probability,
    relative_entropy,
)
from shld.landscapes import make_landscape


def test_gaussian_moments_and_region_probability():
    g = Grid([[-6, 6], [-6, 6]], (240, 240))
    cov = np.array([[0.5, 0.2], [0.2, 0.3]])
    rho = g.gaussian([0.4, -0.3], cov)
    assert abs(mass(g, rho) - 1.0) < 1e-14
    np.testing.assert_allclose(mean(g, rho), [0.4, -0.3], atol=1e-12)  # spectral accuracy (smooth tails)
    np.testing.assert_allclose(covariance(g, rho), cov, atol=1e-10)
    # P(x > 0.4) = 1/2 by symmetry about the mean; the cell row at x = 0.4 is split in two
    # (cell centres at ±0.025 from 0.4 → exactly half the cells on each side)
    p = probability(g, rho, lambda x: x[..., 0] > 0.4)
    assert abs(p - 0.5) < 1e-12


def test_relative_entropy_closed_form_between_gaussians():
    g = Grid([[-8, 8]], 2000)
    p, q = g.gaussian([0.5], [[0.5]]), g.gaussian([0.0], [[1.0]])
    # KL(N(m1,s1)‖N(0,s2)) = ½(s1/s2 + m1²/s2 − 1 + ln(s2/s1))
    exact = 0.5 * (0.5 + 0.25 - 1 + np.log(2.0))
    assert abs(relative_entropy(g, p, q) - exact) < 1e-10
    assert relative_entropy(g, q, q) == 0.0
    L = make_landscape("double-well")
    op = fokker_planck_operator(Grid.from_landscape(L, 100), L, D=0.5)
    assert abs(relative_entropy(op.grid, op.gibbs(), op.gibbs())) < 1e-15
