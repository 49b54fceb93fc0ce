"""A property test of the run-folder contract (docs/runs.md): random sequences of start / kill /
resume / corrupt-a-file on one folder never lose a finished result, never report success with
metrics rows missing or different, never change anything when they refuse, and never fail with
anything but a one-line :class:`~shld.runs.RunFolderError` (or the injected kill)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shld.dynamics import Simulation
from shld.experiments import registry
from shld.experiments._langevin_run import run_chunked
from shld.landscapes import DoubleWell
from shld.runs import MetricsWriter, RunFolder, RunFolderError

NAME = "contract-probe"
N_STEPS = 240          # 25 records (every 10 steps), 12 checkpoints (every 20 steps)


@dataclass
class ProbeParams:
    n_steps: int = field(default=N_STEPS, metadata={"help": "steps", "min": 1})
    seed: int = field(default=0, metadata={"help": "root seed"})


def _probe(p: ProbeParams, run: RunFolder, *, resume: bool = False, progress: bool = False) -> dict:
    sim = Simulation(DoubleWell(), D=0.5, dt=1e-3, record_every=10, observables=("loss",))
    state, _ = run_chunked(sim, run, np.full((4, 1), -1.0), p.n_steps, seed=p.seed, resume=resume,
                           progress=False, n_chunks=12)
    return {"theta": state.theta[:, 0].tolist(), "step": state.step}


@pytest.fixture(scope="module")
def probe():
    with registry.registered(registry.FunctionStudy(NAME, _probe, ProbeParams, "contract probe")):
        with tempfile.TemporaryDirectory() as d:
            ref, summary = registry.run_experiment(NAME, Path(d) / "ref", progress=False)
            yield (ref.path / "metrics.csv").read_bytes(), summary


class Kill(BaseException):
    """The injected kill (a BaseException, like KeyboardInterrupt or a signal)."""


@contextlib.contextmanager
def _kill_after(where: str, n: int):
    cls, name = (RunFolder, "save_checkpoint") if where == "checkpoint" else (MetricsWriter, "write")
    real = getattr(cls, name)
    count = {"n": 0}

    def wrapped(self, *a, **kw):
        if count["n"] == n:
            raise Kill
        count["n"] += 1
        return real(self, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cls, name, wrapped)
        yield


def _corrupt(folder: Path, name: str, how: str) -> None:
    p = folder / name
    if not p.exists():
        return
    if how == "delete":
        p.unlink()
    elif how == "empty":
        p.write_bytes(b"")
    elif how == "garbage":
        p.write_bytes(b"\x00garbage{[")
    elif how == "cut":
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif how == "duplicate" and name == "metrics.csv":
        lines = p.read_text().splitlines(keepends=True)
        p.write_text("".join(lines + lines[1:3]))


def _snapshot(folder: Path) -> dict:
    if not folder.exists():
        return {}
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.name.startswith(".shld")}


step = st.one_of(
    st.tuples(st.sampled_from(["start", "resume"]), st.none(), st.none()),
    st.tuples(st.sampled_from(["start", "resume"]), st.sampled_from(["checkpoint", "row"]), st.integers(0, 30)),
    st.tuples(st.just("corrupt"), st.sampled_from(["metrics.csv", "checkpoint.npz", "config.json", "summary.json"]),
              st.sampled_from(["delete", "empty", "garbage", "cut", "duplicate"])),
)
first = st.tuples(st.just("start"), st.sampled_from(["checkpoint", "row"]), st.integers(0, 30))
actions = st.tuples(first, st.lists(step, min_size=1, max_size=7)).map(lambda t: [t[0], *t[1]])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(seq=actions)
@example(seq=[("start", "checkpoint", 5), ("corrupt", "metrics.csv", "empty"), ("resume", None, None)])
@example(seq=[("start", "row", 9), ("corrupt", "metrics.csv", "cut"), ("resume", None, None)])
@example(seq=[("start", None, None), ("corrupt", "metrics.csv", "delete"), ("resume", None, None),
              ("corrupt", "checkpoint.npz", "garbage"), ("resume", None, None), ("start", None, None)])
@example(seq=[("start", "checkpoint", 3), ("corrupt", "metrics.csv", "duplicate"), ("resume", "row", 4),
              ("resume", None, None), ("corrupt", "summary.json", "garbage"), ("resume", None, None)])
def test_random_start_kill_resume_corrupt_sequences(probe, seq):
    ref_metrics, ref_summary = probe
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "run"
        for what, a, b in seq:
            if what == "corrupt":
                _corrupt(folder, a, b)
                continue
            before = _snapshot(folder)
            finished = before.get("summary.json")
            finished = finished if finished and _loads(finished) == ref_summary else None
            kill = _kill_after(a, b) if a is not None else contextlib.nullcontext()
            try:
                with kill:
                    _, summary = registry.run_experiment(NAME, folder, resume=what == "resume", progress=False)
            except Kill:
                pass
            except RunFolderError as exc:
                assert "\n" not in str(exc) and str(folder) in str(exc)
                assert _snapshot(folder) == before, f"a refusal changed the folder: {exc}"
            else:
                # success: every row there, exactly those of an uninterrupted run, and the same result
                assert (folder / "metrics.csv").read_bytes() == ref_metrics
                assert summary == ref_summary and _loads((folder / "summary.json").read_bytes()) == ref_summary
            if finished is not None:       # a finished result is never lost by a start, kill or resume
                assert (folder / "summary.json").read_bytes() == finished


def _loads(data: bytes):
    try:
        return json.loads(data)
    except ValueError:
        return None


def test_probe_is_registered_only_inside_the_test(probe):
    assert registry.get_study(NAME).Params is ProbeParams and dataclasses.is_dataclass(ProbeParams)
