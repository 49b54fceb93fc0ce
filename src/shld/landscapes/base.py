"""The ``Landscape`` contract: a loss surface L(θ) evaluated on batches θ of shape (..., d).

Conventions used across SHLD
----------------------------
* ``value(theta)`` returns L with shape ``theta.shape[:-1]``;
* ``grad(theta)`` returns ∇L with the shape of ``theta``;
* ``hessian(theta)`` returns ∇²L with shape ``theta.shape + (d,)`` where cheap, otherwise
  raises ``NotImplementedError``.
* L is in "loss units"; the diffusion coefficient D of the dynamics has the same units
  (the stationary law is ρ*(θ) ∝ exp(−L(θ)/D)).
* The public methods check these shapes once per landscape instance, method and input shape (the
  first call): an implementation that returns, say, shape ``(d,)`` or ``(N, 1)`` for N walkers raises
  a ``ValueError`` naming the method and both shapes instead of being broadcast silently.
* ``critical_points`` lists the known minima and saddles in closed form.
* ``bounds`` is a box ((lo, hi) per axis) that holds the interesting region; plots and
  Fokker–Planck grids use it by default.

Array backends
--------------
The public methods above take and return numpy arrays. The Langevin engine can also run on torch
(:mod:`shld.dynamics.backends`); a landscape says which engine backends it supports with
:meth:`Landscape.backends` and hands the engine its kernels on a backend's arrays with
:meth:`Landscape.kernels` (an :class:`ArrayKernels`: ``grad_into``, ``value`` and optionally a fused
gradient-descent step ``descend_``). The base class supports ``"numpy"`` only; the built-in
landscapes add ``"torch"``. A landscape whose gradient is a cubic in each coordinate separately says so
with :meth:`Landscape.gradient_polynomial`, and the torch engine on a GPU then runs many steps per kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from shld._validation import check_finite_array


def _remember(obj, attr: str, key) -> None:
    """Add ``key`` to the per-instance set ``obj.<attr>`` (created on first use over the class-level
    empty frozenset). Bounded, so that a run whose batch shape keeps changing stays O(1) per call;
    an instance without a ``__dict__`` (``__slots__``) is simply checked on every call."""
    seen = getattr(obj, attr)
    if isinstance(seen, frozenset):
        seen = set()
        try:
            object.__setattr__(obj, attr, seen)
        except AttributeError:
            return
    if len(seen) < 256:
        seen.add(key)


@dataclass(frozen=True)
class CriticalPoint:
    """A stationary point of a landscape: ``kind`` is ``"minimum"`` (Hessian positive definite),
    ``"saddle"`` (eigenvalues of both signs), ``"maximum"`` (negative definite) or ``"degenerate"``
    (a zero eigenvalue and no negative one: a flat direction, e.g. a valley of minima)."""

    kind: str
    location: np.ndarray
    value: float
    hessian: np.ndarray
    label: str = ""

    @property
    def eigenvalues(self) -> np.ndarray:
        """Hessian eigenvalues, ascending (a saddle of index 1 has exactly one negative)."""
        return np.linalg.eigvalsh(self.hessian)


class ArrayKernels(NamedTuple):
    """A landscape's kernels on one backend's arrays (θ of shape (N, d)).

    ``grad_into(theta, out)`` writes ∇L(θ) into ``out`` and returns it; ``value(theta)`` returns L(θ),
    shape (N,); ``descend_(theta, dt, noise=None)``, when not None, applies θ ← θ − dt·∇L(θ) (+ noise)
    in place without materialising the gradient, in as few passes as the formula allows (the engine's
    fast Euler–Maruyama path; equal to the separate updates up to rounding)."""

    grad_into: Callable
    value: Callable
    descend_: Callable | None = None


class Landscape:
    """Base class. Subclasses set ``self.dim`` and implement ``_value`` and ``_grad``
    on arrays of shape (..., d); ``name`` is the registry name."""

    name: str = "landscape"
    dim: int
    # (method, input shape) pairs whose output shape has been checked, and the input shapes for which
    # grad_into has been; class-level empty defaults, replaced by a per-instance set at the first check
    _shapes_checked: frozenset | set = frozenset()
    _grad_into_shapes: frozenset | set = frozenset()

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
        if np.iscomplexobj(arr):
            raise TypeError(f"`theta` must be real for landscape {self.name!r}, got dtype {arr.dtype} "
                            "(the imaginary part would be dropped)")
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float64)
        if arr.ndim == 0 or arr.shape[-1] != self.dim:
            raise ValueError(
                f"`theta` must have shape (..., {self.dim}) for landscape {self.name!r}, "
                f"got shape {arr.shape}"
            )
        return arr

    def _contract(self, method: str, theta: np.ndarray, out, tail: tuple):
        """Return ``out`` after checking, once per (method, input shape), that its shape is
        ``theta.shape[:-1] + tail``; later calls with that input shape cost one set look-up."""
        key = (method, theta.shape)
        if key in self._shapes_checked:
            return out
        expected = theta.shape[:-1] + tail
        got = np.shape(out)
        if got != expected:
            raise ValueError(
                f"`{type(self).__name__}.{method}` returned shape {got} for theta of shape {theta.shape}; "
                f"expected {expected} (the Landscape contract: value -> theta.shape[:-1], grad -> "
                "theta.shape, hessian -> theta.shape + (d,))"
            )
        _remember(self, "_shapes_checked", key)
        return out

    def value(self, theta) -> np.ndarray:
        """L(θ), shape ``theta.shape[:-1]``."""
        theta = self._check(theta)
        return self._contract("_value", theta, self._value(theta), ())

    def grad(self, theta) -> np.ndarray:
        """∇L(θ), same shape as ``theta``."""
        theta = self._check(theta)
        return self._contract("_grad", theta, self._grad(theta), (self.dim,))

    def grad_into(self, theta: np.ndarray, out: np.ndarray) -> np.ndarray:
        """∇L(θ) written into ``out`` (the engine's hot path: no conversion of ``theta``).

        The first call for a given input shape checks that ``out`` and the gradient have the shape
        of ``theta`` (the gradient before it is written into ``out``, where numpy would broadcast a
        wrong shape silently); later calls with that shape go straight to ``_grad_into``.
        Subclasses override ``_grad_into`` to avoid temporaries."""
        if theta.shape in self._grad_into_shapes:       # one set look-up: the only cost after the first call
            return self._grad_into(theta, out)
        return self._first_grad_into(theta, out)

    def _first_grad_into(self, theta, out):
        if np.shape(out) != theta.shape:
            raise ValueError(f"`out` must have the shape of theta {theta.shape}, got {np.shape(out)}")
        if type(self)._grad_into is Landscape._grad_into:
            out[...] = self._contract("_grad", theta, self._grad(theta), (self.dim,))
            res = out
        else:
            try:   # an overridden _grad_into may write a wrong-shaped _grad into out by broadcasting
                self._contract("_grad", theta, self._grad(theta), (self.dim,))
            except NotImplementedError:
                pass
            res = self._grad_into(theta, out)
        self._contract("_grad_into", theta, res, (self.dim,))
        _remember(self, "_grad_into_shapes", theta.shape)
        return res

    def _grad_into(self, theta, out):
        out[...] = self._grad(theta)
        return out

    def value_and_grad(self, theta) -> tuple[np.ndarray, np.ndarray]:
        theta = self._check(theta)
        return (self._contract("_value", theta, self._value(theta), ()),
                self._contract("_grad", theta, self._grad(theta), (self.dim,)))

    def hessian(self, theta) -> np.ndarray:
        """∇²L(θ), shape ``theta.shape + (d,)``; ``NotImplementedError`` when not cheap."""
        theta = self._check(theta)
        return self._contract("_hessian", theta, self._hessian(theta), (self.dim, self.dim))

    # -- engine backends -------------------------------------------------------------
    def backends(self) -> tuple[str, ...]:
        """The engine backends this landscape has kernels for (``"numpy"``; subclasses add ``"torch"``)."""
        return ("numpy",)

    def kernels(self, backend) -> ArrayKernels:
        """Kernels on ``backend``'s arrays (a backend object from :func:`shld.dynamics.backends.make_backend`).

        Subclasses that support another backend override this, handle its ``backend.name`` and defer
        to ``super().kernels(backend)`` for the others."""
        if backend.name == "numpy":
            return ArrayKernels(self.grad_into, self.value)
        raise ValueError(f"landscape {type(self).__name__} ({self.name!r}) has no kernels for "
                         f"backend={backend.name!r}; it supports {list(self.backends())}")

    def gradient_polynomial(self) -> np.ndarray | None:
        """Coefficients c of shape (d, 4) when the gradient is separable and cubic in each coordinate,

            ∂L/∂θ_j = c_j0 + c_j1·θ_j + c_j2·θ_j² + c_j3·θ_j³      (loss units per unit of θ_j),

        else ``None`` (the default). The engine's many-steps GPU kernel
        (:mod:`shld.dynamics.triton_steps`) runs on landscapes that give them."""
        return None

    def gibbs_log_partition(self, D: float, n: int | None = None) -> float | None:
        """log ∫ e^{−L(θ)/D} dθ in closed form or by a landscape-specific reduction (``n`` quadrature
        nodes where one is used), or ``None`` when the landscape knows none; then
        :func:`shld.theory.gibbs_log_partition` integrates numerically (d ≤ 2)."""
        return None

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
