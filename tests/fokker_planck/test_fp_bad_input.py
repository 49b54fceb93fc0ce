"""Bad input gets clear errors naming the argument (and warnings for coarse grids)."""

import numpy as np
import pytest

from shld.fokker_planck import (
    CoarseGridWarning,
    Grid,
    escape_rate,
    evolve,
    fokker_planck_operator,
    mean_first_passage_time,
    stationary_state,
)
from shld.landscapes import make_landscape


@pytest.fixture
def op():
    L = make_landscape("double-well", barrier=1.0)
    return fokker_planck_operator(Grid.from_landscape(L, 100), L, D=0.3)


def test_coarse_grid_warning_names_grid_and_spacing():
    L = make_landscape("double-well", barrier=1.0)
    with pytest.warns(CoarseGridWarning, match=r"Grid\(shape=\(20,\).*Péclet.*use spacing h <= \[0\.\d+\]"):
        fokker_planck_operator(Grid.from_landscape(L, 20), L, D=0.05)


@pytest.mark.parametrize("bad,match", [
    (-np.ones(100), "`rho0` must be non-negative"),
    (np.full(100, np.nan), "`rho0` must be finite"),
    (np.zeros(100), "`rho0` must have positive mass"),
    (np.ones(99), r"`rho0` must have the grid's shape \(100,\)"),
    (np.ones((10, 10)), r"`rho0` must have the grid's shape"),
])
def test_bad_initial_density(op, bad, match):
    with pytest.raises(ValueError, match=match):
        evolve(op, bad, 1.0, 0.1)


