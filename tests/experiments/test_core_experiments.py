"""The core experiments (double-well, high-dim) and the CLI, in-process at tiny sizes; the Langevin
studies also on the torch backend (``--backend torch``: other random numbers, the same law)."""

import json

import numpy as np
import pytest

from shld.cli import main
from shld.experiments.registry import available_studies, run_experiment
from shld.runs import read_metrics

ENGINES = [pytest.param({}, id="numpy"),
           pytest.param(dict(backend="torch", dtype="float32", device="cpu"), id="torch-f32-cpu")]


@pytest.mark.parametrize("engine", [ENGINES[0], pytest.param(*ENGINES[1].values, id=ENGINES[1].id,
                                                              marks=pytest.mark.slow)])   # 7 s; resumed below
def test_double_well_run_folder_and_numbers(tmp_path, engine):
    if engine:
        pytest.importorskip("torch")
    run, s = run_experiment("double-well", tmp_path / "dw", progress=False, n_walkers=400, n_steps=20_000,
                            D=0.5, barrier=1.0, dt=2e-3, **engine)
    for name in ("config.json", "metrics.csv", "summary.json"):
        assert (run.path / name).exists()
    for fig in ("consolidation.png", "loss.png", "histogram_vs_gibbs.png", "trajectories.png"):
        assert (run.figures / fig).stat().st_size > 1000
    m = read_metrics(run.path / "metrics.csv")
    assert m["step"][0] == 0 and m["step"][-1] == 20_000 and np.all(np.diff(m["step"]) == 100)
    # ΔE/D = 2, t = 40 ≈ 8 mean escape times: almost all walkers crossed; the censoring-aware MFPT agrees
    # with the exact quadrature within 4 SE plus the crossing bias
    mf = s["mfpt"]
    assert abs(mf["mean"] - s["mfpt_exact_quadrature"]) < 4 * mf["stderr"] + s["mfpt_crossing_bias"]
    assert s["ks_pvalue_vs_gibbs"] > 1e-3
    assert {c["id"] for c in s["claims"]} == {"kramers-seed-form", "gibbs-double-well"}
    assert json.loads((run.path / "summary.json").read_text())["mfpt"]["n_hit"] == mf["n_hit"]


@pytest.mark.parametrize("engine", ENGINES)
def test_double_well_resume_equals_uninterrupted(tmp_path, monkeypatch, engine):
    if engine:
        pytest.importorskip("torch")
    kw = dict(progress=False, n_walkers=50, n_steps=4000, record_every=50, seed=3, **engine)
    _, full = run_experiment("double-well", tmp_path / "full", **kw)
    # interrupt after the 5th checkpoint by failing inside the run, then resume
    import shld.experiments._langevin_run as lr

    calls = {"n": 0}
    real = lr.RunFolder.save_checkpoint

    def flaky(self, **arrays):
        real(self, **arrays)
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(lr.RunFolder, "save_checkpoint", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("double-well", tmp_path / "part", **kw)
    monkeypatch.setattr(lr.RunFolder, "save_checkpoint", real)
    _, resumed = run_experiment("double-well", tmp_path / "part", resume=True, **kw)
    a = read_metrics(tmp_path / "full" / "metrics.csv")
    b = read_metrics(tmp_path / "part" / "metrics.csv")
    assert np.array_equal(a["step"], b["step"]) and np.array_equal(a["loss_mean"], b["loss_mean"])
    assert resumed["mfpt"] == full["mfpt"]
    if engine:     # the torch run is not the numpy one (the option reaches the engine)
        run_experiment("double-well", tmp_path / "numpy", **{k: v for k, v in kw.items() if k not in engine})
        assert not np.array_equal(read_metrics(tmp_path / "numpy" / "metrics.csv")["loss_mean"], a["loss_mean"])


def test_engine_options_are_checked_before_a_run_folder_exists(tmp_path, capsys):
    def exit_status(argv):          # argparse's own refusals exit; the study's checks return 2
        try:
            return main(argv)
        except SystemExit as exc:
            return exc.code

    cases = [(["--backend", "numpy", "--device", "cuda"], "`device` must be None or 'cpu' for backend='numpy'"),
             (["--backend", "jax"], "invalid choice: 'jax'"),
             (["--dtype", "float16"], "invalid choice: 'float16'")]
    torch = pytest.importorskip("torch")
    if torch.cuda.device_count() < 8:
        cases.append((["--backend", "torch", "--device", "cuda:7"], "`device`='cuda:7'"))
    for k, (argv, message) in enumerate(cases):
        for name in ("double-well", "kramers", "high-dim", "theorems", "fp-vs-langevin"):
            out = tmp_path / f"{name}-{k}"
            assert exit_status(["run", name, *argv, "--out", str(out), "--no-progress"]) == 2
            assert message in capsys.readouterr().err, (name, argv)
            assert not out.exists()                       # refused before anything touched the disk


@pytest.mark.parametrize("engine", ENGINES)
def test_high_dim_matches_exact_em_curve(tmp_path, engine):
    if engine:
        pytest.importorskip("torch")
    run, s = run_experiment("high-dim", tmp_path / "hd", progress=False, dims=[8, 32], n_walkers=100,
                            n_steps=1500, record_every=25, **engine)
    for v in s["per_dim"].values():
        # floor: batch-means SE of a correlated series; 4 SE plus 2 % for the EM tail not yet converged
        assert abs(v["floor_measured"] - v["floor_exact_em"]) < 4 * v["floor_stderr"] + 0.02 * v["floor_exact_em"]
        assert v["floor_seed"] / v["floor_exact_continuum"] == pytest.approx(2 / 0.5)
        assert abs(v["D_msd"] - 0.01) < 4 * v["D_msd_stderr"] + 0.05 * 0.01     # lag-1 bias ≈ λdt/2 ≲ 5 %
        # the whole E[L] curve (60 records) within 5 SE of the exact EM curve: P(false alarm) < 1e-4
        assert v["max_abs_dev_from_exact_in_se"] < 5
    assert (run.figures / "theorem4.png").exists()


def test_high_dim_eigenbasis_walk_has_the_law_of_the_rotated_walk():
    """high-dim runs the walk in A's eigenbasis from Qᵀθ₀ (same law as the rotated walk, d× cheaper).
    Compare both against each other after a transient, where the start still matters, and check that
    the test would see a wrong start (φ₀ = θ₀ instead of Qᵀθ₀)."""
    from shld.dynamics import simulate
    from shld.landscapes import Quadratic, RandomQuadratic

    d, n, steps = 16, 4000, 60
    rotated = RandomQuadratic(dim=d, lambda_min=0.5, lambda_max=10.0, seed=3)
    evals, evecs = np.linalg.eigh(rotated.matrix)
    diagonal = Quadratic(eigenvalues=evals)
    u = np.random.default_rng(4).standard_normal(d)
    theta0 = 3.0 * u / np.linalg.norm(u)

    def final(landscape, start, seed):
        res = simulate(landscape, start, D=0.01, dt=0.01, n_steps=steps, n_walkers=n, seed=seed)
        th = res.final_theta
        return landscape.value(th), np.sum(landscape.grad(th) ** 2, axis=1)

    def z(a, b):        # two-sample z of the means (independent ensembles)
        return abs(a.mean() - b.mean()) / np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))

    loss_r, g2_r = final(rotated, theta0, 1)
    loss_d, g2_d = final(diagonal, evecs.T @ theta0, 2)
    # 4 SE each: a false alarm has probability 6e-5 per statistic
    assert z(loss_r, loss_d) < 4 and z(g2_r, g2_d) < 4
    # power: the un-rotated start changes E[L] at t = 0.6 by many SE
    loss_w, _ = final(diagonal, theta0, 2)
    assert z(loss_r, loss_w) > 10


