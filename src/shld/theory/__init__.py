"""Closed forms (numpy only) that double as test oracles.

* :mod:`~shld.theory.kramers` — escape rates: the seed's (ω₀/2π)e^{−ΔE/D}, Kramers–Langer,
  Eyring–Kramers.
* :mod:`~shld.theory.first_passage` — the exact 1-D mean first-passage time by quadrature.
* :mod:`~shld.theory.gibbs` — the stationary Gibbs density and its normalisation.
* :mod:`~shld.theory.ornstein_uhlenbeck` — exact OU moments and the exact Euler–Maruyama moments.
* :mod:`~shld.theory.bounds` — the seed's Theorems 1 and 4 and α_opt, next to what holds.

Conventions: dθ = −∇L dt + √(2D) dW; D a temperature in loss units (ρ* ∝ e^{−L/D}); t is
dynamics time (an SGD step with learning rate η is dt = η). Functions named ``*_seed`` give the
seed's formula as written, labelled; the others are the correct statements.
"""

from shld.theory.bounds import (
    alpha_opt_seed,
    point_mass_counterexample,
    stability_limit,
    theorem1_bound_seed,
    theorem1_ou_product,
    theorem1_stationary_bound,
    theorem4_bound_seed,
    theorem4_bound_smooth,
    theorem4_exact_quadratic,
    theorem4_floor_exact,
    theorem4_floor_ratio,
    theorem4_floor_seed,
)
from shld.theory.first_passage import mfpt_1d
from shld.theory.gibbs import (
    gibbs_cdf_1d,
    gibbs_density_1d,
    gibbs_log_density,
    gibbs_log_normaliser,
    gibbs_log_partition,
    gibbs_mean_1d,
)
from shld.theory.kramers import (
    KramersRates,
    escape_time_seed,
    eyring_kramers_rate,
    kramers_langer_rate,
    kramers_rate_seed,
    kramers_rates,
)
from shld.theory.ornstein_uhlenbeck import (
    em_expected_loss,
    em_mean,
    em_stationary_variance,
    em_variance,
    ou_expected_loss,
    ou_mean,
    ou_stationary_variance,
    ou_variance,
)

__all__ = [
    "kramers_rate_seed", "kramers_langer_rate", "eyring_kramers_rate", "escape_time_seed",
    "KramersRates", "kramers_rates",
    "mfpt_1d",
    "gibbs_cdf_1d", "gibbs_density_1d", "gibbs_log_normaliser", "gibbs_log_partition", "gibbs_log_density",
    "gibbs_mean_1d",
    "ou_mean", "ou_variance", "ou_expected_loss", "ou_stationary_variance",
    "em_mean", "em_variance", "em_stationary_variance", "em_expected_loss",
    "theorem1_bound_seed", "theorem1_stationary_bound", "theorem1_ou_product", "point_mass_counterexample",
    "theorem4_bound_seed", "theorem4_floor_seed", "theorem4_floor_exact", "theorem4_floor_ratio",
    "theorem4_exact_quadratic", "theorem4_bound_smooth",
    "alpha_opt_seed", "stability_limit",
]
