"""Gradient-noise statistics: definitions, estimators and their smoothing.

Conventions (one name per quantity across SHLD)
-----------------------------------------------
* The training loss of a mini-batch of ``B`` samples is the **mean** of per-sample losses,
  ``L_B = (1/B) Σ_i ℓ_i`` (``loss_reduction="mean"``, the PyTorch default). With a **sum** loss
  every gradient is ``B`` times larger and every squared norm ``B²`` times larger; the monitor
  rescales to the mean convention before it computes anything below, so the numbers do not
  depend on the reduction once it is declared (or detected, see ``detect_reduction``).
* ``g_i = ∇ℓ_i`` are per-sample gradients, ``g_B = (1/B) Σ_i g_i`` the mini-batch gradient and
  ``G = E[g_i]`` the full-data gradient. ``d`` is the number of trainable scalar parameters
  monitored (the sum of ``p.numel()``).
* ``Σ = Cov[g_i]`` is the **per-sample** gradient covariance; ``tr Σ̂`` its unbiased estimate
  (ddof = 1 over the ``B`` samples). The mini-batch gradient has covariance ``Σ_B = Σ/B``.

Quantities
----------
``B_simple = tr Σ / ‖G‖²``
    The "simple" gradient noise scale of McCandlish et al. (2018), "An Empirical Model of
    Large-Batch Training", arXiv:1812.06162, eq. (2.8): the critical batch size.
``D_seed = tr Σ_B / (2 d) = tr Σ / (2 B d)``
    The seed's "method 1" D ≈ Var[g]/2 with Var the per-coordinate variance of the
    *mini-batch* gradient, averaged over coordinates.
``C = ‖∇L‖² / (D_seed · d) = 2 B ‖G‖² / tr Σ = 2 B / B_simple``
    The seed's consolidation ratio. The seed's "C ≈ 1" is therefore the batch size
    ``B ≈ B_simple / 2``, i.e. half the critical batch size.
``D_sde = η · tr Σ / (2 B d)``
    The temperature of the SDE ``dθ = −∇L dt + √(2 D_sde) dW`` that SGD with learning rate η
    approximates when time is ``t = step · η``. (``D_sde = η · D_seed``.)
``D_eff = η² σ² / B`` with ``σ² = tr Σ / d``
    The seed's per-step D ("D_eff ≈ α²σ²/B"): the variance per coordinate of one SGD step's
    noise ``η (g_B − G)``, with time measured in steps. Not a temperature in loss units.

Plug-in bias and the unbiased estimate
--------------------------------------
``E‖g_B‖² = ‖G‖² + tr Σ / B``. The plug-in ``C_plugin = 2B‖g_B‖²/tr Σ̂`` therefore has
expectation ≈ ``C_true + 2``: a floor near 2 even when the true C is far below 1. The unbiased
numerator is ``‖G‖²_unb = ‖g_B‖² − tr Σ̂ / B`` (it can be negative on a single batch), giving
``C_unbiased = 2B‖G‖²_unb / tr Σ̂ = C_plugin − 2``. The **smoothed** estimate keeps separate
exponential running averages of the numerator ``‖G‖²_unb`` and of ``tr Σ̂ / B`` and reports their
ratio (a ratio of averages, not an average of ratios) with a delta-method standard error.
The monitor's regime labels use the smoothed C.
"""

from __future__ import annotations

import math

from shld._validation import check_int, check_real

#: Names of the per-record quantities produced by :func:`noise_quantities`, in column order.
NOISE_KEYS = (
    "batch_size", "dim", "grad_sq_norm", "trace_sigma", "grad_sq_norm_unbiased",
    "B_simple_plugin", "B_simple", "C_plugin", "C_unbiased", "D_seed", "D_sde", "D_eff",
)


def trace_sigma_from_groups(sum_weighted_sq: float, total: int, n_groups: int, mean_sq: float) -> float:
    """Unbiased tr Σ (per-sample covariance) from group means.

    With ``k = n_groups`` groups (single samples, micro-batches or DDP ranks) of sizes ``b_j``
    (``Σ b_j = B = total``) and group-mean gradients ``m_j`` with overall mean ``ḡ``::

        tr Σ̂ = Σ_j b_j ‖m_j − ḡ‖² / (k − 1) = (Σ_j b_j ‖m_j‖² − B ‖ḡ‖²) / (k − 1)

    which is unbiased for any group sizes (one-way ANOVA). ``sum_weighted_sq`` is
    ``Σ_j b_j ‖m_j‖²`` and ``mean_sq`` is ``‖ḡ‖²``. Per-sample groups (``b_j = 1, k = B``) give the
    usual ddof = 1 estimate.
    """
    if n_groups < 2:
        return math.nan
    return (float(sum_weighted_sq) - total * float(mean_sq)) / (n_groups - 1)


def _d_eff(lr, sigma2, B):
    try:  # the core's definition (shld.observables.diffusion), when present
        from shld.observables import d_eff_seed  # type: ignore[attr-defined]
        return float(d_eff_seed(lr, sigma2, B))
    except (ImportError, ValueError):  # absent, or lr = 0 which the core rejects
        return lr * lr * sigma2 / B  # seed: D_eff = α² σ² / B