@pytest.mark.parametrize("argv", [["run"], ["reproduce"], ["report"]]
                         + [["run", name] for name in available_studies()])
def test_every_help_page_prints(argv, capsys):
    # argparse %-formats help strings: a bare "30 %" in an experiment's help made `shld run -h` crash
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: shld " + argv[0] in capsys.readouterr().out


def test_cli_help_list_and_errors(capsys, tmp_path):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "double-well" in out and "high-dim" in out and "muller-brown" in out
    with pytest.raises(SystemExit):
        main(["run", "double-well", "--help"])
    assert "--n-walkers" in capsys.readouterr().out
    assert main(["run", "double-well", "--D=-1", "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "`D` must be > 0, got -1.0" in capsys.readouterr().err     # double-well needs D > 0
    assert not (tmp_path / "bad").exists()          # no half-made run folder is left behind
    assert main(["run", "double-well", "--n-steps", "2000", "--n-walkers", "20", "--out",
                 str(tmp_path / "ok"), "--no-progress"]) == 0
    assert "MFPT measured" in capsys.readouterr().out
    assert main(["run", "double-well", "--out", str(tmp_path / "ok"), "--no-progress"]) == 2   # not empty


@pytest.mark.parametrize("script", ["double_well.py", "high_dim.py"])
def test_examples_run(script, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / script
    res = subprocess.run([sys.executable, str(path), "--small", "--out", str(tmp_path / "ex")],
                         capture_output=True, text=True, timeout=300, env={"MPLBACKEND": "Agg",
                                                                          "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "ex" / "summary.json").exists()


@pytest.mark.parametrize("n_walkers", [1, 4])
def test_double_well_with_fewer_walkers_than_it_tracks_finishes(tmp_path, n_walkers):
    """Five walkers' paths are kept for the trajectory figure; with fewer walkers the run raised
    KeyError 'w4_0' after it had finished stepping."""
    from shld.experiments.double_well import TRACKED

    run, s = run_experiment("double-well", tmp_path / "dw", progress=False, n_walkers=n_walkers, n_steps=200)
    assert n_walkers < TRACKED and (run.path / "figures" / "trajectories.png").is_file()
    assert [c["id"] for c in s["claims"]] == ["kramers-seed-form", "gibbs-double-well"]
