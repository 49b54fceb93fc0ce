"""The ``shld`` command line: a thin typed layer over :mod:`shld.experiments`.

    shld run NAME [--param value ...] [--seed S] [--out DIR] [--resume] [--executor E] [--jobs N] [--address A]
    shld list                      experiments and landscapes
    shld reproduce [--quick|--full] [--out DIR] [--resume] [--executor E] [--jobs N] [--address A]
    shld report RUN_DIR [--redraw] [--out DIR]

Options of ``shld run NAME`` come from the experiment's parameter dataclass;
``shld run NAME --help`` lists them with their defaults. A list parameter (a ``list`` field, or a
``str`` field declared with ``metadata={"items": True}``, a comma-separated list its study splits) takes
its items separated by spaces, by commas or both (``--dims 10 100``, ``--dims 10,100``); an empty item
(``2,,3``) is refused. Options must be
spelled out in full (no abbreviations). ``--executor serial|process|dask|ray``, ``--jobs`` and
``--address`` choose where sweep members run (:mod:`shld.experiments.executor`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
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


class _ListAction(argparse.Action):
    """A list option: items separated by spaces, commas or both (``--dims 10 100``, ``--dims 10,100``),
    each converted by ``item_type``; an empty item (``2,,3``, ``""``) is refused. With ``join`` the items
    are stored as one comma-separated string (a ``str`` parameter that its study splits)."""

    def __init__(self, option_strings, dest, item_type=str, join=False, **kwargs):
        super().__init__(option_strings, dest, nargs="+", **kwargs)
        self.item_type, self.join = item_type, join

    def __call__(self, parser, namespace, values, option_string=None):
        items = []
        for token in values:
            for part in token.split(","):
                part = part.strip()
                if not part:
                    raise argparse.ArgumentError(
                        self, f"empty item in {' '.join(values)!r}: separate the values by spaces or by single "
                              f"commas, e.g. {option_string} 2 3 or {option_string} 2,3")
                try:
                    items.append(self.item_type(part))
                except ValueError:
                    raise argparse.ArgumentError(
                        self, f"invalid {self.item_type.__name__} value: {part!r}") from None
        setattr(namespace, self.dest, ",".join(map(str, items)) if self.join else items)


def _show_default(default) -> str:
    if isinstance(default, (list, tuple)):
        return " ".join(map(str, default))
    return str(default)


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
        text = f.metadata.get("help", "")
        kwargs: dict = {"dest": f.name, "default": argparse.SUPPRESS,
                        "help": _literal(f"{text} (default: {_show_default(default)})")}
        if typ is bool:
            kwargs["type"] = _parse_bool
            kwargs["metavar"] = "BOOL"
        elif origin in (list, tuple):
            inner = (typing.get_args(typ) or (float,))[0]
            kwargs["action"] = _ListAction
            kwargs["item_type"] = inner if inner in (int, float, str) else float
        elif typ is str and f.metadata.get("items"):
            kwargs["action"] = _ListAction
            kwargs["join"] = True
        elif typ in (int, float, str):
            kwargs["type"] = typ
        if "choices" in f.metadata and "action" not in kwargs:
            kwargs["choices"] = f.metadata["choices"]     # a list's items are checked by validate_params
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
        prog="shld", allow_abbrev=False,
        description="Stochastic Harmonic Learning Dynamics: Langevin ensembles, Fokker-Planck "
                    "solvers, training diagnostics and the audit of the seed's claims.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run_p = sub.add_parser("run", help="run one experiment into a run folder", allow_abbrev=False,
                           description="Run one experiment. `shld run NAME --help` lists its options.")
    run_sub = run_p.add_subparsers(dest="experiment", metavar="NAME", required=True)
    for name in available_studies():
        exp = get_study(name)
        first = exp.help.splitlines()[0] if exp.help else name
        p = run_sub.add_parser(name, help=_literal(first), description=exp.help, allow_abbrev=False,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_param_options(p, exp.Params)
        p.add_argument("--out", default=None, help="run folder (default: runs/NAME)")
        p.add_argument("--resume", action="store_true",
                       help="continue an interrupted run in --out from its checkpoint")
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        _add_executor_options(p)

    sub.add_parser("list", help="list experiments and landscapes", allow_abbrev=False)

    rep = sub.add_parser("reproduce", help="run the claims audit and write report.md/report.html",
                         allow_abbrev=False)
    mode = rep.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, minutes (default)")
    mode.add_argument("--full", action="store_true", help="full sizes")
    rep.add_argument("--out", default="shld-runs/reproduce", help="audit folder")
    rep.add_argument("--resume", action="store_true", help="continue an interrupted audit")
    _add_executor_options(rep)
    rep.add_argument("--seed", type=int, default=0, help="root seed")

    report = sub.add_parser("report", help="rebuild the report from run folders alone", allow_abbrev=False)
    report.add_argument("run_dir", help="an audit folder or a single run folder")
    report.add_argument("--redraw", action="store_true",
                        help="draw every run's figures again from its member results first")
    report.add_argument("--out", default=None, metavar="DIR",
                        help="write report.md and report.html into DIR (default: RUN_DIR itself; use it for a "
                             "read-only or shared RUN_DIR)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``shld`` command; returns its exit code (0 ok, 1 a failure, 2 bad arguments or an unusable
    folder, 130 interrupted, 141 stdout closed by its reader)."""
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # the reader of stdout went away (`shld list | head -1`): stop quietly, as a tool ended by SIGPIPE,
        # and keep the interpreter's last flush from failing again on the closed pipe
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    except KeyboardInterrupt:
        print("\nshld: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
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
        return _run(args)
    if args.command == "reproduce":
        from shld.reporting.audit import reproduce

        return reproduce(mode="full" if args.full else "quick", out=args.out, resume=args.resume,
                         jobs=args.sweep_jobs, seed=args.seed, executor=args.sweep_executor,
                         address=args.sweep_address)
    if args.command == "report":
        from shld.reporting.audit import rebuild_report

        return rebuild_report(args.run_dir, redraw=args.redraw, out=args.out)
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

    from shld.experiments.executor import MemberFailedError, executor_from_args, use_executor

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
    except MemberFailedError as exc:
        # a member failed on every attempt in a worker: one line; the members before it are kept
        print(f"shld run {args.experiment}: error: {exc}", file=sys.stderr)
        if out is not None and (out / "config.json").exists():
            print(f"shld run {args.experiment}: once the cause is fixed, continue with: {_resume_command(args, out)}",
                  file=sys.stderr)
        return 1
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
