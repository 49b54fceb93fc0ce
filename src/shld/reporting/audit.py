"""``shld reproduce``: run every audited experiment and write the claims report.

Layout of an audit folder::

    OUT/
      audit.json          mode, seed, jobs, per-experiment status, wall time, peak memory
      report.md           claims table, rules, notes, environment, run time
      report.html         the same, self-contained (figures embedded as base64 PNG)
      _status/NAME.json   what the experiment's process reported (done / not run / failed)
      NAME/               the experiment's run folder (config.json, metrics, figures, summary.json)

Each experiment runs in its own process (``python -m shld.reporting._child``) with the
overrides in its module's ``AUDIT[mode]`` and the audit's seed; its wall time and peak
resident memory come from ``os.wait4``. ``--jobs N`` reaches the experiment's sweeps through
``SHLD_JOBS`` (:mod:`shld.experiments.executor`).

Resuming: experiments whose ``summary.json`` exists are skipped; a partial one continues with
its own ``--resume``. Nothing in ``report.md`` above its "Run time" section depends on timing,
so a killed-and-resumed audit writes the same report as an uninterrupted one apart from timings.
``shld report RUN_DIR`` (:func:`rebuild_report`) rebuilds both files from the folders alone.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from shld.runs import read_json, write_json

#: the audited experiments, in report order
AUDIT_ORDER = ("double-well", "high-dim", "kramers", "grokking", "double-descent", "lr-selection", "escape",
               "batch-scaling", "theorems")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _environment() -> dict:
    """Versions and machine, plus the versions of optional packages without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    from shld.runs import environment

    env = environment()
    for pkg in ("torch", "scikit-learn", "matplotlib"):
        try:
            env[pkg] = version(pkg)
        except PackageNotFoundError:
            env[pkg] = "not installed"
    return env


def _run_child(name: str, out: Path, mode: str, seed: int, jobs: int, resume: bool, overrides: dict,
               progress: bool) -> dict:
    run_dir = out / name
    status_path = out / "_status" / f"{name}.json"
    status_path.parent.mkdir(parents=True, exist_ok=True)
    if status_path.exists():
        status_path.unlink()
    cmd = [sys.executable, "-m", "shld.reporting._child", "--name", name, "--out", str(run_dir), "--mode", mode,
           "--seed", str(seed), "--status", str(status_path), "--overrides", json.dumps(overrides)]
    if resume and run_dir.exists():
        cmd.append("--resume")
    if not progress:
        cmd.append("--no-progress")
    env = dict(os.environ, SHLD_JOBS=str(jobs), MPLBACKEND="Agg")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    try:
        _, wstatus, ru = os.wait4(proc.pid, 0)
    except KeyboardInterrupt:
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(wstatus)
    wall = time.perf_counter() - t0
    st = read_json(status_path) if status_path.exists() else {
        "status": "failed", "reason": f"process ended with exit code {proc.returncode} without a status"}
    return {"status": st["status"], "reason": st.get("reason", ""), "exit_code": proc.returncode,
            "wall_s": round(wall, 2), "user_s": round(ru.ru_utime, 2), "sys_s": round(ru.ru_stime, 2),
            "peak_rss_mb": round(ru.ru_maxrss / 1024.0, 1), "resumed": bool(resume and run_dir.exists())}


