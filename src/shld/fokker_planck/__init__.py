"""Fokker–Planck solver and escape-rate toolkit.

Solves ∂ρ/∂t = −∇·(fρ − ∇(Dρ)) — for f = −∇L and constant D the seed's master equation
∂ρ/∂t = ∇·(ρ∇L) + D∇²ρ, stationary law ρ* ∝ exp(−L/D) — on uniform cell-centred grids in
1–3 dimensions with a conservative finite-volume Scharfetter–Gummel discretisation.

Quick start::

    from shld.landscapes import make_landscape
    from shld.fokker_planck import Grid, fokker_planck_operator, stationary_state, relaxation_rates
    L = make_landscape("double-well", barrier=1.0)
    op = fokker_planck_operator(Grid.from_landscape(L, 400), L, D=0.2)
    rho = stationary_state(op)               # the discrete Gibbs density
    gap = relaxation_rates(op, k=2).gap      # total transition rate between the wells
"""

from shld.fokker_planck.boundaries import BOUNDARIES, parse_boundary
from shld.fokker_planck.first_passage import (
    FirstPassage,
    escape_rate,
    mean_first_passage_time,
    survival,
    target_mask,
)
from shld.fokker_planck.grid import Grid
from shld.fokker_planck.observables import (
    covariance,
    free_energy,
    mass,
    mean,
    probability,
    relative_entropy,
    variance,
)
from shld.fokker_planck.operator import (
    CoarseGridWarning,
    FokkerPlanckOperator,
    bernoulli,
    fokker_planck_operator,
)
from shld.fokker_planck.solvers import (
    METHODS,
    Evolution,
    evolve,
    stationary_state,
)
from shld.fokker_planck.spectrum import Spectrum, UnresolvedRateError, relaxation_rates

__all__ = [
    "BOUNDARIES", "METHODS", "Grid", "FokkerPlanckOperator", "fokker_planck_operator", "bernoulli",
    "CoarseGridWarning", "UnresolvedRateError", "parse_boundary",
    "stationary_state", "evolve", "Evolution", "relaxation_rates", "Spectrum",
    "mean_first_passage_time", "FirstPassage", "escape_rate", "survival", "target_mask",
    "mass", "mean", "covariance", "variance", "probability", "relative_entropy", "free_energy",
]
