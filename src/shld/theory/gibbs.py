r"""The Gibbs (stationary) law ρ*(θ) = e^{−L(θ)/D}/Z of dθ = −∇L dt + √(2D) dW.

Valid when Z = ∫ e^{−L/D} dθ is finite (L confining). D is a temperature in loss units.

* :func:`gibbs_log_normaliser` — log Z of a 1-D potential on [lo, hi] (infinite ends allowed),
  Gauss–Legendre panels on shifted exponents (no overflow for small D).
* :func:`gibbs_density_1d` — the density on a grid, normalised either on the grid (trapezoid)
  or exactly on an interval.
* :func:`gibbs_cdf_1d` — the distribution function on [lo, hi] (trapezoid on a fine grid), for KS
  tests of sampled ensembles.
* :func:`gibbs_log_partition` / :func:`gibbs_log_density` — d-dimensional: exact for quadratics
  (Gaussian: log Z = −L*/D + (d/2) log 2πD − ½ log det A) and for the double well (1-D quadrature
  times the Gaussian of the extra axes), 1-D quadrature for any 1-D landscape, a tensor
  Gauss–Legendre rule on the landscape's ``bounds`` box for d = 2 (mass outside the box is
  ignored); pass ``log_Z`` otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from shld._validation import check_finite_array, check_int, check_positive, check_real
from shld.theory._common import QUADRATURE_TOL, TAIL_MARGIN, as_potential, gl_nodes, logsumexp, panels, probe_cutoff

__all__ = ["gaussian_log_partition", "gibbs_log_normaliser", "gibbs_mean_1d", "gibbs_density_1d",
           "gibbs_cdf_1d", "gibbs_log_partition", "gibbs_log_density"]


def _rule(f, a, b, n):
    """Nodes, weights and U at the nodes of ``n`` Gauss–Legendre panels on [a, b]."""
    left, width, _ = panels([a, b], n)
    x, w = gl_nodes(left, width)
    return x.ravel(), w.ravel(), f(x.ravel())


def _quadrature(u, D, lo, hi, n, center):
    """(nodes, weights, U at the nodes, log Z) of the Gauss–Legendre rule used by the 1-D Gibbs
    integrals.

    Infinite ends are cut where U has risen 60·D above its value at ``center`` (or at the finite
    end). The rule then zooms onto the mass: the interval shrinks to the nodes where
    U < min U + 60·D, widened by one panel each side, until it stops shrinking, so a well far
    narrower than the first cut interval (small D, a well far from ``center``) is still resolved.
    The result is refused when halving the panels moves log Z by more than ``QUADRATURE_TOL``.
    """
    f = as_potential(u)
    D = check_positive("D", D)
    lo, hi = check_real("lo", lo), check_real("hi", hi)
    n = check_int("n", n, minimum=8)
    if not lo < hi:
        raise ValueError(f"`lo` must be < `hi`, got lo={lo}, hi={hi}")
    c = check_real("center", center)
    if math.isfinite(lo) or math.isfinite(hi):      # probe from the finite end
        c = lo if math.isfinite(lo) else hi
    ref = float(f(np.array([c]))[0])
    a = probe_cutoff(f, D, c, -1.0, ref, scale=max(1.0, abs(c))) if math.isinf(lo) else lo
    b = probe_cutoff(f, D, c, 1.0, ref, scale=max(1.0, abs(c))) if math.isinf(hi) else hi
    for _ in range(200):
        x, w, ux = _rule(f, a, b, n)
        heavy = x[ux - ux.min() < TAIL_MARGIN * D]
        pad = (b - a) / n
        a_new, b_new = max(a, heavy.min() - pad), min(b, heavy.max() + pad)
        if b_new - a_new > 0.5 * (b - a):
            break
        a, b = a_new, b_new
    x2, w2, ux2 = _rule(f, a, b, 2 * n)
    log_z, log_z2 = logsumexp(-ux / D, w), logsumexp(-ux2 / D, w2)
    if not abs(log_z2 - log_z) <= QUADRATURE_TOL:
        raise ValueError(
            f"the Gibbs quadrature of `u` at D={D:g} did not converge on [{a:.6g}, {b:.6g}]: log Z is "
            f"{log_z:.10g} with {n} panels and {log_z2:.10g} with {2 * n}; increase `n`, or give "
            f"`lo`/`hi` (or `center`) closer to where e^(-U/D) lives")
    return x2, w2, ux2, log_z2


def gibbs_log_normaliser(u, D, lo=-math.inf, hi=math.inf, n=400, center=0.0):
    """log Z with Z = ∫_lo^hi e^{−U(x)/D} dx for a 1-D potential ``u`` (callable or 1-D landscape).

    Infinite ends are cut where U has risen 60·D above its minimum (probing outward from
    ``center``, or from the finite end), the interval shrinks onto the mass, and 2·``n``
    Gauss–Legendre panels of 16 nodes are used once ``n`` and 2·``n`` agree on log Z to 1e-7
    (a ``ValueError`` otherwise).
    """
    return _quadrature(u, D, lo, hi, n, center)[3]


def gibbs_mean_1d(u, D, g=None, lo=-math.inf, hi=math.inf, n=400, center=0.0) -> float:
    """E[g(x)] = ∫ g e^{−U/D} dx / Z under the 1-D Gibbs law of ``u`` at temperature D (loss units);
    ``g`` defaults to U itself (the stationary mean loss). Same quadrature as :func:`gibbs_log_normaliser`."""
    x, w, ux, _ = _quadrature(u, D, lo, hi, n, center)
    a = -ux / D
    p = w * np.exp(a - np.max(a))
    vals = ux if g is None else np.asarray(g(x), float)
    return float(np.sum(p * vals) / np.sum(p))


def gibbs_density_1d(u, D, x, lo=None, hi=None, n=400):
    """ρ*(x) = e^{−U(x)/D}/Z on the points ``x``.

    With ``lo``/``hi`` both None, Z is the trapezoid integral over the sorted 1-D grid ``x``
    (so the returned values integrate to 1 on that grid). Otherwise Z is computed accurately
    on [lo, hi] by :func:`gibbs_log_normaliser` (infinite ends allowed) and ρ* = 0 outside.
    """
    f = as_potential(u)
    D = check_positive("D", D)
    x = check_finite_array("x", x)
    if lo is None and hi is None:
        if x.ndim != 1 or x.size < 2 or np.any(np.diff(x) <= 0):
            raise ValueError(f"`x` must be a strictly increasing 1-D grid to normalise on, "
                             f"got shape {x.shape}")
        a = -f(x) / D
        p = np.exp(a - np.max(a))
        return p / np.trapezoid(p, x)
    lo = -math.inf if lo is None else lo
    hi = math.inf if hi is None else hi
    log_z = gibbs_log_normaliser(f, D, lo, hi, n=n)
    inside = (x >= lo) & (x <= hi)
    with np.errstate(under="ignore"):
        return np.where(inside, np.exp(-f(x, strict=False) / D - log_z), 0.0)


def gibbs_cdf_1d(u, D, lo, hi, n=200_001):
    """F(q) = ∫_lo^q e^{−U/D} dx / ∫_lo^hi e^{−U/D} dx as a vectorised callable (0 below lo, 1 above hi):
    the trapezoid rule on ``n`` equally spaced points, exponents shifted by min U (no overflow).
    ``u`` maps an array of x to U(x) (loss units), or is a 1-D landscape; D is the temperature in
    the same units; [lo, hi] is finite. Refused (``ValueError``) when the rule on every other point
    moves F by more than 1e-6 anywhere: the grid does not resolve the well.
    """
    f = as_potential(u)
    D = check_positive("D", D)
    lo, hi = check_real("lo", lo), check_real("hi", hi)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"`lo` and `hi` must be finite with lo < hi, got lo={lo}, hi={hi}")
    n = check_int("n", n, minimum=5)
    n += (n + 1) % 2                                   # odd, so every other point spans [lo, hi] too
    x = np.linspace(lo, hi, n)
    ux = f(x)
    w = np.exp(-(ux - ux.min()) / D)

    def cdf(xs, ws):                                   # the normalised cumulative trapezoid
        c = np.concatenate([[0.0], np.cumsum(0.5 * (ws[1:] + ws[:-1]) * np.diff(xs))])
        return c / c[-1]

    c = cdf(x, w)
    if np.max(np.abs(cdf(x[::2], w[::2]) - c[::2])) > 1e-6:
        raise ValueError(f"gibbs_cdf_1d: {n} points on [{lo:g}, {hi:g}] do not resolve e^(-U/D) at "
                         f"D={D:g}; increase `n` or narrow [lo, hi] to where the mass lives")
    return lambda q: np.interp(q, x, c)


def gaussian_log_partition(eigenvalues, D, offset=0.0):
    """log ∫ e^{−L/D} dθ = −L*/D + (d/2)·log(2πD) − ½·Σ log λ_i for L = ½(θ−θ*)ᵀA(θ−θ*) + L*, A with
    eigenvalues λ_i > 0 (a Gaussian integral; exact)."""
    D = check_positive("D", D)
    lam = np.atleast_1d(np.asarray(eigenvalues, dtype=float))
    if np.any(lam <= 0):
        raise ValueError(f"the quadratic's eigenvalues must be > 0 for a Gibbs law, got {lam}")
    return float(-float(offset) / D + 0.5 * lam.size * math.log(2 * math.pi * D) - 0.5 * np.sum(np.log(lam)))


def gibbs_log_partition(landscape, D, n=None):
    """log Z = log ∫ e^{−L(θ)/D} dθ for a landscape (see the module docstring for which cases).

    A landscape that knows its own reduction says so through its public
    ``gibbs_log_partition(D, n)`` method (quadratics: the Gaussian integral; double wells: a 1-D
    quadrature times Gaussians); otherwise 1-D and 2-D landscapes are integrated over their bounds."""
    D = check_positive("D", D)
    own = getattr(landscape, "gibbs_log_partition", None)
    log_z = own(D, n=n) if callable(own) else None
    if log_z is not None:
        return float(log_z)
    if landscape.dim == 1:
        return gibbs_log_normaliser(landscape, D, n=400 if n is None else n)
    if landscape.dim == 2:
        n = 100 if n is None else check_int("n", n, minimum=8)
        bnd = np.asarray(landscape.bounds, dtype=float)
        rules = [gl_nodes(*panels(bnd[i], n)[:2]) for i in range(2)]
        x0, w0 = (r.ravel() for r in rules[0])
        x1, w1 = (r.ravel() for r in rules[1])
        grid = np.stack(np.meshgrid(x0, x1, indexing="ij"), axis=-1)
        return logsumexp(-landscape.value(grid) / D, np.outer(w0, w1))
    raise ValueError(f"no quadrature for a {landscape.dim}-D {type(landscape).__name__}; pass `log_Z`")


def gibbs_log_density(landscape, D, theta, log_Z=None):
    """log ρ*(θ) = −L(θ)/D − log Z for θ of shape (..., d); exact Gaussian for quadratics."""
    D = check_positive("D", D)
    if log_Z is None:
        log_Z = gibbs_log_partition(landscape, D)
    log_Z = check_real("log_Z", log_Z)
    return -landscape.value(theta) / D - log_Z
