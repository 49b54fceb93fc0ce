"""Run a :class:`~shld.dynamics.Simulation` in chunks inside a run folder, so that it writes its
metrics as it goes and an interrupted run resumes exactly (bit for bit) from its last checkpoint."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from shld.dynamics import EnsembleState, Simulation
from shld.progress import progress_bar
from shld.runs import CorruptFileError, RunFolder, RunFolderError, count_rows


@dataclass
class EngineParams:
    """Where a study's Langevin ensembles run: :func:`shld.dynamics.simulate`'s ``backend``, ``device``
    and ``dtype`` (a base of the Params of the studies that take them). The default is the numpy
    reference; ``--backend torch --device cuda`` puts the ensembles on a GPU, where the many-steps
    Triton kernel takes the runs it can (``docs/core.md``). Another backend draws other random
    numbers: the same statistics, not the same bits."""

    backend: str = field(default="numpy", metadata={"help": "Langevin engine backend: numpy or torch",
                                                     "choices": ["numpy", "torch"]})
    device: str | None = field(default=None, metadata={"help": "torch device: cpu, cuda or cuda:N "
                                                                "(backend torch only)"})
    dtype: str = field(default="float64", metadata={"help": "walkers' floating point type",
                                                     "choices": ["float64", "float32"]})


def engine_options(params) -> dict:
    """The ``simulate``/``Simulation`` keyword arguments of an :class:`EngineParams`, checked (an error
    naming the argument, e.g. ``device='cuda'`` on a machine without CUDA, before any run starts)."""
    from shld.dynamics.backends import make_backend

    make_backend(params.backend, params.dtype, params.device)
    return {"backend": params.backend, "device": params.device, "dtype": params.dtype}


class _Writer:
    def __init__(self, writer, skip_first: bool):
        self.writer, self.skip = writer, skip_first
        self.written = 0

    def __call__(self, row):
        if self.skip:
            self.skip = False
            return
        self.writer.write(row)
        self.written += 1


def run_chunked(sim: Simulation, run: RunFolder, theta0, n_steps: int, *, seed, resume: bool,
                progress: bool, n_chunks: int = 20, metrics_name: str = "metrics.csv",
                checkpoint_extra: dict | None = None) -> tuple[EnsembleState, dict]:
    """Advance ``sim`` from ``theta0`` for ``n_steps`` steps, checkpointing ``n_chunks`` times.

    Returns the final state and the checkpoint's extra arrays. On ``resume`` the state, the RNG and
    the metrics rows up to the checkpoint are restored, so the finished run equals an uninterrupted one.
    The checkpoint records how many metrics rows precede it; a resume that finds fewer (the CSV
    emptied, cut or deleted) raises :class:`~shld.runs.RunFolderError` instead of losing them.
    """
    ck = run.load_checkpoint() if resume else None
    writer = run.metrics(metrics_name)
    extra = dict(checkpoint_extra or {})
    if ck is not None and metrics_name.replace(".csv", "") == str(ck.get("metrics_name", "metrics")):
        try:
            state = EnsembleState.from_arrays(ck)
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptFileError(f"{run.path / 'checkpoint.npz'}: not a checkpoint of this run's simulation "
                                   f"({type(exc).__name__}: {exc})") from None
        extra.update({k[len("extra__"):]: v for k, v in ck.items() if k.startswith("extra__")})
        last = state.step if state.step > 0 else -1
        kept = count_rows(run.path / metrics_name, "step", upto=last)
        expected = int(ck["metrics_rows"]) if "metrics_rows" in ck else 0
        if kept < expected:     # refuse before touching the file
            raise RunFolderError(
                f"{run.path / metrics_name} holds {kept} of the {expected} rows written before the checkpoint "
                f"at step {state.step} (emptied, cut or deleted); resuming would lose them: remove "
                f"{run.path / 'checkpoint.npz'} to restart this run from the beginning, or use another --out")
        rows = writer.truncate_after("step", last)
    else:
        state = sim.init_state(theta0, seed=seed)
        if (run.path / metrics_name).exists():
            (run.path / metrics_name).unlink()
        rows = 0
    rec = sim.record_interval(n_steps)
    if sim.record_every is None:          # the chunks must share the whole run's record grid
        sim = copy.copy(sim)
        sim.record_every = rec
    chunk = max(rec, int(np.ceil(n_steps / n_chunks / rec)) * rec)
    bar = progress_bar(n_steps, run.path.name, "step", enabled=progress, initial=state.step)
    first = state.step == 0
    try:
        while state.step < n_steps:
            todo = min(chunk, n_steps - state.step)
            # the chunk's first record repeats the previous chunk's last one: skip it
            on_record = _Writer(writer, skip_first=not first)
            sim.advance(state, todo, on_record=on_record)
            rows += on_record.written
            first = False
            arrays = state.to_arrays()
            arrays.update({"extra__" + k: np.asarray(v) for k, v in extra.items()})
            arrays["metrics_name"] = np.array(metrics_name.replace(".csv", ""))
            arrays["metrics_rows"] = np.array(rows)
            run.save_checkpoint(**arrays)
            bar.update(todo)
    finally:
        writer.close()
        bar.close()
    return state, extra
