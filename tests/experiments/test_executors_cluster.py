"""Cluster executors on real local clusters started here: a Dask ``LocalCluster`` with 2 worker
processes and ``ray.init(num_cpus=2)`` (one of each per module; Ray takes ~5-15 s to start).

Checked: the same study gives a byte-identical summary.json with serial, process, Dask and Ray; results
come back in member order; a worker process killed mid-sweep loses no member; a member failing on
every attempt is reported (``MemberFailedError``), never dropped; a study stopped by a failed member
and resumed under another executor runs only the members it had not finished. Tests needing an extra
skip without it (``pip install shld[dask]`` / ``shld[ray]``).
"""

import importlib
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shld.experiments.executor import (
    DaskExecutor,
    MemberFailedError,
    ProcessExecutor,
    RayExecutor,
    SerialExecutor,
    SharedExecutor,
    check_executor_args,
    current_executor,
    executor_from_args,
    use_executor,
)
from shld.experiments.registry import run_experiment

ROOT = Path(__file__).resolve().parents[2]

#: a double-descent sweep of 10 members (2 draws x 5 widths), ~1 s of work in all
DD = dict(datasets="synthetic", n_train=12, n_test=50, d_in=4, n_p=5, n_draws=2, gd_steps=30, gd_record_every=10,
          seed=8)
N_MEMBERS = 10


def _by_value():
    """Workers cannot import this test module (it is not on their path): ship its functions by value."""
    mod = sys.modules[__name__]
    for name in ("cloudpickle", "ray.cloudpickle"):
        try:
            importlib.import_module(name).register_pickle_by_value(mod)
        except ModuleNotFoundError:
            pass


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("dask.distributed")
    import logging

    _by_value()
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
                                       silence_logs=logging.CRITICAL)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    _by_value()
    owner = RayExecutor(num_cpus=2)          # ray.init(address="local", num_cpus=2), torn down below
    owner.start()
    yield ray
    owner.close()


@pytest.fixture(scope="module")
def ray_pool(ray_session):
    """A pool of 2 member actors on the module's Ray instance: (spec, the executor that made it)."""
    maker = RayExecutor()
    spec = maker.start_pool(2)
    yield spec, maker
    maker.close()


@pytest.fixture(params=["dask", "ray", "ray-pool"])
def cluster(request):
    """A cluster executor on the module's cluster (the executor does not own it)."""
    return _cluster_for(request, request.param)


@pytest.fixture(params=["process", "dask", "ray", "ray-pool"])
def engine(request):
    """Every parallel executor: a 2-worker process pool, or one of the cluster executors above."""
    if request.param == "process":
        return ProcessExecutor(2)
    return _cluster_for(request, request.param)


def _cluster_for(request, name):
    if name == "dask":
        return DaskExecutor(request.getfixturevalue("dask_client"))
    request.getfixturevalue("ray_session")
    if name == "ray-pool":
        return RayExecutor(pool=request.getfixturevalue("ray_pool")[0])
    return RayExecutor()


# ---- members (module level: pickled by value to the workers) ----

def _square(x):
    return x * x


def _slow_first(x):
    time.sleep(0.3 if x == 0 else 0.0)
    return x


def _die_once(arg):
    """Kills its worker process on the first attempt at member 2 (a marker file records it)."""
    x, marker = arg
    if x == 2 and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    return x


def _die_always_at_1(x):
    """Kills its worker on every attempt at member 1."""
    if x == 1:
        os._exit(1)
    return x


def _fail_at_3(arg):
    """Member 3 raises on every attempt; each attempt appends a line to a log."""
    x, log = arg
    if x == 3:
        with open(log, "a") as fh:
            fh.write("attempt\n")
        raise ValueError(f"member {x} is bad")
    return x


def _mark_and_nap(arg):
    """Leaves a marker file that says the member started, then takes 0.2 s."""
    x, folder = arg
    Path(folder, f"started-{x}").write_text("")
    time.sleep(0.2)
    return x


def _fail_first_attempt(arg):
    x, marker = arg
    if x == 1 and not os.path.exists(marker):
        Path(marker).write_text("1")
        raise RuntimeError("transient")
    return x


class _FailAt:
    """Wraps a study's member function: the ``k``-th member of a sweep raises on every attempt."""

    def __init__(self, fn, k):
        self.fn, self.k = fn, k

    def __call__(self, pair):
        i, item = pair
        if i == self.k:
            raise ValueError(f"injected failure at member {i}")
        return self.fn(item)


