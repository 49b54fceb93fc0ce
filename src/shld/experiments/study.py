"""The ``Study`` protocol: what every experiment implements, and the one driver that runs it.

A study holds science only. It declares

* ``Params`` — a dataclass whose fields (defaults, ``metadata={"help", "min", "gt", "max",
  "choices", "items"}``; ``items`` marks a ``str`` field as a comma-separated list) become ``shld run NAME``
  options; :func:`validate_params` checks them in full, plus the
  study's :meth:`Study.validate`, **before anything touches the disk**;
* :meth:`Study.members` — the sweep: a list of :class:`Member` s. It is called with the results finished
  so far, so a member may depend on others (a control arm sized by the rule arm's budget): the driver
  calls it again until every member it returns is done;
* :meth:`Study.run_member` — one member's work, a function of ``(params, member)`` and its own folder
  (for long members that checkpoint); it returns a dict of numbers and arrays, its *result*;
* :meth:`Study.analyse` — a pure function of the parameters and all results, returning the
  :class:`Summary` (the claims rows and the numbers of ``summary.json``);
* :meth:`Study.figures` — drawn from the parameters, results and summary alone, so ``shld report``
  can redraw them (:func:`redraw_figures`).

The driver (:meth:`Study.run`, called by :func:`shld.experiments.registry.run_experiment` inside the
run-folder contract of :mod:`shld.runs`) owns everything else: members go through the current
executor (:func:`shld.experiments.executor.sweep_map`, ``--jobs``), each finished result is written
atomically to ``members/KEY.json`` as it streams back, a resume reuses the results already written and
re-runs only the rest, and progress is shown by :mod:`shld.progress`. Since a result is a pure
function of ``(params, member)`` (its randomness is derived from the root seed and the member's key by
:func:`shld.seeds.member_seed`), the summary does not depend on the executor, the number of workers or
where the run was interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from shld._validation import check_choice, check_int, check_real
from shld.runs import MEMBERS_DIR, CorruptFileError, RunFolder, atomic_write, read_config, read_json

RESULTS_DIR = MEMBERS_DIR


# ---------------------------------------------------------------------------------------------- params

def _check_type(name: str, value: Any, typ: Any) -> None:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        if value is None and type(None) in args:
            return
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            _check_type(name, value, inner[0])
        return
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise TypeError(f"`{name}` must be a list, got {value!r}")
        inner = [a for a in args if a is not Ellipsis]
        if inner:
            for v in value:
                _check_type(name, v, inner[0])
        return
    if typ is bool:
        if not (isinstance(value, bool) or (isinstance(value, int) and value in (0, 1))):
            raise TypeError(f"`{name}` must be true or false, got {value!r}")
    elif typ is int:
        check_int(name, value)
    elif typ is float:
        check_real(name, value)
    elif typ is str and not isinstance(value, str):
        raise TypeError(f"`{name}` must be a string, got {value!r}")


def _check_range(name: str, value: Any, meta: Mapping) -> None:
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if "choices" in meta:
            check_choice(name, v, meta["choices"])
        if "min" in meta and v < meta["min"]:
            raise ValueError(f"`{name}` must be >= {meta['min']}, got {v!r}")
        if "gt" in meta and not v > meta["gt"]:
            raise ValueError(f"`{name}` must be > {meta['gt']}, got {v!r}")
        if "max" in meta and v > meta["max"]:
            raise ValueError(f"`{name}` must be <= {meta['max']}, got {v!r}")


def check_params(params: Any) -> None:
    """Check a params dataclass against its declarations, touching nothing on disk: each field's type,
    the ranges in its metadata (``min``, ``gt``, ``max``, ``choices``) and ``seed >= 0``. Raises
    ``ValueError``/``TypeError`` naming the parameter, the value and what is allowed."""
    hints = typing.get_type_hints(type(params))
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if f.name in hints:
            _check_type(f.name, value, hints[f.name])
        _check_range(f.name, value, f.metadata)
        if f.name == "seed" and value is not None:
            check_int("seed", value, minimum=0)


# --------------------------------------------------------------------------------------------- members

@dataclass(frozen=True)
class Member:
    """One independent unit of a sweep.

    ``key`` names it (unique in the study, letters, digits and ``-_.=``: it names its result file);
    ``task`` holds what it needs beyond the params (JSON-able); ``folder`` is its working folder
    relative to the run folder (``"."``: the run folder itself, for a study of one member), used only
    by members that checkpoint or write metrics."""

    key: str
    task: dict = field(default_factory=dict)
    folder: str | None = None

    def __post_init__(self):
        if not self.key or not all(c.isalnum() or c in "-_.=" for c in self.key) or self.key.startswith("."):
            raise ValueError(f"`key` of a Member must be a non-empty name of letters, digits and -_.=, "
                             f"got {self.key!r}")


@dataclass
class MemberContext:
    """What :meth:`Study.run_member` gets besides the params and the member: its folder (made inside the
    locked run folder), whether the run is a resume, whether to show progress, and the run's identity
    (checkpoints written through :meth:`run_folder` carry it and are checked against it)."""

    path: Path
    resume: bool = False
    progress: bool = False
    identity: dict | None = None

    def run_folder(self, config: dict | None = None) -> RunFolder:
        """The member's folder as a :class:`~shld.runs.RunFolder` (made if missing; a sub-folder gets its
        own ``config.json`` with ``config``)."""
        if self.path.exists() and (self.path / "config.json").exists() and config is None:
            return RunFolder(self.path, identity=self.identity)
        return RunFolder.create(self.path, config or {}, exist_ok=True, identity=self.identity)


@dataclass
class Summary:
    """What :meth:`Study.analyse` returns: the claims rows (:func:`shld.claims.claim_row`), the other
    numbers of ``summary.json`` (key order kept) and optional tables for people and spreadsheets
    (file name → rows, written as CSV files in the run folder by the driver)."""

    claims: list[dict]
    numbers: dict
    tables: dict[str, list[dict]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**self.numbers, "claims": self.claims}


class Study:
    """Base class of every experiment (see the module docstring for the protocol)."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    Params: ClassVar[type]
    #: audit presets: mode ("quick", "full") → parameter overrides used by ``shld reproduce``
    audit: ClassVar[dict] = {}

    # -- science, implemented by each study
    def validate(self, params) -> None:
        """Checks the field metadata cannot express; raise ``ValueError`` naming the parameter."""

    def members(self, params, done: Mapping[str, dict]) -> list[Member]:
        raise NotImplementedError

    def run_member(self, params, member: Member, ctx: MemberContext) -> dict:
        raise NotImplementedError

    def analyse(self, params, results: Mapping[str, dict]) -> Summary:
        raise NotImplementedError

    def figures(self, params, results: Mapping[str, dict], summary: dict, figures: Path) -> None:
        """Draw the study's figures into ``figures`` (through :mod:`shld.plotting`)."""

    def report(self, summary: dict) -> None:
        """Print a short table of ``summary`` for the terminal (optional)."""

    # -- the driver
    def validate_params(self, params) -> None:
        if not isinstance(params, self.Params):
            raise TypeError(f"`params` of study {self.name!r} must be a {self.Params.__name__}, "
                            f"got {type(params).__name__}")
        check_params(params)
        self.validate(params)

    def run(self, params, run: RunFolder, *, resume: bool = False, progress: bool = True) -> dict:
        """Run every member not done yet (through the current executor), then analyse and draw."""
        from shld.experiments.executor import sweep_map
        from shld.progress import progress_bar

        results = load_results(run.path) if resume else {}
        serial = _is_serial()
        bar = None
        # a built-in study is looked up by name in the worker; one registered by the caller's code is not in a
        # worker's registry, so it travels itself (pickled with each member)
        from shld.experiments.registry import STUDY_MODULES

        who = self.name if self.name in STUDY_MODULES else self
        # everything the driver creates is tracked by `run`, so that a fresh run failing before it holds any
        # work is undone completely (shld.runs.open_run)
        run._track(run.path / RESULTS_DIR)
        try:
            while True:
                members = self.members(params, results)
                _check_unique(members, params, self.name)
                todo = [m for m in members if m.key not in results]
                if not todo:
                    break
                if bar is None:
                    bar = progress_bar(len(members), self.name, "member", enabled=progress and len(members) > 1,
                                       initial=len(members) - len(todo))
                else:
                    bar.total = len(members)    # members that depend on finished ones appear later
                for m in todo:
                    _track_member_folder(run, m)
                # an absolute path: a worker on another machine (or in another working directory) writes a
                # member's checkpoints into this run folder, on a shared filesystem
                items = [(who, dataclasses.asdict(params), m, str(run.path.resolve()), resume,
                          progress and serial, run.identity) for m in todo]
                for m, (res, wall) in zip(todo, sweep_map(_run_member_task, items)):
                    if not isinstance(res, dict):
                        raise TypeError(f"study {self.name!r}: run_member({m.key!r}) returned "
                                        f"{type(res).__name__}, not a dict")
                    # kept as stored, so a resumed run and an uninterrupted one analyse the same values
                    run._track(result_path(run.path, m.key))
                    results[m.key] = save_result(run.path, m.key, res, wall_s=wall)
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()         # before any error line is printed, so that it starts a line of its own
        results = {m.key: results[m.key] for m in members}
        analysed = self.analyse(params, results)
        for name, rows in analysed.tables.items():
            write_table(run._track(run.path / name), rows)
        summary = analysed.to_dict()
        # summary.json last: a run whose figures failed is not finished (a resume draws them again)
        self.figures(params, results, summary, run.figures)
        run.write_summary(summary)
        self.report(summary)
        return summary


