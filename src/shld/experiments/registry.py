"""Experiments registered by name; the CLI builds ``shld run NAME`` options from them.

An experiment is a function ``fn(params, run: RunFolder, *, resume: bool, progress: bool)
-> dict`` (the summary) together with a dataclass ``params`` type whose fields (with
defaults and ``metadata={"help": ...}``) become command-line options. Every params
dataclass has ``seed`` and the driver handles ``--out`` and ``--resume``.
"""

from __future__ import annotations

import dataclasses
import importlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shld.runs import RunFolder, read_json, write_json


@dataclass(frozen=True)
class Experiment:
    name: str
    fn: Callable[..., dict]
    params: type
    help: str


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


def register_experiment(name: str, params: type, help: str = ""):
    def deco(fn):
        _EXPERIMENTS[name] = Experiment(name, fn, params, help or (fn.__doc__ or "").strip())
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


def run_experiment(name: str, out: Path | str | None = None, *, resume: bool = False,
                   progress: bool = True, **overrides: Any) -> tuple[RunFolder, dict]:
    """Run ``name`` with ``overrides`` of its default params into folder ``out``.

    With ``resume=True`` the config stored in ``out`` is reused (overrides must agree) and
    the experiment continues from its checkpoint.
    """
    exp = get_experiment(name)
    fields = {f.name for f in dataclasses.fields(exp.params)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for experiment {name!r}; "
                         f"valid: {sorted(fields)}")
    out = Path(out) if out is not None else Path("runs") / name
    if resume and (out / "config.json").exists():
        stored = read_json(out / "config.json")["config"]
        stored_params = {k: v for k, v in stored.items() if k in fields}
        clash = {k: (stored_params.get(k), v) for k, v in overrides.items()
                 if k in stored_params and stored_params[k] != v}
        if clash:
            raise ValueError(f"--resume with parameters that differ from the stored run: {clash}")
        params = exp.params(**stored_params)
        run = RunFolder(out)
    else:
        params = exp.params(**overrides)
        config = {"experiment": name, **dataclasses.asdict(params)}
        run = RunFolder.create(out, config, exist_ok=resume)
    fresh = not (out / "metrics.csv").exists() and not (out / "checkpoint.npz").exists()
    try:
        summary = exp.fn(params, run, resume=resume, progress=progress)
    except (ValueError, TypeError):
        # bad parameters caught before anything was computed: leave no half-made folder behind
        if fresh and not (out / "metrics.csv").exists() and not (out / "checkpoint.npz").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise
    if summary is not None:
        write_json(run.path / "summary.json", summary)
    return run, summary
