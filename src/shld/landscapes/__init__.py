"""Loss landscapes evaluated on batches θ of shape (..., d); see :mod:`shld.landscapes.base`."""

from shld.landscapes.base import CriticalPoint, Landscape
from shld.landscapes.callables import FunctionLandscape
from shld.landscapes.double_well import DoubleWell, TiltedDoubleWell
from shld.landscapes.muller_brown import MullerBrown, Rosenbrock
from shld.landscapes.quadratic import Quadratic, RandomQuadratic, spectrum
from shld.landscapes.registry import available_landscapes, make_landscape, register_landscape

__all__ = [
    "CriticalPoint", "Landscape", "FunctionLandscape", "DoubleWell", "TiltedDoubleWell",
    "MullerBrown", "Rosenbrock", "Quadratic", "RandomQuadratic", "spectrum",
    "available_landscapes", "make_landscape", "register_landscape",
]
