"""Private helpers shared by the closed forms: array validation and 1-D quadrature."""

from __future__ import annotations

import math

import numpy as np

from shld._validation import _short

#: Gauss–Legendre nodes/weights on [-1, 1] used by every panel quadrature here.
GL_X, GL_W = np.polynomial.legendre.leggauss(16)

#: A tail is cut where U has risen this many D above its minimum (e^{-60} ≈ 1e-26 relative).
TAIL_MARGIN = 60.0

#: A 1-D quadrature is refused when halving its panels moves the log of the result by more than this.
QUADRATURE_TOL = 1e-7


def real_array(name, value, *, positive=False, nonnegative=False, nonzero=False, finite=True):
    """``value`` as a float array with the named condition on every entry; scalars stay 0-d."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a real number or array, got {_short(value)}") from None
    if np.any(np.isnan(arr)):
        raise ValueError(f"`{name}` must not be NaN, got {_short(value)}")
    if finite and np.any(np.isinf(arr)):
        raise ValueError(f"`{name}` must be finite, got {_short(value)}")
    if positive and np.any(arr <= 0):
        raise ValueError(f"`{name}` must be > 0, got {_short(value)}")
    if nonnegative and np.any(arr < 0):
        raise ValueError(f"`{name}` must be >= 0, got {_short(value)}")
    if nonzero and np.any(arr == 0):
        raise ValueError(f"`{name}` must be nonzero, got {_short(value)}")
    return arr


def scalar_or_array(x):
    """Return a Python float for 0-d results, the array otherwise."""
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else x


def exp_clean(x):
    """exp(x) without overflow/underflow warnings: huge → inf, very negative → 0."""
    with np.errstate(over="ignore", under="ignore"):
        return np.exp(x)


def as_potential(u):
    """Turn ``u`` (a vectorised callable x ↦ U(x), or a 1-D landscape) into a checked callable.

    The returned function evaluates U on an array and raises a ``ValueError`` naming ``u``
    when it returns a wrong shape or a non-finite value.
    """
    if hasattr(u, "value") and hasattr(u, "dim"):
        if u.dim != 1:
            raise ValueError(f"`u` must be a 1-D potential; got landscape {u!r} with dim={u.dim}")

        def raw(x):
            return u.value(x[..., None])
    elif callable(u):
        raw = u
    else:
        raise TypeError(f"`u` must be a callable U(x) or a 1-D landscape, got {_short(u)}")

    def f(x, *, strict=True):
        with np.errstate(all="ignore"):
            v = np.asarray(raw(x), dtype=float)
        if v.shape != x.shape:
            try:
                v = np.broadcast_to(v, x.shape).astype(float)
            except ValueError:
                raise ValueError(
                    f"`u` must be vectorised: for input shape {x.shape} it returned shape {v.shape}"
                ) from None
        if strict and not np.all(np.isfinite(v)):
            i = np.flatnonzero(~np.isfinite(v))[0]
            raise ValueError(f"`u` returned {v.flat[i]} at x={x.flat[i]!r}; U must be finite there")
        return v

    return f


def probe_cutoff(f, D, x_start, direction, u_ref, scale=1.0):
    """First point beyond ``x_start`` (going ``direction`` = ±1) where U ≥ min(U) + TAIL_MARGIN·D.

    Probes geometrically spaced points x_start ± 0.01·scale·2^k (k < 80). Points where U is not
    finite are treated as U = +inf (confining). Raises when U never rises that far: the
    integral of e^{-U/D} over that tail does not converge (the process is not confined).
    """
    x = x_start + direction * 1e-2 * scale * 2.0 ** np.arange(80)
    v = f(x, strict=False)
    v = np.where(np.isfinite(v), v, np.inf)
    running_min = np.minimum.accumulate(np.minimum(v, u_ref))
    ok = np.flatnonzero(v - running_min >= TAIL_MARGIN * D)
    if ok.size == 0:
        side = "+inf" if direction > 0 else "-inf"
        raise ValueError(
            f"U does not grow by {TAIL_MARGIN:g}*D toward {side} from x={x_start!r}: e^(-U/D) is not "
            f"integrable there; give a finite reflecting boundary instead"
        )
    return float(x[ok[0]])


def panels(edges, n_total):
    """Split consecutive intervals ``edges`` into about ``n_total`` equal-width panels overall.

    Returns (left, width) arrays of all panels in order, and the panel index where each given
    edge starts.
    """
    edges = np.asarray(edges, dtype=float)
    lengths = np.diff(edges)
    total = float(np.sum(lengths))
    counts = np.maximum(4, np.ceil(n_total * lengths / total).astype(int))
    counts = np.where(lengths > 0, counts, 0)
    lefts, widths, starts = [], [], []
    for lo, length, c in zip(edges[:-1], lengths, counts):
        starts.append(sum(len(x) for x in lefts))
        if c == 0:
            continue
        w = length / c
        lefts.append(lo + w * np.arange(c))
        widths.append(np.full(c, w))
    starts.append(sum(len(x) for x in lefts))
    return np.concatenate(lefts), np.concatenate(widths), starts


def gl_nodes(left, width):
    """Gauss–Legendre nodes (P, m) and weights (P, m) for panels [left, left + width]."""
    x = left[:, None] + 0.5 * width[:, None] * (GL_X + 1.0)
    w = 0.5 * width[:, None] * GL_W
    return x, w


def logsumexp(a, weights=None):
    """log Σ w·e^{a} for positive weights, stable; returns -inf when every term is zero."""
    a = np.asarray(a, dtype=float)
    m = float(np.max(a))
    if not math.isfinite(m):
        return m
    w = 1.0 if weights is None else weights
    return m + math.log(float(np.sum(w * np.exp(a - m))))