def _is_serial() -> bool:
    from shld.experiments.executor import SerialExecutor, current_executor

    return isinstance(current_executor(), SerialExecutor)


def _track_member_folder(run: RunFolder, member: Member) -> None:
    """Track the outermost folder of ``member``'s working folder that does not exist yet: the member (in
    this process or a worker) fills it, so it is this run's with all its contents."""
    if member.folder in (None, "."):
        return
    missing = None
    p = run.path / member.folder
    while p != run.path and p != p.parent and not p.exists():
        missing, p = p, p.parent
    if missing is not None and p == run.path:
        run._track(missing, tree=True)


def _list_items(value: Any) -> list | None:
    """The items of a list-valued parameter (a list, or a comma-separated string), numbers as floats where
    they parse; ``None`` for a parameter that is not a list."""
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str) and "," in value:
        items = [x.strip() for x in value.split(",")]
    else:
        return None
    out = []
    for x in items:
        try:
            out.append(float(x) if not isinstance(x, bool) else x)
        except (TypeError, ValueError):
            out.append(x)
    return out


def _same(a: Any, b: Any) -> bool:
    try:
        return not isinstance(a, bool) and not isinstance(b, bool) and float(a) == float(b)
    except (TypeError, ValueError):
        return a == b


def _check_unique(members: list[Member], params: Any = None, study: str = "") -> None:
    """Refuse two members with one key, naming the list parameter and the values behind them where one
    can be found (two equal values, or two values that the key's formatting makes equal)."""
    seen: dict[str, Member] = {}
    for m in members:
        if m.key not in seen:
            seen[m.key] = m
            continue
        first = seen[m.key]
        where = f"study {study!r}: " if study else ""
        why = f"tasks {first.task!r} and {m.task!r}"
        for f in dataclasses.fields(params) if dataclasses.is_dataclass(params) else ():
            items = _list_items(getattr(params, f.name))
            if not items:
                continue
            for k in first.task:
                a, b = first.task.get(k), m.task.get(k)
                if (isinstance(a, (int, float, str)) and isinstance(b, (int, float, str))
                        and any(_same(a, x) for x in items) and any(_same(b, x) for x in items)):
                    why = f"from `{f.name}` = {getattr(params, f.name)!r}: the values {a!r} and {b!r}"
                    break
            else:
                continue
            break
        raise ValueError(f"{where}two members share the key {m.key!r} ({why}); each member needs a key "
                         "of its own: give distinct values")


