"""Double descent: the random-features peak sits at p = n; C's definition; kill and resume."""

import math
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shld.experiments.double_descent import _fit_member, gd_consolidation, p_grid, relu_features
from shld.experiments.registry import run_experiment
from shld.runs import read_metrics

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(datasets="synthetic", n_train=30, n_test=300, d_in=8, n_p=9, n_draws=3, gd_steps=200,
            gd_record_every=20)


def test_peak_of_min_norm_test_error_is_at_p_equals_n(tmp_path):
    run, s = run_experiment("double-descent", tmp_path / "dd", progress=False, seed=3, **TINY)
    d = s["datasets"]["synthetic"]
    n = d["n"]
    assert n in d["p"]                                           # the grid contains p = n exactly
    assert d["peak_p"] == n                                      # exact: the grid's argmax is p = n
    i_n = d["p"].index(n)
    err = np.array(d["test_mse_minnorm_mean"])
    # with label noise 0.5 the error at p = n is far above both neighbours (the 1/(n - p) blow-up)
    assert err[i_n] > 3 * max(err[i_n - 1], err[i_n + 1])
    # a small ridge removes most of the peak: its error at p = n is far below min-norm's
    assert d["test_mse_ridge_mean"][i_n] < 0.2 * err[i_n]
    m = read_metrics(run.path / "metrics.csv")
    over = m["p"] > n
    assert np.all(m["train_mse_minnorm"][over] < 1e-15)          # interpolation beyond p = n (round-off)
    assert np.all(m["train_mse_minnorm"][m["p"] < n] > 1e-3)     # no interpolation below it
    rows = {c["id"]: c for c in s["claims"]}
    assert rows["dd-peak-synthetic"]["verdict"] == "holds"
    assert rows["dd-seed-numbers"]["verdict"] == "not testable here"
    _, c = run_experiment("cifar-width", tmp_path / "cw", progress=False)
    (row,) = c["claims"]
    assert row["id"] == "dd-cifar-width" and row["verdict"] == "not testable here"   # no local CIFAR-10 folder
    assert "CIFAR-10" in row["measured"]
    assert (run.path / "figures" / "double_descent.png").exists()


def test_consolidation_ratio_matches_brute_force_per_sample_gradients():
    rng = np.random.default_rng(0)
    n, p, k, lr, B = 12, 7, 2, 0.3, 4
    Phi = relu_features(rng.standard_normal((n, 5)), rng.standard_normal((5, p)))
    a, Y = rng.standard_normal((p, k)), rng.standard_normal((n, k))
    R = Phi @ a - Y
    grad = Phi.T @ R / n
    per_sample = np.einsum("ip,ik->ipk", Phi, R).reshape(n, -1)   # g_i = φ_i r_iᵀ, mean loss
    trace_sigma = np.sum(np.var(per_sample, axis=0))              # ddof = 0
    D = lr * trace_sigma / (2 * B * p * k)
    C_brute = np.sum(grad ** 2) / (D * p * k)
    assert gd_consolidation(Phi, R, grad, lr, B) == pytest.approx(C_brute, rel=1e-10)


