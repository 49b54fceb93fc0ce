"""The ensemble engine against closed forms, on every backend (numpy f64; torch f64/f32 on the CPU; torch
on CUDA when there is one: the ``backend`` fixture of conftest.py). Fixed seeds; tolerances from
standard errors, written beside each assert; each law test has a power check (a wrong temperature is
rejected by the same test)."""

import numpy as np
import pytest
from engine_backends import engine_backends
from scipy import stats

from shld.dynamics import AdaptiveNoise, EnsembleState, HalfSpace, Simulation, simulate
from shld.landscapes import DoubleWell, Quadratic, Rosenbrock
from shld.theory import gibbs_cdf_1d


def test_double_well_stationary_ensemble_matches_gibbs_and_rejects_a_wrong_temperature(backend):
    L = DoubleWell(barrier=1.0)
    D = 0.5
    n = 4000
    rng = np.random.default_rng(11)
    theta0 = rng.choice([-1.0, 1.0], size=(n, 1))          # both wells, symmetric start
    res = simulate(L, theta0, D=D, dt=2e-3, n_steps=5000, seed=12, record_every=5000, **backend)
    x = res.final_theta[:, 0].astype(np.float64)
    # The Euler–Maruyama bias at dt=2e-3 shifts the CDF by ~1e-3, far below the KS resolution
    # 1.36/sqrt(n) = 0.02; a p-value below 1e-3 would mean a real mismatch.
    ks = stats.kstest(x, gibbs_cdf_1d(L.u, D, -3.5, 3.5))
    assert ks.pvalue > 1e-3, ks
    # power: the same test rejects the wrong temperature D/2 (it is not a test that cannot fail)
    assert stats.kstest(x, gibbs_cdf_1d(L.u, D / 2, -3.5, 3.5)).pvalue < 1e-6


def em_stationary_variance(lam, D, dt):
    # θ ← (1 − λdt)θ + √(2Ddt)ξ has stationary variance 2Ddt/(1 − (1 − λdt)²) = D/(λ(1 − λdt/2))
    return D / (lam * (1.0 - 0.5 * lam * dt))


def test_quadratic_stationary_moments_euler(backend):
    lam = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    d, D, dt, n = lam.size, 0.3, 0.01, 6000
    L = Quadratic(eigenvalues=lam)
    # start in the exact discrete stationary law, then run 3 relaxation times of the slowest mode
    rng = np.random.default_rng(3)
    v_exact = em_stationary_variance(lam, D, dt)
    theta0 = rng.standard_normal((n, d)) * np.sqrt(v_exact)
    res = simulate(L, theta0, D=D, dt=dt, n_steps=600, seed=4, observables=("loss", "var"), **backend)
    x = res.final_theta.astype(np.float64)
    var = x.var(axis=0, ddof=1)
    se_var = v_exact * np.sqrt(2.0 / (n - 1))                # SE of a Gaussian sample variance
    assert np.all(np.abs(var - v_exact) < 4.5 * se_var), (var, v_exact)   # 4.5 SE over 5 coordinates
    # power: a 25 % wrong temperature is > 4.5 SE away in every coordinate (25 % ≈ 13 SE at n = 6000)
    assert np.all(np.abs(var - 1.25 * v_exact) > 4.5 * se_var)
    # the continuous-time answer D/λ is off by the O(dt) factor 1/(1 − λdt/2): 4 % for λ = 8
    loss = L.value(x)
    expected_loss = 0.5 * np.sum(lam * v_exact)              # = d·D/2 · (1 + O(dt))
    assert abs(loss.mean() - expected_loss) < 4.0 * loss.std(ddof=1) / np.sqrt(n)
    assert abs(expected_loss - d * D / 2) / (d * D / 2) < 0.02   # dt bias on E[L] is below 2 %
    # the engine's own record of the loss is the mean over the walkers (float32: to rounding)
    assert res.records["loss_mean"][-1] == pytest.approx(loss.mean(), rel=1e-5)


