"""What the engine records by default, and that what it records is what shld.observables defines."""

import numpy as np
import pytest

from shld.dynamics import CosineAnnealing, Simulation, simulate
from shld.dynamics.backends import _mean_std, _median
from shld.dynamics.simulate import DEFAULT_RECORDS, MIN_RECORD_EVERY
from shld.landscapes import DoubleWell, Quadratic
from shld.observables import consolidation_ratio, ensemble_consolidation_ratio


@pytest.mark.parametrize("n_steps,expected", [
    (400, list(range(0, 401, 20))),                    # short run: at most one record every 20 steps
    (2000, list(range(0, 2001, 40))),                  # ⌈2000/50⌉ = 40
    (10_000, list(range(0, 10_001, 200))),             # long run: still 51 records
    (101, [0, 20, 40, 60, 80, 100, 101]),              # plus the last step when it is off the grid
    (5, [0, 5]),
    (0, [0]),
])
def test_default_record_schedule(n_steps, expected):
    assert (DEFAULT_RECORDS, MIN_RECORD_EVERY) == (50, 20)
    dt = 1e-3
    res = simulate(Quadratic(eigenvalues=[1.0]), np.zeros(1), n_walkers=3, D=0.1, dt=dt, n_steps=n_steps,
                   seed=0)
    assert res.steps.tolist() == expected
    assert np.array_equal(res.times, np.asarray(expected) * dt)
    assert len(res.records["loss_mean"]) == len(res.records["C_ensemble"]) == len(expected)


def test_record_every_overrides_the_default_schedule():
    sim = Simulation(Quadratic(eigenvalues=[1.0]), D=0.1, dt=1e-2, record_every=7)
    assert sim.record_interval(10) == sim.record_interval(10_000) == 7
    default = Simulation(Quadratic(eigenvalues=[1.0]), D=0.1, dt=1e-2)
    assert [default.record_interval(n) for n in (1, 1000, 1001, 50_000)] == [20, 20, 21, 1000]
    res = sim.advance(sim.init_state(np.zeros(1), n_walkers=2, seed=0), 30)
    assert res.steps.tolist() == [0, 7, 14, 21, 28, 30]


def test_recorded_C_is_the_observables_C_of_the_recorded_state():
    # d = 2 and a time-dependent D: every record must use the walkers' gradient and D(t) at its own step
    L = DoubleWell(barrier=1.0, dim=2, tilt=0.1)
    D = CosineAnnealing(D_max=0.5, D_min=0.05, T=2.0)
    rng = np.random.default_rng(5)
    theta0 = rng.standard_normal((301, 2))                 # odd N: the median is one walker's C
    res = simulate(L, theta0, D=D, dt=2e-3, n_steps=1000, seed=6, record_every=100, store_trajectory=True,
                   record_walkers=True, observables=("loss", "C", "grad_norm2"))
    assert res.trajectory.shape == (11, 301, 2) and res.ok.all()
    for i, t in enumerate(res.times):
        g = L.grad(res.trajectory[i])
        D_t = D(t)
        assert res.D_history[i] == D_t
        C = consolidation_ratio(g, D_t)
        # einsum (engine) and sum (observables) may round the 2-term ‖g‖² differently: 1 ulp, 2e-16 relative
        np.testing.assert_allclose(res.records["C_walkers"][i], C, rtol=1e-15, atol=0)
        assert res.records["C_median"][i] == pytest.approx(np.median(C), rel=1e-15)
        assert res.records["C_ensemble"][i] == pytest.approx(ensemble_consolidation_ratio(g, D_t), rel=1e-15)
        assert res.records["grad_norm2_mean"][i] == pytest.approx(np.mean(np.sum(g * g, axis=1)), rel=1e-15)
        loss = L.value(res.trajectory[i])
        assert np.array_equal(res.records["loss_walkers"][i], loss)
        assert res.records["loss_mean"][i] == np.mean(loss) and res.records["loss_std"][i] == np.std(loss)
    assert np.ptp(res.records["C_ensemble"]) > 1.0         # the records differ: not one value repeated


