"""Deprecated: the torch engine is now a backend of the one driver.

``simulate_torch(landscape, theta0, ...)`` is ``simulate(landscape, theta0, ..., backend="torch")``
with this function's old defaults (float32, ``record_every`` = n_steps/100); it returns the same
:class:`~shld.dynamics.SimulationResult` as every run. Use :func:`shld.dynamics.simulate` directly.
"""

from __future__ import annotations

import warnings

from shld.dynamics.simulate import SimulationResult, simulate

#: The old result type: every run now returns a SimulationResult.
TorchSimulationResult = SimulationResult


def simulate_torch(landscape, theta0, D=0.1, dt: float = 1e-3, n_steps: int = 1000, *,
                   n_walkers: int | None = None, seed: int = 0, dtype: str = "float32", device: str = "cpu",
                   record_every: int | None = None, target=None, check_every: int = 100,
                   progress: bool = False) -> SimulationResult:
    """Deprecated alias of ``simulate(..., backend="torch", device=device, dtype=dtype)``."""
    warnings.warn("simulate_torch is deprecated: use shld.dynamics.simulate(..., backend='torch', "
                  "device=..., dtype=...), which returns the same SimulationResult and has every feature "
                  "of the engine", DeprecationWarning, stacklevel=2)
    if record_every is None:
        record_every = max(1, int(n_steps) // 100) if isinstance(n_steps, int) and n_steps > 0 else 1
    return simulate(landscape, theta0, D=D, dt=dt, n_steps=n_steps, n_walkers=n_walkers, seed=seed,
                    backend="torch", device=device, dtype=dtype, record_every=record_every, target=target,
                    check_every=check_every, progress=progress)
