"""Observables of an ensemble: consolidation ratio C, D estimators, the uncertainty product,
first-passage statistics and moments with standard errors."""

from shld.observables.consolidation import (
    REGIME_CUTS,
    REGIMES,
    consolidation_ratio,
    consolidation_ratio_from_norm2,
    ensemble_consolidation_ratio,
    regime_label,
)
from shld.observables.diffusion import (
    DiffusionEstimate,
    NoiseIsotropy,
    d_eff_seed,
    d_sde,
    estimate_D_gradient_variance,
    estimate_D_msd,
    estimate_D_variance_seed,
    noise_isotropy,
)
from shld.observables.first_passage import MFPTEstimate, mfpt_estimate, survival_curve
from shld.observables.stats import Moments, binomial_ci, moments_with_stderr
from shld.observables.uncertainty import UncertaintyProduct, uncertainty_product

__all__ = [
    "REGIME_CUTS", "REGIMES", "consolidation_ratio", "consolidation_ratio_from_norm2",
    "ensemble_consolidation_ratio", "regime_label",
    "DiffusionEstimate", "d_eff_seed", "d_sde", "estimate_D_gradient_variance", "estimate_D_msd",
    "estimate_D_variance_seed", "NoiseIsotropy", "noise_isotropy",
    "MFPTEstimate", "mfpt_estimate", "survival_curve",
    "Moments", "binomial_ci", "moments_with_stderr",
    "UncertaintyProduct", "uncertainty_product",
]
