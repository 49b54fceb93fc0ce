"""Experiments registered by name; the CLI builds ``shld run NAME`` options from them.

An experiment is a function ``fn(params, run: RunFolder, *, resume: bool, progress: bool)
-> dict`` (the summary) together with a dataclass ``params`` type whose fields (with
defaults and ``metadata={"help": ...}``) become command-line options. Every params
dataclass has ``seed`` and the driver handles ``--out`` and ``--resume``.

:func:`run_experiment` checks the parameters in full (:func:`validate_params`: the fields' types,
the ranges in their metadata — ``min``, ``gt``, ``max``, ``choices`` — and the experiment's own
``validate`` hook) before anything touches the disk, then runs the experiment inside
:func:`shld.runs.open_run`, the run-folder contract (lock, identity, no deletion of what the call did
not create; ``docs/runs.md``).
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shld._validation import check_choice, check_int, check_real
from shld.runs import RunFolder, RunFolderError, _jsonable, check_out, open_run, read_config


@dataclass(frozen=True)
class Experiment:
    name: str
    fn: Callable[..., dict]
    params: type
    help: str
    validate: Callable[[Any], None] | None = None


_EXPERIMENTS: dict[str, Experiment] = {}

#: modules imported on first lookup so their experiments register themselves
_MODULES = [
    "shld.experiments.double_well",
    "shld.experiments.high_dim",
    "shld.experiments.kramers",
    "shld.experiments.grokking",
    "shld.experiments.double_descent",
    "shld.experiments.lr_selection",
    "shld.experiments.escape",
    "shld.experiments.batch_scaling",
    "shld.experiments.theorems",
]
_loaded = False


def register_experiment(name: str, params: type, help: str = "",
                        validate: Callable[[Any], None] | None = None):
    """Register ``fn`` as experiment ``name``; ``validate(params)`` (optional) raises ``ValueError`` or
    ``TypeError`` for parameters the field metadata cannot express; it runs before the run folder exists."""

    def deco(fn):
        _EXPERIMENTS[name] = Experiment(name, fn, params, help or (fn.__doc__ or "").strip(), validate)
        return fn

    return deco


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            # a module not written yet, or an optional dependency (torch) missing
            if exc.name not in (mod, "torch"):
                raise
    _loaded = True


def available_experiments() -> list[str]:
    _load_all()
    return sorted(_EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    _load_all()
    if name not in _EXPERIMENTS:
        raise ValueError(f"`name` must be one of {available_experiments()}, got {name!r}")
    return _EXPERIMENTS[name]


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


def _check_range(name: str, value: Any, meta: dict) -> None:
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


def validate_params(exp: Experiment, params: Any) -> None:
    """Check ``params`` of ``exp`` in full, touching nothing on disk: each field's type, the ranges
    declared in its metadata (``min``, ``gt``, ``max``, ``choices``), ``seed >= 0``, then the
    experiment's ``validate`` hook. Raises ``ValueError``/``TypeError`` naming the parameter."""
    hints = typing.get_type_hints(exp.params)
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if f.name in hints:
            _check_type(f.name, value, hints[f.name])
        _check_range(f.name, value, dict(f.metadata))
        if f.name == "seed" and value is not None:
            check_int("seed", value, minimum=0)
    if exp.validate is not None:
        exp.validate(params)


def _resume_params(exp: Experiment, out: Path, overrides: dict) -> dict | None:
    """The parameters a ``--resume`` continues with: the stored ones, which ``overrides`` must agree
    with (``None`` when ``out`` holds no config.json, i.e. nothing to resume)."""
    if not (out / "config.json").exists():
        return None
    path = out / "config.json"
    doc = read_config(out)
    identity = doc.get("identity") if isinstance(doc.get("identity"), dict) else {}
    study = identity.get("study", doc["config"].get("experiment"))
    if study != exp.name:
        raise RunFolderError(f"--resume: {path} is a run of study {study!r}, not {exp.name!r}; choose "
                             "another --out")
    fields = {f.name for f in dataclasses.fields(exp.params)}
    stored = {k: v for k, v in doc["config"].items() if k in fields}
    for k, v in overrides.items():
        if k in stored and _jsonable(stored[k]) != _jsonable(v):
            raise RunFolderError(f"--resume: parameter `{k}` is {v!r} here but {stored[k]!r} in {path}; leave it "
                                 "out to continue with the stored value, or choose another --out")
    return {**overrides, **stored}


def run_experiment(name: str, out: Path | str | None = None, *, resume: bool = False,
                   progress: bool = True, **overrides: Any) -> tuple[RunFolder, dict]:
    """Run ``name`` with ``overrides`` of its default params into folder ``out``.

    The parameters are validated before the folder is touched. With ``resume=True`` the config
    stored in ``out`` is reused (overrides must agree, and the study must be ``name``) and the
    experiment continues from its checkpoint; a missing or empty ``out`` starts fresh. The folder is
    locked for the whole run (:func:`shld.runs.open_run`). Raises ``ValueError``/``TypeError`` for bad
    parameters and :class:`shld.runs.RunFolderError` for a folder that cannot be used.
    """
    exp = get_experiment(name)
    fields = {f.name for f in dataclasses.fields(exp.params)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for experiment {name!r}; "
                         f"valid: {sorted(fields)}")
    out = check_out(out if out is not None else Path("runs") / name)
    resolved = _resume_params(exp, out, overrides) if resume else None
    params = exp.params(**(overrides if resolved is None else resolved))
    validate_params(exp, params)
    with open_run(out, name, dataclasses.asdict(params), resume=resume) as run:
        summary = exp.fn(params, run, resume=resume, progress=progress)
        if summary is not None:
            run.write_summary(summary)
    return run, summary
