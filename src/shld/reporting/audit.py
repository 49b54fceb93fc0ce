"""``shld reproduce``: run every audited experiment and write the claims report.

Layout of an audit folder::

    OUT/
      audit.json          mode, seed, jobs, per-experiment status, wall time, peak memory
      report.md           claims table, rules, notes, environment, run time
      report.html         the same, self-contained (figures embedded as base64 PNG)
      _status/NAME.json   what the experiment's process reported (done / not run / failed)
      _status/NAME.error.txt  the traceback of a failed experiment (kept out of its run folder, which a
                          --resume continues)
      NAME/               the experiment's run folder (config.json, metrics, figures, summary.json)

Each experiment runs in its own process (``python -m shld.reporting._child``) with the
overrides in its module's ``AUDIT[mode]`` and the audit's seed; its wall time and peak
resident memory come from ``os.wait4``. ``--executor``/``--jobs``/``--address`` reach the experiment's
sweeps through ``SHLD_EXECUTOR``/``SHLD_JOBS``/``SHLD_ADDRESS`` (:mod:`shld.experiments.executor`); a local
Dask or Ray cluster is started once here and every child connects to it (``SharedExecutor``).

The audit folder is locked for the whole run (:func:`shld.runs.lock_folder`), and each experiment's
folder by its own process. The children run in their own process group and die with this process,
SIGKILL included (:func:`shld._process.die_with_parent`); an interrupt is forwarded to them.

Resuming: experiments whose ``summary.json`` exists are skipped; a partial one continues with
its own ``--resume``. Every existing experiment folder must have been run with the audit's seed.
Nothing in ``report.md`` above its "Run time" section depends on timing,
so a killed-and-resumed audit writes the same report as an uninterrupted one apart from timings.
``shld report RUN_DIR`` (:func:`rebuild_report`) rebuilds both files from the folders alone.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from shld._process import kill_group
from shld.experiments.registry import AUDITED
from shld.reporting._child import error_path
from shld.runs import (
    CorruptFileError,
    RunFolderError,
    check_out,
    lock_folder,
    read_config,
    read_json,
    write_json,
    write_text,
)

#: the audited experiments, in report order (kept in the registry)
AUDIT_ORDER = AUDITED


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


def _run_child(name: str, out: Path, mode: str, seed: int, jobs: int | None, resume: bool, overrides: dict,
               progress: bool, executor_env: dict | None = None) -> dict:
    run_dir = out / name
    status_path = out / "_status" / f"{name}.json"
    status_path.parent.mkdir(parents=True, exist_ok=True)
    for old in (status_path, error_path(status_path, name)):     # a previous session's
        if old.exists():
            old.unlink()
    cmd = [sys.executable, "-m", "shld.reporting._child", "--name", name, "--out", str(run_dir), "--mode", mode,
           "--seed", str(seed), "--status", str(status_path), "--overrides", json.dumps(overrides),
           "--parent", str(os.getpid())]
    # whether this session continues work of an earlier one (decided before the child writes anything)
    resumed = bool(resume and (run_dir / "config.json").exists())
    if resume and run_dir.exists():
        cmd.append("--resume")
    if not progress:
        cmd.append("--no-progress")
    env = {**os.environ, "SHLD_JOBS": str(jobs), "MPLBACKEND": "Agg", **(executor_env or {})}
    t0 = time.perf_counter()
    # its own process group (a terminal's Ctrl-C reaches this process only, which forwards it); the child
    # arms its death signal against this pid, so it cannot outlive us
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        _, wstatus, ru = os.wait4(proc.pid, 0)
    except KeyboardInterrupt:
        kill_group(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except BaseException:
            kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    except BaseException:
        kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(wstatus)
    wall = time.perf_counter() - t0
    try:
        st = read_json(status_path) if status_path.exists() else {
            "status": "failed", "reason": f"process ended with exit code {proc.returncode} without a status"}
    except CorruptFileError as exc:
        st = {"status": "failed", "reason": str(exc)}
    return {"status": st["status"], "reason": st.get("reason", ""), "exit_code": proc.returncode,
            "wall_s": round(wall, 2), "user_s": round(ru.ru_utime, 2), "sys_s": round(ru.ru_stime, 2),
            "peak_rss_mb": round(ru.ru_maxrss / 1024.0, 1), "resumed": resumed}


def reproduce(mode: str = "quick", out: str | Path = "shld-runs/reproduce", resume: bool = False,
              jobs: int | None = None, seed: int = 0, *, names: list[str] | None = None, overrides: dict | None = None,
              progress: bool = True, executor: str | None = None, address: str | None = None) -> int:
    """Run the audit; returns the exit code (0 ok, 1 an experiment failed, 2 bad arguments,
    130 interrupted).

    ``names`` restricts the experiments (default :data:`AUDIT_ORDER`); ``overrides`` maps an
    experiment name to extra parameter overrides on top of its ``AUDIT[mode]`` (used by tests).
    ``executor``/``jobs``/``address`` choose the sweeps' engine
    (:func:`shld.experiments.executor.check_executor_args`; default serial, or process when ``jobs`` > 1).
    """
    from shld._validation import check_choice, check_int
    from shld.experiments.executor import SharedExecutor

    asked = (("--executor", executor), ("--jobs", jobs), ("--address", address))    # as given, for the resume hint
    try:
        check_choice("mode", mode, ["quick", "full"])
        shared = SharedExecutor(executor, jobs, address)
        jobs = shared.jobs
        seed = check_int("seed", seed, minimum=0)
        names = list(AUDIT_ORDER if names is None else names)
    except (TypeError, ValueError, ModuleNotFoundError, ConnectionError) as exc:
        print(f"shld reproduce: error: {exc}", file=sys.stderr)
        return 2
    overrides = overrides or {}
    try:
        out = check_out(out)
        if out.exists() and [p for p in out.iterdir() if not p.name.startswith(".shld.lock")] and not resume:
            raise RunFolderError(f"`out` folder {str(out)!r} exists and is not empty; pass --resume to continue "
                                 "it or choose another --out")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"`out` folder {str(out)!r} cannot be created ({type(exc).__name__}: "
                                 f"{exc.strerror or exc})") from None
        hint = shlex.join(["shld", "reproduce", f"--{mode}", "--out", str(out), "--resume", "--seed", str(seed),
                           *[str(x) for flag, value in asked if value is not None for x in (flag, value)]])
        with lock_folder(out), shared:
            return _reproduce(mode, out, resume, jobs, seed, names, overrides, progress, shared, hint)
    except RunFolderError as exc:
        print(f"shld reproduce: error: {exc}", file=sys.stderr)
        return 2


def _check_resumed_folders(out: Path, names: list[str], seed: int, mode: str, overrides: dict) -> None:
    """Every experiment folder already in ``out`` must have been run with ``seed`` and, when
    ``audit.json`` (which records the mode) is missing, with the parameters of ``mode``: a resume must
    not label results of another seed or size with this audit's."""
    from shld.experiments.registry import audit_preset
    from shld.runs import _jsonable

    no_audit = not (out / "audit.json").exists()
    for name in names:
        if not (out / name / "config.json").exists():
            continue
        cfg_path = out / name / "config.json"
        doc = read_config(out / name)
        ident = doc.get("identity") if isinstance(doc.get("identity"), dict) else {}
        found = ident.get("seed", doc["config"].get("seed"))
        if found != seed:
            raise RunFolderError(f"--resume --seed {seed}, but {cfg_path} was run with seed {found}; resume with "
                                 f"--seed {found} or choose another --out")
        if not no_audit:
            continue
        try:
            preset = audit_preset(name, mode)
        except Exception:     # a study that does not import (or has no preset) is reported by its own child
            continue
        for key, want in {**preset, **overrides.get(name, {})}.items():
            if key in doc["config"] and _jsonable(doc["config"][key]) != _jsonable(want):
                raise RunFolderError(f"--resume --{mode}, but {cfg_path} has `{key}` = {doc['config'][key]!r} where "
                                     f"the {mode} audit runs {want!r} (audit.json, which records the mode, is "
                                     "missing); resume with the mode it was run with or choose another --out")