def test_quadratic_relaxation_of_the_mean_is_exact(backend):
    # E[θ_n] = (1 − λdt)^n θ_0 for Euler–Maruyama, for every walker count
    lam = np.array([1.0, 3.0])
    L = Quadratic(eigenvalues=lam)
    n, dt, steps = 20000, 0.01, 100
    res = simulate(L, np.array([1.0, -2.0]), n_walkers=n, D=0.2, dt=dt, n_steps=steps, seed=5, **backend)
    mean = res.final_theta.astype(np.float64).mean(axis=0)
    expected = np.array([1.0, -2.0]) * (1 - lam * dt) ** steps
    v = em_stationary_variance(lam, 0.2, dt) * (1 - (1 - lam * dt) ** (2 * steps))
    assert np.all(np.abs(mean - expected) < 4.0 * np.sqrt(v / n))      # 4 standard errors


def test_baoab_configurational_variance_is_exact_for_harmonic(backend):
    # BAOAB samples the exact θ-marginal N(0, D/λ) of a harmonic potential at any stable dt,
    # where Euler–Maruyama at the same dt is biased by 1/(1 − λdt/2) (here +5 %, ≈ 3.5 SE: told apart)
    lam, D, dt, n = 2.0, 0.5, 0.2, 10000
    L = Quadratic(eigenvalues=[lam])
    rng = np.random.default_rng(8)
    theta0 = rng.standard_normal((n, 1)) * np.sqrt(D / lam)
    res = simulate(L, theta0, D=D, dt=dt, n_steps=300, seed=9, integrator="baoab", friction=1.0, **backend)
    var = res.final_theta[:, 0].astype(np.float64).var(ddof=1)
    se = (D / lam) * np.sqrt(2.0 / (n - 1))
    assert abs(var - D / lam) < 4.0 * se                    # 4 SE around the exact D/λ
    assert abs(var - 1.25 * D / lam) > 4.0 * se              # power: a 25 % wrong temperature is rejected
    res_em = simulate(L, theta0, D=D, dt=dt, n_steps=300, seed=9, **backend)
    assert abs(res_em.final_theta[:, 0].astype(np.float64).var(ddof=1) - em_stationary_variance(lam, D, dt)) \
        < 4.0 * se


def test_constant_preconditioner_keeps_gibbs_variance(backend):
    lam, D, dt, n = np.array([1.0, 4.0]), 0.2, 0.01, 8000
    P = np.array([2.0, 0.5])
    L = Quadratic(eigenvalues=lam)
    res = simulate(L, np.zeros(2), n_walkers=n, D=D, dt=dt, n_steps=1500, seed=2, preconditioner=P, **backend)
    v = D / (lam * (1 - 0.5 * lam * P * dt))                 # EM with effective step P·dt
    var = res.final_theta.astype(np.float64).var(axis=0, ddof=1)
    assert np.all(np.abs(var - v) < 4.0 * v * np.sqrt(2.0 / n))    # 4 SE per coordinate


def _exact_mfpt(L, D):
    # exact MFPT from -1 to +1 (reflecting far left): T = (1/D)∫_{-1}^{1} e^{U(y)/D} ∫_{-∞}^{y} e^{-U(z)/D} dz dy
    y = np.linspace(-4.0, 1.0, 400_001)
    inner = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(y) * (np.exp(-L.u(y) / D)[1:]
                                                                 + np.exp(-L.u(y) / D)[:-1]))])
    f = np.exp(L.u(y) / D) * inner / D
    sel = y >= -1.0
    return np.trapezoid(f[sel], y[sel]), f[-1]