def _run_member_task(item) -> tuple[dict, float]:
    """Executor task: one member of a study, given by name (a built-in one) or as the Study itself (one
    registered by the caller's code, which a worker's registry does not hold) (module level, so worker
    processes can run it);
    returns its result and its wall time in seconds (kept beside the result, never in it, so results
    and summaries do not depend on timing)."""
    import time

    from shld.experiments.registry import get_study

    who, params, member, run_path, resume, progress, identity = item
    study = who if isinstance(who, Study) else get_study(who)
    p = study.Params(**params)
    folder = Path(run_path) if member.folder in (None, ".") else Path(run_path) / member.folder
    ctx = MemberContext(folder, resume=resume, progress=progress, identity=identity)
    t0 = time.perf_counter()
    result = study.run_member(p, member, ctx)
    return result, time.perf_counter() - t0


# -------------------------------------------------------------------------------------- result files

def _encode(x: Any) -> Any:
    """JSON form of a result: arrays as {"__array__": dtype, "shape", "data"}; floats exactly (repr)."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biufU":
            raise TypeError(f"a member result holds an array of dtype {x.dtype}; use numbers or strings")
        return {"__array__": x.dtype.str, "shape": list(x.shape), "data": x.ravel().tolist()}
    if isinstance(x, dict):
        return {str(k): _encode(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_encode(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"a member result holds a {type(x).__name__}; use numbers, strings, lists, dicts or "
                    "numpy arrays")


def _decode(x: Any) -> Any:
    if isinstance(x, dict):
        if "__array__" in x and set(x) == {"__array__", "shape", "data"}:
            return np.array(x["data"], dtype=np.dtype(x["__array__"])).reshape(x["shape"])
        return {k: _decode(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_decode(v) for v in x]
    return x


def write_table(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts with the same keys) atomically as a CSV file (floats exactly, by repr)."""
    import csv

    fields = list(rows[0]) if rows else []

    def write(fh):
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows({k: repr(float(v)) if isinstance(v, (float, np.floating)) else v for k, v in r.items()}
                    for r in rows)

    return atomic_write(path, write)