def _finished(run_dir: Path) -> bool:
    """Whether the experiment in ``run_dir`` finished: its summary.json reads (a corrupt one is resumed,
    which rewrites it)."""
    try:
        return isinstance(read_json(run_dir / "summary.json"), dict)
    except (FileNotFoundError, CorruptFileError):
        return False


def _reproduce(mode: str, out: Path, resume: bool, jobs: int | None, seed: int, names: list[str], overrides: dict,
               progress: bool, shared=None, hint: str = "") -> int:
    audit_path = out / "audit.json"
    if resume:
        _check_resumed_folders(out, names, seed, mode, overrides)
    if resume and audit_path.exists():
        audit = read_json(audit_path)
        if not isinstance(audit, dict) or not isinstance(audit.get("experiments"), dict):
            raise CorruptFileError(f"{audit_path}: is not an audit record (no \"experiments\" object)")
        if audit.get("mode") != mode or audit.get("seed") != seed:
            raise RunFolderError(f"--resume with mode={mode!r}, seed={seed} but {out} holds an audit "
                                 f"with mode={audit.get('mode')!r}, seed={audit.get('seed')}")
    else:
        audit = {"mode": mode, "seed": seed, "started": _now(), "experiments": {}}
    audit["environment"] = _environment()
    audit["jobs"] = jobs
    if shared is not None and shared.name not in ("serial", "process"):
        audit["executor"] = {"name": shared.name, "address": shared.address}
    audit["names"] = names
    audit["overrides"] = overrides
    write_json(audit_path, audit)

    t_start = time.perf_counter()
    code = 0
    n = len(names)
    for i, name in enumerate(names, 1):
        run_dir = out / name
        prev = audit["experiments"].get(name, {})
        if resume and _finished(run_dir):
            print(f"[{i}/{n}] {name}: done earlier, skipped", file=sys.stderr, flush=True)
            if not prev:
                audit["experiments"][name] = {"status": "done", "reason": "", "wall_s": None}
            elif prev.get("status") != "done":     # interrupted after it finished: its time is kept
                audit["experiments"][name] = {**prev, "status": "done", "reason": "", "exit_code": 0}
            continue
        if resume and prev.get("status") == "not run":
            # an optional dependency may have appeared since: try again
            pass
        print(f"[{i}/{n}] {name}: running ({mode}) ...", file=sys.stderr, flush=True)
        # time spent on this experiment in earlier sessions, when this one continues their work
        continues = bool(resume and (run_dir / "config.json").exists())
        before = (float(prev.get("wall_s") or 0.0) + float(prev.get("wall_s_before_resume") or 0.0)
                  if continues else 0.0)
        t_child = time.perf_counter()
        try:
            rec = _run_child(name, out, mode, seed, jobs, resume, overrides.get(name, {}), progress,
                             shared.env() if shared is not None else None)
        except KeyboardInterrupt:
            # the interrupt reached this process while it waited: keep the time spent so far for the resume
            rec = {"status": "interrupted", "reason": "interrupted", "exit_code": 130,
                   "wall_s": round(time.perf_counter() - t_child, 2),
                   "resumed": continues}
            if before:
                rec["wall_s_before_resume"] = round(before, 2)
            audit["experiments"][name] = rec
            write_json(audit_path, audit)
            print(f"\ninterrupted during {name}; continue with: {hint}", file=sys.stderr)
            return 130
        if before and rec["resumed"]:
            rec["wall_s_before_resume"] = round(before, 2)
        audit["experiments"][name] = rec
        write_json(audit_path, audit)
        if rec["status"] == "interrupted" or rec["exit_code"] in (-2, 130):
            print(f"\ninterrupted during {name}; continue with: {hint}", file=sys.stderr)
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


