"""The seed's StochasticHarmonicLearning API: its snippet runs, and its bugs are fixed as documented."""

import warnings

import matplotlib
import numpy as np
import pytest

from shld import StochasticHarmonicLearning

matplotlib.use("Agg")


def quad_loss(theta):
    return 0.5 * np.sum(theta**2)


def quad_grad(theta):
    return theta


def test_seed_practical_usage_snippet_runs_unchanged(monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *a, **k: None)       # the only change: no plot window
    # --- the seed's snippet, verbatim ---
    def my_loss(theta):
        return 0.5 * np.sum(theta**2)  # Quadratic bowl

    def my_grad(theta):
        return theta

    dim = 10
    optimizer = StochasticHarmonicLearning(loss_fn=my_loss, grad_fn=my_grad, dim=dim, lr=0.01,
                                           noise_scale=0.001)
    theta_init = np.random.randn(dim)  # noqa: NPY002 (verbatim seed code)
    results = optimizer.train(theta_init, n_steps=1000, adaptive_noise=True)
    plt.plot(results['consolidations'])
    plt.axhline(y=1.0, color='r', linestyle='--', label='Critical threshold')
    plt.xlabel('Step')
    plt.ylabel('C(t)')
    plt.legend()
    plt.show()
    # --- end of snippet ---
    assert set(results) >= {"trajectory", "losses", "consolidations", "interventions", "final_theta",
                            "final_loss"}
    assert results["trajectory"].shape == (1001, dim) and results["losses"].shape == (1000,)
    assert np.array_equal(results["final_theta"], results["trajectory"][-1])
    plt.close("all")


def test_train_matches_step_by_step_and_is_reproducible():
    opt = StochasticHarmonicLearning(quad_loss, quad_grad, 3, lr=0.05, noise_scale=0.01, seed=4)
    r1 = opt.train(np.ones(3), n_steps=50, adaptive_noise=False)
    opt2 = StochasticHarmonicLearning(quad_loss, quad_grad, 3, lr=0.05, noise_scale=0.01, seed=4)
    r2 = opt2.train(np.ones(3), n_steps=50, adaptive_noise=False)
    assert np.array_equal(r1["trajectory"], r2["trajectory"])
    # losses[i] is L(θ_{i+1}) and consolidations[i] is C(θ_{i+1}), as in the seed
    assert np.allclose(r1["losses"], [quad_loss(t) for t in r1["trajectory"][1:]])
    assert np.allclose(r1["consolidations"], [opt.consolidation_ratio(t) for t in r1["trajectory"][1:]])


def test_stationary_temperature_is_D_not_D_dt_over_lr():
    # consistent convention: Var θ → D/(λ(1 − λh/2)) with h = lr; the seed's literal mix with dt = 1
    # gives D·dt/lr, a 1/lr = 10× hotter law (here checked at 1 walker over a long run, 4 SE)
    D, lr, n = 0.02, 0.1, 8_000
    fixed = StochasticHarmonicLearning(quad_loss, quad_grad, 1, lr=lr, noise_scale=D, seed=1)
    x = fixed.train(np.zeros(1), n_steps=n, adaptive_noise=False)["trajectory"][500:, 0]
    v = D / (1 - lr / 2)
    tau = 1 / lr                                   # correlation time in steps
    se = v * np.sqrt(2 * 2 * tau / x.size)        # SE of a variance from correlated samples (AR(1))
    assert abs(x.var() - v) < 4 * se
    seed = StochasticHarmonicLearning(quad_loss, quad_grad, 1, lr=lr, noise_scale=D, seed=1, convention="seed")
    y = seed.train(np.zeros(1), n_steps=n, adaptive_noise=False, dt=1.0)["trajectory"][500:, 0]
    assert y.var() / v == pytest.approx(1 / lr, rel=0.25)


def test_adaptive_noise_restores_D_and_seed_literal_does_not():
    opt = StochasticHarmonicLearning(quad_loss, quad_grad, 2, lr=0.01, noise_scale=0.001, seed=0)
    r = opt.train(np.zeros(2), n_steps=400, adaptive_noise=True, C_threshold=0.5)
    D = r["D_history"]
    assert len(r["interventions"]) > 0
    assert np.allclose(sorted(set(np.round(D, 12))), [0.001, 0.005])     # base or 5× base, never more
    assert opt.D == 0.001
    lit = StochasticHarmonicLearning(quad_loss, quad_grad, 2, lr=0.01, noise_scale=0.001, seed=0)
    r2 = lit.train(np.zeros(2), n_steps=120, adaptive_noise=True, restore_noise=False)
    assert r2["D_history"].max() > 0.001 * 5**5 and lit.D > 0.001 * 5**5     # grows on every trigger


def test_barrier_escape_time_and_errors():
    dw = lambda th: np.sum((th**2 - 1) ** 2, axis=-1)  # noqa: E731
    opt = StochasticHarmonicLearning(dw, lambda th: 4 * th * (th**2 - 1), 1, noise_scale=0.1, seed=0)
    assert opt.estimate_barrier_height(np.array([-1.0]), np.array([1.0])) == pytest.approx(1.0, abs=1e-4)
    assert opt.estimate_barrier_height(np.array([-1.0]), np.array([1.0]), method="seed") == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert opt.escape_time(1e6) == np.inf
    assert opt.escape_time(1.0) == pytest.approx(np.exp(10.0))
    assert opt.escape_time(1.0, curv_min=8.0, curv_saddle=-4.0) == pytest.approx(
        2 * np.pi / np.sqrt(32.0) * np.exp(10.0))
    with pytest.raises(ValueError, match="`theta_init` must have last axis of size d=1"):
        opt.train(np.zeros(2))
    with pytest.raises(ValueError, match="`lr` must be > 0"):
        StochasticHarmonicLearning(dw, dw, 1, lr=0.0)
    nan_grad = StochasticHarmonicLearning(quad_loss, lambda th: th * np.nan, 2, seed=0)
    with pytest.raises(ValueError, match="`grad_fn` returned a non-finite gradient"):
        nan_grad.step(np.ones(2))
    with pytest.raises(ValueError, match="non-finite"):
        nan_grad.train(np.ones(2), n_steps=5)


def test_escape_time_with_tiny_curvatures_is_computed_in_logs():
    """√(k_min·k_s) underflowed to 0 for curvatures of 1e-300 (ZeroDivisionError); in logs the
    Kramers–Langer time is 2π/√(k_min·|k_s|)·e^{ΔE/D} = 2π·1e300·e^{0.01} here."""
    import math

    shl = StochasticHarmonicLearning(lambda t: float(t @ t), lambda t: 2 * t, dim=1, noise_scale=0.1, seed=0)
    D = shl.D
    dE = 0.01 * D
    expected = math.exp(math.log(2 * math.pi) + 300 * math.log(10) + 0.01)
    assert shl.escape_time(dE, curv_min=1e-300, curv_saddle=-1e-300) == pytest.approx(expected, rel=1e-12)
    assert shl.escape_time(1e4 * D, curv_min=1e-300, curv_saddle=1e-300) == math.inf


def test_an_unrestored_boost_blowing_up_says_so():
    shl = StochasticHarmonicLearning(lambda t: float(t @ t), lambda t: 2 * t, dim=2, lr=0.01, noise_scale=0.1, seed=0)
    with pytest.raises(ValueError, match=r"restore_noise=False the seed's boosts are never undone.*pass restore_noise=True"):
        shl.train(np.ones(2), n_steps=3000, restore_noise=False, C_threshold=1e6)
