"""Diffusion schedules D(t): the temperature of the Langevin dynamics as a function of time.

Time is dynamics time t = step·dt (for SGD read dt = learning rate η, so t counts
"learning-rate-weighted steps"). Every schedule is a callable ``D(t)`` that accepts a
scalar or an array of times and returns D > 0 in loss units.

The seed's "Learning Rate Schedules" section (cosine annealing of α) maps onto
:class:`CosineAnnealing` of D, since D_sde ∝ α for SGD at fixed batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shld._validation import check_positive


class Schedule:
    """Base class: ``D(t)`` for t ≥ 0."""

    def __call__(self, t):  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": type(self).__name__, **{k: v for k, v in vars(self).items()}}


@dataclass
class Constant(Schedule):
    """D(t) = D."""

    D: float

    def __post_init__(self):
        self.D = check_positive("D", self.D, allow_zero=True)

    def __call__(self, t):
        return self.D if np.ndim(t) == 0 else np.full(np.shape(t), self.D)


@dataclass
class ExponentialDecay(Schedule):
    """D(t) = max(D0·exp(−t/tau), D_min)."""

    D0: float
    tau: float
    D_min: float = 0.0

    def __post_init__(self):
        check_positive("D0", self.D0, allow_zero=True)
        check_positive("tau", self.tau)
        check_positive("D_min", self.D_min, allow_zero=True)

    def __call__(self, t):
        return np.maximum(self.D0 * np.exp(-np.asarray(t, float) / self.tau), self.D_min) \
            if np.ndim(t) else max(self.D0 * math.exp(-t / self.tau), self.D_min)


@dataclass
class CosineAnnealing(Schedule):
    """D(t) = D_min + (D_max − D_min)·(1 + cos(π·min(t, T)/T))/2 (the seed's cosine rule)."""

    D_max: float
    D_min: float
    T: float

    def __post_init__(self):
        check_positive("D_max", self.D_max, allow_zero=True)
        check_positive("D_min", self.D_min, allow_zero=True)
        check_positive("T", self.T)

    def __call__(self, t):
        tt = np.minimum(np.asarray(t, float), self.T)
        out = self.D_min + (self.D_max - self.D_min) * 0.5 * (1.0 + np.cos(np.pi * tt / self.T))
        return float(out) if np.ndim(t) == 0 else out


@dataclass
class Warmup(Schedule):
    """Linear warm-up from ``start_factor``·base(0) to base(t_w) over ``t_warmup``, then ``base``.

    The seed's recipe "start at α₀/10 for the first 5 % of training" is
    ``Warmup(base, t_warmup=0.05*T, start_factor=0.1)``.
    """

    base: Schedule
    t_warmup: float
    start_factor: float = 0.1

    def __post_init__(self):
        if not callable(self.base):
            raise TypeError(f"`base` must be a schedule (callable of t), got {self.base!r}")
        check_positive("t_warmup", self.t_warmup)
        check_positive("start_factor", self.start_factor)

    def __call__(self, t):
        frac = np.clip(np.asarray(t, float) / self.t_warmup, 0.0, 1.0)
        out = (self.start_factor + (1.0 - self.start_factor) * frac) * np.asarray(self.base(t), float)
        return float(out) if np.ndim(t) == 0 else out

    def describe(self) -> dict:
        return {"kind": "Warmup", "base": self.base.describe(), "t_warmup": self.t_warmup,
                "start_factor": self.start_factor}


def as_schedule(D) -> Schedule:
    """A float becomes :class:`Constant`; a schedule or callable passes through."""
    if isinstance(D, Schedule):
        return D
    if callable(D):
        return _Callable(D)
    return Constant(check_positive("D", D, allow_zero=True))


class _Callable(Schedule):
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, t):
        D = self.fn(t)
        if isinstance(D, (int, float)) and not isinstance(D, bool):
            ok = 0.0 <= D < math.inf            # the engine's case: one scalar per step, no array made
        else:
            arr = np.asarray(D)
            ok = arr.dtype.kind in "iuf" and bool(np.all((arr >= 0) & (arr < np.inf)))
        if not ok:
            raise ValueError(f"`D` (the schedule D(t)) returned {D!r} at t={t!r}; "
                             "D(t) must be finite and >= 0")
        return D

    def describe(self):
        return {"kind": "callable", "fn": getattr(self.fn, "__name__", repr(self.fn))}