class _Injecting:
    """An executor running on ``inner`` with a failure injected at member ``k``; counts deliveries."""

    def __init__(self, inner, k):
        self.inner, self.k, self.delivered = inner, k, 0

    def map(self, fn, items):
        for res in self.inner.map(_FailAt(fn, self.k), list(enumerate(items))):
            self.delivered += 1
            yield res


class _Counting:
    """An executor that counts the members it is handed."""

    def __init__(self, inner):
        self.inner, self.n = inner, 0

    def map(self, fn, items):
        items = list(items)
        self.n += len(items)
        return self.inner.map(fn, items)


# ---- selection and validation (no cluster needed) ----

def test_arguments_are_checked_before_any_work(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"`executor` must be one of \['serial', 'process', 'dask', 'ray'\], got 'spark'"):
        check_executor_args("spark")
    with pytest.raises(ValueError, match="`address` .*'dask' or 'ray'.*'process'"):
        check_executor_args("process", 2, "tcp://h:8786")
    with pytest.raises(ValueError, match="`address`.*'serial'"):
        check_executor_args(None, None, "tcp://h:8786")
    with pytest.raises(ValueError, match="`jobs` = 3 needs a parallel executor"):
        check_executor_args("serial", 3)
    with pytest.raises(ValueError, match="`jobs` .*with `address`"):
        check_executor_args("dask", 2, "tcp://h:8786")
    with pytest.raises(ValueError, match="jobs"):
        check_executor_args("process", 0)
    assert check_executor_args(None, 3) == ("process", 3, None)
    assert check_executor_args(None) == ("serial", 1, None)
    assert check_executor_args("dask", None, "tcp://h:8786") == ("dask", None, "tcp://h:8786")
    assert isinstance(executor_from_args("process", 2), ProcessExecutor)
    assert isinstance(executor_from_args(), SerialExecutor)

    from shld.cli import main

    out = tmp_path / "r"
    assert main(["run", "double-well", "--out", str(out), "--address", "tcp://h:8786"]) == 2
    assert "`address`" in capsys.readouterr().err
    assert not out.exists()
    from shld.reporting.audit import reproduce

    assert reproduce("quick", out, executor="serial", jobs=2, progress=False) == 2
    assert "`jobs` = 2" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("engine,address", [("dask", "tcp://127.0.0.1:1"), ("ray", "127.0.0.1:1")])
def test_an_address_nobody_answers_fails_before_the_run(engine, address, tmp_path, capsys):
    pytest.importorskip("dask.distributed" if engine == "dask" else "ray")
    from shld.cli import main

    out = tmp_path / "r"
    assert main(["run", "double-well", "--out", str(out), "--executor", engine, "--address", address]) == 2
    assert f"nothing answers at `address` {address!r}" in capsys.readouterr().err
    assert not out.exists()


def test_environment_selects_the_executor(monkeypatch):
    monkeypatch.setenv("SHLD_EXECUTOR", "process")
    monkeypatch.setenv("SHLD_JOBS", "3")
    ex = current_executor()
    assert isinstance(ex, ProcessExecutor) and ex.jobs == 3
    assert current_executor() is ex                          # one per process, reused by every sweep
    monkeypatch.setenv("SHLD_EXECUTOR", "mpi")
    with pytest.raises(ValueError, match="SHLD_EXECUTOR='mpi'.*must be one of"):
        current_executor()
    monkeypatch.setenv("SHLD_EXECUTOR", "serial")
    monkeypatch.setenv("SHLD_JOBS", "")
    monkeypatch.setenv("SHLD_ADDRESS", "tcp://h:1")
    with pytest.raises(ValueError, match="SHLD_ADDRESS"):
        current_executor()
    env = SharedExecutor("process", 2).env()
    assert env == {"SHLD_EXECUTOR": "process", "SHLD_JOBS": "2", "SHLD_ADDRESS": ""}
    if importlib.util.find_spec("distributed") is not None:
        with pytest.raises(ConnectionError, match="nothing answers at `address` 'tcp://127.0.0.1:1'"):
            SharedExecutor("dask", None, "tcp://127.0.0.1:1")        # tried once, before any study runs


def test_ray_pool_arguments_are_checked(monkeypatch):
    pytest.importorskip("ray")
    for bad in ("nocount", "ns:0", "ns:x", ":2", 3):
        with pytest.raises(ValueError, match=r"`pool` must be a spec 'namespace:count'"):
            RayExecutor(pool=bad)
    monkeypatch.setenv("SHLD_EXECUTOR", "dask")
    monkeypatch.setenv("SHLD_RAY_POOL", "ns:2")
    with pytest.raises(ValueError, match="SHLD_RAY_POOL .*needs SHLD_EXECUTOR=ray"):
        current_executor()


