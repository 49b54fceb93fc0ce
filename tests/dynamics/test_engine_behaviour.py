"""Degenerate limits, determinism, the adaptive controller, failure handling and resume."""

import warnings

import numpy as np
import pytest

from shld.dynamics import (
    AdaptiveNoise,
    CosineAnnealing,
    ExponentialDecay,
    NonFiniteError,
    Warmup,
    simulate,
)
from shld.dynamics.backends import make_backend
from shld.landscapes import DoubleWell, FunctionLandscape, Quadratic, Rosenbrock


def test_zero_noise_is_gradient_descent():
    L = Rosenbrock(dim=3)
    theta = np.array([[-1.0, 0.5, 0.2], [0.3, 0.3, 0.3]])
    dt, steps = 1e-4, 300
    res = simulate(L, theta, D=0.0, dt=dt, n_steps=steps, seed=0)
    x = theta.copy()
    for _ in range(steps):
        x = x - L.grad(x) * dt
    # the engine's update is a fused multiply-add (BLAS axpy: one rounding instead of two), so the two
    # agree to rounding: ≤ 1 ulp per step, 300 steps → relative 300·2⁻⁵² ≈ 7e-14
    assert np.allclose(res.final_theta, x, rtol=1e-13, atol=0)
    assert not np.array_equal(res.final_theta, theta)


def test_zero_gradient_and_zero_noise_do_not_move():
    flat = FunctionLandscape(lambda th: np.zeros(np.shape(th)[:-1]), lambda th: np.zeros_like(th), dim=4)
    theta = np.random.default_rng(0).standard_normal((7, 4))
    res = simulate(flat, theta, D=0.0, dt=0.1, n_steps=50, seed=1)
    assert np.array_equal(res.final_theta, theta)


def test_same_seed_same_bits_and_different_seed_differs():
    L = DoubleWell()
    a = simulate(L, np.zeros(1), n_walkers=50, D=0.3, dt=1e-2, n_steps=200, seed=7)
    b = simulate(L, np.zeros(1), n_walkers=50, D=0.3, dt=1e-2, n_steps=200, seed=7)
    c = simulate(L, np.zeros(1), n_walkers=50, D=0.3, dt=1e-2, n_steps=200, seed=8)
    assert np.array_equal(a.final_theta, b.final_theta)
    assert not np.array_equal(a.final_theta, c.final_theta)


def test_float32_on_request():
    res = simulate(DoubleWell(), np.zeros(1), n_walkers=10, D=0.3, dt=1e-2, n_steps=20, seed=1,
                   dtype=np.float32)
    assert res.final_theta.dtype == np.float32


def test_first_passage_censoring():
    L = DoubleWell(barrier=5.0)                     # ΔE/D = 50: nobody crosses in t = 1
    res = simulate(L, np.array([-1.0]), n_walkers=30, D=0.1, dt=1e-2, n_steps=100, seed=0,
                   target=lambda th: th[:, 0] > 0.9)
    assert not res.hit.any() and np.all(np.isinf(res.first_passage_time)) and res.censored.all()
    start_inside = simulate(L, np.array([1.0]), n_walkers=3, D=0.1, dt=1e-2, n_steps=5, seed=0,
                            target=lambda th: th[:, 0] > 0.9)
    assert np.all(start_inside.first_passage_time == 0.0)


@pytest.mark.parametrize("bk", ["numpy", "torch"])
def test_adaptive_controller_boosts_for_hold_steps_then_restores(bk):
    # the same rule on the engine's backends: the state lives on the run's arrays (a GPU keeps it there)
    if bk == "torch":
        pytest.importorskip("torch")
    backend = make_backend(bk, "float32" if bk == "torch" else "float64")
    ctrl = AdaptiveNoise(threshold=0.5, factor=10.0, hold_steps=4, min_step=0)
    st = ctrl.init_state(2, backend)
    assert backend.is_array(st["multiplier"]) and str(st["multiplier"].dtype).endswith(backend.dtype_name)
    C = backend.asarray(np.array([0.1, 5.0]))                # walker 0 always below threshold
    mult, fired = [], []
    for step in range(12):
        fired.append(ctrl.update(st, step, C, backend=backend).tolist())
        mult.append(backend.to_numpy_copy(st["multiplier"]))
    mult = np.array(mult)
    # boosted on steps 0..3 (applies to the next 4 steps), restored at 4, boosted again at 4 ...
    assert np.all(mult[:, 1] == 1.0)
    assert list(mult[:4, 0]) == [10.0] * 4 and mult[4, 0] == 10.0
    assert fired == [[0], [], [], [], [0], [], [], [], [0], [], [], []]    # host indices, one per boost
    assert backend.to_numpy(st["n_interventions"]).tolist() == [3, 0]
    lit = AdaptiveNoise(threshold=0.5, factor=5.0, hold_steps=10, min_step=0, restore=False)
    st = lit.init_state(1, backend)
    for step in range(4):
        lit.update(st, step, backend.asarray(np.array([0.1])), backend=backend)
    assert float(st["multiplier"][0]) == 5.0 ** 4         # the seed's literal code: D grows on every trigger
    late = AdaptiveNoise(threshold=0.5, min_step=3)
    st = late.init_state(1, backend)
    assert [late.update(st, s, backend.asarray(np.array([0.1])), backend=backend).size for s in range(5)] \
        == [0, 0, 0, 1, 0]                                    # nothing before min_step


