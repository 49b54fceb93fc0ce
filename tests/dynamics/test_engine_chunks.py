"""Walker chunks (``max_memory=``, ``chunks=``) and ensembles split over an executor: one result whose
statistics are those of the one-process run (two-sample KS), with exactly pooled records."""

import pickle

import numpy as np
import pytest
from scipy import stats

from shld.dynamics import simulate
from shld.dynamics.chunks import parse_bytes
from shld.landscapes import DoubleWell

L = DoubleWell(barrier=1.0)
KW = dict(D=0.5, dt=5e-3, n_steps=600, record_every=100, observables=("loss", "C", "mean", "var", "grad_norm2"))


class PicklingExecutor:
    """An executor that ships every task and result through pickle, as a process or cluster pool does."""

    def __init__(self):
        self.calls = 0

    def map(self, fn, items):
        for item in items:
            self.calls += 1
            task = pickle.loads(pickle.dumps((fn, item)))
            yield pickle.loads(pickle.dumps(task[0](task[1])))


def test_chunked_and_split_runs_have_the_one_process_statistics(backend):
    n = 4000
    one = simulate(L, np.array([-1.0]), n_walkers=n, seed=1, **KW, **backend)
    chunked = simulate(L, np.array([-1.0]), n_walkers=n, seed=2, chunks=4, **KW, **backend)
    ex = PicklingExecutor()
    split = simulate(L, np.array([-1.0]), n_walkers=n, seed=3, chunks=3, executor=ex, **KW, **backend)
    assert ex.calls == 3 and len(split.state) == 3 and isinstance(split.state[0], dict)
    # where a chunk runs does not matter: its seed comes from the run seed and its index alone
    here = simulate(L, np.array([-1.0]), n_walkers=n, seed=3, chunks=3, **KW, **backend)
    assert np.array_equal(here.final_theta, split.final_theta)
    for res in (chunked, split):
        assert res.final_theta.shape == (n, 1) and res.steps.tolist() == one.steps.tolist()
        # same law, independent streams: a two-sample KS test at the 1e-3 level (resolution ≈ 1.95/√(n/2))
        assert stats.ks_2samp(one.final_theta[:, 0], res.final_theta[:, 0]).pvalue > 1e-3
    # power: the same test tells a run at half the temperature apart
    cold = simulate(L, np.array([-1.0]), n_walkers=n, seed=4, chunks=4, **{**KW, "D": 0.25}, **backend)
    assert stats.ks_2samp(one.final_theta[:, 0], cold.final_theta[:, 0]).pvalue < 1e-6


def test_merged_records_are_the_pooled_ensemble_statistics():
    res = simulate(L, np.array([-1.0]), n_walkers=1001, seed=5, chunks=4, **KW)
    x = res.final_theta
    lv = L.value(x)
    g2 = np.sum(L.grad(x) ** 2, axis=1)
    rec = {k: v[-1] for k, v in res.records.items()}
    # means and standard deviations pool exactly (to rounding) over chunks of unequal sizes
    assert rec["loss_mean"] == pytest.approx(lv.mean(), rel=1e-12)
    assert rec["loss_std"] == pytest.approx(lv.std(), rel=1e-10)
    assert rec["grad_norm2_mean"] == pytest.approx(g2.mean(), rel=1e-12)
    assert rec["C_ensemble"] == pytest.approx(g2.mean() / (0.5 * 1), rel=1e-12)
    assert np.allclose(rec["mean"], x.mean(0), rtol=1e-12) and np.allclose(rec["var"], x.var(0), rtol=1e-10)
    assert rec["n_alive"] == 1001
    assert any("C_median" in m for m in res.messages)
    exact = simulate(L, np.array([-1.0]), n_walkers=1001, seed=5, chunks=4, record_walkers=True, **KW)
    assert exact.records["C_median"][-1] == pytest.approx(np.median(g2 / 0.5), rel=1e-12)


