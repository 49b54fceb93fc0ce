"""Probes of ``simulate`` that used to end in a traceback from deep inside numpy (or ran silently):
each is now refused before any step with a message naming the argument and the value, or, for a
loss or gradient that goes non-finite, recorded per walker like a θ that goes non-finite."""

import numpy as np
import pytest

from shld.dynamics import NonFiniteError, Warmup, simulate
from shld.landscapes import DoubleWell, FunctionLandscape, Quadratic


def test_empty_theta0_is_refused():
    with pytest.raises(ValueError, match=r"`theta0` must hold at least one walker .* got shape \(0, 1\)"):
        simulate(DoubleWell(), np.zeros((0, 1)), D=0.1, dt=0.01, n_steps=5, seed=0)


def test_complex_theta0_is_refused():
    with pytest.raises(TypeError, match=r"`theta0` must be real, got a complex array \(dtype complex128\)"):
        simulate(DoubleWell(), np.array([1.0 + 0.5j]), D=0.1, dt=0.01, n_steps=5, seed=0)


def test_a_single_observable_name_is_one_name():
    res = simulate(Quadratic(eigenvalues=[2.0]), np.ones(1), D=0.0, dt=0.1, n_steps=2, seed=0,
                   record_every=1, observables="loss")
    # D = 0: θ_k = 0.8^k, L = θ²  (λ = 2, L = ½·2·θ²)
    assert np.allclose(res.records["loss_mean"], [1.0, 0.64, 0.4096], rtol=0, atol=1e-15)
    assert "C_ensemble" not in res.records


@pytest.mark.parametrize("observables,exc,match", [
    ("entropy", ValueError, r"`observables` must be drawn from \['loss', 'C', .*\], got \['entropy'\]"),
    (("loss", 3), ValueError, r"`observables` must be drawn from .* got \[3\]"),
    (3, TypeError, r"`observables` must be a name or a sequence of names from \['loss', .*got 3"),
])
def test_unknown_observables_list_the_allowed_ones(observables, exc, match):
    with pytest.raises(exc, match=match):
        simulate(DoubleWell(), np.zeros(1), D=0.1, dt=0.01, n_steps=5, seed=0, observables=observables)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5])
def test_a_D_schedule_returning_nan_inf_or_negative_is_refused_before_the_first_step(bad):
    calls = []

    def grad(th):
        calls.append(1)
        return th

    L = FunctionLandscape(lambda th: 0.5 * np.sum(th ** 2, -1), grad, dim=1)
    calls.clear()                                           # the vectorisation probe is not a step
    with pytest.raises(ValueError, match=rf"`D` \(the schedule D\(t\)\) returned {bad!r} at t=0.0; "
                                         r"D\(t\) must be finite and >= 0"):
        simulate(L, np.zeros(1), D=lambda t: bad, dt=0.01, n_steps=5, seed=0)
    assert len(calls) == 1                                  # the initial gradient only: no step was taken


def test_a_schedule_going_nan_mid_run_names_the_step_and_time():
    sched = Warmup(lambda t: 0.1 if t < 0.0105 else float("nan"), t_warmup=1.0)
    with pytest.raises(ValueError, match=r"`D` \(the schedule D\(t\)\) returned nan at step 11 \(t = 0.011\)"):
        simulate(DoubleWell(), np.zeros(1), D=sched, dt=1e-3, n_steps=50, seed=0)


def _quadratic_nan_beyond(limit, where):
    """½θ² whose loss (or gradient) is NaN for θ > limit."""
    def loss(th):
        v = 0.5 * np.sum(th ** 2, -1)
        return np.where(th[..., 0] > limit, np.nan, v) if where == "loss" else v

    def grad(th):
        return np.where(th > limit, np.nan, th) if where == "grad" else th

    return FunctionLandscape(loss, grad, dim=1)


