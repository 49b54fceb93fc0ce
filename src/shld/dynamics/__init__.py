"""Langevin dynamics of ensembles: integrators, D(t) schedules, the adaptive-noise controller
and the :func:`simulate` driver, on numpy or torch arrays (:mod:`shld.dynamics.backends`)."""

from shld.dynamics.backends import BACKENDS, NumpyBackend, TorchBackend, make_backend
from shld.dynamics.controllers import AdaptiveNoise
from shld.dynamics.integrators import BAOAB, EulerMaruyama, make_integrator
from shld.dynamics.schedules import Constant, CosineAnnealing, ExponentialDecay, Schedule, Warmup
from shld.dynamics.simulate import (
    EnsembleState,
    NonFiniteError,
    Simulation,
    SimulationResult,
    simulate,
)
from shld.dynamics.targets import HalfSpace

__all__ = ["BACKENDS", "NumpyBackend", "TorchBackend", "make_backend",
           "AdaptiveNoise", "BAOAB", "EulerMaruyama", "make_integrator", "Constant", "CosineAnnealing",
           "ExponentialDecay", "Schedule", "Warmup", "EnsembleState", "NonFiniteError", "Simulation",
           "SimulationResult", "simulate", "HalfSpace"]
