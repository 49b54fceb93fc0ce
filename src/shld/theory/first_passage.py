r"""Exact mean first-passage time of 1-D overdamped Langevin dynamics, by quadrature.

For dx = −U'(x) dt + √(2D) dW with a reflecting wall at a and an absorbing point b (a < x0 ≤ b),

    T(x0 → b) = (1/D) ∫_{x0}^{b} dy e^{U(y)/D} ∫_{a}^{y} dz e^{−U(z)/D}        (Gardiner §5.2.7)

and the mirrored formula when b < x0 ≤ a (reflecting above). Time is dynamics time t (an SGD
step with learning rate η is dt = η). a = ∓inf is allowed when e^{−U/D} is integrable in that tail.

Numerics: both integrals use 16-point Gauss–Legendre panels (``n`` panels over the range, the
inner integral accumulated panel by panel plus a Gauss rule on each partial panel), on
exponents shifted by their maxima, so ΔE/D in the hundreds does not overflow (the result is
returned as inf only when T itself exceeds the float range; ask for ``log=True`` to get log T).
An infinite reflecting end is cut where U has risen 60·D above its minimum (e^{−60} relative).
Accuracy is ~1e-12 relative for smooth U when a panel is narrower than a few √(D/|U''|); the
result is refused (``ValueError``: raise ``n``) when ``n`` and 2·``n`` panels disagree on log T
by more than 1e-7, and the 2·``n`` value is returned otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from shld._validation import check_int, check_positive, check_real
from shld.theory._common import GL_W, GL_X, QUADRATURE_TOL, as_potential, gl_nodes, panels, probe_cutoff

__all__ = ["mfpt_1d"]


def mfpt_1d(u, D, x0, b, a=None, n=400, log=False):
    """Exact MFPT T(x0 → b), reflecting at ``a``, absorbing at ``b`` (see the module docstring).

    Parameters
    ----------
    u : vectorised callable U(x) (array in, same-shape array out) or a 1-D landscape.
    D : diffusion coefficient > 0 (temperature in loss units).
    x0, b : start and absorbing point (finite). b > x0 absorbs on the right, b < x0 on the left.
    a : reflecting boundary on the far side of x0 from b; default −inf (b > x0) or +inf (b < x0).
    n : number of Gauss–Legendre panels (16 nodes each) over the whole range.
    log : return log T instead of T.

    Returns T in dynamics-time units (0 when x0 == b; inf only if T overflows a float).
    """
    f = as_potential(u)
    D = check_positive("D", D)
    x0 = check_real("x0", x0)
    b = check_real("b", b)
    n = check_int("n", n, minimum=8)
    if not (math.isfinite(x0) and math.isfinite(b)):
        raise ValueError(f"`x0` and `b` must be finite, got x0={x0}, b={b}")
    if x0 == b:
        return -math.inf if log else 0.0
    sign = 1.0 if b > x0 else -1.0
    if a is None:
        a = -sign * math.inf
    a = check_real("a", a)
    if sign * (x0 - a) < 0:
        side = "<=" if sign > 0 else ">="
        raise ValueError(f"`x0`={x0} must lie between the reflecting `a`={a} and the absorbing "
                         f"`b`={b} (need a {side} x0)")
    if sign * (b - a) <= 0:
        raise ValueError(f"`b`={b} must lie beyond `x0`={x0} from `a`={a}")

    # mirror so that absorption is on the right: y = sign * x
    def g(y, strict=True):
        return f(sign * y, strict=strict)

    ya, y0, yb = sign * a, sign * x0, sign * b
    if math.isinf(ya):
        coarse = np.linspace(y0, yb, 1001)
        ya = probe_cutoff(g, D, y0, -1.0, float(np.min(g(coarse))), scale=max(1.0, yb - y0))
    ya = min(ya, y0)
    logT = _log_mfpt(g, D, ya, y0, yb, n)
    logT2 = _log_mfpt(g, D, ya, y0, yb, 2 * n)
    if not abs(logT2 - logT) <= QUADRATURE_TOL:
        raise ValueError(
            f"mfpt_1d did not converge: log T is {logT:.10g} with {n} panels and {logT2:.10g} with "
            f"{2 * n} (D={D:g}, x0={x0:g}, b={b:g}, reflecting at {a:g}); U varies faster than the "
            f"panels resolve: increase `n`")
    logT = logT2
    if log:
        return logT
    return math.inf if logT > 709.0 else math.exp(logT)


def _log_mfpt(g, D, ya, y0, yb, n):
    """log T for absorption at yb > y0, reflecting at ya ≤ y0, with ``n`` panels (mirrored U ``g``)."""
    edges = [ya, y0, yb] if ya < y0 else [y0, yb]
    left, width, starts = panels(edges, n)
    i0 = starts[1] if ya < y0 else 0            # first panel of the outer range [y0, yb]

    z, wz = gl_nodes(left, width)               # (P, m)
    V = g(z) / D
    vmin = float(np.min(V))
    full = np.sum(wz * np.exp(vmin - V), axis=1)          # ∫ over each panel of e^{-(V-vmin)}
    cum = np.concatenate([[0.0], np.cumsum(full)])[:-1]    # ∫ from ya to each panel's left edge

    # partial panels: ∫_{left_p}^{y_pk} e^{-(V-vmin)} for the outer nodes y_pk
    lo, y = left[i0:, None], z[i0:]
    span = y - lo                                          # (P', m)
    zz = lo[..., None] + 0.5 * span[..., None] * (GL_X + 1.0)   # (P', m, m)
    ww = 0.5 * span[..., None] * GL_W
    part = np.sum(ww * np.exp(vmin - g(zz) / D), axis=-1)
    inner = cum[i0:, None] + part                           # e^{vmin} * ∫_a^y e^{-V}
    with np.errstate(divide="ignore"):
        ell = V[i0:] - vmin + np.log(inner)
    s = float(np.max(ell))
    return s + math.log(float(np.sum(wz[i0:] * np.exp(ell - s)))) - math.log(D)