def test_recorded_C_with_a_per_walker_D_from_the_controller():
    from shld.dynamics import AdaptiveNoise

    L = Quadratic(eigenvalues=[1.0, 4.0])
    ctrl = AdaptiveNoise(threshold=3.0, factor=10.0, hold_steps=5, min_step=0)
    res = simulate(L, np.full(2, 0.3), n_walkers=40, D=0.05, dt=1e-2, n_steps=60, seed=2, controller=ctrl,
                   record_every=1, store_trajectory=True, record_walkers=True)
    boosted = [i for i in range(len(res.steps)) if res.D_history[i] > 0.05 * 1.0001]
    assert boosted                                            # some records see a per-walker D
    for i in range(len(res.steps)):
        C = res.records["C_walkers"][i]
        g2 = np.sum(L.grad(res.trajectory[i]) ** 2, axis=1)
        D_w = g2 / (C * 2)                                    # the D each walker's C was divided by
        assert set(np.round(D_w / 0.05, 9)) <= {1.0, 10.0}
        assert np.mean(D_w) == pytest.approx(res.D_history[i], rel=1e-12)
        np.testing.assert_allclose(C, consolidation_ratio(L.grad(res.trajectory[i]), D_w), rtol=1e-15)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11, 1000, 1001])
def test_record_statistics_equal_numpy_bit_for_bit(n):
    rng = np.random.default_rng(n)
    cases = [rng.standard_normal(n) ** 2, np.round(rng.standard_normal(n), 1),   # ties
             (rng.standard_normal(n) ** 2).astype(np.float32)]
    if n > 2:
        x = rng.standard_normal(n)
        x[::3] = np.inf
        cases.append(x)
        y = rng.standard_normal(n)
        y[n // 2] = np.nan
        cases.append(y)
    for x in cases:
        scratch = np.empty_like(x)
        with np.errstate(invalid="ignore"):
            assert np.array_equal(_median(x, scratch), np.median(x), equal_nan=True)
            m, s = _mean_std(x, np.add.reduce(x), scratch)
            assert np.array_equal([m, s], [np.mean(x), np.std(x)], equal_nan=True)


def test_records_are_the_observables_of_the_recorded_state_on_every_backend(backend):
    # the same definitions whatever the arrays: C through shld.observables, means and stds over the walkers
    L = DoubleWell(barrier=1.0, dim=2, tilt=0.1)
    res = simulate(L, np.random.default_rng(5).standard_normal((301, 2)), D=0.3, dt=2e-3, n_steps=200, seed=6,
                   record_every=50, store_trajectory=True, observables=("loss", "C", "grad_norm2", "mean", "var"),
                   **backend)
    rtol = 1e-12 if backend["dtype"] == "float64" else 2e-5
    for i in range(len(res.steps)):
        th = res.trajectory[i].astype(np.float64)
        g = L.grad(th)
        C = consolidation_ratio(g, 0.3)
        loss = L.value(th)
        assert res.records["C_median"][i] == pytest.approx(np.median(C), rel=rtol)
        assert res.records["C_ensemble"][i] == pytest.approx(ensemble_consolidation_ratio(g, 0.3), rel=rtol)
        assert res.records["grad_norm2_mean"][i] == pytest.approx(np.mean(np.sum(g * g, 1)), rel=rtol)
        assert res.records["loss_mean"][i] == pytest.approx(loss.mean(), rel=rtol)
        assert res.records["loss_std"][i] == pytest.approx(loss.std(), rel=10 * rtol)
        np.testing.assert_allclose(res.records["mean"][i], th.mean(0), rtol=10 * rtol, atol=1e-6)
        np.testing.assert_allclose(res.records["var"][i], th.var(0), rtol=10 * rtol)
    assert res.steps.tolist() == [0, 50, 100, 150, 200] and res.records["n_alive"].tolist() == [301] * 5


@pytest.mark.parametrize("L", [DoubleWell(), DoubleWell(dim=2, tilt=0.2), Quadratic(eigenvalues=[1.0, 2.0])],
                         ids=["dw", "dw-2d-tilt", "quadratic"])
def test_the_record_and_check_schedules_do_not_change_the_trajectory(L, backend):
    # the torch backend runs the steps between records in a tight loop: the same operations, the same bits
    kw = dict(n_walkers=64, D=0.3, dt=1e-2, n_steps=333, seed=1, **backend)
    a = simulate(L, np.zeros(L.dim), record_every=50, check_every=37, **kw)
    b = simulate(L, np.zeros(L.dim), record_every=1, check_every=1, **kw)
    assert np.array_equal(a.final_theta, b.final_theta)
    assert np.array_equal(a.records["loss_mean"], b.records["loss_mean"][a.steps])


@pytest.mark.parametrize("D,n_walkers", [(0.3, 12_001), (0.0, 40)], ids=["sliced-axpy", "D=0"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numpy_tight_loop_keeps_the_bits(D, n_walkers, dtype):
    # numpy's steps between records run in a tight loop with the BLAS calls planned once; above
    # 10 000 values they go in slices, and at D = 0 the noise is drawn but not added: every case must
    # give the bits of the step-by-step path (record_every = check_every = 1 never enters the loop)
    L = DoubleWell(dim=1, tilt=0.1)
    kw = dict(n_walkers=n_walkers, D=D, dt=1e-2, n_steps=61, seed=3, dtype=dtype)
    a = simulate(L, np.full(1, 0.5), record_every=20, check_every=13, **kw)
    b = simulate(L, np.full(1, 0.5), record_every=1, check_every=1, **kw)
    assert np.array_equal(a.final_theta, b.final_theta)
    assert not np.array_equal(a.final_theta, np.full_like(a.final_theta, 0.5))


def test_records_keep_one_row_per_time_after_every_walker_failed(backend):
    """dt = 0.3 on the double well with D = 2 blows every walker up: the records past that point are
    NaN rows, aligned with ``times`` (they stopped growing, so ``records[k][-1]`` was an earlier time's)."""
    r = simulate(DoubleWell(), [-1.0], n_walkers=20, D=2.0, dt=0.3, n_steps=200, seed=0, record_every=10,
                 observables=("loss", "grad_norm2", "C", "mean", "var"), record_walkers=True, **backend)
    assert not r.ok.any()
    assert all(len(v) == len(r.times) == 21 for v in r.records.values()), {k: len(v) for k, v in r.records.items()}
    dead = r.records["n_alive"] == 0
    assert dead[-1] and not dead[0]
    for k in ("loss_mean", "loss_std", "grad_norm2_mean", "C_ensemble", "C_median", "mean", "var",
              "loss_walkers", "C_walkers"):
        assert np.isnan(r.records[k][dead]).all(), k
        assert np.isfinite(r.records[k][0]).all(), k
    assert r.records["mean"].shape == (21, 1) and r.records["C_walkers"].shape == (21, 20)


def test_chunks_merge_when_one_chunk_loses_every_walker():
    """Chunk 1 (θ = 50) diverges at once; chunk 2 stays in its well. The merged records are chunk 2's
    statistics (the chunk merge raised IndexError on the dead chunk's short records)."""
    th = np.r_[np.full(10, 50.0), np.full(10, -1.0)][:, None]
    kw = dict(D=0.1, dt=0.01, n_steps=100, seed=0, record_every=10)
    merged = simulate(DoubleWell(), th, chunks=2, **kw)
    kw.pop("seed")
    alone = simulate(DoubleWell(), th[10:], seed=np.random.SeedSequence(0).spawn(2)[1], **kw)   # chunk 2's seed
    assert len(merged.records["loss_mean"]) == len(merged.times) == 11
    assert (merged.records["n_alive"][1:] == 10).all()
    assert np.array_equal(merged.final_theta[10:], alone.final_theta)
    np.testing.assert_allclose(merged.records["loss_mean"][1:], alone.records["loss_mean"][1:], rtol=1e-12)


def test_C_at_zero_temperature_is_inf_or_nan_the_same_everywhere(backend):
    """D = 0 (gradient descent): C = ‖∇L‖²/(D·d) is inf where ∇L ≠ 0 and 0/0 = NaN at a critical point, in
    every record, with or without per-walker records, on every backend (it was ~1e300 in some and inf in
    others); the median over walkers is C of the median ‖∇L‖²."""
    th = np.array([[0.5], [0.0]])                     # ∇L(0.5) ≠ 0; θ = 0 is the double well's saddle
    for walkers in (True, False):
        r = simulate(DoubleWell(), th, D=0.0, dt=0.01, n_steps=3, seed=0, record_every=1,
                     record_walkers=walkers, **backend)
        assert np.isinf(r.records["C_ensemble"]).all() and np.isinf(r.records["C_median"]).all()
        if walkers:
            assert np.isinf(r.records["C_walkers"][:, 0]).all() and np.isnan(r.records["C_walkers"][:, 1]).all()
    at_saddle = simulate(DoubleWell(), th[1:], D=0.0, dt=0.01, n_steps=2, seed=0, record_every=1, **backend)
    assert np.isnan(at_saddle.records["C_ensemble"]).all() and np.isnan(at_saddle.records["C_median"]).all()