def test_member_failed_error_names_the_member_and_pickles():
    import pickle

    err = MemberFailedError(4, {"p": 12, "blob": "x" * 500}, ValueError("boom"), 3, "dask")
    text = str(err)
    assert text.startswith("sweep member 4 (item {'p': 12") and "after 3 attempt(s) on dask: ValueError: boom" in text
    assert len(text) < 500                                   # a long item is shortened
    back = pickle.loads(pickle.dumps(err))
    assert (back.index, back.attempts, str(back)) == (4, 3, text)
    assert not isinstance(err, (ValueError, TypeError))      # not a parameter error: the run folder stays


def test_core_imports_without_the_extras():
    code = ("import sys\n"
            "sys.modules['dask'] = sys.modules['dask.distributed'] = sys.modules['ray'] = None\n"
            "import shld, shld.experiments.executor as ex, shld.cli\n"
            "for cls, extra in ((ex.DaskExecutor, 'dask'), (ex.RayExecutor, 'ray')):\n"
            "    try:\n"
            "        cls()\n"
            "    except ModuleNotFoundError as e:\n"
            "        assert f\"pip install 'shld[{extra}]'\" in str(e), e\n"
            "    else:\n"
            "        raise SystemExit('no error')\n"
            "from shld.reporting.audit import reproduce\n"
            "assert reproduce('quick', 'never-made', executor='ray', jobs=2, progress=False) == 2\n"
            "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "pip install 'shld[ray]'" in res.stderr
    assert not (ROOT / "never-made").exists()


# ---- engines ----

def test_results_in_member_order(engine):
    assert list(engine.map(_square, range(7))) == [x * x for x in range(7)]
    assert list(engine.map(_slow_first, range(5))) == list(range(5))
    assert list(engine.map(_square, [])) == []


def _blas_threads(_):
    from threadpoolctl import threadpool_info

    return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})


