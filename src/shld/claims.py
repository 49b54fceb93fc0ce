"""Verdicts and claims rows: the small shared vocabulary of the claims audit.

Every audited experiment's summary carries ``"claims"``: a list of rows built with
:func:`claim_row`. A row has the keys

==============  ===============================================================
``id``          short stable identifier, e.g. ``"escape-stuck-5000"``
``claim``       the claim in a few words
``seed_value``  the seed's number or statement, as a string
``measured``    what SHLD measured, as a string with its uncertainty
``value``       the measured number (float) or None
``uncertainty`` its uncertainty (float, same units) or None
``verdict``     one of :data:`VERDICTS`
``rule``        the verdict rule, a constant of the experiment module fixed before any run
``figure``      path of the figure relative to the run folder, or None
==============  ===============================================================

The helpers below turn measured numbers into verdicts by rules stated in their
docstrings. They are pure functions of their inputs; nothing here knows the seed's numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from shld._validation import check_int, check_positive, check_real


class Verdict(str, Enum):
    """The verdicts of the audit (string-valued, so rows stay plain JSON). ``depends on reading``: the
    seed's text admits several readings (e.g. D per coordinate or total) and their verdicts differ; the
    row's measured text gives each reading's verdict (:func:`by_reading`)."""

    HOLDS = "holds"
    FAILS = "fails"
    PARTLY = "partly"
    NOT_TESTABLE = "not testable here"
    DEPENDS = "depends on reading"

    def __str__(self) -> str:  # "holds", not "Verdict.HOLDS"
        return self.value


HOLDS, FAILS, PARTLY, NOT_TESTABLE = Verdict.HOLDS, Verdict.FAILS, Verdict.PARTLY, Verdict.NOT_TESTABLE
DEPENDS = Verdict.DEPENDS
VERDICTS: tuple[str, ...] = tuple(v.value for v in Verdict)
CLAIM_KEYS: tuple[str, ...] = ("id", "claim", "seed_value", "measured", "value", "uncertainty",
                               "verdict", "rule", "figure")


def _opt_float(name: str, x) -> float | None:
    """None stays None; NaN becomes None (no number); anything else must be real."""
    if x is None:
        return None
    try:
        if math.isnan(float(x)):
            return None
    except (TypeError, ValueError):
        pass
    return check_real(name, x)


def claim_row(id: str, claim: str, seed_value: str, measured: str, verdict: str | Verdict, rule: str,
              value: float | None = None, uncertainty: float | None = None,
              figure: str | None = None) -> dict:
    """Build one validated claims row (a plain dict with exactly :data:`CLAIM_KEYS`)."""
    for name, text in (("id", id), ("claim", claim), ("seed_value", seed_value), ("measured", measured),
                       ("rule", rule)):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"`{name}` must be a non-empty string, got {text!r}")
    v = verdict.value if isinstance(verdict, Verdict) else verdict
    if v not in VERDICTS:
        raise ValueError(f"`verdict` must be one of {list(VERDICTS)}, got {verdict!r}")
    if figure is not None and (not isinstance(figure, str) or figure.startswith("/")):
        raise ValueError(f"`figure` must be None or a path relative to the run folder, got {figure!r}")
    return {"id": id, "claim": claim, "seed_value": seed_value, "measured": measured,
            "value": _opt_float("value", value), "uncertainty": _opt_float("uncertainty", uncertainty),
            "verdict": v, "rule": rule, "figure": figure}


def validate_claims(rows: Iterable[dict]) -> list[dict]:
    """Check a summary's ``claims`` list: every row has exactly the contract's keys and a valid
    verdict; ids are unique. Returns the rows; raises ``ValueError`` naming the first problem."""
    rows = list(rows)
    seen = set()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"`claims[{i}]` must be a dict, got {type(row).__name__}")
        missing = [k for k in CLAIM_KEYS if k not in row]
        extra = [k for k in row if k not in CLAIM_KEYS]
        if missing or extra:
            raise ValueError(f"`claims[{i}]` (id {row.get('id')!r}) has missing keys {missing} "
                             f"and unknown keys {extra}; expected {list(CLAIM_KEYS)}")
        if row["verdict"] not in VERDICTS:
            raise ValueError(f"`claims[{i}].verdict` must be one of {list(VERDICTS)}, got {row['verdict']!r}")
        if row["id"] in seen:
            raise ValueError(f"`claims` has duplicate id {row['id']!r}")
        seen.add(row["id"])
    return rows


# --------------------------------------------------------------------------------------
# formatting


def format_pm(value: float | None, uncertainty: float | None = None, digits: int = 3) -> str:
    """``"1.23 ± 0.04"`` with ``digits`` significant digits; ``"n/a"`` for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.{digits}g}"
    if uncertainty is not None and math.isfinite(uncertainty):
        text += f" ± {uncertainty:.2g}"
    return text