def test_a_loss_nan_everywhere_is_reported_per_walker_and_can_raise():
    L = _quadratic_nan_beyond(-np.inf, "loss")
    res = simulate(L, np.zeros(1), n_walkers=3, D=0.1, dt=0.01, n_steps=50, seed=0, record_every=10)
    assert res.status.tolist() == [1, 1, 1] and res.failure_step.tolist() == [0, 0, 0]
    assert "3 walker(s) have a non-finite θ, loss or gradient at step 0 (t = 0)" in res.messages[0]
    with pytest.raises(NonFiniteError, match="non-finite θ, loss or gradient at step 0") as info:
        simulate(L, np.zeros(1), n_walkers=3, D=0.1, dt=0.01, n_steps=50, seed=0, record_every=10,
                 on_nonfinite="raise")
    partial = info.value.result
    assert partial.steps.tolist() == [0] and partial.status.tolist() == [1, 1, 1]


def test_only_the_walkers_with_a_nan_loss_fail_and_the_statistics_skip_them():
    L = _quadratic_nan_beyond(5.0, "loss")
    theta0 = np.array([[0.0], [10.0], [1.0]])
    res = simulate(L, theta0, D=0.0, dt=0.1, n_steps=20, seed=0, record_every=5)
    assert res.status.tolist() == [0, 1, 0] and res.failure_step.tolist() == [-1, 0, -1]
    # D = 0: walkers 0 and 2 descend as θ·0.9^k, so the loss mean is ¼·0.81^k over the two of them
    k = res.steps
    assert np.allclose(res.records["loss_mean"], 0.25 * 0.81 ** k, rtol=1e-12, atol=0)
    assert res.records["n_alive"].tolist() == [2] * len(k)


def test_a_nan_gradient_fails_the_walker_at_the_record_where_it_appears():
    L = _quadratic_nan_beyond(5.0, "grad")
    theta0 = np.array([[0.5], [8.0]])
    # θ is only checked every 100 steps; the gradient is checked at each record (every step here)
    res = simulate(L, theta0, D=0.0, dt=0.1, n_steps=30, seed=0, record_every=1, check_every=100)
    assert res.status.tolist() == [0, 1] and res.failure_step.tolist() == [-1, 0]
    assert np.allclose(res.final_theta[0], 0.5 * 0.9 ** 30, rtol=1e-12, atol=0)


def test_an_ensemble_larger_than_memory_is_refused_before_allocating():
    with pytest.raises(MemoryError, match=r"`n_walkers`=10000000000000 \(d=10, float64; 4 working arrays "
                                          r"of shape \(N, d\) plus per-walker vectors\) needs about "
                                          r"[\d,]+\.\d GiB, but only [\d,.]+ GiB of memory is available"):
        simulate(DoubleWell(dim=10), np.zeros(10), n_walkers=10 ** 13, D=0.1, dt=0.01, n_steps=5, seed=0)


def test_the_memory_estimate_counts_the_working_arrays(monkeypatch):
    import shld._validation as v

    monkeypatch.setattr(v, "available_memory_bytes", lambda: 2 ** 30)
    n = 2 ** 25
    # Euler: n·(4 arrays · d=1 · 8 bytes + 64 bytes per walker) = 96·2²⁵ bytes = 3.0 GiB
    with pytest.raises(MemoryError, match=r"`n_walkers`=33554432 .* needs about 3\.0 GiB, but only 1\.0 GiB"):
        simulate(DoubleWell(), np.zeros(1), n_walkers=n, D=0.1, dt=0.01, n_steps=1, seed=0)
    # BAOAB adds the momentum and its temporary: 112·2²⁵ bytes = 3.5 GiB; float32 halves the arrays
    with pytest.raises(MemoryError, match=r"6 working arrays .* needs about 3\.5 GiB"):
        simulate(DoubleWell(), np.zeros(1), n_walkers=n, D=0.1, dt=0.01, n_steps=1, seed=0, integrator="baoab")
    with pytest.raises(MemoryError, match=r"float32; 4 working arrays .* needs about 2\.5 GiB"):
        simulate(DoubleWell(), np.zeros(1), n_walkers=n, D=0.1, dt=0.01, n_steps=1, seed=0, dtype=np.float32)
    # a 2-D theta0 is named by its shape
    monkeypatch.setattr(v, "available_memory_bytes", lambda: 100)
    with pytest.raises(MemoryError, match=r"`theta0` of shape \(2, 1\) .* needs about 0\.0 GiB, but only 0\.0 GiB"):
        simulate(DoubleWell(), np.zeros((2, 1)), D=0.1, dt=0.01, n_steps=1, seed=0)


