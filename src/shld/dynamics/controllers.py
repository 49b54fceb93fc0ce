"""The seed's adaptive-noise controller, done right, per walker.

Rule (seed, "Adaptive noise intervention"): when the consolidation ratio
C = ‖∇L‖²/(D·d) of a walker falls below ``threshold`` (at steps ≥ ``min_step``),
multiply its D by ``factor`` for ``hold_steps`` steps, then restore it.

The seed's reference code never restores D: its restore branch tests
``step - interventions[-1] > 10`` right after appending ``step`` to ``interventions``,
which is always false, so D is multiplied by 5 on *every* step with C < threshold and
grows without bound. ``restore=False`` reproduces that literal behaviour (for the audit);
the default ``restore=True`` is the documented intent. While a walker is boosted it is not
re-triggered; ``cooldown_steps`` adds a pause after each restore.

C is evaluated with the walker's *current* D (as in the seed), so a boosted walker has a
smaller C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shld._validation import check_int, check_positive
from shld.dynamics.backends import NumpyBackend

_NUMPY = NumpyBackend()


@dataclass
class AdaptiveNoise:
    threshold: float = 0.5
    factor: float = 5.0
    hold_steps: int = 10
    min_step: int = 51
    restore: bool = True
    cooldown_steps: int = 0

    def __post_init__(self):
        check_positive("threshold", self.threshold)
        check_positive("factor", self.factor)
        check_int("hold_steps", self.hold_steps, minimum=1)
        check_int("min_step", self.min_step, minimum=0)
        check_int("cooldown_steps", self.cooldown_steps, minimum=0)

    def init_state(self, n_walkers: int, backend=None) -> dict:
        """Per-walker state: the multiplier of D, the step a boost ends, the end of the pause after it and
        the count of interventions. On ``backend``'s arrays (:mod:`shld.dynamics.backends`; numpy by
        default), so that a run on a GPU keeps it there: the multiplier in the run's float dtype on torch
        (float64 on numpy, the engine's historical bits), the steps and counts as int64."""
        bk = _NUMPY if backend is None else backend
        return {"multiplier": bk.full(n_walkers, 1.0, "float64" if bk.name == "numpy" else bk.dtype_name),
                "boost_until": bk.full(n_walkers, -1, "int64"),
                "quiet_until": bk.full(n_walkers, -1, "int64"),
                "n_interventions": bk.full(n_walkers, 0, "int64")}

    def update(self, state: dict, step: int, C, backend=None) -> np.ndarray:
        """Update the per-walker multiplier of D after ``step`` from the walkers' C (an array of the
        state's backend; +inf for walkers out of the run); returns the host indices triggered now."""
        bk = _NUMPY if backend is None else backend
        mult = state["multiplier"]
        if self.restore:
            ending = state["boost_until"] == step
            if bk.any(ending):
                mult[ending] = 1.0
                state["quiet_until"][ending] = step + self.cooldown_steps
            if step < self.min_step:
                return _none()
            fire = (state["boost_until"] <= step) & (state["quiet_until"] <= step) & (C < self.threshold)
            if not bk.any(fire):
                return _none()
            mult[fire] = self.factor
            state["boost_until"][fire] = step + self.hold_steps
        else:
            if step < self.min_step:
                return _none()
            fire = C < self.threshold
            if not bk.any(fire):
                return _none()
            mult[fire] *= self.factor
        state["n_interventions"][fire] += 1
        return bk.flatnonzero(fire)


def _none() -> np.ndarray:
    return np.empty(0, dtype=np.intp)
