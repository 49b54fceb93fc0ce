"""Theorems experiment at a tiny size: each row against what is known in closed form."""

import numpy as np
import pytest

from shld.claims import validate_claims
from shld.experiments.registry import run_experiment


@pytest.fixture(scope="module", params=[pytest.param({}, id="numpy"),
                                        pytest.param(dict(backend="torch", dtype="float32", device="cpu"),
                                                     id="torch-f32-cpu", marks=pytest.mark.slow)])
def summary(tmp_path_factory, request):
    # the same closed forms hold on the torch backend (other random numbers, the same law)
    if request.param:
        pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("th") / "run"
    _, s = run_experiment("theorems", out, progress=False, seed=1, n_walkers=1500, t3_walkers=1500,
                          t3_dt=0.005, t4_time=4.0, **request.param)
    s["_out"] = out
    return s


def test_rows_follow_the_contract(summary):
    rows = {r["id"]: r for r in validate_claims(summary["claims"])}
    assert set(rows) == {"th1-gibbs", "th1-any", "th2-kramers-seed-form", "th3-gibbs", "th4-convergence",
                         "th4-floor-proportional-to-D"}
    for r in rows.values():
        if r["figure"]:
            assert (summary["_out"] / r["figure"]).exists()


def test_theorem1_gibbs_products_sit_at_or_above_D(summary):
    rows = summary["theorem1"]["gibbs_and_point"]
    gibbs = [r for r in rows if r["kind"] == "gibbs"]
    z = np.array([(r["product"] / r["D"] - 1.0) / (r["se"] / r["D"]) for r in gibbs])
    # stationary theory: product >= D with equality for a quadratic; 4 s.e. over 9 ensembles
    assert np.all(z > -4.0)
    quad = [r for r in gibbs if "quadratic" in r["ensemble"]]
    assert all(abs(r["product"] / r["D"] - 1.0) < 4 * r["se"] / r["D"] + 1e-12 for r in quad)
    by_id = {r["id"]: r for r in summary["claims"]}
    assert by_id["th1-gibbs"]["verdict"] == "holds"
    assert by_id["th1-any"]["verdict"] == "fails"                 # the point mass has product 0
    point = [r for r in rows if r["kind"] == "point"][0]
    assert point["product"] == 0.0


def test_theorem2_ratio_tends_to_the_missing_barrier_curvature_factor(summary):
    # seed prefactor ω0/2π vs Kramers-Langer √(ω0|ω_b|)/2π: ratio √(8/4) = √2 as ΔE/D → ∞
    ratios = [r["seed_times_mfpt"] for r in summary["theorem2"]]
    assert abs(ratios[-1] - np.sqrt(2.0)) < 0.05                 # O(D/ΔE) correction at ΔE/D = 20
    assert ratios[0] > ratios[1] > ratios[2]


def test_theorem3_ensemble_matches_gibbs_and_theorem4_matches_exact_curve(summary):
    assert summary["theorem3"]["ks_pvalue"] >= 0.01
    t4 = summary["theorem4"]
    for o in t4.values():
        assert o["max_abs_z_vs_exact"] < 4.5                     # 100 correlated record times
    assert t4["λ in [0.2, 1.5]"]["verdict"] == "holds"           # λ_min <= 2: the seed's bound is loose
    assert t4["λ in [3, 6]"]["verdict"] != "holds"               # λ_min > 2: floor D·d/2 > D·d/λ_min
    assert {r["id"]: r for r in summary["claims"]}["th4-convergence"]["verdict"] == "fails"


def test_floor_over_d_against_closed_forms_and_every_outcome():
    """Quadratic: E[L] = D·d/2 exactly, so floor/D = d/2 at every D. Quartic λx²/2 + x⁴/4: floor/D → d/2 as
    D → 0 (the quadratic part) and → d/4 as D → ∞ (the quartic part: E[x⁴/4] = D/4)."""
    from shld.experiments.theorems import TheoremsParams, _theorem4_floor_vs_D, floor_d_verdict

    table, row = _theorem4_floor_vs_D(TheoremsParams(D_values=(1e-7, 0.05, 1e7), t4_dim=10))
    assert all(r == pytest.approx(5.0, rel=1e-10) for r in table["quadratic"]["floor_over_D"].values())
    q = table["quartic"]["floor_over_D"]
    assert q[1e-7] == pytest.approx(5.0, rel=1e-4) and q[1e7] == pytest.approx(2.5, rel=1e-2)
    assert row["id"] == "th4-floor-proportional-to-D" and row["verdict"] == "partly"
    assert [floor_d_verdict(s) for s in ([1.0, 1.05], [1.0, 1.5], [1.0, 2.5])] == ["holds", "partly", "fails"]
    assert floor_d_verdict([1.0, 1.1]) == "holds" and floor_d_verdict([2.0, 1.0]) == "partly"   # edges