# -- backends ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(backend="jax"), ValueError, r"`backend` must be one of \['numpy', 'torch'\], got 'jax'"),
    (dict(device="cuda"), ValueError, r"`device` must be None or 'cpu' for backend='numpy', got 'cuda'"),
    (dict(dtype="float16"), ValueError, "`dtype` must be float32 or float64, got 'float16'"),
    (dict(backend="torch", device="tpu"), (ValueError, RuntimeError), "tpu"),
    (dict(backend="torch", dtype="int32"), ValueError, "`dtype` must be float32 or float64"),
    (dict(backend="torch", rng="seven"), TypeError, "`rng` for backend='torch' must be"),
])
def test_bad_backend_arguments_name_the_argument(kwargs, exc, match):
    if kwargs.get("backend") == "torch":
        pytest.importorskip("torch")
    with pytest.raises(exc, match=match):
        simulate(DoubleWell(), np.zeros(1), D=0.1, dt=0.01, n_steps=5, seed=0, **kwargs)


def test_cuda_without_a_gpu_and_unsupported_landscapes_are_refused_with_the_reason():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"`device`='cuda' needs CUDA, but torch.cuda.is_available\(\) is False"):
            simulate(DoubleWell(), np.zeros(1), D=0.1, dt=0.01, n_steps=5, seed=0, backend="torch", device="cuda")
    plain = FunctionLandscape(lambda th: 0.5 * np.sum(th ** 2, -1), lambda th: th, dim=1)
    with pytest.raises(ValueError, match=r"`backend`='torch' is not supported by landscape FunctionLandscape "
                                         r"\('function'\); it supports \['numpy'\]"):
        simulate(plain, np.zeros(1), D=0.1, dt=0.01, n_steps=5, seed=0, backend="torch")


def test_a_state_resumes_only_on_the_backend_that_made_it():
    pytest.importorskip("torch")
    from shld.dynamics import Simulation

    np_sim = Simulation(DoubleWell(), D=0.1, dt=0.01)
    t_sim = Simulation(DoubleWell(), D=0.1, dt=0.01, backend="torch")
    st = np_sim.init_state(np.zeros(1), n_walkers=3, seed=0)
    with pytest.raises(ValueError, match=r"`state` was made by backend='numpy'; this Simulation runs on "
                                         r"backend='torch'"):
        t_sim.advance(st, 2)
    with pytest.raises(ValueError, match="`state` was made by backend='torch'"):
        np_sim.advance(t_sim.init_state(np.zeros(1), n_walkers=3, seed=0), 2)