@pytest.mark.parametrize("D", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_D(D):
    L = make_landscape("double-well")
    with pytest.raises((ValueError, TypeError), match="`D`"):
        fokker_planck_operator(Grid.from_landscape(L, 50), L, D=D)


def test_bad_position_dependent_D():
    L = make_landscape("double-well")
    with pytest.raises(ValueError, match=r"`D` must be finite and > 0 everywhere.*θ = \["):
        fokker_planck_operator(Grid.from_landscape(L, 50), L, D=lambda x: x[..., 0])


def test_unknown_boundary_and_bad_specs():
    L = make_landscape("double-well", dim=2)
    g = Grid.from_landscape(L, 20)
    with pytest.raises(ValueError, match=r"`boundary` must be one of \['reflecting', 'periodic', 'absorbing'\], "
                                         r"got 'sticky'"):
        fokker_planck_operator(g, L, D=1.0, boundary="sticky")
    with pytest.raises(ValueError, match=r"`boundary` must have one entry per axis \(d=2\)"):
        fokker_planck_operator(g, L, D=1.0, boundary=["reflecting"])
    with pytest.raises(ValueError, match="'periodic' must apply to both sides"):
        fokker_planck_operator(g, L, D=1.0, boundary=[("periodic", "reflecting"), "reflecting"])


def test_bad_grid_and_sources():
    with pytest.raises(ValueError, match="`bounds` must have lo < hi"):
        Grid([[1.0, 0.0]], 10)
    with pytest.raises(ValueError, match="`shape` must be >= 3"):
        Grid([[0.0, 1.0]], 2)
    with pytest.raises(ValueError, match=r"`bounds` must have shape \(d, 2\) with 1 <= d <= 3"):
        Grid(np.tile([0.0, 1.0], (4, 1)), 5)
    L = make_landscape("double-well", dim=2)
    with pytest.raises(ValueError, match="`landscape` has dim=2 but the grid has d=1"):
        fokker_planck_operator(Grid([[0, 1]], 10), L, D=1.0)
    with pytest.raises(ValueError, match="exactly one of `landscape`, `potential` or `drift`"):
        fokker_planck_operator(Grid([[0, 1]], 10), D=1.0)
    with pytest.raises(TypeError, match="`grid` must be a shld.fokker_planck.Grid"):
        fokker_planck_operator(np.zeros(3), D=1.0, potential=lambda x: x[..., 0])


def test_bad_solver_arguments(op):
    rho = np.ones(100)
    with pytest.raises(ValueError, match=r"`method` must be one of \['tr-bdf2'"):
        evolve(op, rho, 1.0, 0.1, method="rk4")
    with pytest.raises(ValueError, match="`dt` must be > 0"):
        evolve(op, rho, 1.0, 0.0)
    with pytest.raises(ValueError, match="`t_final` must be > 0"):
        evolve(op, rho, -1.0, 0.1)
    with pytest.raises(ValueError, match="`target` covers the whole grid"):
        mean_first_passage_time(op, np.ones(100, dtype=bool))
    with pytest.raises(ValueError, match="`target` is empty"):
        escape_rate(op, None)
    with pytest.raises(ValueError, match=r"`target` mask must have the grid's shape \(100,\)"):
        mean_first_passage_time(op, np.ones(7, dtype=bool))
    L = make_landscape("double-well")
    absorbing = fokker_planck_operator(Grid.from_landscape(L, 50), L, D=0.5, boundary="absorbing")
    with pytest.raises(ValueError, match="`op` has an absorbing boundary"):
        stationary_state(absorbing)


def test_first_passage_is_not_extrapolated_outside_the_grid(op):
    """τ is solved on the box; a point outside it was extrapolated linearly (τ(−10) = 182.75 on [−2.5, 2.5])."""
    fp = mean_first_passage_time(op, lambda x: x[..., 0] > 1.0)
    lo, hi = op.grid.bounds[0]
    assert np.isfinite(fp.at(lo)) and fp.at(0.99) > 0                 # the box itself, edges included
    for bad in (lo - 1e-9, hi + 0.5, -10.0):
        with pytest.raises(ValueError, match=r"`x0`=\[.*\] lies outside the grid's box \[.*\]"):
            fp.at(bad)
    with pytest.raises(ValueError, match="outside"):
        fp.at([0.0, -10.0])                                           # one bad point of several


@pytest.mark.parametrize("cov, match", [
    ([[-0.1]], "`cov` must be positive definite"),
    ([[0.0]], "`cov` must be positive definite"),
    ([[1.0, 0.5], [0.4, 1.0]], "`cov` must be symmetric"),
    ([[1.0, 2.0], [2.0, 1.0]], r"positive definite \(eigenvalues \[-1\.0"),
])
def test_a_gaussian_needs_a_positive_definite_covariance(cov, match):
    """A negative variance gave exp(+x²/0.2): a density peaked at the walls."""
    g = Grid([(-2.0, 2.0)] * len(cov), (40,) * len(cov))
    with pytest.raises(ValueError, match=match):
        g.gaussian(np.zeros(len(cov)), cov)
    from shld.fokker_planck import covariance, mean
    g2 = Grid([(-5.0, 5.0)] * 2, (100, 100))                            # the box is > 8σ from the mean
    ok = g2.gaussian([0.5, 0.0], [[0.3, 0.1], [0.1, 0.2]])
    np.testing.assert_allclose(mean(g2, ok), [0.5, 0.0], atol=1e-9)
    # midpoint rule on h = 0.1: the covariance picks up h²/12 ≈ 8e-4 on the diagonal
    np.testing.assert_allclose(covariance(g2, ok), [[0.3, 0.1], [0.1, 0.2]], atol=1e-3)
    assert abs(covariance(g2, ok)[0, 1] - 0.1) < 1e-6                   # no h² term off the diagonal


def test_record_counts_and_the_gap_are_checked(op):
    from shld.fokker_planck import relaxation_rates, survival

    rho = np.ones(100)
    for bad, exc in [(0, ValueError), (-5, ValueError), (1, ValueError), (2.7, TypeError)]:
        with pytest.raises(exc, match="`n_records`"):
            evolve(op, rho, 1.0, 0.1, n_records=bad)
        with pytest.raises(exc, match="`n_records`"):
            survival(op, rho, lambda x: x[..., 0] > 1.0, 1.0, 0.1, n_records=bad)
    with pytest.raises(ValueError, match=r"the gap λ₁ needs the two slowest rates.*k=1.*k >= 2"):
        _ = relaxation_rates(op, k=1).gap


@pytest.mark.parametrize("bad, match", [
    (np.full(100, np.nan), "`rho` must be finite"),
    (np.r_[np.ones(99), -0.5], r"`rho` must be a density \(>= 0\): -0.5 at cell \(99,\)"),
    (np.zeros(100), "`rho` must have positive mass"),
])
def test_observables_refuse_what_is_not_a_density(op, bad, match):
    from shld.fokker_planck import covariance, mean, probability, relative_entropy

    for f in (lambda r: mean(op.grid, r), lambda r: covariance(op.grid, r),
              lambda r: probability(op.grid, r, lambda x: x[..., 0] > 0)):
        with pytest.raises(ValueError, match=match):
            f(bad)
    with pytest.raises(ValueError, match=match.replace("`rho`", "`reference`")):
        relative_entropy(op.grid, np.ones(100), bad)
    right = lambda x: x[..., 0] > 0  # noqa: E731
    tiny = np.r_[np.ones(99), -1e-14]                                   # a stepper's round-off passes
    assert probability(op.grid, tiny, right) == pytest.approx(probability(op.grid, np.r_[np.ones(99), 0.0], right),
                                                              abs=1e-12)


def test_a_non_periodic_potential_on_a_periodic_axis_is_refused():
    """cos x − 0.5x on a ring built a cliff of 2π·0.5 at the seam (an equilibrium with max/min 2e5) and only
    warned about the grid; the tilted ring is a drift. A periodic potential still builds."""
    g = Grid([[0.0, 2 * np.pi]], 200)
    with pytest.raises(ValueError, match=r"`potential` is not periodic along axis 0: U\(hi\) − U\(lo\) = 3.14.*drift="):
        fokker_planck_operator(g, potential=lambda x: np.cos(x[..., 0]) - 0.5 * x[..., 0], D=0.3,
                               boundary="periodic")
    fokker_planck_operator(g, potential=lambda x: np.cos(x[..., 0]), D=0.3, boundary="periodic")
    ring = fokker_planck_operator(g, drift=lambda x: np.sin(x) + 0.5, D=0.3, boundary="periodic")
    assert stationary_state(ring).max() / stationary_state(ring).min() < 1e3


def test_survival_method_and_escape_rate_k_are_checked():
    g = Grid([[0.0, 2.0]], 40)
    op = fokker_planck_operator(g, potential=np.zeros(40), D=0.7, boundary="absorbing")
    from shld.fokker_planck import survival

    with pytest.raises(ValueError, match=r"`method` must be one of \['tr-bdf2'"):
        survival(op, g.gaussian([1.0], [[0.01]]), None, 1.0, 0.01, method="bogus")   # ran TR-BDF2 silently
    for k, exc in [(0, ValueError), (-1, ValueError), (39, ValueError), (1.5, TypeError)]:
        with pytest.raises(exc, match="`k`"):
            escape_rate(op, k=k)                 # 0: IndexError; −1: 39 rates; 100: all 40
    assert escape_rate(op, k=2).rates.shape == (2,)


def test_evolve_runs_to_t_final_even_when_the_record_times_stop_before():
    """record_times [0.5, 1] with t_final 5 stopped at t = 1 without a word."""
    L = make_landscape("quadratic", eigenvalues=[1.0], center=[0.0])
    g = Grid([[-4.0, 4.0]], 80)
    op = fokker_planck_operator(g, L, D=0.5)
    ev = evolve(op, g.gaussian([1.0], [[0.1]]), 5.0, 0.1, record_times=[0.5, 1.0])
    np.testing.assert_allclose(ev.times, [0.0, 0.5, 1.0, 5.0])
    from shld.fokker_planck import mean
    assert abs(mean(g, ev.densities[-1])[0] - np.exp(-5.0)) < 1e-3      # OU mean e^{−t}, midpoint O(h²)
