"""The run-folder contract (docs/runs.md, issue 9 part 2): each probe that lost or mixed data before
is a test here. Runs are tiny (`shld run double-well` with a few walkers and steps, in-process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from shld.cli import main
from shld.experiments.registry import run_experiment
from shld.runs import (
    PID_NAME,
    CorruptFileError,
    RunFolderBusy,
    RunFolderError,
    lock_folder,
    read_metrics,
    write_json,
)

TINY = ["--n-steps", "400", "--n-walkers", "5", "--record-every", "20", "--no-progress"]
TINY_KW = dict(n_steps=400, n_walkers=5, record_every=20, progress=False)
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _run(capsys, *argv) -> tuple[int, str]:
    code = main(["run", "double-well", *argv])
    return code, capsys.readouterr().err


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _interrupted(path: Path, monkeypatch, after: int = 5, **kw) -> None:
    """A double-well run in ``path`` stopped by a KeyboardInterrupt after its ``after``-th checkpoint."""
    import shld.experiments._langevin_run as lr

    real = lr.RunFolder.save_checkpoint
    calls = {"n": 0}

    def flaky(self, **arrays):
        real(self, **arrays)
        calls["n"] += 1
        if calls["n"] == after:
            raise KeyboardInterrupt

    monkeypatch.setattr(lr.RunFolder, "save_checkpoint", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("double-well", path, **{**TINY_KW, **kw})
    monkeypatch.setattr(lr.RunFolder, "save_checkpoint", real)


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".shld.lock")}


# --- never delete what this call did not create ---------------------------------------------------

def test_resume_with_a_bad_parameter_keeps_the_users_folder(tmp_path, capsys):
    v = tmp_path / "v"
    v.mkdir()
    (v / "notes.txt").write_text("x\n")
    code, err = _run(capsys, "--out", str(v), "--resume", "--D", "-1", *TINY)
    assert code == 2 and "`D` must be > 0, got -1.0" in _one_line_error(err)
    assert sorted(p.name for p in v.iterdir()) == ["notes.txt"]      # nothing removed, nothing added
    code, err = _run(capsys, "--out", str(v), "--resume", *TINY)      # valid parameters: not a run folder
    assert code == 2 and "has no config.json" in _one_line_error(err)
    assert sorted(p.name for p in v.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("out", ["", ".", "..", "   "])
def test_out_that_is_the_working_directory_is_refused(tmp_path, capsys, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine\n")
    code, err = _run(capsys, "--out", out, "--resume", "--D", "-1", *TINY)
    assert code == 2
    code, err = _run(capsys, "--out", out, *TINY)
    assert code == 2 and "`out`" in _one_line_error(err)
    assert (tmp_path / "keep.txt").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("argv, message", [
    (["--D", "0"], "`D` must be > 0, got 0.0"),
    (["--n-steps", "-5"], "`n_steps` must be >= 1, got -5"),
    (["--n-walkers", "0"], "`n_walkers` must be >= 1, got 0"),
    (["--dt", "0"], "`dt` must be > 0, got 0.0"),
])
def test_bad_values_fail_in_one_line_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "a" / "b"
    t0 = time.perf_counter()
    code, err = _run(capsys, "--out", str(out), *TINY[:-1], *argv)   # argv's value wins over TINY's
    assert code == 2 and message in _one_line_error(err)
    assert time.perf_counter() - t0 < 5
    assert not (tmp_path / "a").exists()                             # no folder was made


def test_read_only_out_fails_in_one_line(tmp_path, capsys):
    if os.geteuid() == 0:     # root writes through permission bits; sysfs refuses even root
        if not Path("/sys").is_dir():
            pytest.skip("no read-only place to write to")
        out = Path("/sys") / f"shld-contract-{os.getpid()}"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        out = ro / "run"
    code, err = _run(capsys, "--out", str(out), *TINY)
    line = _one_line_error(err)
    assert code == 2 and str(out) in line and ("cannot be created" in line or "not writable" in line)
    assert not out.exists()


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("data\n")
    code, err = _run(capsys, "--out", str(f), *TINY)
    assert code == 2 and "is not a folder" in _one_line_error(err)
    assert f.read_text() == "data\n"


def test_late_parameter_error_removes_only_what_the_run_wrote(tmp_path, monkeypatch):
    """A fresh run that fails inside the experiment with a ValueError removes its own files and the
    folder it made; in a folder the user made, the folder stays."""

    from shld.experiments import registry

    def late(params, run, **kw):
        with run.metrics() as w:      # writes something of its own first
            w.write({"step": 0, "x": 1.0})
        raise ValueError("`barrier` is fine but something else is not")

    exp = registry.get_study("double-well")
    with registry.registered(registry.FunctionStudy("double-well", late, exp.Params)):
        with pytest.raises(ValueError):
            run_experiment("double-well", tmp_path / "new" / "run", **TINY_KW)
        assert not (tmp_path / "new").exists()
        mine = tmp_path / "mine"
        mine.mkdir()
        with pytest.raises(ValueError):
            run_experiment("double-well", mine, **TINY_KW)
    assert mine.is_dir() and list(mine.iterdir()) == []


# --- identity -----------------------------------------------------------------------------------

def test_resume_refuses_a_folder_of_another_study(tmp_path, capsys):
    hd = tmp_path / "hd"
    assert main(["run", "high-dim", "--dims", "2", "--n-steps", "400", "--n-walkers", "5", "--out", str(hd),
                 "--no-progress"]) == 0
    capsys.readouterr()
    before = _snapshot(hd)
    code, err = _run(capsys, "--out", str(hd), "--resume", "--no-progress")     # the probe: no parameters given
    line = _one_line_error(err)
    assert code == 2 and "'high-dim'" in line and "'double-well'" in line
    assert _snapshot(hd) == before                                    # summary.json not replaced


@pytest.mark.parametrize("argv, field", [(["--seed", "1"], "`seed`"), (["--D", "0.3"], "`D`")])
def test_resume_refuses_other_parameters_naming_the_field(tmp_path, capsys, argv, field):
    out = tmp_path / "a"
    assert _run(capsys, "--out", str(out), *TINY)[0] == 0
    before = _snapshot(out)
    code, err = _run(capsys, "--out", str(out), "--resume", *TINY, *argv)
    assert code == 2 and f"parameter {field}" in _one_line_error(err)
    assert _snapshot(out) == before


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, capsys, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    _interrupted(a, monkeypatch, seed=0)
    _interrupted(b, monkeypatch, seed=1)
    (a / "checkpoint.npz").write_bytes((b / "checkpoint.npz").read_bytes())
    code, err = _run(capsys, "--out", str(a), "--resume", *TINY)
    line = _one_line_error(err)
    assert code == 2 and "checkpoint.npz" in line and "seed (`seed`) is 1" in line
    assert not (a / "summary.json").exists()


def test_resume_refuses_a_config_edited_by_hand(tmp_path, capsys, monkeypatch):
    a = tmp_path / "a"
    _interrupted(a, monkeypatch)
    doc = json.loads((a / "config.json").read_text())
    doc["config"]["D"] = 0.3
    (a / "config.json").write_text(json.dumps(doc))
    code, err = _run(capsys, "--out", str(a), "--resume", *TINY)
    assert code == 2 and "parameters hash (`params_hash`)" in _one_line_error(err)


def test_a_folder_without_config_is_not_resumable(tmp_path, capsys, monkeypatch):
    a = tmp_path / "a"
    _interrupted(a, monkeypatch)
    (a / "config.json").unlink()
    before = _snapshot(a)
    code, err = _run(capsys, "--out", str(a), "--resume", *TINY)
    assert code == 2 and "has no config.json" in _one_line_error(err)
    assert _snapshot(a) == before


def test_reproduce_resume_without_audit_json_does_not_relabel_seeds(tmp_path, capsys):
    from shld.reporting.audit import reproduce

    out = tmp_path / "audit"
    run_experiment("double-well", out / "double-well", seed=0, **TINY_KW)
    code = reproduce("quick", out, resume=True, seed=1, names=["double-well"], progress=False)
    err = capsys.readouterr().err
    assert code == 2 and "seed 0" in err and "--seed 1" in err
    assert not (out / "audit.json").exists() and not (out / "report.md").exists()
    # the seed agrees, but the folder was not run at the quick audit's sizes (audit.json, the mode's record,
    # is missing): refused too, naming the parameter
    code = reproduce("quick", out, resume=True, seed=0, names=["double-well"], progress=False)
    line = _one_line_error(capsys.readouterr().err)
    assert code == 2 and "`n_walkers` = 5 where the quick audit runs 1000" in line


# --- one writer per folder ----------------------------------------------------------------------

def _hold_lock(folder: Path) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time
        from shld.runs import lock_folder
        with lock_folder({str(folder)!r}):
            print("locked", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": SRC})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_locked_folder_is_refused_at_once_naming_the_holder(tmp_path, capsys, monkeypatch):
    a = tmp_path / "a"
    _interrupted(a, monkeypatch)
    before = _snapshot(a)
    holder = _hold_lock(a)
    try:
        t0 = time.perf_counter()
        for extra in (["--resume"], []):
            code, err = _run(capsys, "--out", str(a), *extra, *TINY)
            line = _one_line_error(err)
            assert code == 2 and str(a) in line and f"pid {holder.pid}" in line
        assert time.perf_counter() - t0 < 10
        assert _snapshot(a) == before
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: the lock is free again, and the resume completes
    assert _run(capsys, "--out", str(a), "--resume", *TINY)[0] == 0
    assert not (a / PID_NAME).exists()


def test_lock_is_exclusive_and_released():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with lock_folder(d):
            assert (Path(d) / PID_NAME).read_text().strip() == str(os.getpid())
            with pytest.raises(RunFolderBusy, match=f"pid {os.getpid()}"):
                with lock_folder(d):
                    pass
        with lock_folder(d):
            pass


# --- crash safety -------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["empty", "header-only", "missing", "cut"])
def test_resume_never_succeeds_with_metrics_rows_missing(tmp_path, capsys, monkeypatch, damage):
    a = tmp_path / "a"
    _interrupted(a, monkeypatch)
    m = a / "metrics.csv"
    lines = m.read_text().splitlines(keepends=True)
    if damage == "empty":
        m.write_text("")
    elif damage == "header-only":
        m.write_text(lines[0])
    elif damage == "missing":
        m.unlink()
    else:
        m.write_text("".join(lines[:4]))
    code, err = _run(capsys, "--out", str(a), "--resume", *TINY)
    line = _one_line_error(err)
    assert code == 2 and "metrics.csv" in line and "rows written before the checkpoint" in line
    assert not (a / "summary.json").exists()
    # the way out it names: remove the checkpoint, and the resume runs from the start, complete
    (a / "checkpoint.npz").unlink()
    assert _run(capsys, "--out", str(a), "--resume", *TINY)[0] == 0
    assert np.array_equal(read_metrics(m)["step"], np.arange(0, 401, 20))


def test_torn_and_repeated_rows_are_dropped_on_resume(tmp_path, monkeypatch):
    _, full = run_experiment("double-well", tmp_path / "full", seed=3, **TINY_KW)
    a = tmp_path / "a"
    _interrupted(a, monkeypatch, seed=3)
    m = a / "metrics.csv"
    lines = m.read_text().splitlines(keepends=True)
    m.write_text("".join(lines + lines[2:4]) + lines[-1][:7])     # two rows again, then half a row
    _, resumed = run_experiment("double-well", a, resume=True, seed=3, **TINY_KW)
    assert (tmp_path / "full" / "metrics.csv").read_bytes() == m.read_bytes()
    assert resumed["mfpt"] == full["mfpt"]


def test_json_writes_from_two_processes_never_collide(tmp_path):
    """Per-process temporary names: two writers of one file (the old shared `.tmp` name made one
    writer's rename fail) both succeed and leave a whole file and no temporaries."""
    target = tmp_path / "status.json"
    code = textwrap.dedent(f"""
        import os
        from shld.runs import write_json
        for i in range(300):
            write_json({str(target)!r}, {{"pid": os.getpid(), "i": i, "pad": "x" * 2000}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": SRC}) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert json.loads(target.read_text())["i"] == 299
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    from shld.runs import atomic_write

    target = tmp_path / "summary.json"
    write_json(target, {"finished": True})

    def boom(fh):
        fh.write('{"half": ')
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, boom)
    assert json.loads(target.read_text()) == {"finished": True}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


# --- corrupt files: one line naming the file ----------------------------------------------------

@pytest.mark.parametrize("name, content, what", [
    ("checkpoint.npz", b"PK\x03\x04 not a zip", "not a readable checkpoint (BadZipFile"),
    ("checkpoint.npz", b"", "not a readable checkpoint (the file is empty)"),
    ("checkpoint.npz", b"garbage\n", "not a readable checkpoint (the file is not an .npz archive)"),
    ("config.json", b'{"config": {"D": 0.4', "is not valid JSON"),
    ("config.json", b"[1, 2]", 'has no "config" object'),
])
def test_corrupt_files_on_resume_give_one_line(tmp_path, capsys, monkeypatch, name, content, what):
    a = tmp_path / "a"
    _interrupted(a, monkeypatch)
    (a / name).write_bytes(content)
    code, err = _run(capsys, "--out", str(a), "--resume", *TINY)
    line = _one_line_error(err)
    assert code == 2 and str(a / name) in line and what in line


def test_pickled_checkpoint_is_refused_by_name(tmp_path, monkeypatch):
    a = tmp_path / "a"
    _interrupted(a, monkeypatch)
    np.savez(a / "checkpoint.npz", theta=np.array([{"x": 1}], dtype=object))
    with pytest.raises(CorruptFileError, match="checkpoint.npz: not a readable checkpoint .it holds Python"):
        run_experiment("double-well", a, resume=True, **TINY_KW)


def test_report_renders_what_it_can_and_lists_unreadable_folders(tmp_path, capsys):
    from shld.claims import claim_row
    from shld.runs import RunFolder

    row = claim_row("g-1", "claim", "90%", "91%", "holds", "rule A", value=0.91)
    for name in ("exp-a", "exp-b", "exp-c"):
        run = RunFolder.create(tmp_path / name, {"experiment": name, "seed": 0})
        write_json(run.path / "summary.json", {"claims": [row]})
    (tmp_path / "exp-b" / "summary.json").write_text('{"claims": [')
    (tmp_path / "exp-c" / "config.json").write_text("")
    (tmp_path / "audit.json").write_text("{not json")
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for bad in ("audit.json", "exp-b/summary.json", "exp-c/config.json"):
        assert sum(bad in ln for ln in err.splitlines()) == 1, err
    md = (tmp_path / "report.md").read_text()
    assert "| exp-a | claim |" in md and "## Could not be read" in md
    assert "unreadable:" in md and "is empty" in md


def test_reproduce_resume_with_corrupt_audit_json_gives_one_line(tmp_path, capsys):
    from shld.reporting.audit import reproduce

    out = tmp_path / "audit"
    out.mkdir()
    (out / "audit.json").write_text('{"mode": "quick", "seed"')
    assert reproduce("quick", out, resume=True, names=["double-well"], progress=False) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert str(out / "audit.json") in line and "not valid JSON" in line


# --- children die with their parent -------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def _wait(cond, timeout: float) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


@linux_only
def test_reproduce_child_exits_when_its_parent_is_killed(tmp_path):
    out = tmp_path / "audit"
    code = textwrap.dedent(f"""
        from shld.reporting.audit import reproduce
        reproduce("quick", {str(out)!r}, names=["double-well"], progress=False,
                  overrides={{"double-well": {{"n_steps": 10**8, "n_walkers": 4, "record_every": 10**6}}}})
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC},
                              stderr=subprocess.DEVNULL)
    pid_file = out / "double-well" / PID_NAME
    try:
        assert _wait(lambda: pid_file.exists() and pid_file.read_text().strip().isdigit(), 60), \
            "the experiment child never started"
        child = int(pid_file.read_text())
        assert child != parent.pid and _alive(child)
    finally:
        parent.send_signal(signal.SIGKILL)                 # the parent only
        parent.wait()
    assert _wait(lambda: not _alive(child), 15), "the experiment child outlived its parent"
    pid_file = out / "double-well" / PID_NAME
    assert _wait(lambda: _lock_free(out / "double-well"), 15), \
        f"the folder is still locked (holder {pid_file.read_text().strip() if pid_file.exists() else '?'})"


