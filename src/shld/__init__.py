"""SHLD: Stochastic Harmonic Learning Dynamics.

Langevin ensembles and Fokker–Planck solvers over loss landscapes, closed-form theory,
and live diagnostics of PyTorch training (the consolidation ratio C(t), gradient noise,
sharpness). The core needs only numpy, scipy and matplotlib; ``shld.torch`` needs PyTorch.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # lazy, so `import shld` stays light and never imports torch
    if name == "StochasticHarmonicLearning":
        from shld.seed_api import StochasticHarmonicLearning

        return StochasticHarmonicLearning
    raise AttributeError(f"module 'shld' has no attribute {name!r}")


__all__ = ["StochasticHarmonicLearning", "__version__"]
