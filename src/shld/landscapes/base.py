"""The ``Landscape`` contract: a loss surface L(θ) evaluated on batches θ of shape (..., d).

Conventions used across SHLD
----------------------------
* ``value(theta)`` returns L with shape ``theta.shape[:-1]``;
* ``grad(theta)`` returns ∇L with the shape of ``theta``;
* ``hessian(theta)`` returns ∇²L with shape ``theta.shape + (d,)`` where cheap, otherwise
  raises ``NotImplementedError``.
* L is in "loss units"; the diffusion coefficient D of the dynamics has the same units
  (the stationary law is ρ*(θ) ∝ exp(−L(θ)/D)).
* ``critical_points`` lists the known minima and saddles in closed form.
* ``bounds`` is a box ((lo, hi) per axis) that holds the interesting region; plots and
  Fokker–Planck grids use it by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shld._validation import check_finite_array


@dataclass(frozen=True)
class CriticalPoint:
    """A stationary point of a landscape: ``kind`` is ``"minimum"`` or ``"saddle"``."""

    kind: str
    location: np.ndarray
    value: float
    hessian: np.ndarray
    label: str = ""

    @property
    def eigenvalues(self) -> np.ndarray:
        """Hessian eigenvalues, ascending (a saddle of index 1 has exactly one negative)."""
        return np.linalg.eigvalsh(self.hessian)


class Landscape:
    """Base class. Subclasses set ``self.dim`` and implement ``_value`` and ``_grad``
    on arrays of shape (..., d); ``name`` is the registry name."""

    name: str = "landscape"
    dim: int

    # -- to implement ---------------------------------------------------------------
    def _value(self, theta: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _grad(self, theta: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _hessian(self, theta: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no closed-form Hessian")

    # -- public API (validates once at the boundary) ----------------------------------
    def _check(self, theta) -> np.ndarray:
        arr = np.asarray(theta)
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float64)
        if arr.ndim == 0 or arr.shape[-1] != self.dim:
            raise ValueError(
                f"`theta` must have shape (..., {self.dim}) for landscape {self.name!r}, "
                f"got shape {arr.shape}"
            )
        return arr

    def value(self, theta) -> np.ndarray:
        """L(θ), shape ``theta.shape[:-1]``."""
        return self._value(self._check(theta))

    def grad(self, theta) -> np.ndarray:
        """∇L(θ), same shape as ``theta``."""
        return self._grad(self._check(theta))

    def grad_into(self, theta: np.ndarray, out: np.ndarray) -> np.ndarray:
        """∇L(θ) written into ``out`` (no shape checks; the engine's hot path).

        Subclasses override ``_grad_into`` to avoid temporaries."""
        return self._grad_into(theta, out)

    def _grad_into(self, theta, out):
        out[...] = self._grad(theta)
        return out

    def value_and_grad(self, theta) -> tuple[np.ndarray, np.ndarray]:
        theta = self._check(theta)
        return self._value(theta), self._grad(theta)

    def hessian(self, theta) -> np.ndarray:
        """∇²L(θ), shape ``theta.shape + (d,)``; ``NotImplementedError`` when not cheap."""
        return self._hessian(self._check(theta))

    @property
    def critical_points(self) -> list[CriticalPoint]:
        """Known minima and saddles in closed form (empty when none are known)."""
        return []

    @property
    def minima(self) -> list[CriticalPoint]:
        return [c for c in self.critical_points if c.kind == "minimum"]

    @property
    def saddles(self) -> list[CriticalPoint]:
        return [c for c in self.critical_points if c.kind == "saddle"]

    @property
    def bounds(self) -> np.ndarray:
        """Box ``(d, 2)`` of (lo, hi) holding the interesting region."""
        return np.tile([-3.0, 3.0], (self.dim, 1))

    def _critical(self, kind: str, x, label: str = "") -> CriticalPoint:
        x = check_finite_array("location", x, last_dim=self.dim)
        return CriticalPoint(kind, x, float(self._value(x)), self._hessian(x), label)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"
