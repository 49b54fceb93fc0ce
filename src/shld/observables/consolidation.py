"""The consolidation ratio C = ‖∇L‖² / (D·d) and its regime labels.

C compares the squared drift ‖∇L‖² with the noise strength D per coordinate (D is the
diffusion coefficient of dθ = −∇L dt + √(2D) dW, a temperature in loss units; d is the
number of parameters). It is dimensionless and does not depend on the time step.

Regime cut points (the seed's table made exact; the seed gives "C ≫ 10", "1 < C < 10",
"C ≈ 1", "C < 1", which overlap). SHLD reads "≈ 1" as within a factor 2 of 1:

==================  ====================  =========================================
label               range                 seed's wording
==================  ====================  =========================================
``deterministic``   C ≥ 10                "C ≫ 10: standard gradient descent"
``transitional``    2 ≤ C < 10            "1 < C < 10: approaching convergence"
``critical``        0.5 ≤ C < 2           "C ≈ 1: signal ≈ noise"
``diffusive``       C < 0.5               "C < 1: random walk"
==================  ====================  =========================================

The lower cut 0.5 coincides with the seed's intervention threshold (C < 0.5).
"""

from __future__ import annotations

import numpy as np

from shld._validation import check_positive

#: Regime cut points: (lower bound, label), highest first.
REGIME_CUTS: tuple[tuple[float, str], ...] = (
    (10.0, "deterministic"),
    (2.0, "transitional"),
    (0.5, "critical"),
    (-np.inf, "diffusive"),
)
REGIMES = tuple(label for _, label in REGIME_CUTS)


def regime_label(C):
    """Regime name for a consolidation ratio (scalar → str, array → array of str).

    NaN maps to ``"undefined"``.
    """
    arr = np.asarray(C, dtype=float)
    out = np.full(arr.shape, "undefined", dtype=object)
    assigned = np.isnan(arr)
    for cut, label in REGIME_CUTS:
        sel = ~assigned & (arr >= cut)
        out[sel] = label
        assigned |= sel
    return out.item() if out.ndim == 0 else out


def consolidation_ratio(grad, D, axis=-1):
    """C = ‖∇L‖² / (D·d) per walker: ``grad`` has shape (..., d); returns shape (...).

    ``D`` > 0 may be a scalar or broadcast against the walker axes.
    """
    g = np.asarray(grad, dtype=float)
    d = g.shape[axis]
    D_arr = np.asarray(D, dtype=float)
    if np.any(~(D_arr > 0)):
        check_positive("D", D_arr.flat[int(np.argmin(D_arr))] if D_arr.size else D)
    return consolidation_ratio_from_norm2(np.sum(g * g, axis=axis), D_arr, d)


def consolidation_ratio_from_norm2(grad_norm2, D, dim, out=None):
    """C = ‖∇L‖² / (D·d) from squared gradient norms ‖∇L‖² already at hand (the formula itself;
    :func:`consolidation_ratio` and :func:`ensemble_consolidation_ratio` call it).

    For hot loops that computed ‖∇L‖² once (the Langevin engine reuses it for several records):
    no validation, D > 0 and ``dim`` = d are the caller's to guarantee; ``out`` (numpy) receives the
    result. Without ``out`` the arithmetic is the arrays' own, so torch tensors stay on their device.
    """
    if out is None and not isinstance(grad_norm2, (int, float)):   # (a Python 0/0 would raise)
        return grad_norm2 / (D * dim)
    return np.divide(grad_norm2, np.multiply(D, dim), out=out)


def ensemble_consolidation_ratio(grad, D):
    """Ensemble C: mean over walkers of ‖∇L‖² divided by D·d (ratio of means, not the mean
    of per-walker ratios; the two agree when D is common to all walkers)."""
    g = np.asarray(grad, dtype=float)
    d = g.shape[-1]
    D = check_positive("D", D)
    return float(consolidation_ratio_from_norm2(np.mean(np.sum(g * g, axis=-1)), D, d))
