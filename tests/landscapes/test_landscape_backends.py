"""Landscapes declare their engine backends (``backends()``) and hand the engine kernels on that
backend's arrays (``kernels(backend)``); the torch kernels equal the numpy methods."""

import numpy as np
import pytest

from shld.dynamics.backends import make_backend
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
)
from shld.theory import gibbs_log_partition

torch = pytest.importorskip("torch")

BUILT_IN = [DoubleWell(), DoubleWell(dim=3, tilt=0.3, k_perp=2.0), TiltedDoubleWell(), Quadratic(eigenvalues=[1, 2, 3]),
            Quadratic(eigenvalues=[1.0, 4.0], center=[0.5, -1.0], offset=2.0), RandomQuadratic(dim=5),
            MullerBrown(scale=0.05), Rosenbrock(dim=3)]


def test_every_registered_landscape_supports_both_backends():
    for name in available_landscapes():
        assert set(make_landscape(name).backends()) == {"numpy", "torch"}, name


@pytest.mark.parametrize("L", BUILT_IN, ids=lambda L: repr(L))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_kernels_equal_the_numpy_methods(L, dtype):
    bk = make_backend("torch", dtype)
    k = L.kernels(bk)
    th = 0.7 * np.random.default_rng(0).standard_normal((7, L.dim))
    t = torch.tensor(th, dtype=getattr(torch, dtype))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=2e-5)
    g = k.grad_into(t, torch.empty_like(t))
    np.testing.assert_allclose(g.numpy(), L.grad(th), **tol)
    np.testing.assert_allclose(k.value(t).numpy(), L.value(th), **tol)
    if k.descend_ is not None:                        # θ − dt∇L(θ) (+ noise), fused
        z = np.random.default_rng(1).standard_normal(th.shape)
        for noise in (None, torch.tensor(z, dtype=t.dtype)):
            moved = k.descend_(t.clone(), 0.01, noise)
            want = th - 0.01 * L.grad(th) + (0.0 if noise is None else z)
            np.testing.assert_allclose(moved.numpy(), want, **tol)
    # the numpy kernels are the landscape's own methods
    nk = L.kernels(make_backend("numpy"))
    out = np.empty_like(th)
    assert np.array_equal(nk.grad_into(th, out), L.grad(th)) and np.array_equal(nk.value(th), L.value(th))


def test_torch_function_landscape_with_and_without_grad_fn():
    auto = FunctionLandscape(lambda th: (th ** 4).sum(-1) / 4, None, dim=2, backend="torch")
    given = FunctionLandscape(lambda th: (th ** 4).sum(-1) / 4, lambda th: th ** 3, dim=2, backend="torch")
    th = np.random.default_rng(2).standard_normal((5, 2))
    for L in (auto, given):
        assert L.backends() == ("numpy", "torch")
        np.testing.assert_allclose(L.grad(th), th ** 3, rtol=1e-14)          # numpy API through torch
        np.testing.assert_allclose(L.value(th), (th ** 4).sum(-1) / 4, rtol=1e-14)
        k = L.kernels(make_backend("torch"))
        t = torch.tensor(th)
        np.testing.assert_allclose(k.grad_into(t, torch.empty_like(t)).numpy(), th ** 3, rtol=1e-14)
    plain = FunctionLandscape(lambda th: 0.5 * np.sum(th ** 2, -1), lambda th: th, dim=2)
    assert plain.backends() == ("numpy",)
    with pytest.raises(ValueError, match=r"has no kernels for backend='torch'; it supports \['numpy'\]"):
        plain.kernels(make_backend("torch"))
    with pytest.raises(TypeError, match="`grad_fn` must be callable"):
        FunctionLandscape(lambda th: th, None, dim=2)
    with pytest.raises(ValueError, match="`backend` must be one of"):
        FunctionLandscape(lambda th: th, lambda th: th, dim=2, backend="jax")
    bad = FunctionLandscape(lambda th: th, lambda th: th, dim=2, backend="torch")   # value of shape (N, d)
    with pytest.raises(ValueError, match="`loss_fn` must return a scalar per θ"):
        bad.kernels(make_backend("torch")).value(torch.zeros(3, 2))


def test_gibbs_log_partition_asks_the_landscape():
    import math

    Q = Quadratic(eigenvalues=[1.0, 4.0], offset=0.5)
    want = -0.5 / 0.3 + math.log(2 * math.pi * 0.3) - 0.5 * math.log(4.0)
    assert gibbs_log_partition(Q, 0.3) == pytest.approx(want, rel=1e-14)
    assert Q.gibbs_log_partition(0.3) == gibbs_log_partition(Q, 0.3)
    L = DoubleWell(dim=3, k_perp=2.0)
    assert gibbs_log_partition(L, 0.4) == L.gibbs_log_partition(0.4)
    assert MullerBrown().gibbs_log_partition(1.0) is None                 # no reduction: quadrature instead
    with pytest.raises(ValueError, match="eigenvalues must be > 0"):
        gibbs_log_partition(Quadratic(eigenvalues=[1.0, -1.0]), 0.3)
