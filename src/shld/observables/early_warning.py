"""Early-warning detectors on a monitored training run's per-epoch series.

Reusable on any run that records, one row per epoch, the smoothed consolidation ratio C (dimensionless,
``shld.torch``'s ``C_smoothed``), the test loss and the weight norm. All rules are *armed* at the same
epoch (a grokking study arms them when train accuracy first reaches 99 %) and fire on a *change after
arming*: at the first epoch t > arm where the rule's condition is true and was false at t − 1. A
condition already true when the rules are armed must first become false; otherwise every rule that is
true at arming would "fire" exactly at the arming epoch and its lead time would only measure when the
rules were armed. The thresholds are fixed module constants, stated before any run:

============================  ==========================================================================
``seed_c_below_1``            C < 1 (the seed's critical C)
``seed_c_drop``               C ≤ ½ × its maximum over the previous 200 epochs ("drops sharply")
``c_below_2_decreasing``      C < 2 and below its value 20 epochs earlier
``test_loss_onset``           test loss ≤ 0.9 × its maximum since arming (a baseline, not C)
``weight_norm_drop``          weight norm ≤ 0.9 × its maximum since arming (a baseline, not C)
``memorisation``              fires at the arming epoch itself: train accuracy alone (the baseline every
                              rule that fires at arming reduces to)
============================  ==========================================================================

NaN values of a series never fire. All functions are vectorised over epochs.
"""

from __future__ import annotations

import math

import numpy as np

SEED_THRESHOLD = 1.0          # the seed's critical C
SEED_DROP_FACTOR = 0.5        # "drops sharply": to half ...
SEED_DROP_WINDOW = 200        # ... within 200 epochs (the seed's "~200 epochs")
C2_THRESHOLD = 2.0
C2_WINDOW = 20                # "decreasing": below its value 20 epochs earlier
BASELINE_DROP = 0.9           # baselines fire at 90 % of their post-arming maximum
DROP300_WINDOW = 300          # the pre-registered "C falls by half before the transition" window
DROP300_FACTOR = 0.5

WARNING_RULES = ("seed_c_below_1", "seed_c_drop", "c_below_2_decreasing", "test_loss_onset",
                 "weight_norm_drop", "memorisation")
C_RULES = WARNING_RULES[:3]
BASELINES = WARNING_RULES[3:]


def first_epoch(epochs: np.ndarray, mask: np.ndarray, after: float = -np.inf) -> float | None:
    """First epoch with ``mask`` true and epoch ≥ ``after``; None if never."""
    sel = np.flatnonzero(np.asarray(mask, bool) & (np.asarray(epochs) >= after))
    return float(epochs[sel[0]]) if sel.size else None


def running_max(x: np.ndarray) -> np.ndarray:
    """Cumulative maximum with NaN treated as −∞."""
    x = np.where(np.isfinite(x), x, -np.inf)
    return np.maximum.accumulate(x)


def trailing_max(x: np.ndarray, window: int) -> np.ndarray:
    """``out[i] = max(x[max(0, i − window) : i + 1])`` with NaN treated as −∞."""
    x = np.where(np.isfinite(x), np.asarray(x, float), -np.inf)
    padded = np.concatenate([np.full(window, -np.inf), x])
    return np.lib.stride_tricks.sliding_window_view(padded, window + 1).max(axis=1)


def first_rise(epochs: np.ndarray, cond: np.ndarray, arm: float) -> float | None:
    """First epoch t > ``arm`` with ``cond`` true at t and false at t − 1 (None: never): a change after
    arming, so a condition already true at ``arm`` must first become false."""
    e = np.asarray(epochs, float)
    cond = np.asarray(cond, bool)
    before = np.concatenate([[True], cond[:-1]])
    after_arm = np.concatenate([[False], e[:-1] >= arm])       # t − 1 is armed, so t > arm
    return first_epoch(e, after_arm & cond & ~before)


def rule_fires(epochs: np.ndarray, C: np.ndarray, test_loss: np.ndarray, wnorm: np.ndarray,
               arm: float | None) -> dict[str, float | None]:
    """Epoch at which each rule of :data:`WARNING_RULES` first fires (None: never), all armed at ``arm``
    (None: never armed) and firing on a change after it (:func:`first_rise`). ``epochs`` must be
    consecutive integers (one row per epoch)."""
    out = dict.fromkeys(WARNING_RULES)
    if arm is None:
        return out
    e = np.asarray(epochs, float)
    C = np.asarray(C, float)
    armed = e >= arm
    with np.errstate(invalid="ignore"):
        out["seed_c_below_1"] = first_rise(e, C < SEED_THRESHOLD, arm)
        win_max = trailing_max(C, SEED_DROP_WINDOW)
        out["seed_c_drop"] = first_rise(e, np.isfinite(C) & (C <= SEED_DROP_FACTOR * win_max), arm)
        lag = np.full_like(C, np.nan)
        lag[C2_WINDOW:] = C[:-C2_WINDOW] if C2_WINDOW else C
        out["c_below_2_decreasing"] = first_rise(e, (C < C2_THRESHOLD) & (C < lag), arm)
        for name, series in (("test_loss_onset", test_loss), ("weight_norm_drop", wnorm)):
            s = np.asarray(series, float)
            peak = running_max(np.where(armed, s, np.nan))
            out[name] = first_rise(e, armed & (s <= BASELINE_DROP * peak), arm)
    out["memorisation"] = float(arm)
    return out


def c_drop_within(epochs: np.ndarray, C: np.ndarray, t_end: float | None, window: int = DROP300_WINDOW,
                  factor: float = DROP300_FACTOR) -> bool:
    """Whether C falls to ≤ ``factor`` × an earlier value within ``[t_end − window, t_end]``."""
    if t_end is None:
        return False
    e = np.asarray(epochs, float)
    sel = (e >= t_end - window) & (e <= t_end) & np.isfinite(C)
    c = np.asarray(C, float)[sel]
    if c.size < 2:
        return False
    return bool(np.any(c[1:] <= factor * np.maximum.accumulate(c)[:-1]))


def loo_prediction_errors(fires: list[float | None], t_event: list[float | None]) -> list[float]:
    """Leave-one-out relative errors of the prediction ``t_fire(i) + mean_{j≠i} lead(j)`` against
    ``t_event(i)`` (runs where either is None are left out)."""
    pairs = [(f, t) for f, t in zip(fires, t_event) if f is not None and t is not None]
    errs = []
    for i, (f, t) in enumerate(pairs):
        others = [t2 - f2 for j, (f2, t2) in enumerate(pairs) if j != i]
        if others:
            errs.append(abs(f + float(np.mean(others)) - t) / t)
    return errs


def mean_se(values) -> tuple[float, float]:
    """Mean of the non-None ``values`` and its standard error (ddof = 1; NaN when undefined)."""
    v = np.asarray([x for x in values if x is not None], float)
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), math.nan
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


def bootstrap_mean_interval(values, rng: np.random.Generator, *, level: float = 0.95,
                            n_boot: int = 10_000) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of the non-None ``values`` (resampling them with
    replacement ``n_boot`` times; one vectorised draw). ``(nan, nan)`` with fewer than 2 values: one
    value has no spread to resample."""
    v = np.asarray([x for x in values if x is not None], float)
    if v.size < 2:
        return math.nan, math.nan
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


__all__ = ["WARNING_RULES", "C_RULES", "BASELINES", "first_epoch", "first_rise", "running_max", "trailing_max",
           "rule_fires", "c_drop_within", "loo_prediction_errors", "mean_se", "bootstrap_mean_interval"]
