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
