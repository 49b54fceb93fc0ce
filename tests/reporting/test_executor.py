"""The sweep executor: ordered results, spawned seeds independent of the number of workers."""

import numpy as np
import pytest

from shld.experiments.executor import (
    Executor,
    ProcessExecutor,
    SerialExecutor,
    current_executor,
    make_executor,
    member_seed,
    sweep_map,
    use_executor,
)


def _draw(key):
    return float(np.random.default_rng(member_seed(7, *key)).standard_normal())


def test_member_seed_is_the_spawned_child_stream():
    a = np.random.default_rng(member_seed(5, 2)).random(3)
    b = np.random.default_rng(np.random.SeedSequence(5).spawn(3)[2]).random(3)
    np.testing.assert_array_equal(a, b)


def test_results_do_not_depend_on_the_number_of_workers():
    keys = [(i, j) for i in range(3) for j in range(2)]
    serial = list(sweep_map(_draw, keys, executor=1))
    with use_executor(2):
        parallel = list(sweep_map(_draw, keys))
    assert serial == parallel                       # bit-identical, same order


def test_executor_protocol_and_selection(monkeypatch):
    class ListExecutor:                             # what a Ray/Dask adapter would look like
        def map(self, fn, items):
            return iter([fn(x) for x in items])

    assert isinstance(ListExecutor(), Executor)
    with use_executor(ListExecutor()):
        assert list(sweep_map(abs, [-1, -2])) == [1, 2]
    assert isinstance(make_executor(1), SerialExecutor)
    assert isinstance(make_executor(3), ProcessExecutor)
    monkeypatch.setenv("SHLD_JOBS", "2")
    assert isinstance(current_executor(), ProcessExecutor)
    monkeypatch.setenv("SHLD_JOBS", "two")
    with pytest.raises(ValueError, match="SHLD_JOBS"):
        current_executor()
    with pytest.raises(ValueError, match="jobs"):
        make_executor(0)
