"""Double-well landscapes: the model problem for barrier crossing (Kramers escape).

Symmetric:  U(x) = h·((x/a)² − 1)²  (+ ½·k·Σ_{i≥1} θ_i² for extra harmonic axes)
  minima at x = ±a with U = 0 and U'' = 8h/a²; saddle at x = 0 with U = h and U'' = −4h/a².
  The barrier seen from either minimum is ΔE = h.
Tilted:     U(x) = h·((x/a)² − 1)² + c·x; c < 0 lowers the right well. Critical points are
  the real roots of the cubic U'(x) = 4h x (x² − a²)/a⁴ + c = 0 (found with ``numpy.roots``).
"""

from __future__ import annotations

import numpy as np

from shld._validation import check_int, check_positive, check_real
from shld.landscapes.base import ArrayKernels, Landscape
from shld.landscapes.registry import register_landscape


@register_landscape("double-well")
class DoubleWell(Landscape):
    """U(θ) = h·((θ₀/a)² − 1)² + tilt·θ₀ + ½·k_perp·Σ_{i≥1} θ_i²."""

    def __init__(self, barrier: float = 1.0, a: float = 1.0, dim: int = 1, tilt: float = 0.0,
                 k_perp: float = 1.0):
        self.barrier = check_positive("barrier", barrier)
        self.a = check_positive("a", a)
        self.dim = check_int("dim", dim, minimum=1)
        self.tilt = check_real("tilt", tilt)
        self.k_perp = check_positive("k_perp", k_perp)

    # 1-D part and its derivatives
    def u(self, x):
        return self.barrier * ((x / self.a) ** 2 - 1.0) ** 2 + self.tilt * x

    def du(self, x):
        a2 = self.a * self.a
        return 4.0 * self.barrier * x * (x * x - a2) / (a2 * a2) + self.tilt

    def d2u(self, x):
        a2 = self.a * self.a
        return 4.0 * self.barrier * (3.0 * x * x - a2) / (a2 * a2)

    def _value(self, theta):
        v = self.u(theta[..., 0])
        if self.dim > 1:
            v = v + 0.5 * self.k_perp * np.sum(theta[..., 1:] ** 2, axis=-1)
        return v

    def _grad(self, theta):
        g = self.k_perp * theta if self.dim > 1 else np.empty_like(theta)
        g[..., 0] = self.du(theta[..., 0])
        return g

    def _grad_into(self, theta, out):
        # in-place form of du: 4h/a⁴ · x·(x² − a²) + tilt, then k_perp·θ on the other axes
        x = theta[..., 0]
        o = out[..., 0]
        np.multiply(x, x, out=o)
        o -= self.a * self.a
        o *= x
        o *= 4.0 * self.barrier / self.a ** 4
        if self.tilt:
            o += self.tilt
        if self.dim > 1:
            np.multiply(theta[..., 1:], self.k_perp, out=out[..., 1:])
        return out

    def _hessian(self, theta):
        h = np.zeros(theta.shape + (self.dim,), dtype=theta.dtype)
        idx = np.arange(1, self.dim)
        h[..., idx, idx] = self.k_perp
        h[..., 0, 0] = self.d2u(theta[..., 0])
        return h

    # -- engine backends -------------------------------------------------------------
    def backends(self):
        return ("numpy", "torch")

    def gradient_polynomial(self):
        """U'(x) = tilt − (4h/a²)·x + (4h/a⁴)·x³ on θ₀; k_perp·θ_j on the other axes."""
        c = np.zeros((self.dim, 4))
        a2 = self.a * self.a
        c[0] = (self.tilt, -4.0 * self.barrier / a2, 0.0, 4.0 * self.barrier / (a2 * a2))
        c[1:, 1] = self.k_perp
        return c

    def kernels(self, backend):
        if backend.name != "torch":
            return super().kernels(backend)
        import torch

        c = 4.0 * self.barrier / self.a ** 4
        h, a, tilt, k, dim = self.barrier, self.a, self.tilt, self.k_perp, self.dim
        neg_a2 = torch.tensor(-self.a * self.a, dtype=backend.dtype, device=backend.device)
        zero = torch.zeros((), dtype=backend.dtype, device=backend.device)
        scratch = {}

        def grad_into(theta, out):
            # c·x·(x² − a²) + tilt in two fused passes (addcmul), then k_perp·θ on the other axes
            x, o = theta[:, 0], out[:, 0]
            torch.addcmul(neg_a2, x, x, out=o)
            torch.addcmul(zero, o, x, value=c, out=o)
            if tilt:
                o.add_(tilt)
            if dim > 1:
                torch.mul(theta[:, 1:], k, out=out[:, 1:])
            return out

        def descend_(theta, dt, noise=None):
            # θ₀ ← θ₀·(1 − dt·c·(θ₀² − a²)) − dt·tilt (+ noise): with no tilt and d = 1 two passes in all,
            # the gradient never stored. The engine passes the same θ and noise tensors at every step: their
            # views and the constants are made once (a torch view costs ~2 µs, the passes ~5 µs at 10⁴)
            got = scratch.get("last")
            if got is None or got[0] is not theta or got[1] is not noise or got[2] != dt:
                x = theta[:, 0]
                got = scratch["last"] = (theta, noise, dt, x, None if noise is None else noise[:, 0],
                                         torch.empty_like(x),
                                         torch.tensor(1.0 + dt * c * a * a, dtype=x.dtype, device=x.device),
                                         -dt * c)
            _, _, _, x, z, w, one_plus, step = got
            torch.addcmul(one_plus, x, x, value=step, out=w)
            if z is not None and dim == 1 and not tilt:
                torch.addcmul(z, w, x, out=x)
                return theta
            x.mul_(w)
            if tilt:
                x.add_(-dt * tilt)
            if dim > 1:
                theta[:, 1:].mul_(1.0 - dt * k)
            if noise is not None:
                theta.add_(noise)
            return theta

        def value(theta):
            x = theta[:, 0]
            v = h * ((x / a) ** 2 - 1.0) ** 2 + tilt * x
            return v + 0.5 * k * (theta[:, 1:] ** 2).sum(1) if dim > 1 else v

        return ArrayKernels(grad_into, value, descend_)

    def gibbs_log_partition(self, D, n=None):
        """The 1-D double-well quadrature times the Gaussian integrals of the harmonic axes."""
        from shld.theory.gibbs import gibbs_log_normaliser

        log_z = gibbs_log_normaliser(self.u, D, n=400 if n is None else n)
        return log_z + 0.5 * (self.dim - 1) * np.log(2 * np.pi * D / self.k_perp)

    def stationary_x(self) -> np.ndarray:
        """Real roots of U'(x) = 0 on the double-well axis, ascending."""
        a2 = self.a * self.a
        c3 = 4.0 * self.barrier / (a2 * a2)
        roots = np.roots([c3, 0.0, -c3 * a2, self.tilt])
        real = np.sort(roots[np.abs(roots.imag) < 1e-9 * max(1.0, self.a)].real)
        return real

    @property
    def critical_points(self):
        pts = []
        for x in self.stationary_x():
            theta = np.zeros(self.dim)
            theta[0] = x
            kind = "minimum" if self.d2u(x) > 0 else "saddle"
            label = ("left" if x < 0 else "right") if kind == "minimum" else "barrier"
            pts.append(self._critical(kind, theta, label))
        return pts

    @property
    def bounds(self):
        half = 2.0 * self.a
        b = np.tile([-half, half], (self.dim, 1))
        if self.dim > 1:
            b[1:] = [-4.0 / np.sqrt(self.k_perp), 4.0 / np.sqrt(self.k_perp)]
        return b


@register_landscape("tilted-double-well")
class TiltedDoubleWell(DoubleWell):
    """The double well tilted so that the right well is deeper: U = DoubleWell's U − tilt·θ₀ with
    ``tilt`` ≥ 0 (default 0.25·h/a). The stored ``self.tilt`` is DoubleWell's signed coefficient, −tilt;
    for a tilt of either sign use ``DoubleWell(tilt=...)``."""

    def __init__(self, barrier: float = 1.0, a: float = 1.0, dim: int = 1,
                 tilt: float | None = None, k_perp: float = 1.0):
        tilt = 0.25 * barrier / a if tilt is None else check_real("tilt", tilt)
        if not tilt >= 0:
            raise ValueError(f"`tilt` of a TiltedDoubleWell is the depth advantage of the right well and must "
                             f"be >= 0, got {tilt} (a tilt of either sign: DoubleWell(tilt=...))")
        super().__init__(barrier=barrier, a=a, dim=dim, tilt=-tilt, k_perp=k_perp)
