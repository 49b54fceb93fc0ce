"""Verdict helpers on synthetic inputs built to hold and to fail."""

import numpy as np
import pytest

from shld.claims import (
    CLAIM_KEYS,
    VERDICTS,
    Verdict,
    agrees_within,
    bound_verdict,
    claim_row,
    combine,
    fraction_at_least,
    fraction_at_most,
    fractions_differ,
    k_of_n,
    validate_claims,
    wilson_interval,
)


def test_claim_row_has_the_contract_keys_and_validates():
    row = claim_row("x-1", "a claim", "90%", "91% ± 1%", Verdict.HOLDS, "rule text", value=0.91,
                    uncertainty=0.01, figure="figures/a.png")
    assert tuple(row) == CLAIM_KEYS
    assert row["verdict"] == "holds"
    assert validate_claims([row]) == [row]
    assert claim_row("x", "c", "s", "m", "fails", "r", value=float("nan"))["value"] is None
    with pytest.raises(ValueError, match="verdict"):
        claim_row("x", "c", "s", "m", "maybe", "r")
    with pytest.raises(ValueError, match="figure"):
        claim_row("x", "c", "s", "m", "holds", "r", figure="/abs/path.png")
    with pytest.raises(ValueError, match="`rule`"):
        claim_row("x", "c", "s", "m", "holds", "")
    with pytest.raises(ValueError, match="duplicate"):
        validate_claims([row, row])
    with pytest.raises(ValueError, match="missing keys"):
        validate_claims([{k: v for k, v in row.items() if k != "rule"}])


def test_wilson_interval_matches_the_closed_form():
    k, n, z = 37, 120, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(centre - half, rel=1e-9)  # same formula, float rounding only
    assert hi == pytest.approx(centre + half, rel=1e-9)


def test_fraction_rules_reach_every_outcome_on_built_inputs():
    # 950/1000 reaches "at least 90%"; 800/1000: CI [0.77, 0.82] lies below 0.9
    assert fraction_at_least(950, 1000, 0.90).verdict == "holds"
    assert fraction_at_least(900, 1000, 0.90).verdict == "holds"          # exactly the level
    assert fraction_at_least(800, 1000, 0.90).verdict == "fails"
    # 8/10 is below 90 % but its interval [0.49, 0.94] still reaches it: not shown, not excluded
    t = fraction_at_least(8, 10, 0.90)
    assert t.verdict == "partly" and t.low < 0.5 < 0.9 < t.high
    assert fraction_at_least(899, 1000, 0.90).verdict == "partly"        # just below, CI reaches 0.9
    assert fraction_at_most(20, 1000, 0.05).verdict == "holds"
    assert fraction_at_most(200, 1000, 0.05).verdict == "fails"
    assert fraction_at_most(2, 10, 0.10).verdict == "partly"              # 20 %, CI [0.06, 0.51]
    assert fractions_differ(900, 1000, 500, 1000) == 1
    assert fractions_differ(500, 1000, 900, 1000) == -1
    assert fractions_differ(500, 1000, 510, 1000) == 0


def test_bound_verdict_and_combinations():
    t = np.linspace(0, 1, 11)
    assert bound_verdict(0.5 * np.ones(11), np.ones(11), 0.01 * np.ones(11)) == "holds"
    assert bound_verdict(2.0 * np.ones(11), np.ones(11), 0.01 * np.ones(11)) == "fails"
    assert bound_verdict(1.0 + t, np.ones(11), 0.01 * np.ones(11)) == "partly"
    # within 3 standard errors above the bound is not a violation
    assert bound_verdict([1.02], [1.0], [0.01]) == "holds"
    assert bound_verdict([0.1], [0.5], None, direction="lower") == "fails"
    assert agrees_within(1.05, 0.03, 1.0)          # 0.05 <= 2 * 0.03
    assert not agrees_within(1.1, 0.03, 1.0)
    assert k_of_n(2, 3, 2) == "holds" and k_of_n(1, 3, 2) == "partly" and k_of_n(0, 3, 2) == "fails"
    assert combine(["holds", "holds", "not testable here"]) == "holds"
    assert combine(["fails", "fails"]) == "fails"
    assert combine(["holds", "fails"]) == "partly"
    assert combine(["not testable here"]) == "not testable here"
    assert set(VERDICTS) == {"holds", "fails", "partly", "not testable here", "depends on reading"}


def test_by_reading_reports_agreement_or_dependence():
    from shld.claims import by_reading

    assert by_reading({"per coordinate": "fails", "total": "fails"}) == "fails"
    assert by_reading({"per coordinate": "fails", "total": "holds"}) == "depends on reading"
    assert by_reading({"only": "partly"}) == "partly"
    with pytest.raises(ValueError):
        by_reading({"x": "maybe"})
    with pytest.raises(ValueError):
        by_reading({})


def test_agreement_verdict_needs_the_power_to_see_a_25_percent_difference():
    from shld.claims import agreement_verdict

    assert agreement_verdict(1.00, 0.05, 1.10) == "holds"                # 10 % ≤ 3·5 %
    assert agreement_verdict(1.00, 0.05, 1.20) == "partly"               # 20 %: > 15 %, ≤ 25 %
    assert agreement_verdict(1.00, 0.05, 1.40) == "fails"
    assert agreement_verdict(1.00, 0.09, 1.00) == "not testable here"    # 27 % > 25 %: cannot resolve
    assert agreement_verdict(1.00, 0.05, 1.20, allowance=0.06) == "holds"
    assert agreement_verdict(1.00, 0.05, 1.00, allowance=0.11) == "not testable here"
    assert agreement_verdict(float("nan"), 0.05, 1.0) == "not testable here"
    assert agreement_verdict(1.0, float("inf"), 1.0) == "not testable here"


def test_a_fraction_is_never_rounded_to_0_or_100_percent():
    """1999/2000 printed as "100.0%" beside its own count."""
    from shld.claims import fraction_at_least

    assert fraction_at_least(1999, 2000, 0.9).measured.startswith("99.95% (1999/2000; 95% CI 99.7%-99.99%)")
    assert fraction_at_least(2000, 2000, 0.9).measured.startswith("100.0% (2000/2000")
    assert fraction_at_least(900, 1000, 0.9).measured.startswith("90.0% (900/1000")
    assert fraction_at_least(1, 100_000, 0.9).measured.startswith("0.001% (1/100000")