@pytest.mark.parametrize("backend", engine_backends(slow=["torch-f64-cpu"]))   # ~8 s on 2 busy cores
@pytest.mark.parametrize("D,dt", [(0.4, 2e-3)])
def test_mfpt_between_wells_matches_exact_quadrature(D, dt, backend):
    L = DoubleWell(barrier=0.5)                  # ΔE/D = 1.25, MFPT ≈ 9.5: 120 time units leave ~e^-12 censored
    n = 1200
    exact, f_b = _exact_mfpt(L, D)
    wrong, _ = _exact_mfpt(L, 1.25 * D)
    # HalfSpace(0, 1.0) is the test θ_0 ≥ 1 as data: on CUDA it runs the many-steps kernel (first passage
    # recorded inside it, stop_when_all_hit by replay); elsewhere it steps eagerly, with the callable's bits.
    # On CUDA the callable form runs too (eager)
    targets = [HalfSpace(0, 1.0)]
    if backend.get("device", "cpu").startswith("cuda"):
        targets.append(lambda th: th[:, 0] >= 1.0)
    for target in targets:
        res = simulate(L, np.array([-1.0]), n_walkers=n, D=D, dt=dt, n_steps=60_000, seed=21, target=target,
                       stop_when_all_hit=True, record_every=10_000, **backend)
        assert res.hit.all()
        T = res.first_passage_time
        # discrete monitoring detects the crossing late: an overshoot of ≈0.5826·√(2D·dt) in space
        # (Siegmund's constant), i.e. a time bias ≈ 0.5826·√(2D·dt)·(dT/db) with dT/db = f(b)
        bias = 0.5826 * np.sqrt(2 * D * dt) * f_b
        se = T.std(ddof=1) / np.sqrt(n)
        assert abs(T.mean() - exact) < 4.0 * se + bias, (T.mean(), exact, se, bias)
        # power: the exact MFPT at a 25 % wrong temperature (≈ 30 % shorter) is far outside the same band
        assert abs(T.mean() - wrong) > 4.0 * se + bias
        # the run stopped at the last passage (the eager loop's step; the kernel's replay finds the same)
        assert res.steps[-1] == round(T.max() / dt)


def test_controller_in_simulation_restores_D(backend):
    L = Quadratic(eigenvalues=[1.0])
    ctrl = AdaptiveNoise(threshold=1.0, factor=10.0, hold_steps=7, min_step=0, cooldown_steps=20)
    res = simulate(L, np.zeros(1), D=0.01, dt=1e-2, n_steps=200, seed=0, controller=ctrl, record_every=1,
                   **backend)
    D = res.D_history
    assert set(np.round(D, 6)) == {0.01, 0.1}                # float32 runs apply D in float32
    # every boost lasts exactly hold_steps and is followed by at least cooldown_steps at base D (a boost
    # still running at the last record is cut by the end of the run and left out)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (D > 0.05).astype(int), [0]])))
    runs, gaps = np.diff(edges)[::2], np.diff(edges)[1::2]
    complete = runs if D[-1] < 0.05 else runs[:-1]
    assert complete.size >= 2 and np.all(complete == 7)
    assert np.all(gaps[:-1] >= 20)
    assert len(res.interventions) >= 2
    # the controller's state stays on a GPU run's device (no per-step copy of N values to the host), and
    # is numpy for CPU runs (a CPU tensor is shared with numpy for free)
    mult = res.state.controller["multiplier"]
    if backend.get("device", "cpu").startswith("cuda"):
        assert str(mult.device).startswith("cuda") and str(mult.dtype) == f"torch.{backend['dtype']}"
    else:
        assert isinstance(mult, np.ndarray) and mult.dtype == np.float64


def test_resume_from_saved_state_is_bit_identical(tmp_path, backend):
    L = DoubleWell(dim=2)
    kw = dict(D=0.3, dt=1e-2, record_every=10, controller=AdaptiveNoise(threshold=0.5, hold_steps=5,
                                                                         min_step=0), **backend)
    full = simulate(L, np.zeros(2), n_walkers=20, n_steps=400, seed=3, **kw)
    kw.pop("backend"), kw.pop("dtype"), kw.pop("device", None)
    sim = Simulation(L, **kw, **backend)
    st = sim.init_state(np.zeros(2), n_walkers=20, seed=3)
    sim.advance(st, 150)
    np.savez(tmp_path / "ck.npz", **st.to_arrays())
    with np.load(tmp_path / "ck.npz") as z:
        st2 = EnsembleState.from_arrays({k: z[k] for k in z.files})
    part = sim.advance(st2, 250)
    assert np.array_equal(part.final_theta, full.final_theta)
    assert np.array_equal(part.records["loss_mean"], full.records["loss_mean"][-len(part.steps):])


def test_resume_of_the_fused_path_and_baoab_is_bit_identical(tmp_path, backend):
    for kw in (dict(), dict(integrator="baoab")):
        sim = Simulation(DoubleWell(), D=0.3, dt=1e-2, record_every=25, **kw, **backend)
        full = sim.advance(sim.init_state(np.zeros(1), n_walkers=30, seed=4), 100)
        st = sim.init_state(np.zeros(1), n_walkers=30, seed=4)
        sim.advance(st, 40)
        st2 = EnsembleState.from_arrays(st.to_arrays())
        assert np.array_equal(sim.advance(st2, 60).final_theta, full.final_theta)


