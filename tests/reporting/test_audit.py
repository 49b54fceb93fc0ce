"""`shld reproduce` and `shld report`: kill an audit partway, resume, and get the same report."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shld.cli import main as cli_main
from shld.reporting.audit import rebuild_report, reproduce
from shld.reporting.render import RUN_TIME_HEADING
from shld.runs import read_json, read_metrics

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["theorems", "double-descent", "no-such-experiment"]
OVERRIDES = {
    "double-descent": dict(datasets="synthetic", n_train=40, n_test=300, d_in=8, n_p=9, n_draws=2,
                           gd_steps=1500, gd_record_every=50),
    "theorems": dict(n_walkers=300, t3_walkers=300, t3_dt=0.02, t4_time=2.0, D_values=[0.2]),
}


def _before_timing(text: str) -> str:
    return text.split(RUN_TIME_HEADING)[0]


def test_killed_audit_resumes_to_the_same_report(tmp_path):
    killed = tmp_path / "killed"
    code = (f"import sys; from shld.reporting.audit import reproduce; "
            f"sys.exit(reproduce('quick', {str(killed)!r}, names={NAMES!r}, overrides={OVERRIDES!r}, "
            f"progress=False))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    members = killed / "double-descent" / "members"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if members.is_dir() and len(list(members.glob("*.json"))) >= 3:     # 3 of 18 members done
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)       # the audit and its experiment child, at once
        proc.wait()
    assert not (killed / "double-descent" / "summary.json").exists(), "killed too late"
    assert not (killed / "report.md").exists()
    assert (killed / "theorems" / "summary.json").exists()          # finished before the kill
    theorems_before = (killed / "theorems" / "summary.json").read_text()

    assert reproduce("quick", killed, resume=True, names=NAMES, overrides=OVERRIDES, progress=False) == 0
    whole = tmp_path / "whole"
    assert reproduce("quick", whole, names=NAMES, overrides=OVERRIDES, progress=False) == 0

    a, b = (killed / "report.md").read_text(), (whole / "report.md").read_text()
    assert _before_timing(a) == _before_timing(b)
    ha, hb = (killed / "report.html").read_text(), (whole / "report.html").read_text()
    assert ha.split("<h2>Run time")[0] == hb.split("<h2>Run time")[0]
    ma = read_metrics(killed / "double-descent" / "metrics.csv")
    mb = read_metrics(whole / "double-descent" / "metrics.csv")
    np.testing.assert_allclose(ma["test_mse_minnorm"], mb["test_mse_minnorm"], rtol=1e-12)

    # the report's content: claims of both experiments, a not-run row, timings, embedded figures
    assert "dd-peak-synthetic" in b and "th4-convergence" in b
    assert "| no-such-experiment | not run: `name` must be one of" in b
    audit = read_json(whole / "audit.json")
    assert audit["experiments"]["theorems"]["peak_rss_mb"] > 10
    assert audit["experiments"]["double-descent"]["wall_s"] > 0
    resumed_audit = read_json(killed / "audit.json")["experiments"]
    assert resumed_audit["double-descent"]["resumed"] is True
    assert resumed_audit["theorems"]["resumed"] is False                # skipped, not rerun
    assert (killed / "theorems" / "summary.json").read_text() == theorems_before
    assert "torch" in b                                                 # environment lists versions
    assert hb.count("data:image/png;base64,") >= 4
    assert "<img alt='figures/double_descent.png' src='data:image/png;base64," in hb

    # the report rebuilds from the folders alone (no audit.json, no old reports)
    for f in ("report.md", "report.html", "audit.json"):
        (whole / f).unlink()
    assert cli_main(["report", str(whole)]) == 0
    rebuilt = (whole / "report.md").read_text()
    assert "dd-peak-synthetic" in rebuilt and "**holds**" in rebuilt
    # a single run folder reports too
    assert rebuild_report(whole / "theorems") == 0
    assert "th1-any" in (whole / "theorems" / "report.md").read_text()


def test_reproduce_refuses_a_used_folder_and_a_mismatched_resume(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "something").write_text("")
    assert reproduce("quick", tmp_path / "x", names=["no-such-experiment"], progress=False) == 2
    assert "--resume" in capsys.readouterr().err
    assert reproduce("quick", tmp_path / "y", names=["no-such-experiment"], progress=False) == 0
    assert reproduce("full", tmp_path / "y", resume=True, names=["no-such-experiment"], progress=False) == 2
    assert reproduce("quick", tmp_path / "z", jobs=0, progress=False) == 2
    assert cli_main(["reproduce", "--quick", "--out", str(tmp_path / "x")]) == 2     # the CLI branch
    assert cli_main(["report", str(tmp_path / "nothing-here")]) == 2


# --- review of the command line: B5 (resume bookkeeping) and C1 (a report of a read-only folder) ---------------

SMALL_DW = {"n_steps": 400, "n_walkers": 5, "record_every": 20}
SMALL_ESC = {"n_walkers": 6, "n_steps": 60, "short_steps": 20, "min_step": 5}


def test_an_interrupted_audit_prints_a_resume_command_that_is_accepted(tmp_path, capsys, monkeypatch):
    """The hint used to leave out --seed/--jobs/--executor and to quote no path: after an audit with seed 3
    the printed command was refused ('--resume --seed 0, but ... was run with seed 3')."""
    import shlex

    from shld.cli import build_parser
    from shld.reporting import audit as audit_mod

    out = tmp_path / "my audit"
    small = {"double-well": SMALL_DW}
    real = audit_mod._run_child

    def then_interrupted(*a, **kw):
        real(*a, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(audit_mod, "_run_child", then_interrupted)
    assert reproduce("quick", out, seed=3, jobs=1, executor="serial", names=["double-well"], overrides=small,
                     progress=False) == 130
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "continue with: " in ln]
    assert len(lines) == 1 and lines[0].startswith("interrupted during double-well; continue with: ")
    argv = shlex.split(lines[0].split("continue with: ", 1)[1])
    assert argv == ["shld", "reproduce", "--quick", "--out", str(out), "--resume", "--seed", "3",
                    "--executor", "serial", "--jobs", "1"]
    monkeypatch.setattr(audit_mod, "_run_child", real)
    args = build_parser().parse_args(argv[1:])
    assert reproduce("full" if args.full else "quick", args.out, resume=args.resume, jobs=args.sweep_jobs,
                     seed=args.seed, executor=args.sweep_executor, address=args.sweep_address, names=["double-well"],
                     overrides=small, progress=False) == 0
    rec = read_json(out / "audit.json")["experiments"]["double-well"]
    assert rec["status"] == "done" and rec["wall_s"] > 0         # the time of the interrupted session is kept


def test_resume_marks_only_continued_studies_and_keeps_the_time_before_an_interrupt(tmp_path, monkeypatch):
    """`resumed` was decided after the child ran (a study first run in the resume session showed 'yes'), and
    an interrupt that reached the parent while it waited dropped the time spent."""
    import shld.experiments._langevin_run as lr
    from shld.experiments.registry import audit_preset, run_experiment
    from shld.reporting import audit as audit_mod

    out = tmp_path / "audit"
    small = {"double-well": SMALL_DW, "escape": SMALL_ESC}
    names = ["double-well", "escape"]
    real_ckpt = lr.RunFolder.save_checkpoint
    calls = {"n": 0}

    def flaky(self, **arrays):                 # a double-well left half way, as a killed audit child leaves it
        real_ckpt(self, **arrays)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(lr.RunFolder, "save_checkpoint", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("double-well", out / "double-well", progress=False,
                       **{**audit_preset("double-well", "quick"), **SMALL_DW, "seed": 0})
    monkeypatch.setattr(lr.RunFolder, "save_checkpoint", real_ckpt)

    real = audit_mod._run_child

    def waits_then_interrupted(*a, **kw):
        time.sleep(0.3)
        raise KeyboardInterrupt

    monkeypatch.setattr(audit_mod, "_run_child", waits_then_interrupted)
    assert reproduce("quick", out, resume=True, names=names, overrides=small, progress=False) == 130
    rec = read_json(out / "audit.json")["experiments"]["double-well"]
    assert rec["status"] == "interrupted" and rec["wall_s"] >= 0.3 and rec["resumed"] is True

    monkeypatch.setattr(audit_mod, "_run_child", real)
    assert reproduce("quick", out, resume=True, names=names, overrides=small, progress=False) == 0
    recs = read_json(out / "audit.json")["experiments"]
    assert recs["double-well"]["status"] == "done" and recs["double-well"]["resumed"] is True
    assert recs["double-well"]["wall_s_before_resume"] >= 0.3
    assert recs["escape"]["status"] == "done" and recs["escape"]["resumed"] is False     # first run in this session


def _one_run(folder: Path) -> Path:
    from shld.claims import claim_row
    from shld.runs import RunFolder, write_json

    run = RunFolder.create(folder, {"experiment": "exp-a", "seed": 0})
    write_json(run.path / "summary.json",
               {"claims": [claim_row("g-1", "claim", "90%", "91%", "holds", "rule A", value=0.91, figure="figures/f.png")]})
    (run.path / "figures" / "f.png").write_bytes(b"not drawn")
    return run.path


def test_report_of_a_read_only_folder_is_one_line_and_out_writes_it_elsewhere(tmp_path, capsys, monkeypatch):
    import errno
    import re

    from shld.reporting import audit as audit_mod

    run = _one_run(tmp_path / "ro run")
    real = audit_mod.write_text

    def read_only(path, text):
        if Path(path).parent == run:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, text)

    monkeypatch.setattr(audit_mod, "write_text", read_only)
    for extra in ([], ["--redraw"]):
        assert cli_main(["report", str(run), *extra]) == 2
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip() and "could not read" not in ln]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0] == (f"shld report: error: the report cannot be written into {str(run)!r} (Read-only file "
                            "system); pass --out DIR to write the report elsewhere")
    rep = tmp_path / "reports" / "one"
    assert cli_main(["report", str(run), "--out", str(rep)]) == 0
    assert sorted(p.name for p in rep.iterdir()) == ["report.html", "report.md"]
    assert not (run / "report.md").exists()
    md = (rep / "report.md").read_text()
    links = [t for t in re.findall(r"\]\(([^)#]+)\)", md) if "://" not in t]
    assert links and all((rep / t).exists() for t in links), links     # the links lead back into the run folder
    assert "../../ro run/figures/f.png" in links
    (tmp_path / "file").write_text("")
    assert cli_main(["report", str(run), "--out", str(tmp_path / "file")]) == 2
    assert "an existing file" in capsys.readouterr().err
