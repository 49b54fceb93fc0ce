"""Events: threshold crossings, regime changes and sharp drops of C(t) (the seed's early warning).

"Sharp" is a parameter: a drop is reported when the watched value falls to ``1/drop_factor`` of
its maximum over the previous ``window`` records (a ratio, so it is scale-free; the seed gives no
definition). At most one drop event per ``window`` records.
"""

from __future__ import annotations

import math
from collections import deque

from shld._validation import check_int, check_positive, check_real
from shld.observables.consolidation import regime_label


class EventDetector:
    """Watches one key of the monitor's records (default ``C_smoothed``).

    Emits dicts ``{"step", "kind", "key", "value", ...}`` with kinds ``cross_below``,
    ``cross_above`` (for each of ``thresholds``), ``regime_change`` (labels from
    :func:`shld.observables.consolidation.regime_label`), ``sharp_drop`` and ``nonfinite``.
    """

    def __init__(self, key: str = "C_smoothed", thresholds=(1.0,), drop_factor: float = 2.0,
                 window: int = 5):
        self.key = key
        self.thresholds = tuple(check_real("thresholds", t) for t in thresholds)
        self.drop_factor = check_positive("drop_factor", drop_factor)
        if self.drop_factor <= 1.0:
            raise ValueError(f"`drop_factor` must be > 1, got {drop_factor!r}")
        self.window = check_int("window", window, minimum=1)
        self.reset()

    def reset(self):
        self.prev = math.nan
        self.prev_label = None
        self.recent: deque = deque(maxlen=self.window)
        self.cooldown = 0

    def update(self, record: dict) -> list[dict]:
        step = record.get("step")
        out = []
        if record.get("nonfinite"):
            out.append({"step": step, "kind": "nonfinite", "key": "grad_sq_norm",
                        "value": record.get("grad_sq_norm")})
        v = record.get(self.key, math.nan)
        if v is None or not math.isfinite(v):
            return out
        if math.isfinite(self.prev):
            for t in self.thresholds:
                if self.prev >= t > v:
                    out.append({"step": step, "kind": "cross_below", "key": self.key, "value": v,
                                "threshold": t})
                elif self.prev < t <= v:
                    out.append({"step": step, "kind": "cross_above", "key": self.key, "value": v,
                                "threshold": t})
        label = regime_label(v)
        if self.prev_label is not None and label != self.prev_label:
            out.append({"step": step, "kind": "regime_change", "key": self.key, "value": v,
                        "from": self.prev_label, "to": label})
        if self.cooldown > 0:
            self.cooldown -= 1
        elif self.recent:
            peak = max(self.recent)
            if peak > 0 and v <= peak / self.drop_factor:
                out.append({"step": step, "kind": "sharp_drop", "key": self.key, "value": v,
                            "peak": peak, "ratio": v / peak})
                self.cooldown = self.window
        self.recent.append(v)
        self.prev, self.prev_label = v, label
        return out

    def state_dict(self) -> dict:
        return {"prev": self.prev, "prev_label": self.prev_label, "recent": list(self.recent),
                "cooldown": self.cooldown}

    def load_state_dict(self, state: dict) -> None:
        self.prev = float(state["prev"])
        self.prev_label = state["prev_label"]
        self.recent = deque((float(x) for x in state["recent"]), maxlen=self.window)
        self.cooldown = int(state["cooldown"])
