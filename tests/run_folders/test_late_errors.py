"""A run that fails or is stopped after it started (review of the command line, items A1, A2, B1, C3, D):
what it leaves on disk, what it prints, and that the printed way on works. Studies are tiny (escape with
a few walkers and steps); late failures are injected by patching a study's step to raise."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shld.cli import main
from shld.experiments import registry
from shld.experiments.registry import run_experiment

ESC = dict(n_walkers=6, n_steps=60, short_steps=20, min_step=5)
ESC_ARGV = ["--n-walkers", "6", "--n-steps", "60", "--short-steps", "20", "--min-step", "5"]
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(autouse=True)
def _quick_figures(monkeypatch):
    """Escape's figure drawn as a stub (matplotlib takes most of a tiny run's second; no test here looks at
    the picture)."""
    def figures(self, params, results, summary, figures):
        (figures / "escape.png").write_bytes(b"stub")

    monkeypatch.setattr(type(registry.get_study("escape")), "figures", figures)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if not p.name.startswith(".shld.lock"))


def _hint(err: str, marker: str = "continue with: ") -> list[str]:
    lines = [ln for ln in err.splitlines() if marker in ln]
    assert len(lines) == 1, err
    return shlex.split(lines[0].split(marker, 1)[1].split(" (the parameters", 1)[0])


def _fail_in(monkeypatch, study: str, step: str, exc: BaseException, after: int = 0):
    """Make ``step`` (a method of the study's class) raise ``exc`` from its ``after``-th call on (0: the
    first); returns the undo."""
    cls = type(registry.get_study(study))
    real = getattr(cls, step)
    calls = {"n": 0}

    def failing(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] > after:
            raise exc
        return real(self, *a, **kw)

    monkeypatch.setattr(cls, step, failing)
    return lambda: monkeypatch.setattr(cls, step, real)


# --- A1: a late error keeps finished work resumable; before any work, it undoes everything it made ------

@pytest.mark.parametrize("step", ["analyse", "figures"])
def test_a_late_error_after_finished_members_keeps_the_run_resumable(tmp_path, capsys, monkeypatch, step):
    """The probe: every member finished, then a ValueError (the old code deleted config.json and kept the
    members: a folder neither resumable nor re-runnable). Now everything stays, the error names the way on,
    and that command finishes the run with the summary of an uninterrupted one, byte for byte."""
    out = tmp_path / "e s"
    undo = _fail_in(monkeypatch, "escape", step, ValueError(f"`x` broke in {step}"))
    code = main(["run", "escape", *ESC_ARGV, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"shld run escape: error: `x` broke in {step}" in err and "Traceback" not in err
    assert (out / "config.json").is_file()
    assert len(list((out / "members").glob("*.json"))) == 8
    argv = _hint(err)
    assert argv == ["shld", "run", "escape", "--out", str(out), "--resume"]
    undo()                                                        # the cause is fixed
    assert main(argv[1:]) == 0
    run_experiment("escape", tmp_path / "whole", progress=False, **ESC)
    assert (out / "summary.json").read_bytes() == (tmp_path / "whole" / "summary.json").read_bytes()
    assert (out / "figures" / "escape.png").is_file()


def test_a_late_error_before_any_work_removes_everything_the_run_created(tmp_path, monkeypatch):
    """A member that made its sub-folder (config.json, metrics) and then raised: no member finished and no
    checkpoint exists, so the run is undone, sub-folder included (the old code left `d2/` behind, which
    made the folder unusable for a plain re-run); a folder the user made stays, empty."""
    HighDim = type(registry.get_study("high-dim"))

    def member_fails(self, params, member, ctx):
        folder = ctx.run_folder({"d": member.task["d"]})
        (folder.path / "metrics.csv").write_text("step,x\n0,1.0\n")
        raise ValueError("`d` is fine but something else is not")

    monkeypatch.setattr(HighDim, "run_member", member_fails)
    kw = dict(dims=[2, 3], n_steps=50, n_walkers=4, progress=False)
    with pytest.raises(ValueError, match="something else"):
        run_experiment("high-dim", tmp_path / "new" / "run", **kw)
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(ValueError, match="something else"):
        run_experiment("high-dim", mine, **kw)
    assert mine.is_dir() and list(mine.iterdir()) == []


def test_a_study_without_members_that_fails_late_removes_its_tables(tmp_path, monkeypatch):
    """No member at all (e.g. an empty dataset list): the driver wrote a table and summary.json, then the
    figures raised; all of it goes (the old code left metrics.csv)."""
    from shld.experiments.study import Summary

    HighDim = type(registry.get_study("high-dim"))

    monkeypatch.setattr(HighDim, "members", lambda self, params, done: [])
    monkeypatch.setattr(HighDim, "analyse",
                        lambda self, params, results: Summary([], {"n": 0}, {"metrics.csv": [{"a": 1.0}]}))

    def figures(self, params, results, summary, figures):
        (figures / "half.png").write_bytes(b"\x89PNG")
        raise ValueError("Data cannot be log-scaled because all values are <= 0.")

    monkeypatch.setattr(HighDim, "figures", figures)
    with pytest.raises(ValueError, match="log-scaled"):
        run_experiment("high-dim", tmp_path / "run", dims=[2], n_steps=50, n_walkers=4, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_late_error_after_a_checkpoint_in_a_member_folder_keeps_the_run(tmp_path, monkeypatch):
    HighDim = type(registry.get_study("high-dim"))

    def member_fails(self, params, member, ctx):
        folder = ctx.run_folder({"d": member.task["d"]})
        folder.save_checkpoint(step=1)
        raise ValueError("late")

    monkeypatch.setattr(HighDim, "run_member", member_fails)
    with pytest.raises(ValueError, match="late"):
        run_experiment("high-dim", tmp_path / "run", dims=[2], n_steps=50, n_walkers=4, progress=False)
    assert _files(tmp_path / "run") == ["config.json", "d2", "d2/checkpoint.npz", "d2/config.json", "d2/figures",
                                        "figures"]


# --- A2: a failed study of an audit resumes ---------------------------------------------------------------

def test_a_failed_audit_study_keeps_its_traceback_outside_its_run_folder_and_resumes(tmp_path, monkeypatch):
    """The audit's child used to write error.txt into the run folder, which (with A1) made every later
    `shld reproduce --resume` fail the study again. The traceback now goes to _status/NAME.error.txt and
    the resume finishes the study, with the summary of an uninterrupted run."""
    from shld.experiments.registry import audit_preset
    from shld.reporting import _child
    from shld.reporting.audit import reproduce
    from shld.runs import read_json

    audit = tmp_path / "audit"
    status = audit / "_status" / "escape.json"
    status.parent.mkdir(parents=True)
    undo = _fail_in(monkeypatch, "escape", "figures", ValueError("`x` broke in figures"))
    code = _child.main(["--name", "escape", "--out", str(audit / "escape"), "--mode", "quick", "--seed", "0",
                        "--overrides", json.dumps(ESC), "--status", str(status), "--no-progress"])
    assert code == 1 and read_json(status)["status"] == "failed"
    assert not (audit / "escape" / "error.txt").exists()
    tb = (audit / "_status" / "escape.error.txt").read_text()
    assert "Traceback" in tb and "`x` broke in figures" in tb
    assert (audit / "escape" / "config.json").is_file()
    undo()
    assert reproduce("quick", audit, resume=True, names=["escape"], overrides={"escape": ESC}, progress=False) == 0
    rec = read_json(audit / "audit.json")["experiments"]["escape"]
    assert rec["status"] == "done" and rec["resumed"] is True
    assert not (audit / "_status" / "escape.error.txt").exists()          # the stale traceback went
    run_experiment("escape", tmp_path / "whole", progress=False, **{**audit_preset("escape", "quick"), **ESC})
    assert (audit / "escape" / "summary.json").read_bytes() == (tmp_path / "whole" / "summary.json").read_bytes()


# --- B1: Ctrl-C prints the way on ----------------------------------------------------------------------------

def test_ctrl_c_during_run_prints_the_resume_command_and_exits_130(tmp_path, capsys, monkeypatch):
    out = tmp_path / "my run"
    undo = _fail_in(monkeypatch, "escape", "run_member", KeyboardInterrupt(), after=3)
    code = main(["run", "escape", *ESC_ARGV, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 130 and "Traceback" not in err and len(lines) == 1, err
    assert lines[0] == f"shld run escape: interrupted; continue with: shld run escape --out '{out}' --resume"
    undo()
    assert main(_hint(err)[1:]) == 0
    run_experiment("escape", tmp_path / "whole", progress=False, **ESC)
    assert (out / "summary.json").read_bytes() == (tmp_path / "whole" / "summary.json").read_bytes()


def test_ctrl_c_hint_carries_the_executor_options(tmp_path, capsys, monkeypatch):
    _fail_in(monkeypatch, "escape", "run_member", KeyboardInterrupt(), after=1)
    out = tmp_path / "r"
    assert main(["run", "escape", *ESC_ARGV, "--out", str(out), "--no-progress", "--executor", "serial",
                 "--jobs", "1"]) == 130
    assert _hint(capsys.readouterr().err) == ["shld", "run", "escape", "--out", str(out), "--resume",
                                              "--executor", "serial", "--jobs", "1"]


def test_sigint_of_a_real_run_gives_one_line_and_130(tmp_path):
    out = tmp_path / "dw"
    cli = "import sys; from shld.cli import main; sys.exit(main(sys.argv[1:]))"
    # 20 checkpoints of 8000 steps: the first comes within a second, the last long after the interrupt; SIGINT
    # as a terminal delivers it (a test run from a background job would otherwise pass on SIG_IGN)
    proc = subprocess.Popen([sys.executable, "-c", cli, "run", "double-well", "--n-steps", "160000", "--n-walkers",
                             "5", "--record-every", "1000", "--out", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": SRC, "MPLBACKEND": "Agg"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "checkpoint.npz").exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not (out / "summary.json").exists()                     # it was stopped half way
    assert "Traceback" not in err and [ln for ln in err.splitlines() if ln.strip()] == [
        f"shld run double-well: interrupted; continue with: shld run double-well --out {out} --resume"]


def test_a_member_failing_in_a_worker_gives_its_error_and_the_way_on(tmp_path, capsys, monkeypatch):
    """With --jobs, a member that fails on every attempt arrives as MemberFailedError (a RuntimeError): it
    used to end in a traceback. Now: its message and the resume command, exit 1, the finished members kept."""
    from shld.experiments import executor

    def two_then_failed(fn, items, engine=None):
        items = list(items)
        for item in items[:2]:
            yield fn(item)
        raise executor.MemberFailedError(2, items[2], ValueError("`x` must be good, got bad"), 3, "process")

    monkeypatch.setattr(executor, "sweep_map", two_then_failed)
    out = tmp_path / "r"
    assert main(["run", "escape", *ESC_ARGV, "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 2, err
    assert lines[0].startswith("shld run escape: error: sweep member 2 (item ") and "`x` must be good" in lines[0]
    assert _hint(err) == ["shld", "run", "escape", "--out", str(out), "--resume"]
    assert len(list((out / "members").glob("*.json"))) == 2 and (out / "config.json").is_file()


# --- C3: the progress bar is closed before the error line ----------------------------------------------------

def test_error_line_starts_a_line_of_its_own_after_the_progress_bar(tmp_path, capsys, monkeypatch):
    _fail_in(monkeypatch, "escape", "run_member", ValueError("`x` must be good, got bad"), after=1)
    assert main(["run", "escape", *ESC_ARGV, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "member/s]" in err                                      # the bar was drawn
    pieces = [p for ln in err.split("\n") for p in ln.split("\r")]
    assert "shld run escape: error: `x` must be good, got bad" in pieces, err


# --- D: a corrupt member file names its remedy ------------------------------------------------------------------

def test_a_corrupt_member_file_names_the_remedy_and_the_remedy_works(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    undo = _fail_in(monkeypatch, "escape", "run_member", KeyboardInterrupt(), after=3)
    assert main(["run", "escape", *ESC_ARGV, "--out", str(out), "--no-progress"]) == 130
    undo()
    bad = sorted((out / "members").glob("*.json"))[0]
    bad.write_text('{"key": ')
    capsys.readouterr()
    assert main(["run", "escape", "--out", str(out), "--resume", "--no-progress"]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "is not valid JSON" in lines[0]
    assert lines[0].endswith("; remove it to re-run that member")
    bad.unlink()
    assert main(["run", "escape", "--out", str(out), "--resume", "--no-progress"]) == 0
    run_experiment("escape", tmp_path / "whole", progress=False, **ESC)
    assert (out / "summary.json").read_bytes() == (tmp_path / "whole" / "summary.json").read_bytes()
