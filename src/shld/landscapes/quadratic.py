"""Quadratic landscapes L(θ) = ½ (θ − θ*)ᵀ A (θ − θ*) + L*.

These are the Ornstein–Uhlenbeck cases of the Langevin dynamics, where every moment
is known in closed form (see :mod:`shld.theory.ornstein_uhlenbeck`).
"""

from __future__ import annotations

import numpy as np

from shld._validation import (
    as_generator,
    check_choice,
    check_finite_array,
    check_int,
    check_positive,
)
from shld.landscapes.base import ArrayKernels, CriticalPoint, Landscape
from shld.landscapes.registry import register_landscape


@register_landscape("quadratic")
class Quadratic(Landscape):
    """L(θ) = ½ (θ − center)ᵀ A (θ − center) + offset.

    Give either ``eigenvalues`` (A diagonal, any d) or a symmetric ``matrix``.
    With neither, A is the identity in ``dim`` dimensions.
    """

    def __init__(self, eigenvalues=None, matrix=None, center=None, offset: float = 0.0,
                 dim: int | None = None):
        if eigenvalues is not None and matrix is not None:
            raise ValueError("give `eigenvalues` or `matrix`, not both")
        if matrix is not None:
            A = check_finite_array("matrix", matrix, ndim=2)
            if A.shape[0] != A.shape[1] or not np.allclose(A, A.T, rtol=1e-10, atol=1e-12):
                raise ValueError(f"`matrix` must be square and symmetric, got shape {A.shape}")
            self._diag = None
            self.matrix = 0.5 * (A + A.T)
        else:
            if eigenvalues is None:
                n = 2 if dim is None else check_int("dim", dim, minimum=1)
                eigenvalues = np.ones(n)
            lam = check_finite_array("eigenvalues", np.atleast_1d(eigenvalues), ndim=1)
            self._diag = lam
            self.matrix = np.diag(lam)
        self.dim = self.matrix.shape[0]
        if dim is not None and check_int("dim", dim, minimum=1) != self.dim:
            raise ValueError(f"`dim`={dim} does not match the matrix size {self.dim}")
        self.center = (np.zeros(self.dim) if center is None
                       else check_finite_array("center", center, last_dim=self.dim, ndim=1))
        self.offset = float(check_finite_array("offset", offset, ndim=0))

    @property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of A, ascending."""
        return np.sort(self._diag) if self._diag is not None else np.linalg.eigvalsh(self.matrix)

    def _value(self, theta):
        x = theta - self.center
        if self._diag is not None:
            return 0.5 * np.einsum("...i,i,...i->...", x, self._diag, x) + self.offset
        return 0.5 * np.einsum("...i,...i->...", x @ self.matrix, x) + self.offset

    def _grad(self, theta):
        x = theta - self.center
        return x * self._diag if self._diag is not None else x @ self.matrix

    def _grad_into(self, theta, out):
        if self._diag is not None:
            np.subtract(theta, self.center, out=out)
            out *= self._diag
        else:
            np.matmul(theta - self.center, self.matrix, out=out)
        return out

    @property
    def diagonal(self) -> np.ndarray | None:
        """The diagonal of A when A was given by ``eigenvalues`` (A diagonal), else None."""
        return None if self._diag is None else self._diag.copy()

    # -- engine backends -------------------------------------------------------------
    def backends(self):
        return ("numpy", "torch")

    def gradient_polynomial(self):
        """λ_j·(θ_j − θ*_j) = −λ_j·θ*_j + λ_j·θ_j when A is diagonal; None for a full matrix."""
        if self._diag is None:
            return None
        c = np.zeros((self.dim, 4))
        c[:, 0] = -self._diag * self.center
        c[:, 1] = self._diag
        return c

    def kernels(self, backend):
        if backend.name != "torch":
            return super().kernels(backend)
        import torch

        kw = dict(dtype=backend.dtype, device=backend.device)
        A = torch.as_tensor(self.matrix, **kw)
        centred = bool(np.any(self.center != 0))
        center = torch.as_tensor(self.center, **kw)
        offset = self.offset
        diag = None if self._diag is None else torch.as_tensor(self._diag, **kw)

        def grad_into(theta, out):
            if diag is not None:
                if centred:
                    return torch.sub(theta, center, out=out).mul_(diag)
                return torch.mul(theta, diag, out=out)
            return torch.matmul(theta - center if centred else theta, A, out=out)

        def value(theta):
            x = theta - center if centred else theta
            q = (x * x * diag).sum(1) if diag is not None else (torch.matmul(x, A) * x).sum(1)
            return 0.5 * q + offset

        descend_ = None
        if diag is not None:
            factor = {}

            def descend_(theta, dt, noise=None):
                # θ ← (1 − dt·λ)·θ + dt·λ·θ* (+ noise): one pass about the centre (two off it)
                f = factor.get(dt)
                if f is None:
                    factor.clear()
                    f = factor[dt] = (1.0 - dt * diag, dt * diag * center)
                if noise is None:
                    theta.mul_(f[0])
                else:
                    torch.addcmul(noise, theta, f[0], out=theta)
                if centred:
                    theta.add_(f[1])
                return theta

        return ArrayKernels(grad_into, value, descend_)

    def gibbs_log_partition(self, D, n=None):
        """The Gaussian integral (exact); see :func:`shld.theory.gibbs.gaussian_log_partition`."""
        from shld.theory.gibbs import gaussian_log_partition

        return gaussian_log_partition(self.eigenvalues, D, self.offset)

    def _hessian(self, theta):
        return np.broadcast_to(self.matrix, theta.shape + (self.dim,)).copy()

    @property
    def critical_points(self):
        lam = self.eigenvalues
        if lam[0] > 0:
            kind = "minimum"
        elif lam[-1] < 0:
            kind = "maximum"
        elif lam[0] < 0 < lam[-1]:
            kind = "saddle"
        else:                                  # a zero eigenvalue: a flat direction, not a saddle
            kind = "degenerate"
        return [CriticalPoint(kind, self.center.copy(), self.offset, self.matrix.copy(), "center")]

    @property
    def bounds(self):
        lam_min = max(float(np.min(np.abs(self.eigenvalues))), 1e-12)
        half = 4.0 / np.sqrt(lam_min)
        return np.stack([self.center - half, self.center + half], axis=1)


def spectrum(dim: int, lambda_min: float, lambda_max: float, kind: str = "log") -> np.ndarray:
    """Eigenvalues for a random quadratic: ``"log"`` (geometric), ``"linear"`` or
    ``"power"`` (λ_i = λ_max · i^(−α) rescaled to end at λ_min)."""
    dim = check_int("dim", dim, minimum=1)
    lo = check_positive("lambda_min", lambda_min)
    hi = check_positive("lambda_max", lambda_max)
    if lo > hi:
        raise ValueError(f"`lambda_min`={lo} must be <= `lambda_max`={hi}")
    check_choice("kind", kind, ["log", "linear", "power"])
    if dim == 1:
        return np.array([hi])
    if kind == "log":
        return np.geomspace(lo, hi, dim)
    if kind == "linear":
        return np.linspace(lo, hi, dim)
    i = np.arange(1, dim + 1, dtype=float)
    alpha = np.log(hi / lo) / np.log(dim) if hi > lo else 0.0
    return np.sort(hi * i ** (-alpha))


@register_landscape("random-quadratic")
class RandomQuadratic(Quadratic):
    """A high-dimensional quadratic with a chosen spectrum in a random orthonormal basis.

    A = Q diag(λ) Qᵀ with Q Haar-distributed (QR of a Gaussian matrix, sign-fixed),
    drawn from ``seed``; λ from :func:`spectrum`.
    """

    def __init__(self, dim: int = 100, lambda_min: float = 0.1, lambda_max: float = 10.0,
                 kind: str = "log", seed: int | None = 0, rotate: bool = True):
        lam = spectrum(dim, lambda_min, lambda_max, kind)
        if rotate:
            rng = as_generator(seed=seed)
            q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
            q = q * np.sign(np.diag(r))
            super().__init__(matrix=(q * lam) @ q.T)
            self._eig = lam
        else:
            super().__init__(eigenvalues=lam)
            self._eig = lam

    @property
    def eigenvalues(self):
        return np.sort(self._eig)
