"""Batch-size scaling: helpers on exact inputs, noise against B against its closed form, a tiny run."""

import math

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

import shld.experiments.batch_scaling as bs  # noqa: E402
from shld.claims import validate_claims  # noqa: E402
from shld.experiments.registry import run_experiment  # noqa: E402


def test_rule_lr():
    assert bs.rule_lr("sqrt", 128, 32, 0.1) == pytest.approx(0.2)
    assert bs.rule_lr("linear", 128, 32, 0.1) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="`rule` must be one of"):
        bs.rule_lr("cubic", 1, 1, 0.1)


def test_fit_slope_exact_and_noisy():
    B = np.array([4, 8, 16, 32, 64.0])
    s, se = bs.fit_slope(B, 3.0 / B)
    assert s == pytest.approx(-1.0, abs=1e-12) and se < 1e-10
    assert bs.one_over_b_verdict(s, se) == "holds"
    assert bs.one_over_b_verdict(*bs.fit_slope(B, 3.0 / np.sqrt(B))) == "fails"   # exponent −0.5
    assert math.isnan(bs.fit_slope([1, 2], [1, 2])[0])                              # too few points


def test_spread_curves_and_sign_verdicts():
    assert bs.spread_verdict([1.0, 1.2, 1.4]) == ("holds", pytest.approx(1.4))
    assert bs.spread_verdict([1.0, 2.5])[0] == "partly"
    assert bs.spread_verdict([1.0, 10.0])[0] == "fails"
    base = np.array([2.0, 1.0, 0.5, 0.25])
    assert bs.curve_distance(base, base) == 0.0
    assert bs.curve_distance(base, base * math.e) == pytest.approx(1.0)          # |log e| per epoch
    assert bs.curve_distance(base, np.array([2.0, 1.0, np.nan, np.nan])) == math.inf
    assert bs.curve_distance(base, base[:2]) == math.inf                            # stopped early
    assert bs.curves_verdict([True, True]) == "holds"
    assert bs.curves_verdict([True, False]) == "partly"
    assert bs.curves_verdict([False, False]) == "fails"
    assert bs.slope_sign_verdict(1.0, 0.1) == "holds"
    assert bs.slope_sign_verdict(-1.0, 0.1) == "fails"
    assert bs.slope_sign_verdict(0.1, 0.1) == "partly"


def test_noise_matches_finite_population_formula(tmp_path):
    """tr Cov(g_B) of B samples drawn without replacement is tr Σ̂/B·(1 − B/N) exactly in expectation;
    with M batches the trace estimate's relative standard deviation is at most √(2/(M−1))."""
    seq = np.random.SeedSequence(2, spawn_key=(0, 0))
    M = 60
    out = bs.run_noise({"seq": seq, "base_lr": 0.1, "base_batch": 32, "warmup_epochs": 1,
                        "noise_batches": [4, 16, 64, 256], "n_batches": M})
    ratios = np.array([r["tr_cov_emp"] / r["tr_cov_theory"] for r in out["rows"]])
    tol = 3 * math.sqrt(2 / (M - 1))                                 # 3 σ of the worst case
    assert np.all(np.abs(ratios - 1) < tol), ratios
    # C's true value is linear in B: 2B‖G‖²/tr Σ
    Ct = np.array([r["C_true"] for r in out["rows"]])
    assert Ct / np.array([4, 16, 64, 256]) == pytest.approx(np.full(4, Ct[0] / 4))
    # the shape of Σ from torch.func's per-sample gradients: its trace is the monitor's norm-trick tr Σ
    iso = out["isotropy"]
    assert iso["trace"] == pytest.approx(out["trace_sigma"], rel=1e-6)
    assert (iso["dim"], iso["n_samples"]) == (out["d"], out["N"])
    assert 1 <= iso["participation_ratio"] < iso["dim"] and iso["top_share"] >= 1 / iso["participation_ratio"] - 1e-12


def test_isotropy_rule_reaches_every_outcome():
    """d = 1000 from N = 1000 samples: isotropic noise shows r = 500; the cuts are 250 and 50."""
    assert [bs.isotropy_verdict(r, 1000, 1000) for r in (480.0, 250.0, 249.0, 50.0, 49.0, 12.6)] == \
        ["holds", "holds", "partly", "partly", "fails", "fails"]


def test_tiny_batch_scaling_run(tmp_path):
    run, s = run_experiment("batch-scaling", tmp_path / "b", progress=False, train_batches="16,32,64",
                            noise_batches="8,16,32,64", n_batches=20, epochs=2, n_seeds=1, warmup_epochs=0)
    rows = validate_claims(s["claims"])
    assert {r["id"] for r in rows} == {"batch-noise-1-over-B", "batch-sqrt-keeps-deff", "batch-sqrt-vs-linear",
                                       "batch-c-rises", "sgd-noise-isotropic"}
    lrs = {(f["method"], f["batch_size"]): f["lr"] for f in s["final"]}
    assert lrs[("base", 32)] == 0.1 and lrs[("sqrt", 64)] == pytest.approx(0.1 * math.sqrt(2))
    assert lrs[("linear", 16)] == pytest.approx(0.05)
    assert (tmp_path / "b" / "figures" / "batch_scaling.png").exists()


def test_c_is_read_at_matched_training_loss():
    """C at the first epoch whose loss reaches the seed's matched level (the largest final loss among its
    non-diverged runs); a diverged run is left out."""
    def run(B, loss, C, diverged=False):
        return {"batch_size": B, "diverged": diverged, "train_loss_curve": np.array(loss, float),
                "C_curve": np.array(C, float)}

    runs = [(0, run(16, [2.0, 1.0, 0.5, 0.4], [1.0, 2.0, 3.0, np.nan])),       # level 0.8 reached at epoch 2
            (0, run(64, [2.0, 1.5, 1.0, 0.8], [5.0, 6.0, 7.0, np.nan])),       # reaches 0.8 only at the end
            (0, run(256, [2.0, 9.0, 50.0, 99.0], [1.0, 1.0, 1.0, np.nan], diverged=True))]
    assert bs.c_at_matched_progress(runs) == [(16, 3.0), (64, 7.0)]    # last row has no step: epoch 2's C