def _d_sde(lr, trace_sigma, B, d):
    try:
        from shld.observables import d_sde  # type: ignore[attr-defined]
        return float(d_sde(lr, trace_sigma, B, d))
    except (ImportError, ValueError):
        return lr * trace_sigma / (2.0 * B * d)  # η·trΣ/(2·B·d)


def noise_quantities(grad_sq_norm: float, trace_sigma: float, batch_size: int, dim: int,
                     lr: float | None = None) -> dict:
    """All noise quantities of one record from ``‖g_B‖²``, ``tr Σ̂``, ``B``, ``d`` (and η).

    Returns a dict with the keys of :data:`NOISE_KEYS`. Non-finite or degenerate inputs give
    NaN (never an exception): a record is data. ``B_simple`` uses the unbiased ``‖G‖²`` and is
    ``inf`` when that estimate is ≤ 0; ``C_unbiased`` may be negative on a single batch.
    ``D_sde`` and ``D_eff`` are NaN when ``lr`` is None.
    """
    B = check_int("batch_size", batch_size, minimum=1)
    d = check_int("dim", dim, minimum=1)
    g2 = float(grad_sq_norm)
    tr = float(trace_sigma)
    nan = math.nan
    out = dict.fromkeys(NOISE_KEYS, nan)
    out["batch_size"], out["dim"] = B, d
    out["grad_sq_norm"], out["trace_sigma"] = g2, tr
    if not (math.isfinite(g2) and math.isfinite(tr)):
        return out
    g2u = g2 - tr / B
    out["grad_sq_norm_unbiased"] = g2u
    D_seed = tr / (2.0 * B * d)
    out["D_seed"] = D_seed
    if tr > 0:
        out["C_plugin"] = 2.0 * B * g2 / tr
        out["C_unbiased"] = 2.0 * B * g2u / tr
        out["B_simple_plugin"] = tr / g2 if g2 > 0 else math.inf
        out["B_simple"] = tr / g2u if g2u > 0 else math.inf
    if lr is not None:
        eta = check_real("lr", lr)
        out["D_sde"] = _d_sde(eta, tr, B, d)
        out["D_eff"] = _d_eff(eta, tr / d, B)
    return out


class RatioSmoother:
    """Exponential running averages of a numerator ``N`` and denominator ``S`` and their ratio.

    For the consolidation ratio ``N = ‖G‖²_unb`` and ``S = tr Σ̂ / B``, so that
    ``C_smoothed = 2 N̄ / S̄``. Weights are ``w_t ∝ β^(T−t)`` with bias correction (the first
    update returns the first values exactly). The standard error uses the delta method on the
    weighted second moments, with effective sample size ``n_eff = (Σw)²/Σw²``::

        Var(N̄/S̄) ≈ (N̄/S̄)² · (V_N/N̄² + V_S/S̄² − 2 V_NS/(N̄ S̄)) / n_eff

    It is a rough band (records are autocorrelated and parameters move), not a confidence
    interval. ``beta = 0`` disables smoothing.
    """

    def __init__(self, beta: float = 0.9):
        beta = check_real("smoothing", beta)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"`smoothing` must be in [0, 1), got {beta!r}")
        self.beta = beta
        self.reset()

    def reset(self) -> None:
        self.w = self.w2 = 0.0
        self.n = self.s = self.nn = self.ss = self.ns = 0.0

    def update(self, num: float, den: float, scale: float = 1.0) -> tuple[float, float]:
        """Add one record; return (``scale · N̄/S̄``, its standard error). Non-finite input is skipped."""
        if math.isfinite(num) and math.isfinite(den):
            b = self.beta
            self.w = b * self.w + 1.0
            self.w2 = b * b * self.w2 + 1.0
            for name, val in (("n", num), ("s", den), ("nn", num * num), ("ss", den * den),
                              ("ns", num * den)):
                setattr(self, name, b * getattr(self, name) + val)
        return self.value(scale)

    def value(self, scale: float = 1.0) -> tuple[float, float]:
        if self.w == 0.0:
            return math.nan, math.nan
        n, s = self.n / self.w, self.s / self.w
        if s <= 0:
            return math.nan, math.nan
        r = n / s
        n_eff = self.w * self.w / self.w2
        if n_eff <= 1.0 + 1e-12:
            return scale * r, math.nan
        vn = max(self.nn / self.w - n * n, 0.0)
        vs = max(self.ss / self.w - s * s, 0.0)
        vns = self.ns / self.w - n * s
        # delta method for a ratio; written without dividing by n (which may be ~0)
        var = (vn - 2.0 * r * vns + r * r * vs) / (s * s) / (n_eff - 1.0)
        return scale * r, scale * math.sqrt(max(var, 0.0))

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("beta", "w", "w2", "n", "s", "nn", "ss", "ns")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, float(v))