def _lock_free(folder: Path) -> bool:
    try:
        with lock_folder(folder):
            return True
    except RunFolderBusy:
        return False


@linux_only
def test_pool_workers_exit_with_their_parent(tmp_path):
    code = textwrap.dedent("""
        import time
        from shld.experiments.executor import ProcessExecutor
        list(ProcessExecutor(2).map(time.sleep, [600, 600]))
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC})
    try:
        assert _wait(lambda: len([k for k in _children(parent.pid) if _alive(k)]) >= 2, 60)
        time.sleep(1.0)      # let the workers pick up their tasks
        workers = [k for k in _children(parent.pid) if _alive(k)]
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert _wait(lambda: not any(_alive(w) for w in workers), 15), "pool workers outlived their parent"


def test_pool_workers_that_start_after_their_parent_was_killed_exit(tmp_path):
    """The race behind a flaky run of the test above: a spawned worker still importing when its parent is
    SIGKILLed ran its initializer later, read its *new* parent (init) as the one to die with, and then ran
    the queued member (a 600 s sleep) as an orphan. Here every worker's start is held back 3 s (a
    sitecustomize that sleeps in multiprocessing children), so the parent is always killed first."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys, time\nif '--multiprocessing-fork' in sys.argv:\n    time.sleep(3.0)\n")
    code = textwrap.dedent("""
        import time
        from shld.experiments.executor import ProcessExecutor
        list(ProcessExecutor(2).map(time.sleep, [600, 600]))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), SRC])}
    parent = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        def workers():
            return [k for k in _children(parent.pid) if _alive(k)
                    and b"--multiprocessing-fork" in Path(f"/proc/{k}/cmdline").read_bytes()]
        assert _wait(lambda: len(workers()) >= 2, 60)
        started = workers()                   # still inside the 3 s delay: no initializer has run
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert _wait(lambda: not any(_alive(w) for w in started), 30), "late-starting workers outlived their parent"


def test_pool_workers_stop_when_the_caller_leaves_early():
    from shld.experiments.executor import ProcessExecutor

    t0 = time.perf_counter()
    it = ProcessExecutor(2).map(time.sleep, [0, 600, 600])
    assert next(it) is None
    it.close()                              # the caller stops: running members are abandoned, not awaited
    assert time.perf_counter() - t0 < 60


def test_run_folder_error_is_not_a_value_error_unless_corrupt():
    assert not issubclass(RunFolderError, ValueError) and issubclass(CorruptFileError, ValueError)


def test_docs_runs_md_example_runs(tmp_path, monkeypatch):
    import re

    monkeypatch.chdir(tmp_path)
    text = (Path(__file__).resolve().parents[2] / "docs" / "runs.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, "docs/runs.md", "exec"), {"__name__": "__docs__"})
    run = tmp_path / "runs" / "squares"
    doc = json.loads((run / "config.json").read_text())
    assert doc["identity"]["study"] == "squares" and doc["identity"]["seed"] == 0
    assert json.loads((run / "summary.json").read_text()) == {"total": 5}
    with np.load(run / "checkpoint.npz") as z:
        assert json.loads(str(z["__identity__"])) == doc["identity"]
    assert not (run / PID_NAME).exists()                       # the lock is released at the end


@pytest.mark.parametrize("out", ["", "."])
def test_reproduce_refuses_the_working_directory(tmp_path, capsys, monkeypatch, out):
    from shld.reporting.audit import reproduce

    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine\n")
    assert reproduce("quick", out, resume=True, names=["double-well"], progress=False) == 2
    assert "`out`" in _one_line_error(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_two_concurrent_resumes_never_duplicate_rows(tmp_path, monkeypatch):
    """The probe: two `--resume` on one folder at once. One runs; the other is refused while the
    first holds the folder (or finds it finished); every row is there once (the old code wrote the rows
    after the checkpoint twice and exited 0 twice)."""
    kw = dict(n_steps=2000, n_walkers=10, record_every=20, seed=2)
    a = tmp_path / "a"
    _interrupted(a, monkeypatch, after=2, **kw)
    cli = "import sys; from shld.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", cli, "run", "double-well", "--out", str(a), "--resume", "--no-progress"]
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": SRC, "MPLBACKEND": "Agg"}) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for code, err in results:
        assert code == 0 or (code == 2 and "is in use by another shld process (pid" in err
                             and "Traceback" not in err), err
    assert any(code == 0 for code, _ in results)
    assert np.array_equal(read_metrics(a / "metrics.csv")["step"], np.arange(0, 2001, 20))   # each row once


def test_reproduce_resume_reruns_an_experiment_whose_summary_is_corrupt(tmp_path, capsys):
    from shld.reporting.audit import reproduce

    out = tmp_path / "audit"
    small = {"double-well": {"n_steps": 400, "n_walkers": 5, "record_every": 20}}
    assert reproduce("quick", out, names=["double-well"], overrides=small, progress=False) == 0
    good = json.loads((out / "double-well" / "summary.json").read_text())
    (out / "double-well" / "summary.json").write_text('{"claims": [')
    assert main(["report", str(out)]) == 1                          # listed, not a traceback
    assert "summary.json: is not valid JSON" in capsys.readouterr().err
    assert reproduce("quick", out, resume=True, names=["double-well"], overrides=small, progress=False) == 0
    assert json.loads((out / "double-well" / "summary.json").read_text()) == good
    assert "## Could not be read" not in (out / "report.md").read_text()