def test_controller_in_simulation_restores_D():
    L = Quadratic(eigenvalues=[1.0])
    ctrl = AdaptiveNoise(threshold=1.0, factor=10.0, hold_steps=7, min_step=0, cooldown_steps=20)
    res = simulate(L, np.zeros(1), D=0.01, dt=1e-2, n_steps=200, seed=0, controller=ctrl, record_every=1)
    D = res.D_history
    assert set(np.round(D, 12)) == {0.01, 0.1}
    # every boost lasts exactly hold_steps and is followed by at least cooldown_steps at base D
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], (D > 0.05).astype(int), [0]]))))[::2]
    assert np.all(runs == 7)
    assert len(res.interventions) >= 2


def test_nonfinite_walker_is_recorded_and_run_continues():
    L = Quadratic(eigenvalues=[1.0])
    theta0 = np.array([[0.0], [0.0], [0.0]])
    # dt above the stability limit 2/λ only matters for walkers that start far away; make walker 1 blow up
    steep = FunctionLandscape(lambda th: 0.25 * np.sum(th ** 4, -1), lambda th: th ** 3, dim=1)
    theta0 = np.array([[0.1], [50.0], [0.2]])
    res = simulate(steep, theta0, D=0.01, dt=0.1, n_steps=300, seed=1, record_every=10, check_every=5)
    assert list(res.status) == [0, 1, 0]
    assert 0 < res.failure_step[1] <= 10 and res.failure_step[0] == -1
    assert np.all(np.isfinite(res.records["loss_mean"]))            # stats over live walkers only
    assert res.records["n_alive"][-1] == 2 and "walker" in res.messages[0]
    with pytest.raises(NonFiniteError, match="non-finite") as info:
        simulate(steep, theta0, D=0.01, dt=0.1, n_steps=300, seed=1, record_every=10, check_every=5,
                 on_nonfinite="raise")
    assert info.value.result is not None and info.value.result.steps[0] == 0
    del L


@pytest.mark.parametrize("kwargs,match", [
    (dict(D=-1.0), "`D` must be >= 0"),
    (dict(dt=0.0), "`dt` must be > 0"),
    (dict(dt=float("nan")), "`dt` must not be NaN"),
    (dict(theta0=np.array([np.nan])), "`theta0` must be finite"),
    (dict(theta0=np.zeros(3)), r"`theta0` must have shape \(d,\) or \(N, d\) with d=1"),
    (dict(integrator="rk4"), "`integrator` must be one of"),
    (dict(integrator="baoab", preconditioner=[1.0]), "`preconditioner` is not supported"),
    (dict(observables=("loss", "entropy")), "`observables` must be drawn from"),
    (dict(n_steps=-3), "`n_steps` must be >= 0"),
])
def test_bad_input_names_the_argument(kwargs, match):
    args = dict(theta0=np.zeros(1), D=0.1, dt=0.01, n_steps=5)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        simulate(DoubleWell(), args.pop("theta0"), **args)


def test_schedules():
    assert ExponentialDecay(1.0, tau=2.0, D_min=0.1)(2.0) == pytest.approx(np.exp(-1.0))
    assert ExponentialDecay(1.0, tau=2.0, D_min=0.5)(10.0) == 0.5
    cos = CosineAnnealing(D_max=1.0, D_min=0.2, T=10.0)
    assert cos(0.0) == pytest.approx(1.0) and cos(5.0) == pytest.approx(0.6) and cos(20.0) == pytest.approx(0.2)
    w = Warmup(cos, t_warmup=1.0, start_factor=0.1)
    assert w(0.0) == pytest.approx(0.1) and w(0.5) == pytest.approx(0.55 * cos(0.5))
    res = simulate(Quadratic(eigenvalues=[1.0]), np.zeros(1), D=cos, dt=0.5, n_steps=30, seed=0, record_every=1)
    assert np.allclose(res.D_history, cos(res.times))
    with pytest.raises(ValueError, match="`tau` must be > 0"):
        ExponentialDecay(1.0, tau=0.0)


def test_unvectorised_callables_loop_with_a_note():
    L = FunctionLandscape(lambda th: 0.5 * float(np.sum(th ** 2)), lambda th: np.array(th), dim=2)
    assert not L.vectorised
    with pytest.warns(UserWarning, match="do not broadcast"):
        res = simulate(L, np.ones(2), n_walkers=3, D=0.0, dt=0.1, n_steps=2, seed=0)
    assert np.allclose(res.final_theta, 0.81)
    vec = FunctionLandscape(lambda th: 0.5 * np.sum(th ** 2, -1), lambda th: th, dim=2)
    assert vec.vectorised
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulate(vec, np.ones(2), n_walkers=3, D=0.0, dt=0.1, n_steps=2, seed=0)
