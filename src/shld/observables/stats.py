"""Small statistics helpers: moments with standard errors, Wilson binomial intervals."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from shld._validation import check_finite_array, check_int, check_real

__all__ = ["Moments", "moments_with_stderr", "binomial_ci"]


@dataclass(frozen=True)
class Moments:
    """Sample mean and variance (ddof=1) with their standard errors, reduced along one axis."""

    mean: np.ndarray
    mean_stderr: np.ndarray
    var: np.ndarray
    var_stderr: np.ndarray
    n: int


def moments_with_stderr(x, axis=0):
    """Mean ± sd/√n and variance ± √((m₄ − s⁴)/n) (large-n, independent samples) along ``axis``."""
    a = check_finite_array("x", x)
    if a.ndim == 0:
        raise ValueError("`x` must have at least one axis")
    n = a.shape[axis]
    if n < 2:
        raise ValueError(f"`x` needs at least 2 samples along axis {axis}, got {n}")
    mean = a.mean(axis=axis)
    dev = a - np.expand_dims(mean, axis)
    var = np.sum(dev * dev, axis=axis) / (n - 1)
    m4 = np.mean(dev ** 4, axis=axis)
    var_se = np.sqrt(np.maximum(m4 - var * var * ((n - 1) / n) ** 2, 0.0) / n)
    return Moments(mean=mean, mean_stderr=np.sqrt(var / n), var=var, var_stderr=var_se, n=n)


def binomial_ci(k, n, level=0.95):
    """Wilson score interval (lo, hi) for a proportion k/n; vectorised over ``k``/``n``.

    centre = (k + z²/2)/(n + z²), half-width = z/(n + z²)·√(k(n − k)/n + z²/4), z the normal
    quantile of (1 + level)/2. Stays inside [0, 1] and behaves at k = 0 and k = n.
    """
    kk = np.asarray(k)
    nn = np.asarray(n)
    if not (np.issubdtype(kk.dtype, np.integer) or np.all(np.mod(kk, 1) == 0)):
        raise ValueError(f"`k` must be whole numbers, got {k!r}")
    if np.ndim(n) == 0:
        check_int("n", int(n) if float(n).is_integer() else n, minimum=1)
    elif not (np.issubdtype(nn.dtype, np.integer) or np.all(np.mod(nn, 1) == 0)):
        raise ValueError(f"`n` must be whole numbers, got {n!r}")
    if np.any(nn < 1) or np.any(kk < 0) or np.any(kk > nn):
        raise ValueError(f"need 0 <= `k` <= `n` and n >= 1, got k={k!r}, n={n!r}")
    level = check_real("level", level)
    if not 0 < level < 1:
        raise ValueError(f"`level` must be in (0, 1), got {level}")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    kf, nf = kk.astype(float), nn.astype(float)
    centre = (kf + z * z / 2) / (nf + z * z)
    half = z / (nf + z * z) * np.sqrt(kf * (nf - kf) / nf + z * z / 4)
    lo = np.where(kf == 0, 0.0, np.clip(centre - half, 0, 1))
    hi = np.where(kf == nf, 1.0, np.clip(centre + half, 0, 1))
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi
