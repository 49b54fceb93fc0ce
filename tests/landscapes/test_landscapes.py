"""Landscapes: gradients and Hessians against finite differences, critical points, registry, errors."""

import numpy as np
import pytest

from shld.landscapes import (
    DoubleWell,
    FunctionLandscape,
    MullerBrown,
    Quadratic,
    RandomQuadratic,
    Rosenbrock,
    TiltedDoubleWell,
    available_landscapes,
    make_landscape,
    spectrum,
)

ALL = [DoubleWell(), DoubleWell(dim=3, tilt=0.2, k_perp=2.0), TiltedDoubleWell(), MullerBrown(scale=0.1),
       Rosenbrock(dim=4), Quadratic(eigenvalues=[1.0, 3.0]), RandomQuadratic(dim=6, seed=1)]


def fd_grad(L, x, h=1e-6):
    e = np.eye(L.dim) * h
    return np.stack([(L.value(x + e[i]) - L.value(x - e[i])) / (2 * h) for i in range(L.dim)], axis=-1)


@pytest.mark.parametrize("L", ALL, ids=lambda L: f"{L.name}-{L.dim}")
def test_grad_and_hessian_match_finite_differences(L):
    rng = np.random.default_rng(0)
    lo, hi = L.bounds[:, 0], L.bounds[:, 1]
    x = lo + (hi - lo) * rng.uniform(0.25, 0.75, size=(5, L.dim))
    g = L.grad(x)
    assert g.shape == x.shape
    # central differences: error ~ h² · L''' ≈ 1e-12 · scale, relative 1e-6 is generous
    assert np.allclose(g, fd_grad(L, x), rtol=1e-6, atol=1e-6 * (1 + np.abs(g).max()))
    H = L.hessian(x)
    e = np.eye(L.dim) * 1e-6
    H_fd = np.stack([(L.grad(x + e[i]) - L.grad(x - e[i])) / 2e-6 for i in range(L.dim)], axis=-1)
    assert np.allclose(H, H_fd, rtol=1e-5, atol=1e-5 * (1 + np.abs(H).max()))
    out = np.empty_like(x)
    assert np.allclose(L.grad_into(x, out), g, rtol=1e-14, atol=1e-14)
    assert L.value(x).shape == (5,) and L.value(x[0]).shape == ()


@pytest.mark.parametrize("L", ALL, ids=lambda L: f"{L.name}-{L.dim}")
def test_critical_points_are_stationary_with_the_right_index(L):
    for c in L.critical_points:
        assert np.allclose(L.grad(c.location), 0.0, atol=1e-9)
        n_neg = int(np.sum(c.eigenvalues < 0))
        assert n_neg == (0 if c.kind == "minimum" else 1)
        assert c.value == pytest.approx(float(L.value(c.location)))


def test_double_well_closed_forms():
    h, a = 2.0, 1.5
    L = DoubleWell(barrier=h, a=a)
    kinds = [(c.kind, c.location[0]) for c in L.critical_points]
    assert kinds == [("minimum", pytest.approx(-a)), ("saddle", pytest.approx(0.0)), ("minimum", pytest.approx(a))]
    m, s = L.minima[0], L.saddles[0]
    assert s.value - m.value == pytest.approx(h)
    assert m.hessian[0, 0] == pytest.approx(8 * h / a**2) and s.hessian[0, 0] == pytest.approx(-4 * h / a**2)
    T = TiltedDoubleWell(barrier=1.0)
    left, right = T.minima
    assert right.value < left.value                      # the tilt deepens the right well


def test_muller_brown_known_minima():
    L = MullerBrown()
    vals = sorted(c.value for c in L.minima)
    # published values (Müller & Brown 1979): −146.70, −108.17, −80.77
    assert np.allclose(vals, [-146.70, -108.17, -80.77], atol=0.01)


def test_random_quadratic_has_the_requested_spectrum():
    L = RandomQuadratic(dim=20, lambda_min=0.1, lambda_max=10.0, kind="log", seed=3)
    assert np.allclose(np.linalg.eigvalsh(L.matrix), np.geomspace(0.1, 10.0, 20))
    assert np.allclose(spectrum(4, 1.0, 4.0, "linear"), [1, 2, 3, 4])
    p = spectrum(50, 0.01, 1.0, "power")
    assert p.min() == pytest.approx(0.01) and p.max() == pytest.approx(1.0)


def test_registry_and_errors():
    assert {"double-well", "muller-brown", "rosenbrock", "quadratic", "random-quadratic",
            "tilted-double-well"} <= set(available_landscapes())
    assert make_landscape("double-well", barrier=3.0).barrier == 3.0
    with pytest.raises(ValueError, match="`name` must be one of .*double-well"):
        make_landscape("double_wel")
    with pytest.raises(ValueError, match=r"`theta` must have shape \(\.\.\., 1\)"):
        DoubleWell().grad(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="`barrier` must be > 0, got -1"):
        DoubleWell(barrier=-1)
    with pytest.raises(ValueError, match="`matrix` must be square and symmetric"):
        Quadratic(matrix=[[1.0, 2.0], [0.0, 1.0]])
    with pytest.raises(TypeError, match="`loss_fn` must be callable"):
        FunctionLandscape(3, lambda x: x, dim=1)
    bad = FunctionLandscape(lambda th: np.sum(th, -1), lambda th: th[..., :1], dim=2)
    with pytest.raises(ValueError, match="`grad_fn` must return shape"):
        bad.grad(np.zeros((4, 2)))


def test_tilted_double_well_takes_a_non_negative_tilt_and_its_right_well_is_deeper():
    """tilt=0.3 was silently stored as −0.3, and tilt=−0.3 gave the same landscape as +0.3."""
    from shld.landscapes import TiltedDoubleWell

    t = TiltedDoubleWell(tilt=0.3)
    u = t.value(np.array([[-1.0], [1.0]]))
    np.testing.assert_allclose(u, [0.3, -0.3], rtol=1e-15)                 # U(±1) = ∓tilt: right deeper
    with pytest.raises(ValueError, match=r"`tilt` of a TiltedDoubleWell .* must be >= 0, got -0.3"):
        TiltedDoubleWell(tilt=-0.3)


def test_quadratic_offset_must_be_finite_and_flat_directions_are_not_saddles():
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="`offset` must be finite"):
            Quadratic(eigenvalues=[1.0, 2.0], offset=bad)
    kinds = {tuple(lam): Quadratic(eigenvalues=lam).critical_points[0].kind
             for lam in ([1.0, 2.0], [-1.0, 2.0], [-1.0, -2.0], [0.0, 2.0], [0.0, -2.0, 1.0])}
    assert kinds == {(1.0, 2.0): "minimum", (-1.0, 2.0): "saddle", (-1.0, -2.0): "maximum",
                     (0.0, 2.0): "degenerate", (0.0, -2.0, 1.0): "saddle"}
    assert Quadratic(eigenvalues=[0.0, 2.0]).saddles == []