def reproduce(mode: str = "quick", out: str | Path = "shld-runs/reproduce", resume: bool = False, jobs: int = 1,
              seed: int = 0, *, names: list[str] | None = None, overrides: dict | None = None,
              progress: bool = True) -> int:
    """Run the audit; returns the exit code (0 ok, 1 an experiment failed, 2 bad arguments,
    130 interrupted).

    ``names`` restricts the experiments (default :data:`AUDIT_ORDER`); ``overrides`` maps an
    experiment name to extra parameter overrides on top of its ``AUDIT[mode]`` (used by tests).
    """
    from shld._validation import check_choice, check_int

    try:
        check_choice("mode", mode, ["quick", "full"])
        jobs = check_int("jobs", jobs, minimum=1)
        seed = check_int("seed", seed, minimum=0)
        names = list(AUDIT_ORDER if names is None else names)
    except (TypeError, ValueError) as exc:
        print(f"shld reproduce: error: {exc}", file=sys.stderr)
        return 2
    overrides = overrides or {}
    out = Path(out)
    audit_path = out / "audit.json"
    if out.exists() and any(out.iterdir()) and not resume:
        print(f"shld reproduce: error: `out` folder {str(out)!r} exists and is not empty; pass --resume to "
              "continue it or choose another --out", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    if resume and audit_path.exists():
        audit = read_json(audit_path)
        if audit.get("mode") != mode or audit.get("seed") != seed:
            print(f"shld reproduce: error: --resume with mode={mode!r}, seed={seed} but {out} holds an audit "
                  f"with mode={audit.get('mode')!r}, seed={audit.get('seed')}", file=sys.stderr)
            return 2
    else:
        audit = {"mode": mode, "seed": seed, "started": _now(), "experiments": {}}
    audit["environment"] = _environment()
    audit["jobs"] = jobs
    audit["names"] = names
    audit["overrides"] = overrides
    write_json(audit_path, audit)

    t_start = time.perf_counter()
    code = 0
    n = len(names)
    for i, name in enumerate(names, 1):
        run_dir = out / name
        prev = audit["experiments"].get(name, {})
        if resume and (run_dir / "summary.json").exists():
            print(f"[{i}/{n}] {name}: done earlier, skipped", file=sys.stderr, flush=True)
            if not prev:
                audit["experiments"][name] = {"status": "done", "reason": "", "wall_s": None}
            continue
        if resume and prev.get("status") == "not run":
            # an optional dependency may have appeared since: try again
            pass
        print(f"[{i}/{n}] {name}: running ({mode}) ...", file=sys.stderr, flush=True)
        try:
            rec = _run_child(name, out, mode, seed, jobs, resume, overrides.get(name, {}), progress)
        except KeyboardInterrupt:
            write_json(audit_path, audit)
            print(f"\ninterrupted during {name}; continue with: shld reproduce --{mode} --out {out} --resume",
                  file=sys.stderr)
            return 130
        if prev.get("wall_s") and rec["resumed"]:
            rec["wall_s_before_resume"] = prev.get("wall_s")
        audit["experiments"][name] = rec
        write_json(audit_path, audit)
        if rec["status"] == "interrupted" or rec["exit_code"] in (-2, 130):
            print(f"\ninterrupted during {name}; continue with: shld reproduce --{mode} --out {out} --resume",
                  file=sys.stderr)
            return 130
        what = {"done": "done", "not run": f"not run: {rec['reason']}", "failed": f"FAILED: {rec['reason']}"}
        print(f"[{i}/{n}] {name}: {what.get(rec['status'], rec['status'])} in {rec['wall_s']:.1f} s, "
              f"peak {rec['peak_rss_mb']:.0f} MB (audit elapsed {time.perf_counter() - t_start:.0f} s)",
              file=sys.stderr, flush=True)
        if rec["status"] == "failed":
            code = 1
    audit["finished"] = _now()
    audit["last_session_wall_s"] = round(time.perf_counter() - t_start, 2)
    write_json(audit_path, audit)
    rebuild_report(out, quiet=True)
    print(f"report: {out / 'report.md'}  and  {out / 'report.html'}", file=sys.stderr)
    return code


def rebuild_report(run_dir: str | Path, *, quiet: bool = False) -> int:
    """Rebuild ``report.md`` and ``report.html`` in ``run_dir`` from the folders alone (an audit
    folder, or a single run folder). Returns 0, or 2 when ``run_dir`` holds no runs."""
    from shld.reporting.render import collect, render_html, render_markdown

    run_dir = Path(run_dir)
    try:
        data = collect(run_dir)
    except (FileNotFoundError, ValueError) as exc:
        print(f"shld report: error: {exc}", file=sys.stderr)
        return 2
    (run_dir / "report.md").write_text(render_markdown(data))
    (run_dir / "report.html").write_text(render_html(data))
    if not quiet:
        print(f"wrote {run_dir / 'report.md'} and {run_dir / 'report.html'}")
    return 0
