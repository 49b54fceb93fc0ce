"""Run one audited experiment in its own process (used by :func:`shld.reporting.audit.reproduce`).

    python -m shld.reporting._child --name NAME --out RUN_DIR --mode quick --seed 0 [--resume]
        [--overrides JSON] --status STATUS_JSON [--parent PID]

Writes ``STATUS_JSON`` = {"status": "done" | "not run" | "failed", "reason": ...}, and after a failure
the traceback beside it (``NAME.error.txt`` in the status folder, never in the run folder, whose
contents a ``--resume`` must be able to use as they are). Exit codes:
0 done, 3 not run (module, optional dependency or AUDIT missing), 1 failed. Running each
experiment in a fresh process gives a clean per-experiment peak memory (``wait4`` rusage) and
keeps one experiment's crash from taking the audit down. With ``--parent PID`` the process exits
as soon as that parent dies (SIGKILL included; :func:`shld._process.die_with_parent`), so it never
keeps writing into a run folder that a later ``--resume`` will use.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from shld.runs import RunFolderError, write_json, write_text


def error_path(status: Path, name: str) -> Path:
    """Where the traceback of study ``name``'s failure goes: beside its status file."""
    return Path(status).with_name(f"{name}.error.txt")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m shld.reporting._child", allow_abbrev=False)
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", required=True, choices=["quick", "full"])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--overrides", default="{}")
    ap.add_argument("--status", required=True)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--parent", type=int, default=None, help="exit when this process dies")
    args = ap.parse_args(argv)
    if args.parent is not None:
        from shld._process import die_with_parent

        die_with_parent(args.parent)
    status = Path(args.status)

    def done(state: str, reason: str = "", code: int = 0) -> int:
        write_json(status, {"status": state, "reason": reason})
        return code

    from shld.experiments.registry import audit_preset, get_study, run_experiment

    # this process runs one study: get_study imports its module only (others may import torch, which
    # costs seconds per process)
    try:
        get_study(args.name)
    except ModuleNotFoundError as exc:
        return done("not run", f"import failed: {exc}", 3)
    except ValueError as exc:
        return done("not run", str(exc), 3)
    except Exception as exc:  # an import error inside the module is a failure, not a skip
        return done("failed", f"import raised {exc!r}", 1)
    try:
        preset = audit_preset(args.name, args.mode)
    except KeyError as exc:
        return done("not run", str(exc.args[0]), 3)
    overrides = {**preset, "seed": args.seed, **json.loads(args.overrides)}
    try:
        run_experiment(args.name, args.out, resume=args.resume, progress=not args.no_progress, **overrides)
    except KeyboardInterrupt:
        return done("interrupted", "interrupted", 130)
    except RunFolderError as exc:
        # an unusable folder (busy, foreign, corrupt): one line, and nothing written into it
        print(f"{args.name}: error: {exc}", file=sys.stderr)
        return done("failed", f"{type(exc).__name__}: {exc}", 1)
    except Exception as exc:
        tb = traceback.format_exc()
        write_text(error_path(status, args.name), tb)
        print(tb, file=sys.stderr)
        return done("failed", f"{type(exc).__name__}: {exc}", 1)
    return done("done")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
