"""The ``shld`` command line: a thin typed layer over :mod:`shld.experiments`.

    shld run NAME [--param value ...] [--seed S] [--out DIR] [--resume] [--executor E] [--jobs N] [--address A]
    shld list                      experiments and landscapes
    shld reproduce [--quick|--full] [--out DIR] [--resume] [--executor E] [--jobs N] [--address A]
    shld report RUN_DIR [--redraw]

Options of ``shld run NAME`` come from the experiment's parameter dataclass;
``shld run NAME --help`` lists them with their defaults. ``--executor serial|process|dask|ray``,
``--jobs`` and ``--address`` choose where sweep members run (:mod:`shld.experiments.executor`).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import typing
from pathlib import Path

from shld.experiments.registry import available_studies, get_study, run_experiment
from shld.runs import RunFolderError


def _parse_bool(text: str) -> bool:
    t = text.lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _literal(text: str) -> str:
    """``text`` as an argparse help string: argparse %-formats help ("30 %" would raise), so % is doubled."""
    return text.replace("%", "%%")


def _add_param_options(parser: argparse.ArgumentParser, params_cls: type) -> None:
    hints = typing.get_type_hints(params_cls)
    for f in dataclasses.fields(params_cls):
        typ = hints.get(f.name, str)
        origin = typing.get_origin(typ)
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
            typ = args[0]
            origin = typing.get_origin(typ)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs: dict = {"dest": f.name, "default": argparse.SUPPRESS,
                        "help": _literal(f"{f.metadata.get('help', '')} (default: {default})")}
        if typ is bool:
            kwargs["type"] = _parse_bool
            kwargs["metavar"] = "BOOL"
        elif origin in (list, tuple):
            inner = (typing.get_args(typ) or (float,))[0]
            kwargs["type"] = inner if inner in (int, float, str) else float
            kwargs["nargs"] = "+"
        elif typ in (int, float, str):
            kwargs["type"] = typ
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def _add_executor_options(parser: argparse.ArgumentParser) -> None:
    """--executor/--jobs/--address: where sweep members run (docs/scale.md)."""
    from shld.experiments.executor import EXECUTORS

    parser.add_argument("--executor", dest="sweep_executor", default=None, choices=EXECUTORS,
                        help="engine for sweep members (default: serial, or process with --jobs N > 1)")
    parser.add_argument("--jobs", dest="sweep_jobs", type=int, default=None, metavar="N",
                        help="worker processes (process), or the size of a local Dask/Ray cluster "
                             "(default: the CPU count)")
    parser.add_argument("--address", dest="sweep_address", default=None, metavar="ADDR",
                        help="an existing cluster: a Dask scheduler (tcp://host:8786) or a Ray cluster "
                             "(auto, host:6379, ray://host:10001); needs --executor dask or ray")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shld",
        description="Stochastic Harmonic Learning Dynamics: Langevin ensembles, Fokker-Planck "
                    "solvers, training diagnostics and the audit of the seed's claims.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run_p = sub.add_parser("run", help="run one experiment into a run folder",
                           description="Run one experiment. `shld run NAME --help` lists its options.")
    run_sub = run_p.add_subparsers(dest="experiment", metavar="NAME")
    for name in available_studies():
        exp = get_study(name)
        first = exp.help.splitlines()[0] if exp.help else name
        p = run_sub.add_parser(name, help=_literal(first), description=exp.help,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_param_options(p, exp.Params)
        p.add_argument("--out", default=None, help="run folder (default: runs/NAME)")
        p.add_argument("--resume", action="store_true",
                       help="continue an interrupted run in --out from its checkpoint")
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        _add_executor_options(p)

    sub.add_parser("list", help="list experiments and landscapes")

    rep = sub.add_parser("reproduce", help="run the claims audit and write report.md/report.html")
    mode = rep.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, minutes (default)")
    mode.add_argument("--full", action="store_true", help="full sizes")
    rep.add_argument("--out", default="shld-runs/reproduce", help="audit folder")
    rep.add_argument("--resume", action="store_true", help="continue an interrupted audit")
    _add_executor_options(rep)
    rep.add_argument("--seed", type=int, default=0, help="root seed")

    report = sub.add_parser("report", help="rebuild the report from run folders alone")
    report.add_argument("run_dir", help="an audit folder or a single run folder")
    report.add_argument("--redraw", action="store_true",
                        help="draw every run's figures again from its member results first")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "list":
        from shld.landscapes import available_landscapes

        print("experiments:", ", ".join(available_studies()))
        print("landscapes: ", ", ".join(available_landscapes()))
        return 0
    if args.command == "run":
        if args.experiment is None:
            parser.parse_args(["run", "--help"])
        return _run(args)
    if args.command == "reproduce":
        from shld.reporting.audit import reproduce

        return reproduce(mode="full" if args.full else "quick", out=args.out, resume=args.resume,
                         jobs=args.sweep_jobs, seed=args.seed, executor=args.sweep_executor,
                         address=args.sweep_address)
    if args.command == "report":
        from shld.reporting.audit import rebuild_report

        return rebuild_report(args.run_dir, redraw=args.redraw)
    return 1


def _run_out(args) -> Path | None:
    """The run folder ``shld run`` uses (``None`` when ``--out`` cannot name one)."""
    if args.out is None:
        return Path("runs") / args.experiment
    return Path(args.out) if str(args.out).strip() else None


def _resume_command(args, out: Path) -> str:
    """The command that continues this run: its folder, --resume, and the executor options given."""
    argv = ["shld", "run", args.experiment, "--out", str(out), "--resume"]
    for flag, value in (("--executor", args.sweep_executor), ("--jobs", args.sweep_jobs),
                        ("--address", args.sweep_address)):
        if value is not None:
            argv += [flag, str(value)]
    return shlex.join(argv)


def _run(args) -> int:
    import contextlib

    from shld.experiments.executor import executor_from_args, use_executor

    opts = {k: v for k, v in vars(args).items()
            if k not in ("command", "experiment", "out", "resume", "no_progress", "sweep_executor",
                         "sweep_jobs", "sweep_address")}
    executor = None       # no flag: the environment (SHLD_EXECUTOR/SHLD_JOBS/SHLD_ADDRESS) or serial
    try:
        if (args.sweep_executor, args.sweep_jobs, args.sweep_address) != (None, None, None):
            executor = executor_from_args(args.sweep_executor, args.sweep_jobs, args.sweep_address)
        if args.sweep_address:
            executor.start()      # a cluster that does not answer fails here, before the run folder
    except (ValueError, TypeError, ModuleNotFoundError, ConnectionError) as exc:
        # a bad choice, a missing extra, or nothing at --address
        print(f"shld run {args.experiment}: error: {exc}", file=sys.stderr)
        return 2
    out = _run_out(args)
    had_config = out is not None and (out / "config.json").exists()
    try:
        with use_executor(executor) if executor is not None else contextlib.nullcontext():
            run, summary = run_experiment(args.experiment, args.out, resume=args.resume,
                                          progress=not args.no_progress, **opts)
    except (ValueError, TypeError, FileExistsError, RunFolderError) as exc:
        # bad parameters, or a run folder that cannot be used (busy, foreign, corrupt, not writable)
        print(f"shld run {args.experiment}: error: {exc}", file=sys.stderr)
        if (not args.resume and not had_config and not isinstance(exc, RunFolderError)
                and out is not None and (out / "config.json").exists()):
            # a fresh run that failed after it computed something: its work is kept (shld.runs.open_run)
            print(f"shld run {args.experiment}: the work done before the error is kept in {str(out)!r}; once the "
                  f"cause is fixed, continue with: {_resume_command(args, out)} (the parameters of a run "
                  "cannot change on resume: for other parameters choose another --out)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if out is not None and (out / "config.json").exists():
            print(f"\nshld run {args.experiment}: interrupted; continue with: {_resume_command(args, out)}",
                  file=sys.stderr)
        else:
            print(f"\nshld run {args.experiment}: interrupted before the run started; nothing to resume",
                  file=sys.stderr)
        return 130
    finally:
        if hasattr(executor, "close"):
            executor.close()      # a local Dask/Ray cluster this run started
    print(f"\nrun folder: {run.path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