def test_max_memory_sets_the_chunks_and_the_seeds_are_spawned():
    from shld.dynamics import AdaptiveNoise, Simulation

    per = Simulation(L, D=0.5, dt=5e-3).bytes_per_walker()            # 4 arrays · 8 bytes + 64 = 96
    assert per == 96.0
    # a controller adds its multiplier, three int64 counters and the C it reads: 48 bytes
    assert Simulation(L, D=0.5, dt=5e-3, controller=AdaptiveNoise()).bytes_per_walker() == 144.0
    res = simulate(L, np.array([-1.0]), n_walkers=1000, seed=7, max_memory=per * 300, **KW)
    assert len(res.state) == 4                                         # ⌈1000·96 / (300·96)⌉
    same = simulate(L, np.array([-1.0]), n_walkers=1000, seed=7, chunks=4, **KW)
    assert np.array_equal(res.final_theta, same.final_theta)           # chunk seeds: SeedSequence(7).spawn(4)
    first = simulate(L, np.array([-1.0]), n_walkers=250, seed=np.random.SeedSequence(7).spawn(4)[0], **KW)
    assert np.array_equal(first.final_theta, res.final_theta[:250])
    # one chunk is the plain run, bit for bit
    plain = simulate(L, np.array([-1.0]), n_walkers=1000, seed=7, **KW)
    assert np.array_equal(simulate(L, np.array([-1.0]), n_walkers=1000, seed=7, max_memory="1GiB",
                                   **KW).final_theta, plain.final_theta)


def test_a_chunked_run_resumes_from_its_chunk_states(backend):
    full = simulate(L, np.array([-1.0]), n_walkers=300, seed=8, chunks=3, executor=PicklingExecutor(),
                    **{**KW, "n_steps": 400}, **backend)
    half = simulate(L, np.array([-1.0]), n_walkers=300, seed=8, chunks=3, executor=PicklingExecutor(),
                    **{**KW, "n_steps": 200}, **backend)
    rest = simulate(L, None, state=half.state, executor=PicklingExecutor(), **{**KW, "n_steps": 200}, **backend)
    assert np.array_equal(rest.final_theta, full.final_theta)
    assert rest.steps[0] == 200 and rest.steps[-1] == 400


def test_first_passage_and_early_stop_merge():
    res = simulate(DoubleWell(barrier=0.5), np.array([-1.0]), n_walkers=300, D=1.0, dt=4e-3, n_steps=20_000,
                   seed=9, chunks=3, target=lambda th: th[:, 0] >= 1.0, stop_when_all_hit=True, record_every=500)
    assert res.hit.all() and np.all(res.first_passage_time > 0) and res.first_passage_time.shape == (300,)
    assert res.records["fraction_hit"].shape == res.steps.shape


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(max_memory="lots"), ValueError, r"`max_memory` must be a number of bytes .* got 'lots'"),
    (dict(max_memory=-5), ValueError, "`max_memory` must be > 0"),
    (dict(max_memory=10), ValueError, r"`max_memory`=10 is below one walker's 96 bytes"),
    (dict(chunks=0), ValueError, "`chunks` must be >= 1"),
    (dict(executor=object()), TypeError, r"`executor` must have a map\(fn, items\) method"),
    (dict(state=[]), ValueError, "non-empty list of chunk states"),
])
def test_bad_chunk_arguments_name_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        simulate(L, np.array([-1.0]), n_walkers=10, D=0.5, dt=5e-3, n_steps=5, seed=0, **kwargs)


def test_an_executor_that_drops_or_mangles_chunks_is_caught():
    class Dropping:
        def map(self, fn, items):
            return iter([fn(x) for x in list(items)[:-1]])

    with pytest.raises(RuntimeError, match=r"must yield one SimulationResult per chunk, in order \(3 chunks\); "
                                           r"got 2 results"):
        simulate(L, np.array([-1.0]), n_walkers=30, D=0.5, dt=5e-3, n_steps=5, seed=0, chunks=3, executor=Dropping())


def test_parse_bytes_units():
    assert parse_bytes("m", "512MiB") == 512 * 2**20 and parse_bytes("m", "4GB") == 4e9
    assert parse_bytes("m", 1e9) == 1e9 and parse_bytes("m", "1e3") == 1000


