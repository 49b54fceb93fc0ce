"""The one registry of studies: their names, modules, audit presets and the audit's order.

``shld run NAME`` builds its options from the study's ``Params``; ``shld reproduce`` runs
:func:`audited_studies` with :func:`audit_preset`; reporting asks only these public functions.
A study module registers its study on import (:func:`register`); :func:`get_study` imports only the
module of the study asked for (others may import torch, which costs seconds per process).

:func:`run_experiment` checks the parameters in full (:meth:`~shld.experiments.study.Study.validate_params`)
before anything touches the disk, then runs the study inside :func:`shld.runs.open_run`, the run-folder
contract (lock, identity, no deletion of what the call did not create; ``docs/runs.md``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from shld.experiments.study import Study
from shld.runs import RunFolder, RunFolderError, _jsonable, check_out, open_run, read_config

#: study name → the module that defines it
STUDY_MODULES: dict[str, str] = {
    "double-well": "shld.experiments.double_well",
    "high-dim": "shld.experiments.high_dim",
    "kramers": "shld.experiments.kramers",
    "fp-vs-langevin": "shld.experiments.fp_vs_langevin",
    "grokking": "shld.experiments.grokking",
    "grokking-transformer": "shld.experiments.grokking",
    "double-descent": "shld.experiments.double_descent",
    "cifar-width": "shld.experiments.cifar_width",
    "lr-selection": "shld.experiments.lr_selection",
    "escape": "shld.experiments.escape",
    "batch-scaling": "shld.experiments.batch_scaling",
    "theorems": "shld.experiments.theorems",
}

#: the studies ``shld reproduce`` runs, in report order
AUDITED: tuple[str, ...] = ("double-well", "high-dim", "kramers", "fp-vs-langevin", "grokking",
                            "grokking-transformer", "double-descent", "cifar-width", "lr-selection", "escape",
                            "batch-scaling", "theorems")

_STUDIES: dict[str, Study] = {}


class FunctionStudy(Study):
    """A study written as one function ``fn(params, run, *, resume, progress) -> summary`` that keeps
    its own sweep and resume (the form every experiment had before the Study protocol)."""

    def __init__(self, name: str, fn: Callable[..., dict], params: type, help: str = "",
                 validate: Callable[[Any], None] | None = None, audit: dict | None = None):
        self.name, self.fn, self.Params, self.help = name, fn, params, help
        self._validate = validate
        self._audit = audit

    @property
    def audit(self) -> dict:
        # function studies keep their presets in their module's AUDIT dict
        import sys

        return self._audit if self._audit is not None else getattr(sys.modules[self.fn.__module__], "AUDIT", {})

    def validate(self, params) -> None:
        if self._validate is not None:
            self._validate(params)

    def run(self, params, run: RunFolder, *, resume: bool = False, progress: bool = True) -> dict:
        summary = self.fn(params, run, resume=resume, progress=progress)
        if summary is not None:
            run.write_summary(summary)
        return summary


def register(study: Study) -> Study:
    """Add ``study`` (an instance) to the registry under ``study.name``; returns it."""
    if not isinstance(study, Study) or not study.name:
        raise TypeError(f"`study` must be a named Study instance, got {study!r}")
    _STUDIES[study.name] = study
    return study


def register_experiment(name: str, params: type, help: str = "", validate: Callable[[Any], None] | None = None,
                        audit: dict | None = None):
    """Decorator: register a function study (:class:`FunctionStudy`)."""

    def deco(fn):
        register(FunctionStudy(name, fn, params, help or (fn.__doc__ or "").strip(), validate, audit))
        return fn

    return deco


@contextlib.contextmanager
def registered(study: Study) -> Iterator[Study]:
    """Register ``study`` for the ``with`` block only (tests, probes)."""
    old = _STUDIES.get(study.name)
    register(study)
    try:
        yield study
    finally:
        if old is None:
            _STUDIES.pop(study.name, None)
        else:
            _STUDIES[study.name] = old


def get_study(name: str) -> Study:
    """The study ``name``, importing its module only. Raises ``ValueError`` listing the valid names;
    ``ModuleNotFoundError`` when the study needs an optional dependency that is missing (torch)."""
    if name not in _STUDIES:
        if name not in STUDY_MODULES:
            raise ValueError(f"`name` must be one of {sorted(set(STUDY_MODULES) | set(_STUDIES))}, got {name!r}")
        importlib.import_module(STUDY_MODULES[name])
        if name not in _STUDIES:
            raise ValueError(f"module {STUDY_MODULES[name]} registers no study {name!r}")
    return _STUDIES[name]


def available_studies() -> list[str]:
    """Names of the studies that can run here (those whose optional dependencies are installed)."""
    names = []
    for name in STUDY_MODULES:
        try:
            get_study(name)
        except ModuleNotFoundError as exc:
            if exc.name != "torch":
                raise
            continue
        names.append(name)
    return sorted(set(names) | set(_STUDIES))


def audited_studies() -> tuple[str, ...]:
    """The studies of ``shld reproduce``, in report order."""
    return AUDITED


def audit_preset(name: str, mode: str) -> dict:
    """The parameter overrides of study ``name`` in audit ``mode`` ("quick", "full"); ``KeyError`` when
    the study has none for that mode."""
    study = get_study(name)
    if mode not in study.audit:
        only = " and ".join(f"--{m}" for m in sorted(study.audit))
        raise KeyError(f"study {name!r} has no {mode!r} audit preset: it runs in {only or 'no'} audits only")
    return dict(study.audit[mode])


def _resume_params(study: Study, out: Path, overrides: dict) -> dict | None:
    """The parameters a ``--resume`` continues with: the stored ones, which ``overrides`` must agree
    with (``None`` when ``out`` holds no config.json, i.e. nothing to resume)."""
    if not (out / "config.json").exists():
        return None
    path = out / "config.json"
    doc = read_config(out)
    identity = doc.get("identity") if isinstance(doc.get("identity"), dict) else {}
    name = identity.get("study", doc["config"].get("experiment"))
    if name != study.name:
        raise RunFolderError(f"--resume: {path} is a run of study {name!r}, not {study.name!r}; choose "
                             "another --out")
    fields = {f.name for f in dataclasses.fields(study.Params)}
    stored = {k: v for k, v in doc["config"].items() if k in fields}
    for k, v in overrides.items():
        if k in stored and _jsonable(stored[k]) != _jsonable(v):
            raise RunFolderError(f"--resume: parameter `{k}` is {v!r} here but {stored[k]!r} in {path}; leave it "
                                 "out to continue with the stored value, or choose another --out")
    return {**overrides, **stored}


def run_experiment(name: str, out: Path | str | None = None, *, resume: bool = False,
                   progress: bool = True, **overrides: Any) -> tuple[RunFolder, dict]:
    """Run study ``name`` with ``overrides`` of its default params into folder ``out``.

    The parameters are validated before the folder is touched. With ``resume=True`` the config
    stored in ``out`` is reused (overrides must agree, and the study must be ``name``) and the
    study continues where it stopped; a missing or empty ``out`` starts fresh. The folder is
    locked for the whole run (:func:`shld.runs.open_run`). Raises ``ValueError``/``TypeError`` for bad
    parameters and :class:`shld.runs.RunFolderError` for a folder that cannot be used.
    """
    study = get_study(name)
    fields = {f.name for f in dataclasses.fields(study.Params)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for experiment {name!r}; "
                         f"valid: {sorted(fields)}")
    out = check_out(out if out is not None else Path("runs") / name)
    resolved = _resume_params(study, out, overrides) if resume else None
    params = study.Params(**(overrides if resolved is None else resolved))
    study.validate_params(params)
    with open_run(out, name, dataclasses.asdict(params), resume=resume) as run:
        summary = study.run(params, run, resume=resume, progress=progress)
    return run, summary


run_study = run_experiment

__all__ = ["STUDY_MODULES", "AUDITED", "FunctionStudy", "register", "register_experiment", "registered",
           "get_study", "available_studies", "audited_studies", "audit_preset", "run_experiment", "run_study"]