def rebuild_report(run_dir: str | Path, *, quiet: bool = False, redraw: bool = False,
                   out: str | Path | None = None) -> int:
    """Rebuild ``report.md`` and ``report.html`` from the folders alone (an audit folder, or a single
    run folder) and write them into ``out`` (default ``run_dir`` itself; another folder for a read-only
    or shared ``run_dir``: its links then point back into ``run_dir``); with ``redraw``, first draw every
    finished run's figures again from its member results (:func:`shld.experiments.study.redraw_figures`).
    Returns 0; 1 when some file could not be read (the report is written with what could, and each
    unreadable one is listed, in it and on stderr); 2 when ``run_dir`` holds no runs or the report cannot
    be written (one line)."""
    from shld.reporting.render import collect, render_html, render_markdown
    from shld.runs import _why

    run_dir = Path(run_dir)
    dest = run_dir if out is None else Path(out)
    if out is not None and (not str(out).strip() or (dest.exists() and not dest.is_dir())):
        print(f"shld report: error: `out` must name a folder for report.md and report.html, got {str(out)!r}"
              f"{' (an existing file)' if str(out).strip() else ''}", file=sys.stderr)
        return 2
    try:
        data = collect(run_dir)
    except (FileNotFoundError, ValueError) as exc:
        print(f"shld report: error: {exc}", file=sys.stderr)
        return 2
    if out is not None:
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"shld report: error: `out` folder {str(dest)!r} cannot be created ({_why(exc)})", file=sys.stderr)
            return 2
        for item in data["experiments"]:       # the report's links lead from `dest` back to the run folders
            item["rel"] = Path(os.path.relpath(item["folder"].resolve(), dest.resolve())).as_posix()
    if redraw:
        from shld.experiments.study import redraw_figures

        for item in data["experiments"]:
            if (item["folder"] / "summary.json").exists():
                try:
                    names = redraw_figures(item["folder"])
                except Exception as exc:      # one run that cannot be redrawn does not stop the others
                    data.setdefault("unreadable", []).append((str(item["folder"]), f"figures not redrawn: {exc}"))
                    continue
                if not quiet:
                    print(f"{item['name']}: redrew {len(names)} figure(s)")
    try:
        write_text(dest / "report.md", render_markdown(data))
        write_text(dest / "report.html", render_html(data))
    except OSError as exc:
        hint = "; pass --out DIR to write the report elsewhere" if out is None else ""
        why = exc.strerror or _why(exc)
        print(f"shld report: error: the report cannot be written into {str(dest)!r} ({why}){hint}",
              file=sys.stderr)
        return 2
    for where, why in data.get("unreadable", []):
        print(f"shld report: could not read {where}: {why}", file=sys.stderr)
    if not quiet:
        print(f"wrote {dest / 'report.md'} and {dest / 'report.html'}")
    return 1 if data.get("unreadable") else 0