@pytest.mark.slow
def test_1e9_walker_steps_over_a_local_dask_cluster_match_one_process():
    """10⁹ walker-steps (10⁶ walkers × 1000 steps) in 8 chunks over a 2-worker Dask LocalCluster against
    the same ensemble in one process: the same law by a two-sample KS test (not the same bits)."""
    distributed = pytest.importorskip("dask.distributed")

    class ClientMap:                       # any object with map(fn, items) will do
        def __init__(self, client):
            self.client = client

        def map(self, fn, items):
            return iter(self.client.gather(self.client.map(fn, list(items), pure=False)))

    kw = dict(D=0.5, dt=5e-3, n_steps=1000, record_every=1000, observables=("loss",), dtype="float32")
    n = 10**6
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        split = simulate(L, np.array([-1.0]), n_walkers=n, seed=11, chunks=8, executor=ClientMap(client), **kw)
    one = simulate(L, np.array([-1.0]), n_walkers=n, seed=12, **kw)
    sub = slice(0, n, 50)                  # 2·10⁴ of each: KS resolution ≈ 0.014
    assert stats.ks_2samp(one.final_theta[sub, 0], split.final_theta[sub, 0]).pvalue > 1e-3
    assert split.records["loss_mean"][-1] == pytest.approx(one.records["loss_mean"][-1], rel=0.01)


def test_a_simulation_pickles_on_every_backend(backend):
    from shld.dynamics import Simulation

    sim = Simulation(L, D=0.5, dt=5e-3, **backend)
    again = pickle.loads(pickle.dumps(sim))            # what an executor does to a task's arguments
    a = sim.advance(sim.init_state(np.zeros(1), n_walkers=5, seed=1), 10).final_theta
    b = again.advance(again.init_state(np.zeros(1), n_walkers=5, seed=1), 10).final_theta
    assert np.array_equal(a, b) and repr(again.backend) == repr(sim.backend)


def test_a_seed_sequence_reused_gives_the_same_chunks_and_is_not_advanced():
    """Chunk seeds are children by spawn key, not ``spawn()`` (which counts children on the caller's
    sequence: the second call with the same SeedSequence gave other bits, and the user's own later
    ``spawn()`` shifted)."""
    from shld.seeds import member_seed

    kw = dict(D=0.3, dt=1e-2, n_steps=50, n_walkers=10, chunks=2)
    ss = member_seed(0, 1)
    a = simulate(DoubleWell(), np.full(1, -1.0), seed=ss, **kw).final_theta
    b = simulate(DoubleWell(), np.full(1, -1.0), seed=ss, **kw).final_theta
    assert np.array_equal(a, b) and ss.n_children_spawned == 0
    g = np.random.default_rng(member_seed(0, 1))
    c = simulate(DoubleWell(), np.full(1, -1.0), rng=g, **kw).final_theta
    assert np.array_equal(a, c) and g.bit_generator.seed_seq.n_children_spawned == 0
    # chunk j is the stream of key (…, j): the first chunk alone, seeded with member_seed(0, 1, 0)
    first = simulate(DoubleWell(), np.full(1, -1.0), seed=member_seed(0, 1, 0), **{**kw, "n_walkers": 5, "chunks": 1})
    assert np.array_equal(a[:5], first.final_theta)


def test_chunks_on_an_executor_show_one_bar_of_finished_chunks(capsys):
    """With an executor the chunks' own bars would print in the workers; `progress=True` showed nothing."""
    from shld.experiments.executor import SerialExecutor

    res = simulate(DoubleWell(), np.full(1, -1.0), n_walkers=9, D=0.3, dt=1e-2, n_steps=20, seed=0, chunks=3,
                   executor=SerialExecutor(), progress=True)
    err = capsys.readouterr().err
    assert res.final_theta.shape == (9, 1) and "chunks:" in err and "/3 " in err      # a bar of 3 chunks
    simulate(DoubleWell(), np.full(1, -1.0), n_walkers=9, D=0.3, dt=1e-2, n_steps=20, seed=0, chunks=3,
             executor=SerialExecutor(), progress=False)
    assert "chunks" not in capsys.readouterr().err