def result_path(run_path: Path | str, key: str) -> Path:
    return Path(run_path) / RESULTS_DIR / f"{key}.json"


def save_result(run_path: Path | str, key: str, result: dict, *, wall_s: float | None = None) -> dict:
    """Write one member's result atomically to ``members/KEY.json`` (with its wall time, if given);
    returns the result as stored, i.e. as :func:`load_results` will read it back."""
    path = result_path(run_path, key)
    path.parent.mkdir(exist_ok=True)
    encoded = _encode(result)
    doc = {"key": key, "result": encoded}
    if wall_s is not None:
        doc["wall_s"] = round(float(wall_s), 3)
    text = json.dumps(doc, allow_nan=True)
    atomic_write(path, lambda fh: fh.write(text))
    return _decode(encoded)


def member_wall_times(run_path: Path | str) -> dict[str, float]:
    """Each finished member's wall time in seconds (key → seconds), from ``members/*.json``."""
    out = {}
    for path in sorted((Path(run_path) / RESULTS_DIR).glob("*.json")):
        doc = read_json(path)
        if isinstance(doc, dict) and isinstance(doc.get("wall_s"), (int, float)):
            out[path.stem] = float(doc["wall_s"])
    return out


def load_results(run_path: Path | str) -> dict[str, dict]:
    """The finished members' results in ``run_path`` (key → result). A result file that cannot be read
    raises :class:`~shld.runs.CorruptFileError` naming it (remove it to re-run that member)."""
    folder = Path(run_path) / RESULTS_DIR
    out: dict[str, dict] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            doc = read_json(path)
        except CorruptFileError as exc:
            raise CorruptFileError(f"{exc}; remove it to re-run that member") from None
        if not isinstance(doc, dict) or doc.get("key") != path.stem or not isinstance(doc.get("result"), dict):
            raise CorruptFileError(f"{path}: not a member result of this run (expected {{\"key\": "
                                   f"{path.stem!r}, \"result\": {{...}}}}); remove it to re-run that member")
        out[path.stem] = _decode(doc["result"])
    return out


def redraw_figures(run_path: Path | str) -> list[str]:
    """Redraw a finished run's figures from its folder alone (config, member results, summary);
    returns the names of the figures written."""
    from shld.experiments.registry import get_study

    run_path = Path(run_path)
    cfg = read_config(run_path)["config"]
    study = get_study(cfg.get("experiment", ""))
    if not isinstance(study, Study):
        raise ValueError(f"study {study.name!r} does not implement the Study protocol's figures()")
    names = {f.name for f in dataclasses.fields(study.Params)}
    params = study.Params(**{k: v for k, v in cfg.items() if k in names})
    results = load_results(run_path)
    summary = read_json(run_path / "summary.json")
    figures = run_path / "figures"
    figures.mkdir(exist_ok=True)
    before = {p.name: p.stat().st_mtime_ns for p in figures.iterdir()}
    study.figures(params, results, summary, figures)
    return sorted(p.name for p in figures.iterdir() if before.get(p.name) != p.stat().st_mtime_ns)


__all__ = ["Study", "Member", "MemberContext", "Summary", "check_params", "save_result", "load_results",
           "result_path", "member_wall_times", "redraw_figures", "RESULTS_DIR"]
