"""The many-steps Triton kernel (shld.dynamics.triton_steps): its generator against Philox4x32-10's
published answers and a numpy reference, its noise against N(0, 1), launch splits against one launch,
and the engine on it against closed forms (with wrong-temperature power checks). Without CUDA the
kernel runs in Triton's interpreter on CPU tensors (the same source the GPU compiles), so the sizes are
small; the CUDA-parametrised engine tests run it compiled ("auto" picks it on a GPU)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from shld.dynamics import AdaptiveNoise, EnsembleState, HalfSpace, Simulation, simulate
from shld.dynamics.backends import make_backend
from shld.dynamics.schedules import ExponentialDecay
from shld.dynamics.triton_steps import (
    PROBE,
    CubicEulerKernel,
    check_against_reference,
    interpreter_problem,
    philox4x32_10,
    reference_normals,
    reference_passage,
    reference_steps,
    triton_available,
)
from shld.landscapes import DoubleWell, Quadratic, Rosenbrock
from shld.theory import gibbs_cdf_1d

torch = pytest.importorskip("torch")
# the CPU tests run the kernel in Triton's interpreter (a GPU compiles the same source)
needs_triton = pytest.mark.skipif(interpreter_problem() is not None, reason=str(interpreter_problem()))
KW = dict(backend="torch", device="cpu", step_kernel="triton")
# the kernel's own tests also run compiled where there is a GPU
DEVICES = [pytest.param("cpu", marks=needs_triton),
           pytest.param("cuda", marks=pytest.mark.skipif(not (torch.cuda.is_available() and triton_available()),
                                                         reason="no CUDA device, or no Triton"))]


def test_philox_reference_gives_random123_known_answers():
    # Random123's kat_vectors for philox4x32_10: (counter, key) -> output
    cases = [([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
             ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
             ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
              [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1])]
    for counter, key, expected in cases:
        assert philox4x32_10(counter, key).tolist() == expected


def zero_drift_kernel(sigma=1.0, device="cpu"):
    # g = 0 and σ = √(2·D·dt) = sigma: one step adds σ·ξ
    return CubicEulerKernel(np.zeros((1, 4)), dt=1.0, D=0.5 * sigma**2,
                            backend=make_backend("torch", "float32", device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("step", [0, 1, 2, 3, 6, 2**32 * 4 + 5])   # every lane, and a group past 2³²
def test_kernel_noise_is_the_reference_philox_box_muller(step, device):
    key = 0x0123456789ABCDEF
    x = torch.zeros(37, 1, device=device)
    zero_drift_kernel(device=device)(x, torch.tensor([key], dtype=torch.int64, device=device), step, step + 1)
    if device == "cpu":     # the interpreter computes log, cos and sin with numpy: the same bits
        np.testing.assert_array_equal(x[:, 0].numpy(), reference_normals(key, 37, step))
    else:                   # CUDA's libdevice log/cos/sin: within a few float32 ulps
        np.testing.assert_allclose(x[:, 0].cpu().numpy(), reference_normals(key, 37, step), rtol=1e-5, atol=1e-6)


@needs_triton
def test_noise_is_standard_normal_independent_and_rejects_a_wrong_scale():
    n, steps = 20_000, 4
    key = torch.tensor([7], dtype=torch.int64)
    kern = zero_drift_kernel()
    z = np.empty((steps, n))
    for s in range(steps):                      # one step a launch: x = ξ_s
        x = torch.zeros(n, 1)
        kern(x, key, s, s + 1)
        z[s] = x[:, 0].numpy()
    flat = z.ravel()
    assert stats.kstest(flat, "norm").pvalue > 1e-3
    # power: KS resolves 1.36/√(8·10⁴) ≈ 0.005 in the CDF; a 5 % wrong scale moves it by ≈ 0.012
    assert stats.kstest(flat, "norm", args=(0, 1.05)).pvalue < 1e-6
    # the four steps of one Philox block, and neighbouring elements, are uncorrelated: |r| < 4/√n
    r = np.corrcoef(z)
    off = r[~np.eye(steps, dtype=bool)]
    assert np.abs(off).max() < 4 / np.sqrt(n)
    assert abs(np.corrcoef(z[0, :-1], z[0, 1:])[0, 1]) < 4 / np.sqrt(n - 1)


@pytest.mark.parametrize("device", DEVICES)
def test_split_launches_give_the_bits_of_one_launch(device):
    L = DoubleWell(dim=2, tilt=0.2, k_perp=0.7)
    bk = make_backend("torch", "float64", device)
    kern = CubicEulerKernel(L.gradient_polynomial(), dt=0.01, D=0.4, backend=bk)
    key = torch.tensor([-5], dtype=torch.int64, device=device)   # a negative int64 is a key like any other
    start = torch.tensor(np.random.default_rng(0).standard_normal((50, 2)), device=device)
    one = kern(start.clone(), key, 3, 14)
    pieces = start.clone()
    for a, b in [(3, 4), (4, 9), (9, 14)]:                  # a head, a group-crossing middle, a tail
        kern(pieces, key, a, b)
    assert torch.equal(one, pieces)
    # and not a test that cannot fail: another key, or other steps, move the walkers elsewhere
    assert not torch.equal(one, kern(start.clone(), torch.tensor([-4], device=device), 3, 14))
    assert not torch.equal(one, kern(start.clone(), key, 4, 15))


@needs_triton
def test_kernel_step_is_euler_maruyama_on_the_landscape_gradient():
    # D = 0: θ ← θ − dt·∇L(θ) exactly the numpy step (float64; the cubic in Horner form: ≤ a few ulp)
    L = DoubleWell(dim=3, tilt=-0.3, a=1.3, barrier=2.0, k_perp=0.6)
    bk = make_backend("torch", "float64")
    kern = CubicEulerKernel(L.gradient_polynomial(), dt=0.003, D=0.0, backend=bk)
    x0 = np.random.default_rng(1).uniform(-2, 2, (40, 3))
    x = torch.tensor(x0)
    kern(x, torch.tensor([1]), 0, 25)
    ref = x0.copy()
    for _ in range(25):
        ref = ref - 0.003 * L.grad(ref)
    np.testing.assert_allclose(x.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_gradient_polynomial_of_the_built_in_landscapes():
    rng = np.random.default_rng(2)
    for L in (DoubleWell(), DoubleWell(dim=3, tilt=0.4, a=0.7, barrier=3.0, k_perp=2.5),
              Quadratic(eigenvalues=[0.5, 2.0, 9.0], center=[1.0, -2.0, 0.3])):
        c = L.gradient_polynomial()
        x = rng.uniform(-2, 2, (30, L.dim))
        poly = c[:, 0] + c[:, 1] * x + c[:, 2] * x**2 + c[:, 3] * x**3
        np.testing.assert_allclose(poly, L.grad(x), rtol=1e-12, atol=1e-12)
    assert Quadratic(matrix=[[2.0, 0.5], [0.5, 1.0]]).gradient_polynomial() is None   # not separable
    assert Rosenbrock(dim=2).gradient_polynomial() is None                              # the default


# -- the engine on the kernel ------------------------------------------------------------------------
@needs_triton
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_engine_on_the_kernel_keeps_the_exact_euler_variance(dtype):
    lam = np.array([0.5, 2.0, 6.0])
    D, dt, n = 0.3, 0.05, 6000
    v = D / (lam * (1.0 - 0.5 * lam * dt))                  # exact Euler–Maruyama stationary variance
    theta0 = np.random.default_rng(3).standard_normal((n, 3)) * np.sqrt(v)
    res = simulate(Quadratic(eigenvalues=lam), theta0, D=D, dt=dt, n_steps=120, seed=4, dtype=dtype,
                   observables=("loss",), **KW)
    var = res.final_theta.astype(np.float64).var(axis=0, ddof=1)
    se = v * np.sqrt(2.0 / (n - 1))                          # SE of a Gaussian sample variance
    assert np.all(np.abs(var - v) < 4.5 * se), (var, v)      # 4.5 SE over 3 coordinates
    assert np.all(np.abs(var - 1.25 * v) > 4.5 * se)         # power: 25 % wrong temperature ≈ 13 SE away


@needs_triton
@pytest.mark.slow        # ~13 s in Triton's interpreter; the CUDA-parametrised Gibbs test runs it compiled
def test_engine_on_the_kernel_reaches_the_gibbs_law_of_the_double_well():
    L, D, n = DoubleWell(barrier=1.0), 0.5, 4000
    theta0 = np.where(np.arange(n) % 2 == 0, -1.0, 1.0)[:, None]          # both wells, symmetric
    res = simulate(L, theta0, D=D, dt=1e-2, n_steps=800, seed=12, record_every=800, dtype="float32", **KW)
    x = res.final_theta[:, 0].astype(np.float64)
    # EM bias at dt = 1e-2 (U'' = 8 in the wells: each well's variance 4 % wider, its spread 2 %) moves the
    # CDF by ≈ 5e-3, below the KS resolution 1.36/√4000 = 0.02; t = 8 is 64 relaxation times of a well
    assert stats.kstest(x, gibbs_cdf_1d(L.u, D, -3.5, 3.5)).pvalue > 1e-3
    assert stats.kstest(x, gibbs_cdf_1d(L.u, D / 2, -3.5, 3.5)).pvalue < 1e-6       # power: the wrong temperature is rejected


@needs_triton
def test_engine_on_the_kernel_resumes_and_splits_bit_for_bit(tmp_path):
    L = Quadratic(eigenvalues=[1.0, 2.0], center=[0.5, -1.0])
    sim = Simulation(L, D=0.3, dt=0.01, record_every=7, check_every=10, dtype="float32", **KW)
    full = sim.advance(sim.init_state(np.zeros(2), n_walkers=300, seed=3), 83)
    st = sim.init_state(np.zeros(2), n_walkers=300, seed=3)
    sim.advance(st, 20)
    np.savez(tmp_path / "ck.npz", **st.to_arrays())
    with np.load(tmp_path / "ck.npz") as z:
        st2 = EnsembleState.from_arrays({k: z[k] for k in z.files})
    assert int(st2.philox_key) == int(st.philox_key)
    sim.advance(st2, 41)
    part = sim.advance(st2, 22)
    assert np.array_equal(part.final_theta, full.final_theta)
    assert np.array_equal(part.records["loss_mean"], full.records["loss_mean"][-len(part.steps):])
    # the records fall on the same grid as the eager engine's
    eager = Simulation(L, D=0.3, dt=0.01, record_every=7, dtype="float32", backend="torch", step_kernel="eager")
    assert np.array_equal(eager.advance(eager.init_state(np.zeros(2), n_walkers=3, seed=3), 83).steps, full.steps)
    # another seed, another key, other bits
    other = sim.advance(sim.init_state(np.zeros(2), n_walkers=300, seed=4), 83)
    assert not np.array_equal(other.final_theta, full.final_theta)


@needs_triton
def test_a_schedule_runs_on_the_kernel_with_each_steps_temperature():
    # D(t) goes with each launch as σ_s = √(2·D(s·dt)·dt): the engine's path is the float64 reference's
    # with the schedule's value at every step (a σ one step off, or a launch's σ reused, moves θ by ≥ 1e-3)
    L, dt, n_steps = DoubleWell(dim=2, k_perp=2.0), 0.02, 45
    theta0 = np.random.default_rng(8).uniform(-1.2, 1.2, (60, 2))
    schedule = ExponentialDecay(0.8, 0.3)
    kw = dict(dt=dt, n_steps=n_steps, seed=3, record_every=7, check_every=10, dtype="float64", **KW)
    res = simulate(L, theta0, D=schedule, **kw)
    D_steps = np.array([float(schedule(s * dt)) for s in range(n_steps)])
    x = reference_steps(L.gradient_polynomial(), dt, D_steps, theta0, int(res.state.philox_key[0]), 0, n_steps)
    np.testing.assert_allclose(res.final_theta, x, rtol=0, atol=1e-12)
    assert np.array_equal(res.D_history, [float(schedule(s * dt)) for s in res.steps])     # the records' D
    # a constant D given as a function takes the per-step path and gives the constant path's bits
    const = simulate(L, theta0, D=0.3, **kw)
    assert np.array_equal(simulate(L, theta0, D=lambda t: 0.3, **kw).final_theta, const.final_theta)
    assert not np.array_equal(res.final_theta, const.final_theta)


@needs_triton
@pytest.mark.parametrize("kind", ["function", "schedule"])
def test_a_schedule_that_turns_bad_stops_the_kernel_at_that_step_as_eager_does(kind):
    # a function D(t) is checked as it is called (its error names t); a Schedule's value by the engine
    # (its error names the step too). Bad from step 13 (t = 0.26) on, inside the launch over steps 10 … 14
    class Turns(ExponentialDecay):
        def __call__(self, t):
            return 0.3 if t < 0.25 else float("nan")
    schedule = Turns(1.0, 1.0) if kind == "schedule" else (lambda t: 0.3 if t < 0.25 else float("nan"))
    message = r"returned nan at step 13 \(t = 0.26\)" if kind == "schedule" else "returned nan at t=0.26"
    for step_kernel in ("triton", "eager"):
        sim = Simulation(DoubleWell(), D=schedule, dt=0.02, record_every=5, check_every=10, backend="torch",
                         device="cpu", step_kernel=step_kernel)
        state = sim.init_state(np.zeros(1), n_walkers=4, seed=0)
        with pytest.raises(ValueError, match=message):
            sim.advance(state, 40)
        assert state.step == 13                            # the steps before it were taken


@needs_triton
def test_stop_when_all_hit_on_the_kernel_stops_at_the_last_first_passage():
    # the eager loop stops at the first step after which every live walker has hit; the kernel finds that
    # step from the first-passage times and replays its launch up to it (the noise depends on the step
    # alone): θ, hits and times are the float64 reference path's, stopped there (the property test below
    # also stops runs at the end of a launch)
    L, D, dt = DoubleWell(dim=2, k_perp=2.0, barrier=0.5), 1.0, 0.02
    target = HalfSpace(axis=0, threshold=0.0)
    theta0 = np.random.default_rng(8).uniform(-1.2, 1.2, (60, 2))
    sim = Simulation(L, D=D, dt=dt, target=target, stop_when_all_hit=True, record_every=7, check_every=10,
                     dtype="float64", **KW)
    state = sim.init_state(theta0, seed=3)
    res = sim.advance(state, 400)
    key = int(state.philox_key[0])
    x, hit = theta0, target(theta0)
    fpt = np.where(hit, 0.0, np.inf)
    for s in range(400):
        x, hit, fpt = reference_passage(L.gradient_polynomial(), dt, D, x, key, s, s + 1, target, hit, fpt)
        if hit.all():
            break
    last = s + 1
    assert 20 < last < 400 and last % 7 and last % 10                # a step between records and checks
    assert state.step == last and res.steps[-1] == last
    assert res.messages == [f"stopped at step {last}: every live walker reached the target"]
    np.testing.assert_allclose(res.final_theta, x, rtol=0, atol=1e-12)
    assert np.array_equal(res.first_passage_time, fpt) and res.hit.all()
    # all hit already: the next call steps once and stops, as the eager loop does
    again = sim.advance(state, 50)
    assert state.step == last + 1 and again.messages[-1].startswith(f"stopped at step {last + 1}")


@needs_triton
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(record_every=st.integers(1, 12), check_every=st.integers(1, 12), pieces=st.lists(st.integers(1, 17),
       min_size=1, max_size=3), schedule=st.booleans(), above=st.booleans(), seed=st.integers(0, 2**16))
def test_any_cut_of_a_run_into_launches_is_the_reference_path(record_every, check_every, pieces, schedule, above,
                                                             seed):
    # whatever the records, checks and advance() calls cut the run into, with a constant D or a schedule, the
    # engine on the kernel follows the float64 reference path step for step (θ to 1e-12, the same hits and
    # times) and stop_when_all_hit stops it at the reference's step: about half the draws stop (5 walkers
    # near the target), most of them inside a launch (the replay), the others run to the end
    L, dt = DoubleWell(barrier=0.3), 0.05
    D = ExponentialDecay(1.8, 0.6, D_min=0.8) if schedule else 1.2
    target = HalfSpace(0, 0.2 if above else -0.2, above=above)
    theta0 = np.linspace(-0.3, 1.0, 5)[:, None] * (1 if above else -1)
    sim = Simulation(L, D=D, dt=dt, target=target, stop_when_all_hit=True, record_every=record_every,
                     check_every=check_every, dtype="float64", **KW)
    state = sim.init_state(theta0, seed=seed)
    for m in pieces:
        if "stopped at step" in " ".join(sim.advance(state, m).messages):
            break
    key = int(state.philox_key[0])
    x, hit = theta0, target(theta0)
    fpt = np.where(hit, 0.0, np.inf)
    s = 0
    while s < sum(pieces) and not (s > 0 and hit.all()):
        x, hit, fpt = reference_passage(L.gradient_polynomial(), dt, float(sim.schedule(s * dt)), x, key, s, s + 1,
                                        target, hit, fpt)
        s += 1
    assert state.step == s
    np.testing.assert_allclose(state.theta.numpy(), x, rtol=0, atol=1e-12)
    assert np.array_equal(state.hit.numpy(), hit) and np.array_equal(state.first_passage_time.numpy(), fpt)


@needs_triton
def test_engine_on_the_kernel_reports_walkers_that_blow_up_at_the_next_check():
    # a steep cubic with a large dt: walkers started at |x| = 3 overshoot to inf/NaN within a few steps
    L = DoubleWell(barrier=50.0)
    theta0 = np.array([[0.0], [3.0], [-1.0], [-3.0]])
    res = simulate(L, theta0, D=0.0, dt=0.05, n_steps=30, seed=0, check_every=10, **KW)
    assert res.status.tolist() == [0, 1, 0, 1]
    assert res.failure_step.tolist() == [-1, 10, -1, 10]
    assert any("non-finite" in m for m in res.messages)


def test_step_kernel_choice_and_refusals():
    L = DoubleWell()
    assert Simulation(L, backend="torch", device="cpu").step_kernel == "eager"      # auto: CPU stays eager
    assert Simulation(L, backend="numpy", step_kernel="eager").step_kernel == "eager"
    with pytest.raises(ValueError, match="step_kernel"):
        Simulation(L, backend="torch", step_kernel="fast")
    for kwargs, why in [(dict(backend="numpy"), "backend='numpy'"), (dict(integrator="baoab"), "Euler"),
                        (dict(target=lambda th: th[:, 0] > 0), "target"),
                        (dict(controller=AdaptiveNoise(threshold=1.0)), "controller")]:
        kw = {**dict(backend="torch"), **kwargs, "step_kernel": "triton"}
        with pytest.raises(ValueError, match=why):
            Simulation(L, **kw)
    with pytest.raises(ValueError, match="gradient_polynomial"):
        Simulation(Rosenbrock(dim=2), backend="torch", step_kernel="triton")


def test_a_kernel_that_fails_to_launch_names_the_way_round(monkeypatch):
    if not triton_available():
        pytest.skip("Triton is not installed")
    kern = zero_drift_kernel()

    class Broken:
        def __getitem__(self, grid):
            def run(*args, **kwargs):
                raise OSError("ptxas: unsupported architecture")
            return run
    monkeypatch.setattr(kern, "launch", Broken())
    with pytest.raises(RuntimeError, match="step_kernel='eager'.*") as info:
        kern(torch.zeros(3, 1), torch.tensor([1]), 0, 5)
    assert "ptxas: unsupported architecture" in str(info.value)
    assert kern(torch.zeros(3, 1), torch.tensor([1]), 5, 5).abs().sum() == 0     # an empty range launches nothing


def test_auto_takes_the_kernel_on_cuda_only_when_triton_is_there(monkeypatch):
    import types

    import shld.dynamics.triton_steps as ts

    sim = Simulation(DoubleWell(), backend="torch", step_kernel="eager")
    real = sim.backend
    sim.backend = types.SimpleNamespace(name="torch", device=torch.device("cuda", 0))   # what a GPU run holds
    monkeypatch.setattr(ts, "triton_available", lambda: True)
    assert sim._choose_step_kernel("auto") == "triton"
    monkeypatch.setattr(ts, "triton_available", lambda: False)
    assert sim._choose_step_kernel("auto") == "eager"
    with pytest.raises(ValueError, match="Triton is not installed"):
        sim._choose_step_kernel("triton")
    sim.backend = real
    monkeypatch.setattr(ts, "triton_available", lambda: True)
    assert sim._choose_step_kernel("auto") == "eager"                                 # a CPU device


def test_a_cpu_run_refuses_the_kernel_when_the_interpreter_cannot_run_it(monkeypatch):
    import shld.dynamics.triton_steps as ts

    monkeypatch.setattr(ts, "triton_available", lambda: True)
    monkeypatch.setattr(ts, "interpreter_problem", lambda: "Triton 0.0's interpreter does not run here")
    with pytest.raises(ValueError, match="Triton 0.0's interpreter does not run here"):
        Simulation(DoubleWell(), backend="torch", device="cpu", step_kernel="triton")
    assert Simulation(DoubleWell(), backend="torch", device="cpu").step_kernel == "eager"   # auto: not asked


VARIANTS = [dict(D=0.1, target=None), dict(D=None, target=None),
            dict(D=0.1, target=HalfSpace(0, 1.0)), dict(D=None, target=HalfSpace(0, -1.0, above=False))]


@needs_triton
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", VARIANTS, ids=["constant", "schedule", "target", "schedule-target-below"])
def test_a_kernel_off_its_reference_is_refused_before_it_runs(dtype, variant, monkeypatch):
    import shld.dynamics.triton_steps as ts

    kern = CubicEulerKernel(np.zeros((1, 4)), 0.1, variant["D"], make_backend("torch", dtype),
                            target=variant["target"])
    monkeypatch.setattr(ts, "_CHECKED", set())
    check_against_reference(kern)                        # the real kernel agrees with the numpy reference
    side = None if variant["target"] is None else variant["target"].above
    assert ts._CHECKED == {("cpu", f"torch.{dtype}", variant["D"] is None, side)}    # this variant only
    real = kern.launch

    def miscompiled(shift_steps, shift_threshold):       # what a miscompiled kernel would do
        class Launch:
            def __getitem__(self, grid):
                def run(*args, **kw):    # args: x, coef, params, dt64, key, hit, fpt, sig, n, d, s0, s1, axis
                    args = list(args)
                    args[10], args[11] = args[10] + shift_steps, args[11] + shift_steps     # wrong normals
                    if shift_threshold:                                       # crossings recorded elsewhere
                        args[2] = args[2] + torch.tensor([0.0, 0.0, shift_threshold], dtype=args[2].dtype)
                    real[grid](*args, **kw)
                return run
        return Launch()
    monkeypatch.setattr(kern, "launch", miscompiled(1, 0.0))
    monkeypatch.setattr(ts, "_CHECKED", set())
    with pytest.raises(RuntimeError, match="off its numpy reference.*step_kernel='eager'"):
        check_against_reference(kern)
    assert not ts._CHECKED
    if variant["target"] is not None:    # θ right, the passages wrong: a threshold moved by δ
        pr = PROBE
        D = pr["D_steps"] if variant["D"] is None else pr["D"]

        def passages(delta):
            threshold = (pr["threshold"] if side else -pr["threshold"]) + delta
            out = reference_passage(pr["coef"], pr["dt"], D, pr["theta0"], pr["key"], pr["s0"], pr["s1"],
                                    HalfSpace(0, threshold, above=side))
            return out[1].tolist(), out[2].tolist()
        delta = next(d for d in (-0.05, 0.05) if passages(d) != passages(0.0))     # one that moves a crossing
        monkeypatch.setattr(kern, "launch", miscompiled(0, delta))
        with pytest.raises(RuntimeError, match="other first passages.*step_kernel='eager'"):
            check_against_reference(kern)
        assert not ts._CHECKED


def test_the_reference_check_probe_is_well_posed():
    # the probe's walkers stay ≥ 1e-3 from its thresholds at every step (float32 rounding, ~1e-7, cannot
    # flip a crossing), some cross at later steps than the first, and its temperatures vary per step
    p = PROBE
    for D in (p["D"], p["D_steps"]):
        for above in (True, False):
            target = HalfSpace(0, p["threshold"] if above else -p["threshold"], above=above)
            x, fpts = p["theta0"], set()
            hit, fpt = None, None
            for s in range(p["s0"], p["s1"]):
                Ds = D if np.ndim(D) == 0 else D[s - p["s0"]]
                x, hit, fpt = reference_passage(p["coef"], p["dt"], Ds, x, p["key"], s, s + 1, target, hit, fpt)
                assert np.abs(x[:, 0] - target.threshold).min() > 1e-3
            fpts = set(fpt[hit].tolist())
            assert 4 <= hit.sum() <= 12 and (p["s0"] + 1) * p["dt"] in fpts
    assert len(set(p["D_steps"].tolist())) == p["s1"] - p["s0"]


@needs_triton
@pytest.mark.parametrize("above", [True, False])
def test_first_passage_inside_the_kernel_is_the_reference_crossing_step(above):
    # the kernel records a HalfSpace target's first passage as the eager loop does: fpt = (s + 1)·dt at the
    # first step s after which the walker is inside; checked bit for bit against the numpy reference
    # path of every walker (float64), over launches cut by records and checks
    L, D, dt, n, steps = DoubleWell(dim=2, k_perp=2.0), 0.4, 0.02, 60, 45
    target = HalfSpace(axis=0, threshold=0.3 if above else -0.3, above=above)
    theta0 = np.random.default_rng(8).uniform(-1.2, 1.2, (n, 2))
    res = simulate(L, theta0, D=D, dt=dt, n_steps=steps, seed=3, target=target, record_every=7, check_every=10,
                   dtype="float64", **KW)
    key = int(res.state.philox_key[0])
    x, inside = theta0.copy(), target(theta0)
    fpt = np.where(inside, 0.0, np.inf)
    for s in range(steps):
        x = reference_steps(L.gradient_polynomial(), dt, D, x, key, s, s + 1)
        newly = target(x) & ~inside
        fpt[newly] = (s + 1) * dt
        inside |= newly
    assert 5 <= inside.sum() < n                                 # some walkers cross, not all
    np.testing.assert_allclose(res.final_theta, x, rtol=0, atol=1e-12)
    assert np.array_equal(res.hit, inside)
    assert np.array_equal(res.first_passage_time, fpt)           # the same float64 times, bit for bit
    assert res.records["fraction_hit"][-1] == inside.mean()


def test_halfspace_is_the_threshold_callable_on_both_backends():
    th = np.array([[0.2, 5.0], [0.3, -1.0], [0.5, 0.0]])
    assert HalfSpace(0, 0.3)(th).tolist() == [False, True, True]
    assert HalfSpace(1, 0.0, above=False)(th).tolist() == [False, True, True]
    assert HalfSpace(0, 0.3)(torch.tensor(th)).tolist() == [False, True, True]
    assert HalfSpace(0, 0.3).halfspace() == (0, 0.3, True)
    with pytest.raises(ValueError, match="axis"):
        HalfSpace(2, 0.0)(th)
    with pytest.raises(ValueError, match="axis"):
        HalfSpace(-1, 0.0)
    with pytest.raises(TypeError, match="threshold"):
        HalfSpace(0, "high")
    with pytest.raises(TypeError, match="above"):
        HalfSpace(0, 1.0, above="yes")


def test_targets_the_kernel_takes_and_refuses(monkeypatch):
    import shld.dynamics.triton_steps as ts

    monkeypatch.setattr(ts, "triton_available", lambda: True)
    monkeypatch.setattr(ts, "interpreter_problem", lambda: None)
    ok = Simulation(DoubleWell(), backend="torch", step_kernel="triton", target=HalfSpace(0, 1.0))
    assert ok.step_kernel == "triton"
    with pytest.raises(ValueError, match="`target` callable"):
        Simulation(DoubleWell(), backend="torch", step_kernel="triton", target=lambda th: th[:, 0] >= 1.0)
    for more in (dict(stop_when_all_hit=True), dict(D=ExponentialDecay(1.0, 2.0)), dict(D=lambda t: 0.1)):
        assert Simulation(DoubleWell(), backend="torch", step_kernel="triton", target=HalfSpace(0, 1.0),
                          **more).step_kernel == "triton"


def test_runs_that_cannot_use_the_kernel_never_import_triton():
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from shld.dynamics import simulate\n"
            "from shld.landscapes import DoubleWell\n"
            "simulate(DoubleWell(), np.zeros(1), n_walkers=10, n_steps=5, seed=0)\n"
            "simulate(DoubleWell(), np.zeros(1), n_walkers=10, n_steps=5, seed=0, backend='torch')\n"
            "assert 'triton' not in sys.modules, 'triton was imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
