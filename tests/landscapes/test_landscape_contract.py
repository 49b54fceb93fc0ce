"""The Landscape shape contract is enforced at the first call: value -> theta.shape[:-1],
grad -> theta.shape, hessian -> theta.shape + (d,). A wrong shape used to be broadcast silently
(``out[...] = g`` inside ``grad_into``), so the engine ran to the end with wrong dynamics."""

import numpy as np
import pytest

from shld.dynamics import simulate
from shld.landscapes import DoubleWell, FunctionLandscape, Quadratic
from shld.landscapes.base import Landscape


class Bowl(Landscape):
    """½|θ|² in 2-D with a switchable bug in one method's output shape."""

    name = "bowl"
    dim = 2

    def __init__(self, bug=None):
        self.bug = bug
        self.grad_calls = 0

    def _value(self, theta):
        v = 0.5 * np.sum(theta ** 2, axis=-1)
        return v[..., None] if self.bug == "value (N, 1)" else v

    def _grad(self, theta):
        self.grad_calls += 1
        if self.bug == "grad (N, 1)":
            return theta[..., :1]            # one column instead of d: broadcast over both axes
        if self.bug == "grad (d,)":
            return theta[0]                  # the first walker's gradient for every walker
        return theta.copy()

    def _hessian(self, theta):
        h = np.broadcast_to(np.eye(2), theta.shape + (2,)).copy()
        return h[..., 0] if self.bug == "hessian (N, d)" else h


@pytest.mark.parametrize("bug,returned", [("grad (N, 1)", r"\(4, 1\)"), ("grad (d,)", r"\(2,\)")])
def test_simulate_refuses_a_gradient_of_the_wrong_shape(bug, returned):
    theta0 = np.array([[1.0, 2.0], [3.0, 4.0], [-1.0, 0.5], [0.0, -2.0]])
    with pytest.raises(ValueError, match=rf"`Bowl._grad` returned shape {returned} for theta of shape "
                                         r"\(4, 2\); expected \(4, 2\)"):
        simulate(Bowl(bug), theta0, D=0.0, dt=0.1, n_steps=3, seed=0)
    # the same subclass without the bug is gradient descent exactly: θ·(1 − dt)^3
    good = simulate(Bowl(), theta0, D=0.0, dt=0.1, n_steps=3, seed=0)
    assert np.allclose(good.final_theta, theta0 * 0.9 ** 3, rtol=0, atol=1e-15)


def test_public_methods_refuse_wrong_shapes_naming_the_method():
    theta = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"`Bowl._value` returned shape \(5, 1\) for theta of shape \(5, 2\); "
                                         r"expected \(5,\)"):
        Bowl("value (N, 1)").value(theta)
    with pytest.raises(ValueError, match=r"`Bowl._value` returned shape \(5, 1\)"):
        Bowl("value (N, 1)").value_and_grad(theta)
    with pytest.raises(ValueError, match=r"`Bowl._grad` returned shape \(5, 1\) .* expected \(5, 2\)"):
        Bowl("grad (N, 1)").grad(theta)
    with pytest.raises(ValueError, match=r"`Bowl._hessian` returned shape \(5, 2\) .* expected \(5, 2, 2\)"):
        Bowl("hessian (N, d)").hessian(theta)
    with pytest.raises(ValueError, match=r"`Bowl._grad` returned shape \(2,\) .* expected \(5, 2\)"):
        Bowl("grad (d,)").grad_into(theta, np.empty((5, 2)))


def test_the_check_runs_once_per_input_shape_and_costs_no_gradient_after():
    L = Bowl()
    theta, out = np.ones((3, 2)), np.empty((3, 2))
    for _ in range(4):
        L.grad_into(theta, out)
    assert L.grad_calls == 4                  # one gradient per call, the check included
    assert ("_grad_into", (3, 2)) in L._shapes_checked
    # built-ins with their own in-place _grad_into: the first call per shape checks _grad once more
    q = Quadratic(eigenvalues=[1.0, 2.0])
    q.grad_into(np.ones((7, 2)), np.empty((7, 2)))
    assert {("_grad", (7, 2)), ("_grad_into", (7, 2))} <= q._shapes_checked
    with pytest.raises(ValueError, match=r"`out` must have the shape of theta \(7, 2\), got \(7, 1\)"):
        DoubleWell(dim=2).grad_into(np.ones((7, 2)), np.empty((7, 1)))


def test_function_landscape_hessian_fn_of_the_wrong_shape_is_refused():
    L = FunctionLandscape(lambda th: 0.5 * np.sum(th ** 2, -1), lambda th: th, dim=2,
                          hessian_fn=lambda th: np.eye(2))          # ignores the batch axis
    assert np.array_equal(L.hessian(np.zeros(2)), np.eye(2))         # a single point is fine
    with pytest.raises(ValueError, match=r"`hessian_fn` must return shape \(3, 2, 2\), got \(2, 2\)"):
        L.hessian(np.zeros((3, 2)))


def test_complex_theta_is_refused():
    with pytest.raises(TypeError, match=r"`theta` must be real for landscape 'double-well', got dtype complex128"):
        DoubleWell().value(np.array([1.0 + 1.0j]))
