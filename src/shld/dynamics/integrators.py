"""Integrators for Langevin dynamics, one step at a time over an ensemble (N, d).

Overdamped (Euler–Maruyama), time convention t = step·dt:

    θ ← θ − P·∇L(θ)·dt + √(2·D·dt·P)·ξ,     ξ ~ N(0, I)

with an optional constant diagonal preconditioner P (P = 1 by default). Its stationary law
is ρ*(θ) ∝ exp(−L(θ)/D) for any constant P (up to the O(dt) bias of the scheme:
for a quadratic, Var θ_i = D/(λ_i(1 − λ_i·dt/2)) instead of D/λ_i). An SGD step with learning
rate η is dt = η: the drift part −η∇L is exactly the SGD update.

A position-dependent preconditioner P(θ) (RMSprop-like, the seed's "adaptive diffusion") needs the
drift correction D·∇·P(θ) to keep exp(−L/D) stationary; pass ``divergence`` to include it, otherwise
it is omitted and a warning says so.

Underdamped (BAOAB, Leimkuhler & Matthews 2013), unit mass, friction γ:

    B: p ← p − ½dt·∇L(θ);  A: θ ← θ + ½dt·p;  O: p ← e^{−γdt}·p + √(D(1 − e^{−2γdt}))·ξ;
    A: θ ← θ + ½dt·p;      B: p ← p − ½dt·∇L(θ)

Stationary law ∝ exp(−(L(θ) + |p|²/2)/D); for a quadratic the θ-marginal of BAOAB is exact at any
stable dt. One gradient per step (cached across steps).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from shld._validation import check_choice, check_positive
from shld.dynamics.backends import NumpyBackend

_NUMPY = NumpyBackend()


@dataclass(frozen=True)
class Capabilities:
    weak_order: int
    momentum: bool
    preconditioning: bool
    description: str


class EulerMaruyama:
    name = "euler"
    capabilities = Capabilities(weak_order=1, momentum=False, preconditioning=True,
                                description="overdamped Euler–Maruyama")

    def __init__(self, preconditioner=None, divergence=None):
        self.preconditioner = preconditioner
        self.divergence = divergence
        self._const_p = None
        if preconditioner is not None and not callable(preconditioner):
            p = np.asarray(preconditioner, dtype=float)
            if not np.all(np.isfinite(p)) or np.any(p <= 0):
                raise ValueError(f"`preconditioner` must be finite and > 0, got {preconditioner!r}")
            self._const_p = p
        elif callable(preconditioner) and divergence is None:
            warnings.warn("position-dependent `preconditioner` without `divergence`: the drift "
                          "correction D·∇·P(θ) is omitted, so exp(−L/D) is only approximately stationary",
                          stacklevel=3)

    def step(self, theta, grad, noise, D, dt, state, backend=None):
        """Advance ``theta`` in place; ``noise`` is a standard-normal buffer (overwritten). ``backend``
        (:mod:`shld.dynamics.backends`, numpy by default) supplies the fused update y ← y + a·x."""
        bk = _NUMPY if backend is None else backend
        scalar_D = not hasattr(D, "ndim") or D.ndim == 0    # np.ndim costs ~2 µs a call here
        sigma = math.sqrt(2.0 * D * dt) if scalar_D else bk.sqrt(2.0 * D * dt)
        if self.preconditioner is None and scalar_D:
            # two fused passes y ← y + a·x (numpy: BLAS axpy, one rounding each) instead of four passes
            if sigma != 0.0:
                bk.axpy2_(theta, grad, -dt, noise, sigma)
            else:
                bk.axpy_(theta, grad, -dt)
            return
        if self.preconditioner is None:
            grad *= dt
            theta -= grad
            noise *= sigma
            theta += noise
            return
        if self._const_p is not None:
            P = self._const_p if bk.name == "numpy" else self._device_p(bk)
        else:
            P = self.preconditioner(theta)
        drift = P * grad * dt
        if self.divergence is not None:
            drift -= D * dt * self.divergence(theta)
        theta -= drift
        theta += sigma * bk.sqrt(P) * noise

    def _device_p(self, bk):
        cache = self.__dict__.setdefault("_p_on", {})
        key = (bk.name, str(bk.device), bk.dtype_name)
        if key not in cache:
            cache[key] = bk.asarray(self._const_p)
        return cache[key]


class BAOAB:
    name = "baoab"
    capabilities = Capabilities(weak_order=2, momentum=True, preconditioning=False,
                                description="underdamped Langevin, BAOAB splitting, unit mass")

    def __init__(self, friction: float = 1.0):
        self.friction = check_positive("friction", friction)

    def step(self, theta, grad, noise, D, dt, state, grad_fn, backend=None):
        bk = _NUMPY if backend is None else backend
        p = state["momentum"]
        half = 0.5 * dt
        p -= half * grad
        theta += half * p
        c = math.exp(-self.friction * dt)
        if bk.name == "numpy" or hasattr(D, "ndim"):
            amp = bk.sqrt(D * (1.0 - c * c))
        else:
            amp = math.sqrt(D * (1.0 - c * c))
        p *= c
        p += amp * noise
        theta += half * p
        new_grad = grad_fn(theta)
        p -= half * new_grad
        return new_grad


INTEGRATORS = {"euler": EulerMaruyama, "baoab": BAOAB}


def make_integrator(name: str, *, friction: float = 1.0, preconditioner=None, divergence=None):
    """Build an integrator by name; refuse options it cannot honour (naming the argument)."""
    check_choice("integrator", name, INTEGRATORS)
    friction = check_positive("friction", friction)
    if name != "baoab" and friction != 1.0:
        raise ValueError(f"`friction`={friction} applies only to integrator='baoab' (underdamped); "
                         f"integrator={name!r} is overdamped and has no friction")
    if name == "baoab":
        if preconditioner is not None:
            raise ValueError("`preconditioner` is not supported by integrator='baoab' "
                             "(capabilities: preconditioning=False); use integrator='euler'")
        return BAOAB(friction)
    return EulerMaruyama(preconditioner, divergence)