@pytest.mark.parametrize("made, resumed, match", [
    (dict(dtype="float32"), dict(), r"`state` holds float32 walkers; this Simulation runs in dtype='float64'"),
    (dict(integrator="baoab"), dict(), r"made by an underdamped \(BAOAB\) run.*integrates with EulerMaruyama"),
    (dict(), dict(integrator="baoab"), r"made by an overdamped run.*integrates with BAOAB"),
    (dict(), dict(controller="adaptive"), r"carries controller state none.*AdaptiveNoise needs \['boost_until'"),
    (dict(controller="adaptive"), dict(), r"carries controller state \['boost_until'.*controller None needs none"),
    (dict(landscape=DoubleWell(dim=2)), dict(), r"walkers of shape \(3, 2\).*d=1"),
])
def test_a_state_resumes_only_under_the_configuration_that_made_it(made, resumed, match):
    """Another dtype, dimension, integrator or controller cannot continue a state exactly: refused before
    the first step, naming what differs (numpy raised a broadcast or dtype error from inside a step, or
    a KeyError; torch silently went on in the state's dtype)."""
    from shld.dynamics import AdaptiveNoise, Simulation

    def sim(landscape=None, controller=None, **kw):
        return Simulation(landscape or DoubleWell(), D=0.1, dt=0.01, **kw,
                          controller=AdaptiveNoise() if controller else None)

    src = sim(**made)
    st = src.init_state(np.zeros(src.landscape.dim), n_walkers=3, seed=0)
    before = st.theta.copy()
    with pytest.raises(ValueError, match=match):
        sim(**resumed).advance(st, 2)
    assert np.array_equal(st.theta, before) and st.step == 0          # nothing moved
    if "dtype" in made:                                                # torch went on in float32, silently
        torch = pytest.importorskip("torch")
        st32 = sim(backend="torch", dtype="float32").init_state(np.zeros(1), n_walkers=3, seed=0)
        with pytest.raises(ValueError, match="`state` holds float32 walkers"):
            sim(backend="torch").advance(st32, 2)
        assert st32.theta.dtype == torch.float32


def test_a_target_must_return_a_boolean_mask_on_every_backend():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"`target` must return a boolean array of shape \(4,\)"):
        simulate(DoubleWell(), np.zeros(1), n_walkers=4, D=0.1, dt=0.01, n_steps=3, seed=0, backend="torch",
                 target=lambda th: th[:, 0])
    # a numpy mask from a torch run is taken (converted), a torch mask is the normal case
    res = simulate(DoubleWell(), np.zeros(1), n_walkers=4, D=0.1, dt=0.01, n_steps=3, seed=0, backend="torch",
                   target=lambda th: np.ones(th.shape[0], bool))
    assert res.hit.all() and np.all(res.first_passage_time == 0)
    assert torch.is_tensor(torch.zeros(1))


def test_preconditioner_friction_and_seed_are_checked_before_any_step():
    """A (3,) preconditioner for d = 2 failed with numpy's broadcast error inside the first step; friction
    with the overdamped integrator was silently ignored; seed=-1 gave numpy's message naming no argument."""
    from shld.dynamics import Simulation

    with pytest.raises(ValueError, match=r"`preconditioner` must be a scalar or of shape \(d,\) = \(2,\), got shape \(3,\)"):
        Simulation(DoubleWell(dim=2), D=0.1, dt=0.01, preconditioner=[1.0, 2.0, 3.0])
    assert Simulation(DoubleWell(dim=2), D=0.1, dt=0.01, preconditioner=[1.0, 2.0]).integrator is not None
    assert Simulation(DoubleWell(dim=2), D=0.1, dt=0.01, preconditioner=2.0).integrator is not None
    with pytest.raises(ValueError, match=r"`friction`=3.0 applies only to integrator='baoab'"):
        Simulation(DoubleWell(), D=0.1, dt=0.01, friction=3.0)
    with pytest.raises(ValueError, match="`friction` must be > 0"):
        Simulation(DoubleWell(), D=0.1, dt=0.01, friction=-3.0)
    assert Simulation(DoubleWell(), D=0.1, dt=0.01, integrator="baoab", friction=3.0).integrator.friction == 3.0
    with pytest.raises(ValueError, match="`seed` must be a non-negative integer seed, got -1"):
        simulate(DoubleWell(), np.zeros(1), D=0.1, dt=0.01, n_steps=2, seed=-1)
    with pytest.raises(ValueError, match="`rng` must be a non-negative integer seed, got -2"):
        simulate(DoubleWell(), np.zeros(1), D=0.1, dt=0.01, n_steps=2, rng=-2)