# --------------------------------------------------------------------------------------
# fractions with binomial (Wilson) confidence intervals


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``k/n`` (scipy's implementation)."""
    from scipy.stats import binomtest

    n = check_int("n", n, minimum=1)
    k = check_int("k", k, minimum=0)
    if k > n:
        raise ValueError(f"`k` must be <= n={n}, got {k}")
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def _pct(x: float) -> str:
    """A fraction as a percentage with one decimal, or more when one would round it to 0 % or 100 % (1999/2000
    is 99.95 %, not 100.0 %)."""
    for digits in range(1, 6):
        text = f"{x:.{digits}%}"
        if (0.0 < x and float(text[:-1]) == 0.0) or (x < 1.0 and float(text[:-1]) == 100.0):
            continue
        return text
    return text


@dataclass(frozen=True)
class FractionTest:
    """A fraction k/n, its Wilson interval, the level it was compared with and the verdict."""

    k: int
    n: int
    p: float
    low: float
    high: float
    level: float
    verdict: str

    @property
    def measured(self) -> str:
        return f"{_pct(self.p)} ({self.k}/{self.n}; 95% CI {_pct(self.low)}-{_pct(self.high)})"

    @property
    def halfwidth(self) -> float:
        return 0.5 * (self.high - self.low)


#: the rule of :func:`fraction_at_least`, for claims rows
RULE_AT_LEAST = ("holds if the measured fraction reaches the level; fails if the whole Wilson 95% interval lies "
                 "below it (the data exclude the claim); partly if the fraction is below the level but the "
                 "interval still reaches it (not excluded, not shown)")


def fraction_at_least(k: int, n: int, level: float, confidence: float = 0.95) -> FractionTest:
    """Claim "the fraction is at least ``level``" (:data:`RULE_AT_LEAST`): **holds** if k/n ≥ ``level``;
    **fails** if the Wilson interval's upper end is below ``level``; **partly** otherwise (8/10 against
    90 %: the point is below, the interval [0.49, 0.94] still reaches 0.9)."""
    level = check_real("level", level)
    lo, hi = wilson_interval(k, n, confidence)
    verdict = HOLDS if k / n >= level else FAILS if hi < level else PARTLY
    return FractionTest(k, n, k / n, lo, hi, level, verdict.value)


def fraction_at_most(k: int, n: int, level: float, confidence: float = 0.95) -> FractionTest:
    """Claim "the fraction is at most ``level``", the mirror of :func:`fraction_at_least`: **holds** if
    k/n ≤ ``level``; **fails** if the Wilson interval's lower end is above ``level``; **partly** otherwise."""
    level = check_real("level", level)
    lo, hi = wilson_interval(k, n, confidence)
    verdict = HOLDS if k / n <= level else FAILS if lo > level else PARTLY
    return FractionTest(k, n, k / n, lo, hi, level, verdict.value)


def fractions_differ(k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95) -> int:
    """+1 if fraction 1 is above fraction 2 with non-overlapping Wilson intervals, −1 if below,
    0 if the intervals overlap."""
    lo1, hi1 = wilson_interval(k1, n1, confidence)
    lo2, hi2 = wilson_interval(k2, n2, confidence)
    if lo1 > hi2:
        return 1
    if hi1 < lo2:
        return -1
    return 0


# --------------------------------------------------------------------------------------
# numbers against numbers


def agrees_within(measured: float, uncertainty: float, target: float, *, z: float = 2.0,
                  rel_tol: float = 0.0) -> bool:
    """|measured − target| ≤ z·uncertainty + rel_tol·|target|."""
    measured = check_real("measured", measured)
    uncertainty = check_positive("uncertainty", uncertainty, allow_zero=True, allow_inf=True)
    target = check_real("target", target)
    return abs(measured - target) <= z * uncertainty + rel_tol * abs(target)


#: A "holds" by agreement within errors needs a test that would have seen a difference of this relative
#: size: z·se (+ allowance) at most this fraction of the measured value.
RESOLUTION = 0.25


def agreement_verdict(measured: float, se: float, target: float, *, z: float = 3.0, allowance: float = 0.0,
                      partly: float = 0.25, resolution: float = RESOLUTION) -> str:
    """Claim "``measured`` equals ``target``" for a measurement with standard error ``se``.

    Rule: **not testable** when the measurement or its error is not finite, or when its resolution
    z·se + allowance exceeds ``resolution``·|measured| (so few samples that a 25 % disagreement would
    pass as agreement); **holds** if |measured − target| ≤ z·se + allowance; **partly** if it is within
    ``partly``·|measured|; **fails** otherwise. ``allowance`` is a known bias of the method (≥ 0).
    """
    if not (math.isfinite(measured) and math.isfinite(se)):
        return NOT_TESTABLE.value
    band = z * se + allowance
    if band > resolution * abs(measured):
        return NOT_TESTABLE.value
    gap = abs(measured - target)
    if gap <= band:
        return HOLDS.value
    if gap <= partly * abs(measured):
        return PARTLY.value
    return FAILS.value


def bound_verdict(measured: Sequence[float], bound: Sequence[float], se: Sequence[float] | None = None,
                  *, z: float = 3.0, direction: str = "upper") -> str:
    """Claim "``measured`` stays below ``bound``" (``direction="upper"``) or above it (``"lower"``)
    at every point.

    Rule: a point *violates* the bound when it is beyond it by more than ``z`` standard
    errors. **holds** if no point violates it, **fails** if every point does, **partly**
    otherwise.
    """
    import numpy as np

    m = np.asarray(measured, dtype=float)
    b = np.broadcast_to(np.asarray(bound, dtype=float), m.shape)
    s = np.zeros_like(m) if se is None else np.broadcast_to(np.asarray(se, dtype=float), m.shape)
    if direction == "upper":
        bad = m - z * s > b
    elif direction == "lower":
        bad = m + z * s < b
    else:
        raise ValueError(f"`direction` must be one of ['upper', 'lower'], got {direction!r}")
    if m.size == 0:
        raise ValueError("`measured` must not be empty")
    if not bad.any():
        return HOLDS.value
    if bad.all():
        return FAILS.value
    return PARTLY.value


def k_of_n(k: int, n: int, need: int) -> str:
    """"In at least ``need`` of ``n`` seeds": **holds** if k ≥ need, **fails** if k = 0,
    **partly** otherwise."""
    k = check_int("k", k, minimum=0)
    n = check_int("n", n, minimum=1)
    need = check_int("need", need, minimum=1)
    if k > n:
        raise ValueError(f"`k` must be <= n={n}, got {k}")
    if k >= need:
        return HOLDS.value
    return FAILS.value if k == 0 else PARTLY.value


def combine(verdicts: Iterable[str]) -> str:
    """One verdict from several parts: all holds → holds; all fails → fails; any mixture of
    holds/fails/partly → partly. "not testable here" parts are ignored unless all are."""
    vs = [str(v) for v in verdicts]
    for v in vs:
        if v not in VERDICTS:
            raise ValueError(f"`verdicts` entries must be one of {list(VERDICTS)}, got {v!r}")
    tested = [v for v in vs if v != NOT_TESTABLE.value]
    if not tested:
        return NOT_TESTABLE.value
    if all(v == HOLDS.value for v in tested):
        return HOLDS.value
    if all(v == FAILS.value for v in tested):
        return FAILS.value
    return PARTLY.value


__all__ = [
    "Verdict", "HOLDS", "FAILS", "PARTLY", "NOT_TESTABLE", "VERDICTS", "CLAIM_KEYS", "claim_row",
    "validate_claims", "format_pm", "wilson_interval", "FractionTest", "fraction_at_least",
    "fraction_at_most", "fractions_differ", "agrees_within", "agreement_verdict", "RESOLUTION",
    "bound_verdict", "k_of_n", "combine", "DEPENDS",
    "by_reading", "RULE_AT_LEAST",
]


def by_reading(verdicts: dict[str, str]) -> str:
    """The headline verdict of a claim tested under several readings (reading → verdict): the common
    verdict when they agree, ``depends on reading`` when they do not."""
    values = {Verdict(v).value for v in verdicts.values()}
    if not values:
        raise ValueError("`verdicts` must name at least one reading")
    return values.pop() if len(values) == 1 else DEPENDS.value
