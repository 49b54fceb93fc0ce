"""`shld reproduce` and `shld report`: kill an audit partway, resume, and get the same report."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

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