def test_a_snapshot_kept_in_memory_stays_at_its_step(backend):
    """to_arrays() copies: the run going on after the snapshot must not move the snapshot's θ,
    momentum, hits or controller (they were views of the live arrays), so resuming from it later
    gives the uninterrupted run's bits."""
    kw = dict(D=0.4, dt=1e-2, integrator="baoab", target=HalfSpace(0, 0.5), record_every=10,
              controller=AdaptiveNoise(threshold=0.5, hold_steps=5, min_step=0))
    sim = Simulation(DoubleWell(), **kw, **backend)
    full = sim.advance(sim.init_state([-1.0], n_walkers=40, seed=9), 300)
    st = sim.init_state([-1.0], n_walkers=40, seed=9)
    sim.advance(st, 100)
    snap = st.to_arrays()
    frozen = {k: np.array(v, copy=True) for k, v in snap.items()}
    sim.advance(st, 200)                                   # the live state moves on
    for k, v in frozen.items():
        assert np.array_equal(snap[k], v), k
    part = sim.advance(EnsembleState.from_arrays(snap), 200)
    assert np.array_equal(part.final_theta, full.final_theta)
    assert np.array_equal(part.first_passage_time, full.first_passage_time)


def test_same_seed_same_bits_and_different_seed_differs(backend):
    L = DoubleWell()
    a = simulate(L, np.zeros(1), n_walkers=50, D=0.3, dt=1e-2, n_steps=200, seed=7, **backend)
    b = simulate(L, np.zeros(1), n_walkers=50, D=0.3, dt=1e-2, n_steps=200, seed=7, **backend)
    c = simulate(L, np.zeros(1), n_walkers=50, D=0.3, dt=1e-2, n_steps=200, seed=8, **backend)
    assert a.final_theta.dtype == np.dtype(backend["dtype"])
    assert np.array_equal(a.final_theta, b.final_theta)
    assert not np.array_equal(a.final_theta, c.final_theta)


def test_zero_noise_is_gradient_descent(backend):
    L = Rosenbrock(dim=3)
    theta = np.array([[-1.0, 0.5, 0.2], [0.3, 0.3, 0.3]])
    dt, steps = 1e-4, 300
    res = simulate(L, theta, D=0.0, dt=dt, n_steps=steps, seed=0, **backend)
    x = theta.copy()
    for _ in range(steps):
        x = x - L.grad(x) * dt
    # a fused update (one rounding) against two: ≤ 1 ulp per step, 300 steps → 300·ε relative
    eps = np.finfo(np.dtype(backend["dtype"])).eps
    assert np.allclose(res.final_theta, x, rtol=600 * eps, atol=0)
    assert not np.array_equal(res.final_theta, theta)


def test_the_gpu_placement_of_the_controller_gives_the_host_placements_bits():
    # a CUDA run keeps per-walker C and the controller's state on the device; that code path, run here on
    # CPU tensors, must give exactly the run whose C and controller live in host numpy (float64: the
    # same IEEE operations), including the records that use per-walker C
    torch = pytest.importorskip("torch")
    L = DoubleWell(dim=2)
    kw = dict(D=0.05, dt=1e-2, record_every=5, record_walkers=True, backend="torch", dtype="float64",
              controller=AdaptiveNoise(threshold=0.5, factor=8.0, hold_steps=6, min_step=0, cooldown_steps=3))
    runs = []
    for on_device in (False, True):
        sim = Simulation(L, **kw)
        if on_device:
            sim.walkers_c_on_host, sim.walker_backend = False, sim.backend
        runs.append(sim.advance(sim.init_state(np.array([0.9, 0.0]), n_walkers=64, seed=5), 120))
    host, device = runs
    assert isinstance(device.state.controller["multiplier"], torch.Tensor)
    assert isinstance(host.state.controller["multiplier"], np.ndarray)
    assert sum(len(f) for _, f in host.interventions) >= 10          # the controller did fire
    assert [(s, f.tolist()) for s, f in device.interventions] == [(s, f.tolist()) for s, f in host.interventions]
    assert np.array_equal(device.final_theta, host.final_theta)
    for key in ("C_median", "C_ensemble", "loss_mean", "C_walkers"):
        assert np.array_equal(device.records[key], host.records[key], equal_nan=True), key
