"""The seed's C-driven learning-rate rule as a scheduler.

Seed ("Practical Recommendations", item 2)::

    if C < 0.5:  lr *= 1.5    # boost exploration
    elif C > 20: lr *= 0.7    # converging too fast, may be stuck

``CScheduler`` applies it to every param group once per *new* monitor record, clips the result to
``[min_lr, max_lr]`` and then waits ``cooldown`` optimizer steps before acting again. C is read
from the monitor's latest record (``key``, default ``C_smoothed``; the plug-in C has a floor near
2 — see :mod:`shld.torch.stats` — so ``C_plugin < 0.5`` would almost never fire). Note the seed
elsewhere says "reduce α when C(t) < 1 (consolidate)", the opposite direction; the rule here is
the seed's adaptive one, and ``up``/``down`` can be set to either reading.

``key`` must name a C of the monitor's records (``C_smoothed``, ``C_unbiased``, ``C_plugin`` or
``C/<group>`` for one of the monitor's groups); anything else raises ``ValueError`` at construction
with the allowed keys listed (a misspelt key would otherwise read NaN and never act).
"""

from __future__ import annotations

import math

from shld._validation import check_int, check_positive

#: The monitor's record keys that hold a consolidation ratio C (besides per-group ``C/<group>``).
C_KEYS = ("C_smoothed", "C_unbiased", "C_plugin")


def _allowed_keys(monitor) -> list[str]:
    groups = getattr(monitor, "group_names", None)
    return list(C_KEYS) + ([f"C/{g}" for g in groups] if groups is not None else [])


def check_key(key, monitor=None) -> str:
    """``key`` must name a C in the monitor's records: :data:`C_KEYS`, or ``C/<group>`` for one of the
    monitor's groups (any group when no monitor is given). The message lists the allowed keys."""
    allowed = _allowed_keys(monitor)
    if isinstance(key, str) and (key in allowed or (monitor is None and key.startswith("C/") and len(key) > 2)):
        return key
    extra = "" if monitor is not None else " or 'C/<group>'"
    raise ValueError(f"`key` must be one of {allowed}{extra} (a C of the monitor's records), got {key!r}")


class CScheduler:
    def __init__(self, optimizer, monitor=None, *, low: float = 0.5, high: float = 20.0, up: float = 1.5,
                 down: float = 0.7, min_lr: float | None = None, max_lr: float | None = None,
                 cooldown: int = 0, key: str = "C_smoothed"):
        self.optimizer = optimizer
        self.monitor = monitor
        self.low = check_positive("low", low, allow_zero=True)
        self.high = check_positive("high", high)
        if self.high <= self.low:
            raise ValueError(f"`high` must be > `low`, got high={high!r}, low={low!r}")
        self.up = check_positive("up", up)
        self.down = check_positive("down", down)
        base = [float(g["lr"]) for g in optimizer.param_groups]
        self.min_lr = [b / 100 if min_lr is None else check_positive("min_lr", min_lr, allow_zero=True)
                       for b in base]
        self.max_lr = [b * 100 if max_lr is None else check_positive("max_lr", max_lr) for b in base]
        self.cooldown = check_int("cooldown", cooldown, minimum=0)
        self.key = check_key(key, monitor)
        self.last_record_step = -1
        self.wait = 0
        self.n_steps = 0
        self.history: list[dict] = []

    def get_last_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def step(self, C: float | None = None) -> float | None:
        """Apply the rule once; C defaults to the monitor's latest record if it is new.

        Returns the factor applied (None when nothing changed).
        """
        self.n_steps += 1
        if self.wait > 0:
            self.wait -= 1
            return None
        if C is None:
            rec = self.monitor.last if self.monitor is not None else None
            if rec is None or rec["step"] == self.last_record_step:
                return None
            self.last_record_step = rec["step"]
            if self.key not in rec:  # e.g. the monitor rebuilt its groups after a parameter change
                C_in_rec = [k for k in rec if k in C_KEYS or k.startswith("C/")]
                raise ValueError(f"`key`={self.key!r} is not in the monitor's record of step {rec['step']}; "
                                 f"its C keys are {C_in_rec}")
            C = rec[self.key]
        C = float(C)
        if not math.isfinite(C):
            return None
        factor = self.up if C < self.low else self.down if C > self.high else None
        if factor is None:
            return None
        for g, lo, hi in zip(self.optimizer.param_groups, self.min_lr, self.max_lr):
            g["lr"] = min(max(g["lr"] * factor, lo), hi)
        self.wait = self.cooldown
        self.history.append({"step": self.n_steps, "C": C, "factor": factor, "lr": self.get_last_lr()})
        return factor

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "monitor")}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)
