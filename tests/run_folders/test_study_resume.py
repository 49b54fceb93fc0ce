"""Every study, at a tiny size: killed at a random durable write (a member result, a checkpoint) and
resumed, it writes the same summary.json bytes as an uninterrupted run; with two worker processes it
writes the same bytes as with one.

The kill is a BaseException raised right after the n-th durable write (n drawn from a fixed seed among
all the writes the uninterrupted run makes), which is what a SIGKILL at that moment leaves on disk;
real SIGKILLs of real processes are in the studies' own tests.
"""

import contextlib
import zlib

import numpy as np
import pytest

from shld.experiments import study as study_mod
from shld.experiments.executor import use_executor
from shld.experiments.registry import audited_studies, run_experiment
from shld.runs import RunFolder

FAST = {
    "double-well": dict(n_steps=2000, n_walkers=50, record_every=20),
    "high-dim": dict(dims=[5, 10], n_steps=400, n_walkers=30),
    "kramers": dict(ratios="2,3", n_walkers=60, n_cells=400),
    "fp-vs-langevin": dict(n_walkers=2000, dt=0.01, t_final=1.0, n_snapshots=2, mb_walkers=300, mb_t_final=0.2),
    "escape": dict(n_walkers=200, n_steps=400),
    "theorems": dict(n_walkers=300, t3_walkers=300, t3_dt=0.02, t4_time=2.0, D_values=[0.2]),
    "double-descent": dict(datasets="synthetic", n_train=20, n_test=100, d_in=5, n_p=5, n_draws=2, gd_steps=60,
                           gd_record_every=20),
    "cifar-width": dict(),
}
TORCH = {
    "grokking": dict(p=7, train_fraction=0.6, width=16, epochs=30, post_epochs=5, n_seeds=2, checkpoint_every=10),
    "grokking-transformer": dict(p=7, width=8, epochs=12, post_epochs=2, n_seeds=2, control_epochs=8,
                                 checkpoint_every=4),
    "lr-selection": dict(tasks="digits-mlp", epochs=1, grid_points=3, grid_min=0.05, lanczos_steps=4,
                         range_steps=20),
    "batch-scaling": dict(train_batches="16,32", noise_batches="8,16,32", n_batches=4, epochs=2, warmup_epochs=0),
}


class Kill(BaseException):
    """The injected kill."""


@contextlib.contextmanager
def _durable_writes(kill_after: int | None = None):
    """Count the durable writes (member results, numpy and torch checkpoints); with ``kill_after``,
    raise :class:`Kill` right after that many."""
    count = {"n": 0}

    def wrap(real):
        def wrapped(*a, **kw):
            out = real(*a, **kw)
            count["n"] += 1
            if kill_after is not None and count["n"] == kill_after:
                raise Kill
            return out
        return wrapped

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(study_mod, "save_result", wrap(study_mod.save_result))
        mp.setattr(RunFolder, "save_checkpoint", wrap(RunFolder.save_checkpoint))
        try:
            import shld.experiments._torch_train as tt
            mp.setattr(tt, "_save_torch", wrap(tt._save_torch))
        except ModuleNotFoundError:
            pass
        yield count


def _kill_and_resume(name, params, tmp_path):
    with _durable_writes() as count:
        run_experiment(name, tmp_path / "whole", progress=False, **params)
    whole = (tmp_path / "whole" / "summary.json").read_bytes()
    total = count["n"]
    if total < 2:
        pytest.skip(f"{name} makes {total} durable write(s) at this size: nothing to interrupt")
    n = int(np.random.default_rng(zlib.crc32(name.encode())).integers(1, total))    # 1 .. total-1
    with _durable_writes(kill_after=n), pytest.raises(Kill):
        run_experiment(name, tmp_path / "killed", progress=False, **params)
    assert not (tmp_path / "killed" / "summary.json").exists()
    run_experiment(name, tmp_path / "killed", resume=True, progress=False, **params)
    assert (tmp_path / "killed" / "summary.json").read_bytes() == whole, f"{name}: killed after write {n}/{total}"


def test_every_audited_study_is_covered():
    assert set(audited_studies()) == set(FAST) | set(TORCH)


#: in the default run: a chunked single member, members that depend on others, a plain sweep
DEFAULT = ("double-well", "escape", "kramers")


@pytest.mark.parametrize("name", [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in sorted(FAST)])
def test_killed_study_resumes_to_the_same_summary(name, tmp_path):
    _kill_and_resume(name, FAST[name], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TORCH))
def test_killed_torch_study_resumes_to_the_same_summary(name, tmp_path):
    pytest.importorskip("torch")
    _kill_and_resume(name, TORCH[name], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FAST) + sorted(TORCH))
def test_two_workers_write_the_same_summary_as_one(name, tmp_path):
    if name in TORCH:
        pytest.importorskip("torch")
    params = {**FAST, **TORCH}[name]
    run_experiment(name, tmp_path / "one", progress=False, **params)
    with use_executor(2):
        run_experiment(name, tmp_path / "two", progress=False, **params)
    assert (tmp_path / "one" / "summary.json").read_bytes() == (tmp_path / "two" / "summary.json").read_bytes()


def test_report_redraw_draws_the_figures_again_from_the_results_alone(tmp_path):
    """Figures come from the member results: delete them, `shld report --redraw` draws the same set."""
    from shld.cli import main

    run, _ = run_experiment("escape", tmp_path / "e", progress=False, **FAST["escape"])
    drawn = sorted(p.name for p in (run.path / "figures").iterdir())
    assert drawn == ["escape.png"]
    for p in (run.path / "figures").iterdir():
        p.unlink()
    assert main(["report", str(run.path), "--redraw"]) == 0
    assert sorted(p.name for p in (run.path / "figures").iterdir()) == drawn
    assert (run.path / "report.md").exists()
