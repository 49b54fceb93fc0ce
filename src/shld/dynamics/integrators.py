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

    def step(self, theta, grad, noise, D, dt, state):
        """Advance ``theta`` in place; ``noise`` is a standard-normal buffer (overwritten)."""
        scalar_D = not isinstance(D, np.ndarray) or D.ndim == 0    # np.ndim costs ~2 µs a call here
        sigma = math.sqrt(2.0 * D * dt) if scalar_D else np.sqrt(2.0 * D * dt)
        if self.preconditioner is None and scalar_D:
            axpy = _AXPY.get(theta.dtype.type)
            if axpy is not None and theta.flags.c_contiguous and grad.flags.c_contiguous:
                # two fused passes y ← y + a·x (BLAS axpy, one rounding each) instead of four numpy passes,
                # in slices short enough that OpenBLAS runs them on one thread (see _AXPY_CHUNK)
                flat, g, z = theta.reshape(-1), grad.reshape(-1), noise.reshape(-1)
                if flat.shape[0] <= _AXPY_CHUNK:
                    axpy(g, flat, a=-dt)
                    if sigma != 0.0:
                        axpy(z, flat, a=sigma)
                    return
                for i in range(0, flat.shape[0], _AXPY_CHUNK):
                    j = i + _AXPY_CHUNK
                    axpy(g[i:j], flat[i:j], a=-dt)
                    if sigma != 0.0:
                        axpy(z[i:j], flat[i:j], a=sigma)
                return
        if self.preconditioner is None:
            grad *= dt
            theta -= grad
            noise *= sigma
            theta += noise
            return
        P = self._const_p if self._const_p is not None else self.preconditioner(theta)
        drift = P * grad * dt
        if self.divergence is not None:
            drift -= D * dt * self.divergence(theta)
        theta -= drift
        theta += sigma * np.sqrt(P) * noise


class BAOAB:
    name = "baoab"
    capabilities = Capabilities(weak_order=2, momentum=True, preconditioning=False,
                                description="underdamped Langevin, BAOAB splitting, unit mass")

    def __init__(self, friction: float = 1.0):
        self.friction = check_positive("friction", friction)

    def step(self, theta, grad, noise, D, dt, state, grad_fn):
        p = state["momentum"]
        half = 0.5 * dt
        p -= half * grad
        theta += half * p
        c = math.exp(-self.friction * dt)
        amp = np.sqrt(D * (1.0 - c * c))
        p *= c
        p += amp * noise
        theta += half * p
        new_grad = grad_fn(theta)
        p -= half * new_grad
        return new_grad


INTEGRATORS = {"euler": EulerMaruyama, "baoab": BAOAB}


def _axpy_table():
    from scipy.linalg import blas

    return {np.float64: blas.daxpy, np.float32: blas.saxpy}


_AXPY = _axpy_table()
#: Elements per BLAS axpy call. OpenBLAS splits an axpy over its threads above 10 000 elements
#: (``if (n <= 10000) nthreads = 1`` in its interface/axpy.c); for this memory-bound update that gains
#: nothing, and on a busy machine the threads wait for cores (on 2 shared cores one 10⁵-element axpy
#: measured 5–8 ms instead of 0.1 ms). Slices of 10 000 keep it on one thread; the result is
#: bit-identical (each element sees the same one fused update).
_AXPY_CHUNK = 10_000


def make_integrator(name: str, *, friction: float = 1.0, preconditioner=None, divergence=None):
    """Build an integrator by name; refuse options it cannot honour (naming the argument)."""
    check_choice("integrator", name, INTEGRATORS)
    if name == "baoab":
        if preconditioner is not None:
            raise ValueError("`preconditioner` is not supported by integrator='baoab' "
                             "(capabilities: preconditioning=False); use integrator='euler'")
        return BAOAB(friction)
    return EulerMaruyama(preconditioner, divergence)
