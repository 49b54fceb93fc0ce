"""High barriers: first passage, escape rate and stationary state stay accurate where e^{ΔE/D}
exceeds the float range of a direct LU (ΔE/D up to 100 in 1-D, 40 in 2-D); what cannot be
resolved (the conservative spectrum's e^{−ΔE/D}-small gap) is refused, never returned."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from shld.fokker_planck import (
    Grid,
    UnresolvedRateError,
    escape_rate,
    fokker_planck_operator,
    mean_first_passage_time,
    relaxation_rates,
    stationary_state,
)
from shld.landscapes import make_landscape
from shld.theory import mfpt_1d

WELL = make_landscape("double-well", barrier=1.0)      # U = (x² − 1)², ΔE = 1, minima ±1


def _double_well_op(D, n=3000, bounds=(-2.0, 1.5)):
    # x = 1 a cell centre, so the target {x ≥ 1} starts exactly at the quadrature's absorbing point
    grid = Grid.centred_on([1.0], [bounds], (n,))
    return fokker_planck_operator(grid, WELL, D=D, peclet_warn=None)


def _right_well(p):
    return p[..., 0] >= 1.0 - 1e-9


@pytest.mark.parametrize("D", [0.03, 0.02, 0.01])   # ΔE/D = 33, 50, 100
def test_mfpt_matches_quadrature_at_high_barrier(D):
    op = _double_well_op(D)
    fp = mean_first_passage_time(op, _right_well)
    exact = mfpt_1d(WELL.u, D, -1.0, 1.0)               # 3.4e14, 5.8e21, 3.0e43
    # the discrete chain is solved to ~1e-12; what is left is the O(h²) discretisation error,
    # measured 3e-5 (D = 0.03) to 1e-4 (D = 0.01) at h = 1.2e-3; the bound is 1e-3
    assert fp.at(-1.0) == pytest.approx(exact, rel=1e-3)
    assert np.all(fp.tau >= 0) and np.all(np.isfinite(fp.tau))
    assert np.all(fp.tau[~fp.target] > 0)


def test_a_direct_lu_fails_the_same_check():
    # power of the test above: the sparse LU of Aᵀ that the solver used before is off by more
    # than the tolerance at ΔE/D = 50 (it returned −5.3e13 instead of 5.8e21 on this problem)
    op = _double_well_op(0.02)
    keep = ~_right_well(op.grid.points()).reshape(-1)
    Q = op.matrix.T.tocsr()[keep][:, keep].tocsc()
    tau_lu = spla.splu(Q).solve(-np.ones(int(keep.sum())))
    x = op.grid.axes[0][keep]
    got = float(np.interp(-1.0, x, tau_lu))
    assert not got == pytest.approx(mfpt_1d(WELL.u, 0.02, -1.0, 1.0), rel=1e-3)


def test_2d_separable_mfpt_equals_the_1d_answer_at_barrier_40():
    # U(x, y) = (x² − 1)² + y²: the x-jumps of the 2-D chain have the 1-D rates whatever y is, so the
    # 2-D τ(x, y) is the 1-D chain's τ(x) for every y (exactly, up to rounding), and both agree
    # with the quadrature to the discretisation error (≤ 1e-3)
    D = 1.0 / 40.0
    grid2 = Grid.centred_on([1.0, 0.0], [(-1.8, 1.3), (-0.8, 0.8)], (1200, 9))
    op2 = fokker_planck_operator(grid2, potential=lambda p: (p[..., 0] ** 2 - 1) ** 2 + p[..., 1] ** 2,
                                 D=D, peclet_warn=None)
    tau2 = mean_first_passage_time(op2, _right_well).tau
    grid1 = Grid(grid2.bounds[:1], grid2.shape[:1])
    tau1 = mean_first_passage_time(fokker_planck_operator(grid1, WELL, D=D, peclet_warn=None), _right_well)
    np.testing.assert_allclose(tau2, np.repeat(tau1.tau[:, None], grid2.shape[1], axis=1), rtol=1e-10)
    assert tau1.at(-1.0) == pytest.approx(mfpt_1d(WELL.u, D, -1.0, 1.0), rel=1e-3)


def test_escape_rate_at_high_barrier_is_one_over_the_mfpt():
    # behind a barrier of 100·D, μ₀ = 1/τ from the quasi-stationary state, which the well bottom
    # reaches in a relaxation time ~1/U''(−1) = 1/8 ≪ τ = 3e43: μ₀·τ(−1) = 1 to ~1e-12 of the chain
    op = _double_well_op(0.01, n=1500)
    spec = escape_rate(op, _right_well, return_modes=True)
    tau = mean_first_passage_time(op, _right_well).at(-1.0)
    assert spec.rates[0] > 0
    assert spec.rates[0] * tau == pytest.approx(1.0, rel=1e-6)
    # the quasi-stationary density is the left well's Gibbs law: one sign, peaked at x = −1
    mode = spec.modes[0]
    assert np.all(mode >= 0) and abs(op.grid.axes[0][np.argmax(mode)] + 1.0) < 2 * op.grid.spacing[0]


def test_escape_rate_at_low_barrier_uses_the_eigensolver_and_agrees():
    # ΔE/D = 5: the eigensolver's μ₀ is resolved; the subtraction-free path is not needed and the
    # two slowest rates are both returned, positive and ordered
    op = _double_well_op(0.2, n=600)
    spec = escape_rate(op, _right_well, k=2)
    assert 0 < spec.rates[0] < spec.rates[1]
    tau = mean_first_passage_time(op, _right_well).at(-1.0)
    assert spec.rates[0] * tau == pytest.approx(1.0, rel=0.05)   # μ₀τ → 1 as e^{−ΔE/D} → 0


def test_relaxation_gap_below_resolution_is_refused_with_a_remedy():
    op = _double_well_op(0.02, n=800)                   # gap ≈ 2/τ ≈ 3e-22, far below ε·‖A‖
    with pytest.raises(UnresolvedRateError, match="mean_first_passage_time"):
        relaxation_rates(op, k=2)
    low = relaxation_rates(_double_well_op(0.25, n=400), k=3)
    assert low.rates[0] == 0.0 and np.all(low.rates[1:] > 0)


def test_stationary_state_of_a_general_drift_splits_mass_evenly_at_barrier_100():
    # the double-well drift given as a general (non-gradient-path) drift: solved by subtraction-free
    # elimination. The symmetric wells hold 1/2 each; a direct LU put all the mass in one well.
    D = 0.01
    grid = Grid([(-1.6, 1.6)], (1601,))                  # symmetric about 0
    op = fokker_planck_operator(grid, drift=lambda p: -4 * p * (p ** 2 - 1), D=D, peclet_warn=None)
    rho = stationary_state(op)
    x = grid.axes[0]
    left = grid.integrate(np.where(x < 0, rho, 0.0))
    assert left == pytest.approx(0.5, abs=1e-9)
    gibbs = np.exp(-WELL.u(x) / D)
    gibbs /= grid.integrate(gibbs)
    assert grid.integrate(np.abs(rho - gibbs)) < 5e-3    # O(h²) flux-discretisation error
    assert np.all(rho >= 0)


def test_mfpt_beyond_the_float_range_is_an_error_not_a_number():
    op = _double_well_op(1.0 / 800.0, n=400)            # τ ~ e^{800}: overflows
    with pytest.raises(FloatingPointError, match="overflows"):
        mean_first_passage_time(op, _right_well)