def test_workers_share_the_cores_between_their_blas_threads(cluster):
    """A cluster task uses one BLAS thread (one CPU per task); process workers use cores // workers. With the
    default (every core per worker) OpenBLAS's spinning threads oversubscribe the machine."""
    assert list(cluster.map(_blas_threads, [0, 1])) == [[1], [1]]
    want = [max(1, (os.cpu_count() or 1) // 2)]
    assert list(ProcessExecutor(2).map(_blas_threads, [0, 1])) == [want, want]


def test_killed_worker_loses_no_member(engine, tmp_path):
    marker = tmp_path / "died"
    got = list(engine.map(_die_once, [(i, str(marker)) for i in range(6)]))
    assert marker.exists(), "no worker was killed"
    assert got == list(range(6))


_POOL_CHILD = """
import os, sys
from shld.experiments.executor import current_executor
print(sorted(set(current_executor().map(lambda _: os.getpid(), range(8)))), flush=True)
"""


def test_ray_pool_serves_every_process_that_connects(ray_session, ray_pool):
    # reproduce's children connect one after another: with the pool they run on the same two actor
    # processes (imports paid once), where tasks would need new workers for each driver
    spec, maker = ray_pool
    pids = ray_session.get([a.pid.remote() for a in maker._actors])    # now (a test before may kill one)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SHLD_EXECUTOR": "ray", "SHLD_JOBS": "",
           "SHLD_ADDRESS": ray_session.get_runtime_context().gcs_address, "SHLD_RAY_POOL": spec}
    seen = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _POOL_CHILD], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        seen.append(eval(out.stdout.strip().splitlines()[-1]))
    assert seen[0] == seen[1] and set(seen[0]) <= set(pids) and seen[0]
    assert os.getpid() not in seen[0]
    bad = {**env, "SHLD_RAY_POOL": "shld-pool-none:2"}
    out = subprocess.run([sys.executable, "-c", _POOL_CHILD], env=bad, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "has no actor" in out.stderr


def test_failing_member_is_reported_after_retries(engine, tmp_path):
    log = tmp_path / "attempts"
    got = []
    with pytest.raises(MemberFailedError) as info:
        for r in engine.map(_fail_at_3, [(i, str(log)) for i in range(6)]):
            got.append(r)
    assert got == [0, 1, 2]                                  # everything before it was delivered
    err = info.value
    assert (err.index, err.attempts) == (3, 3)
    assert err.item == (3, str(log))
    assert isinstance(err.error, ValueError)
    assert "member 3 is bad" in str(err) and "sweep member 3" in str(err) and "--resume" in str(err)
    assert log.read_text().count("attempt") == 3             # retries=2: three attempts, no more


@pytest.mark.parametrize("name", ["ray", "ray-pool"])
def test_a_sweep_that_stops_early_leaves_few_members_running(name, tmp_path, request):
    # members still in flight are left to finish (cancelling raced with completion inside Ray), so the
    # executor must not have submitted the whole sweep: at most 2 per CPU (tasks) or per actor (pool)
    # start ahead of the next member to deliver, here 4 after the first
    engine = _cluster_for(request, name)
    it = engine.map(_mark_and_nap, [(i, str(tmp_path)) for i in range(40)])
    assert next(it) == 0
    it.close()
    time.sleep(2.0)              # unbounded, ~20 of the 40 naps would have started by now on 2 CPUs
    started = len(list(tmp_path.glob("started-*")))
    assert 1 <= started <= 1 + 4, started


def test_transient_failure_is_retried(engine, tmp_path):
    marker = tmp_path / "once"
    assert list(engine.map(_fail_first_attempt, [(i, str(marker)) for i in range(3)])) == [0, 1, 2]
    assert marker.exists()


def _always_die(arg):
    """Member 0 kills its worker on every attempt (each attempt appends a line to a log first)."""
    x, log = arg
    if x == 0:
        with open(log, "a") as fh:
            fh.write("start\n")
        os._exit(1)
    return x


def test_process_pool_gives_up_after_max_restarts(tmp_path):
    # a member that kills its worker every time: the pool is started again max_restarts times, then
    # the sweep stops at that member with the pool's error. Only member 0 kills workers, so every pool
    # breaks while it runs: it runs exactly max_restarts + 1 times
    log = tmp_path / "starts"
    got = []
    with pytest.raises(MemberFailedError) as info:
        for r in ProcessExecutor(2, max_restarts=1).map(_always_die, [(i, str(log)) for i in range(4)]):
            got.append(r)
    assert got == [] and info.value.index == 0
    assert type(info.value.error).__name__ == "BrokenProcessPool" and "on process" in str(info.value)
    assert log.read_text().count("start") == 2
    with pytest.raises(ValueError, match="max_restarts"):
        ProcessExecutor(2, max_restarts=-1)


def test_no_retries(dask_client, tmp_path):
    log = tmp_path / "attempts"
    with pytest.raises(MemberFailedError, match="after 1 attempt"):
        list(DaskExecutor(dask_client, retries=0).map(_fail_at_3, [(i, str(log)) for i in range(5)]))
    assert log.read_text().count("attempt") == 1


# ---- a study on every engine ----

@pytest.fixture(scope="module")
def serial_summary(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "run"
    run_experiment("double-descent", out, progress=False, **DD)
    return (out / "summary.json").read_bytes()


@pytest.mark.parametrize("engine", ["process", "dask", "ray"])
def test_same_summary_on_every_executor(engine, tmp_path, serial_summary, request):
    if engine == "process":
        ex = ProcessExecutor(2)
    elif engine == "dask":
        ex = DaskExecutor(request.getfixturevalue("dask_client"))
    else:
        request.getfixturevalue("ray_session")
        ex = RayExecutor()
    with use_executor(ex):
        run_experiment("double-descent", tmp_path / engine, progress=False, **DD)
    assert (tmp_path / engine / "summary.json").read_bytes() == serial_summary     # byte-identical


def test_resume_under_another_executor(tmp_path, dask_client, serial_summary, request):
    out = tmp_path / "run"
    # member 7 fails on every attempt under Dask: the run stops, the 7 members before it are kept
    failing = _Injecting(DaskExecutor(dask_client), k=7)
    with use_executor(failing), pytest.raises(MemberFailedError) as info:
        run_experiment("double-descent", out, progress=False, **DD)
    assert "injected failure at member 7" in str(info.value) and info.value.index == 7
    assert failing.delivered == 7
    assert not (out / "summary.json").exists()
    # resumed under Ray (serial without the extra): only the members not finished run
    if importlib.util.find_spec("ray") is not None:
        request.getfixturevalue("ray_session")
        other = RayExecutor()
    else:
        other = SerialExecutor()
    counting = _Counting(other)
    with use_executor(counting):
        run_experiment("double-descent", out, resume=True, progress=False, **DD)
    assert counting.n == N_MEMBERS - 7
    assert (out / "summary.json").read_bytes() == serial_summary


# ---- shld run / shld reproduce ----

def test_cli_run_on_a_dask_scheduler(tmp_path, dask_client, monkeypatch):
    from shld.cli import main

    opts = ["--datasets", "synthetic", "--n-train", "12", "--n-test", "50", "--d-in", "4", "--n-p", "5",
            "--n-draws", "2", "--gd-steps", "30", "--gd-record-every", "10", "--seed", "8", "--no-progress"]
    addr = dask_client.scheduler.address
    assert main(["run", "double-descent", "--out", str(tmp_path / "d"), "--executor", "dask", "--address", addr,
                 *opts]) == 0
    assert main(["run", "double-descent", "--out", str(tmp_path / "s"), *opts]) == 0
    assert (tmp_path / "d" / "summary.json").read_bytes() == (tmp_path / "s" / "summary.json").read_bytes()
    assert SharedExecutor("dask", None, addr).env() == {"SHLD_EXECUTOR": "dask", "SHLD_JOBS": "",
                                                        "SHLD_ADDRESS": addr}
    # no flag: the environment chooses (how reproduce's children are steered)
    seen = []
    real_map = DaskExecutor.map
    monkeypatch.setattr(DaskExecutor, "map", lambda self, fn, items: (seen.append(self.address),
                                                                      real_map(self, fn, items))[1])
    monkeypatch.setenv("SHLD_EXECUTOR", "dask")
    monkeypatch.setenv("SHLD_ADDRESS", addr)
    try:
        assert main(["run", "double-descent", "--out", str(tmp_path / "e"), *opts]) == 0
    finally:
        from shld.experiments import executor

        executor._close_env_executors()          # the process's cached client, before the cluster goes
    assert seen and set(seen) == {addr}
    assert (tmp_path / "e" / "summary.json").read_bytes() == (tmp_path / "s" / "summary.json").read_bytes()


@pytest.mark.slow   # starts a local Dask cluster in the audit process and a child process per study (~20 s)
def test_reproduce_children_share_one_local_cluster(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    from shld.reporting.audit import reproduce
    from shld.runs import read_json

    with SharedExecutor("dask", 2) as shared:              # what reproduce hands its children
        env = shared.env()
        assert env["SHLD_EXECUTOR"] == "dask" and env["SHLD_ADDRESS"].startswith("tcp://")
        assert shared.env() == env                          # one cluster, started once
        with distributed.Client(env["SHLD_ADDRESS"]) as client:
            assert len(client.scheduler_info()["workers"]) == 2

    ov = {"double-descent": {k: v for k, v in DD.items() if k != "seed"}}
    assert reproduce("quick", tmp_path / "a", names=["double-descent"], overrides=ov, executor="dask", jobs=2,
                     progress=False) == 0
    assert reproduce("quick", tmp_path / "b", names=["double-descent"], overrides=ov, progress=False) == 0
    audit = read_json(tmp_path / "a" / "audit.json")
    assert audit["executor"]["name"] == "dask" and audit["experiments"]["double-descent"]["status"] == "done"
    a = (tmp_path / "a" / "double-descent" / "summary.json").read_bytes()
    assert a == (tmp_path / "b" / "double-descent" / "summary.json").read_bytes()


@pytest.mark.slow   # a local Ray instance (or the module's), a pool and a child process per study (~20 s)
def test_reproduce_children_run_on_the_audits_ray_pool(tmp_path):
    pytest.importorskip("ray")
    from shld.reporting.audit import reproduce
    from shld.runs import read_json

    with SharedExecutor("ray", 2) as shared:               # what reproduce hands its children
        env = shared.env()
        assert env["SHLD_EXECUTOR"] == "ray" and env["SHLD_RAY_POOL"].endswith(":2")
        assert shared.env() == env                          # one instance, one pool
    ov = {"double-descent": {k: v for k, v in DD.items() if k != "seed"}}
    assert reproduce("quick", tmp_path / "a", names=["double-descent"], overrides=ov, executor="ray", jobs=2,
                     progress=False) == 0
    assert reproduce("quick", tmp_path / "b", names=["double-descent"], overrides=ov, progress=False) == 0
    assert read_json(tmp_path / "a" / "audit.json")["experiments"]["double-descent"]["status"] == "done"
    a = (tmp_path / "a" / "double-descent" / "summary.json").read_bytes()
    assert a == (tmp_path / "b" / "double-descent" / "summary.json").read_bytes()


_HOLD = """
import sys, time
from shld.experiments.executor import DaskExecutor, RayExecutor
if __name__ == "__main__":
    ex = DaskExecutor(n_workers=1) if sys.argv[1] == "dask" else RayExecutor(num_cpus=1)
    ex.start()
    print(list(ex.map(abs, [-1, -2])), flush=True)
    time.sleep(300)
"""


def _descendants(pid):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                text = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            kids.setdefault(int(text[text.rindex(")") + 2:].split()[1]), []).append(int(d))
    out, todo = set(), [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.add(k)
            todo.append(k)
    return out


@pytest.mark.slow   # starts a local cluster in a process, SIGKILLs it (~10-20 s per engine)
@pytest.mark.parametrize("engine", ["dask", "ray"])
def test_local_cluster_dies_with_its_process(engine, tmp_path):
    pytest.importorskip("dask.distributed" if engine == "dask" else "ray")
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs /proc")
    script = tmp_path / "hold.py"
    script.write_text(_HOLD)
    proc = subprocess.Popen([sys.executable, str(script), engine], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    try:
        assert proc.stdout.readline().strip() == "[1, 2]"
        time.sleep(1.0)
        below = _descendants(proc.pid)
        assert below, "no cluster processes found"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(os.path.exists(f"/proc/{p}") for p in below):
        time.sleep(0.5)
    left = [(p, Path(f"/proc/{p}/comm").read_text().strip()) for p in below if os.path.exists(f"/proc/{p}")]
    assert not left, f"outlived their parent: {left}"


_REUSE = """
from shld.experiments.executor import RayExecutor
if __name__ == "__main__":
    ex = RayExecutor(num_cpus=1)
    with ex:
        first = list(ex.map(abs, [-1, -2]))
    with ex:                                  # a second local instance, not the ended one's address
        second = list(ex.map(abs, [-3]))
    print(first, second, ex.address)
"""


@pytest.mark.slow
def test_a_ray_executor_starts_a_new_local_instance_after_close(tmp_path):
    """close() ended the local instance but kept its address, so the next start() probed a dead port as if
    the user had given it ("nothing answers at `address`"); docs/scale.md says executors are reusable."""
    pytest.importorskip("ray")
    script = tmp_path / "reuse.py"
    script.write_text(_REUSE)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[1, 2] [3] None"


# ---- a study registered by the caller's code (not in a worker's registry) ----

from dataclasses import dataclass, field  # noqa: E402

from shld.experiments.study import Member, Study, Summary  # noqa: E402


@dataclass
class _SquaresParams:
    n: int = field(default=4, metadata={"min": 1})
    seed: int = 0


class _Squares(Study):
    name = "user-squares"
    Params = _SquaresParams

    def members(self, p, done):
        return [Member(f"m{i}", {"i": i}) for i in range(p.n)]

    def run_member(self, p, member, ctx):
        return {"sq": member.task["i"] ** 2, "pid": os.getpid()}

    def analyse(self, p, results):
        return Summary([], {"squares": [results[f"m{i}"]["sq"] for i in range(p.n)],
                            "pids": sorted({int(results[f"m{i}"]["pid"]) for i in range(p.n)})})


def test_a_study_registered_by_the_caller_runs_on_every_executor(engine, tmp_path):
    """Workers looked a study up by name in their own registry, where a study registered by the caller is
    not: every member failed 3 times with "`name` must be one of [...]". Such a study now travels to the
    workers itself."""
    from shld.experiments.registry import registered

    _by_value()
    with registered(_Squares()), use_executor(engine):
        run, summary = run_experiment("user-squares", tmp_path / "run", progress=False, n=4)
    assert summary["squares"] == [0, 1, 4, 9]
    assert os.getpid() not in summary["pids"]               # the members ran in the workers


def test_a_member_that_always_kills_its_worker_reports_every_attempt():
    """The process pool restarts after a worker dies and resubmits the unfinished members; the error said
    "failed after 1 attempt(s)" after 2 pools had run member 1 twice."""
    ex = ProcessExecutor(2, max_restarts=1)
    got = []
    with pytest.raises(MemberFailedError) as info:
        for r in ex.map(_die_always_at_1, [0, 1, 2]):
            got.append(r)
    assert got == [0] and (info.value.index, info.value.attempts) == (1, 2)
    assert "after 2 attempt(s) on process" in str(info.value)