def test_member_is_a_pure_function_of_its_task():
    prm = dict(n_train=20, n_test=50, d_in=5, noise=0.5, digits_n_train=50, ridge=1e-3, gd_steps=20,
               gd_record_every=5, batch_size=10)
    task = {"dataset": "synthetic", "draw": 1, "p": 15, "seed": 4, "params": prm}
    a, b = _fit_member(task), _fit_member(dict(task))
    assert a["row"] == b["row"] and np.array_equal(a["traj"], b["traj"])
    assert p_grid(20, 0.1, 10.0, 9)[4] == 20


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    opts = ["--datasets", "synthetic", "--n-train", "40", "--n-p", "9", "--n-draws", "2", "--gd-steps", "1500",
            "--seed", "5"]
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "shld.cli", "run", "double-descent", "--out", str(killed), "--no-progress", *opts]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    members = killed / "members"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if members.is_dir() and len(list(members.glob("*.json"))) >= 3:
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"
    n_before = len(list(members.glob("*.json")))
    assert 3 <= n_before < 18
    params = dict(datasets="synthetic", n_train=40, n_p=9, n_draws=2, gd_steps=1500, seed=5)
    run_experiment("double-descent", killed, resume=True, progress=False, **params)
    run_experiment("double-descent", tmp_path / "whole", progress=False, **params)
    for name in ("summary.json", "metrics.csv"):            # the same bytes as an uninterrupted run
        assert (killed / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_example_runs(tmp_path, capsys):
    mod = runpy.run_path(str(ROOT / "examples" / "double_descent.py"))
    summary = mod["main"](["--out", str(tmp_path / "ex"), "--n-train", "20"])
    assert summary["datasets"]["synthetic"]["peak_p"] == 20
    assert "peak at p = 20" in capsys.readouterr().out


@pytest.mark.slow   # spawns worker processes: ~5-15 s on 2 busy cores
def test_results_do_not_depend_on_jobs(tmp_path):
    from shld.experiments.executor import use_executor

    params = dict(datasets="synthetic", n_train=12, n_test=50, d_in=4, n_p=5, n_draws=2, gd_steps=30,
                  gd_record_every=10, seed=8)
    _, serial = run_experiment("double-descent", tmp_path / "s", progress=False, **params)
    with use_executor(2):
        _, parallel = run_experiment("double-descent", tmp_path / "p", progress=False, **params)
    assert serial["datasets"] == parallel["datasets"]          # bit-identical numbers
    a, b = read_metrics(tmp_path / "s" / "metrics.csv"), read_metrics(tmp_path / "p" / "metrics.csv")
    np.testing.assert_array_equal(a["test_mse_minnorm"], b["test_mse_minnorm"])


def test_digits_without_scikit_learn_gives_a_not_testable_row(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)       # import now fails
    params = dict(datasets="synthetic,digits", n_train=12, n_test=50, d_in=4, n_p=5, n_draws=2, gd_steps=20)
    _, s = run_experiment("double-descent", tmp_path / "x", progress=False, **params)
    rows = {r["id"]: r for r in s["claims"]}
    assert rows["dd-peak-digits"]["verdict"] == "not testable here"
    assert "scikit-learn" in rows["dd-peak-digits"]["measured"]
    assert rows["dd-peak-synthetic"]["verdict"] in ("holds", "fails")


def _fake_cifar(root, n_batch=40, n_test=60, seed=0):
    """A tiny data set in torchvision's CIFAR-10 python format (pickled dicts with b'data', b'labels')."""
    import pickle

    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_batch
        labels = rng.integers(0, 10, n)
        data = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        data[:, :10] = (labels * 25)[:, None]                     # a learnable signal
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels.tolist()}, fh)
    return root


def test_cifar_width_sweep_reads_the_torchvision_format(tmp_path):
    pytest.importorskip("torch")
    from shld.experiments.cifar_width import load_cifar10

    root = _fake_cifar(tmp_path / "data")
    Xtr, ytr, Xte, yte = load_cifar10(root)
    assert Xtr.shape == (200, 3072) and Xte.shape == (60, 3072) and Xtr.dtype == np.uint8
    assert np.all(Xtr[:, 0] == ytr * 25)
    params = dict(cifar_dir=str(root), n_train=100, n_test=60, widths=[1, 4, 32], epochs=30)
    run, s = run_experiment("cifar-width", tmp_path / "run", progress=False, **params)
    (row,) = s["claims"]
    assert row["verdict"] in ("holds", "fails") and "test error peaks at width" in row["measured"]
    w = {r["width"]: r for r in s["widths"]}
    assert sorted(w) == [1, 4, 32]
    assert w[32]["train_err"] < w[1]["train_err"]
    assert (run.path / "figures" / "cifar_width.png").exists()


@pytest.mark.parametrize("n,p,rank", [(30, 12, 12), (30, 30, 30), (30, 80, 30), (30, 40, 6)])
def test_gd_closed_form_is_the_iteration(n, p, rank):
    """gd_iterates (one SVD) against gradient descent iterated step by step (the definition), on full-rank
    and rank-deficient feature matrices at p < n, p = n and p > n: iterates, residuals and gradient norms
    agree to rounding (measured ≤ 6e-12 relative)."""
    from shld.experiments.double_descent import gd_iterates

    rng = np.random.default_rng(p + rank)
    Phi = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, p)) / math.sqrt(p)
    Y = rng.standard_normal((n, 3))
    lr = n / np.linalg.norm(Phi, 2) ** 2
    steps = [0, 1, 2, 50, 333, 1000]
    lr_cf, a_cf, R_cf, g_cf = gd_iterates(Phi, Y, steps)
    assert lr_cf == pytest.approx(lr, rel=1e-12)
    a = np.zeros((p, 3))
    for t in range(steps[-1] + 1):
        R = Phi @ a - Y
        g = Phi.T @ R / n
        if t in steps:
            k = steps.index(t)
            assert np.allclose(R_cf[k], R, rtol=0, atol=1e-10 * np.abs(Y).max())
            assert np.sum(g_cf[k] ** 2) == pytest.approx(np.sum(g * g), rel=1e-9, abs=1e-24)
        if t < steps[-1]:
            a -= lr * g
    assert np.allclose(a_cf, a, rtol=0, atol=1e-9 * np.abs(a).max())
