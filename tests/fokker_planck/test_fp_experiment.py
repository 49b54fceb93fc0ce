"""The kramers / fp-vs-langevin experiments end to end at tiny sizes (claims rows, figures)."""

import numpy as np

from shld.claims import validate_claims
from shld.experiments.registry import run_experiment


def test_kramers_small_run(tmp_path):
    run, summary = run_experiment("kramers", tmp_path / "k", progress=False, ratios="2,3", n_walkers=60,
                                  n_cells=400)
    rows = validate_claims(summary["claims"])
    ids = {r["id"] for r in rows}
    assert {"kramers-prefactor", "kramers-exponent", "master-equation-mfpt", "fp-solver-vs-exact"} <= ids
    for r in rows:
        if r["figure"]:
            assert (run.path / r["figure"]).exists()
    t = summary["table"]
    # the seed's prefactor over Kramers–Langer is √(U''min/|U''saddle|) = √2 for the symmetric well
    np.testing.assert_allclose([r["gamma_seed"] / r["gamma_langer"] for r in t], np.sqrt(2.0), rtol=1e-12)
    # FP absorbing MFPT vs exact quadrature: O(h²) at h = 0.01 (≤ 1e-3 is the experiment's own rule)
    assert all(abs(r["T_fp"] / r["T_exact"] - 1) < 1e-3 for r in t)
    assert sorted(p.name for p in (run.path / "members").iterdir()) == ["ratio=2.json", "ratio=3.json"]
    # resume with everything done recomputes nothing and returns the same table
    run2, summary2 = run_experiment("kramers", tmp_path / "k", resume=True, progress=False, ratios="2,3",
                                    n_walkers=60, n_cells=400)
    assert summary2["table"] == summary["table"]


def test_fp_vs_langevin_small_run(tmp_path):
    run, summary = run_experiment("fp-vs-langevin", tmp_path / "v", progress=False, n_walkers=2000,
                                  t_final=1.0, n_snapshots=2, mb_walkers=300, mb_t_final=0.2,
                                  equilibrium=False)
    rows = validate_claims(summary["claims"])
    assert rows[0]["id"] == "master-equation-density"
    assert len(summary["tests"]) == 4
    # the histograms follow the FP density (chi-square at the study's own level), and the same counts against
    # the density one histogram bin off are rejected (power)
    assert min(t["p"] for t in summary["tests"]) > 0.001 / 4
    from shld.experiments.fp_vs_langevin import chi2_test
    from shld.experiments.study import load_results

    r1 = load_results(run.path)["1d"]
    for k in (1, 2):
        shifted = np.roll(r1["probs"][k], 2)
        assert chi2_test(r1["counts"][k], shifted, 2000)[2] < 1e-6
    assert (run.path / "figures" / "density_1d.png").exists()
    assert (run.path / "figures" / "density_2d_muller_brown.png").exists()
