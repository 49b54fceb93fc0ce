"""The kramers / fp-vs-langevin experiments end to end at tiny sizes (claims rows, figures)."""

import json

import numpy as np
import pytest

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


def test_kramers_on_the_torch_backend_measures_the_same_passage_times(tmp_path):
    # --backend torch: the same study on the other engine backend (other random numbers, same law). Each
    # backend's Langevin MFPT agrees with the exact quadrature within 4 SE + the EM/monitoring bias the
    # study allows (3 %); the torch run's times are not the numpy run's bits (the option is used)
    pytest.importorskip("torch")
    kw = dict(progress=False, ratios="2", n_walkers=1500, n_cells=400)
    _, numpy_run = run_experiment("kramers", tmp_path / "n", **kw)
    run, torch_run = run_experiment("kramers", tmp_path / "t", backend="torch", dtype="float32", **kw)
    assert json.loads((run.path / "config.json").read_text())["config"]["backend"] == "torch"
    for row in (numpy_run["table"][0], torch_run["table"][0]):
        # a horizon of 5 mean times censors ≈ e⁻⁵ = 0.7 % of an exponential law: ≈ 10 ± 3 of 1500
        assert row["n_walkers"] == 1500 and 1470 <= row["n_hit"] <= 1500
        # SE = T/√n ≈ 2.6 % of T: 4 SE + 3 % = 13 %; a 25 % wrong temperature moves T(ΔE/D = 2) by ≈ 40 %
        assert abs(row["T_langevin"] - row["T_exact"]) < 4 * row["T_langevin_se"] + 0.03 * row["T_exact"]
    assert torch_run["table"][0]["T_langevin"] != numpy_run["table"][0]["T_langevin"]


@pytest.mark.parametrize("engine", [pytest.param({}, id="numpy"),
                                    pytest.param(dict(backend="torch", dtype="float32", device="cpu"),
                                                 id="torch-f32-cpu", marks=pytest.mark.slow)])   # 7.5 s
def test_fp_vs_langevin_small_run(tmp_path, engine):
    if engine:
        pytest.importorskip("torch")
    run, summary = run_experiment("fp-vs-langevin", tmp_path / "v", progress=False, n_walkers=2000,
                                  t_final=1.0, n_snapshots=2, mb_walkers=300, mb_t_final=0.2,
                                  equilibrium=False, **engine)
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
