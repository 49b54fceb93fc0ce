"""The 2-D Müller–Brown surface (Müller & Brown, Theor. Chim. Acta 53, 75, 1979).

V(x, y) = scale · Σ_k A_k exp(a_k (x − x_k)² + b_k (x − x_k)(y − y_k) + c_k (y − y_k)²)

with the standard constants below. ``scale`` rescales energies (the raw surface has
barriers of tens of units; ``scale=0.05`` gives O(1) barriers suitable for D ~ 0.1–1).
There is no closed form for its stationary points: the three minima and two saddles
are found by Newton refinement from the published approximate locations.
"""

from __future__ import annotations

import numpy as np

from shld._validation import check_positive
from shld.landscapes.base import ArrayKernels, Landscape
from shld.landscapes.registry import register_landscape

_A = np.array([-200.0, -100.0, -170.0, 15.0])
_a = np.array([-1.0, -1.0, -6.5, 0.7])
_b = np.array([0.0, 0.0, 11.0, 0.6])
_c = np.array([-10.0, -10.0, -6.5, 0.7])
_x0 = np.array([1.0, 0.0, -0.5, -1.0])
_y0 = np.array([0.0, 0.5, 1.5, 1.0])

_GUESSES = [
    ("minimum", (-0.558, 1.442), "A"),
    ("minimum", (0.623, 0.028), "B"),
    ("minimum", (-0.050, 0.467), "C"),
    ("saddle", (-0.822, 0.624), "A-C"),
    ("saddle", (0.212, 0.293), "C-B"),
]


@register_landscape("muller-brown")
class MullerBrown(Landscape):
    """The Müller–Brown potential times ``scale``."""

    def __init__(self, scale: float = 1.0):
        self.scale = check_positive("scale", scale)
        self.dim = 2
        self._points = None

    def _terms(self, theta):
        dx = theta[..., 0, None] - _x0
        dy = theta[..., 1, None] - _y0
        e = self.scale * _A * np.exp(_a * dx * dx + _b * dx * dy + _c * dy * dy)
        return dx, dy, e

    def _value(self, theta):
        return np.sum(self._terms(theta)[2], axis=-1)

    def _grad(self, theta):
        dx, dy, e = self._terms(theta)
        gx = np.sum(e * (2 * _a * dx + _b * dy), axis=-1)
        gy = np.sum(e * (_b * dx + 2 * _c * dy), axis=-1)
        return np.stack([gx, gy], axis=-1)

    def _hessian(self, theta):
        dx, dy, e = self._terms(theta)
        px = 2 * _a * dx + _b * dy
        py = _b * dx + 2 * _c * dy
        hxx = np.sum(e * (px * px + 2 * _a), axis=-1)
        hxy = np.sum(e * (px * py + _b), axis=-1)
        hyy = np.sum(e * (py * py + 2 * _c), axis=-1)
        return np.stack([np.stack([hxx, hxy], -1), np.stack([hxy, hyy], -1)], -2)

    # -- engine backends -------------------------------------------------------------
    def backends(self):
        return ("numpy", "torch")

    def kernels(self, backend):
        if backend.name != "torch":
            return super().kernels(backend)
        import torch

        kw = dict(dtype=backend.dtype, device=backend.device)
        A, a, b, c, x0, y0 = (torch.as_tensor(v, **kw) for v in (self.scale * _A, _a, _b, _c, _x0, _y0))

        def terms(theta):
            dx = theta[:, 0, None] - x0
            dy = theta[:, 1, None] - y0
            return dx, dy, A * torch.exp(a * dx * dx + b * dx * dy + c * dy * dy)

        def grad_into(theta, out):
            dx, dy, e = terms(theta)
            torch.sum(e * (2 * a * dx + b * dy), dim=1, out=out[:, 0])
            torch.sum(e * (b * dx + 2 * c * dy), dim=1, out=out[:, 1])
            return out

        def value(theta):
            return terms(theta)[2].sum(1)

        return ArrayKernels(grad_into, value)

    @property
    def critical_points(self):
        if self._points is None:
            pts = []
            for kind, guess, label in _GUESSES:
                x = np.array(guess, dtype=float)
                for _ in range(50):
                    step = np.linalg.solve(self._hessian(x), self._grad(x))
                    x = x - step
                    if np.max(np.abs(step)) < 1e-14:
                        break
                pts.append(self._critical(kind, x, label))
            self._points = pts
        return self._points

    @property
    def bounds(self):
        return np.array([[-1.5, 1.2], [-0.5, 2.0]])


@register_landscape("rosenbrock")
class Rosenbrock(Landscape):
    """L(θ) = Σ_{i<d−1} [ (a − θ_i)² + b (θ_{i+1} − θ_i²)² ]; one minimum at (a, a², …)
    (at (1, …, 1) for a = 1), with L = 0."""

    def __init__(self, dim: int = 2, a: float = 1.0, b: float = 100.0):
        from shld._validation import check_int, check_real

        self.dim = check_int("dim", dim, minimum=2)
        self.a = check_real("a", a)
        self.b = check_positive("b", b)

    def _value(self, theta):
        x, y = theta[..., :-1], theta[..., 1:]
        return np.sum((self.a - x) ** 2 + self.b * (y - x * x) ** 2, axis=-1)

    def _grad(self, theta):
        x, y = theta[..., :-1], theta[..., 1:]
        r = y - x * x
        g = np.zeros_like(theta)
        g[..., :-1] += -2.0 * (self.a - x) - 4.0 * self.b * x * r
        g[..., 1:] += 2.0 * self.b * r
        return g

    def backends(self):
        return ("numpy", "torch")

    def kernels(self, backend):
        if backend.name != "torch":
            return super().kernels(backend)
        import torch

        a, b = self.a, self.b

        def grad_into(theta, out):
            x, y = theta[:, :-1], theta[:, 1:]
            r = y - x * x
            out.zero_()
            out[:, :-1] += -2.0 * (a - x) - 4.0 * b * x * r
            out[:, 1:] += 2.0 * b * r
            return out

        def value(theta):
            x, y = theta[:, :-1], theta[:, 1:]
            return torch.sum((a - x) ** 2 + b * (y - x * x) ** 2, dim=1)

        return ArrayKernels(grad_into, value)

    def _hessian(self, theta):
        d = self.dim
        x, y = theta[..., :-1], theta[..., 1:]
        h = np.zeros(theta.shape + (d,), dtype=theta.dtype)
        i = np.arange(d - 1)
        h[..., i, i] += 2.0 - 4.0 * self.b * (y - x * x) + 8.0 * self.b * x * x
        h[..., i + 1, i + 1] += 2.0 * self.b
        off = -4.0 * self.b * x
        h[..., i, i + 1] = off
        h[..., i + 1, i] = off
        return h

    @property
    def critical_points(self):
        x = np.empty(self.dim)
        x[0] = self.a
        for i in range(1, self.dim):
            x[i] = x[i - 1] ** 2
        # the point (a, a², a⁴, …) zeroes every term only when a ∈ {0, 1}; for a = 1 it is (1,…,1)
        if not np.allclose(self._grad(x), 0.0, atol=1e-12):
            return []
        return [self._critical("minimum", x, "global")]

    @property
    def bounds(self):
        return np.tile([-2.0, 2.0], (self.dim, 1))
