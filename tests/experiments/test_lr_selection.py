"""Learning-rate selection: verdict helpers on inputs built to hold and to fail, the probe's picks
against their definitions, and a tiny end-to-end run."""

import math

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

import shld.experiments.lr_selection as lrs  # noqa: E402
from shld.claims import validate_claims  # noqa: E402
from shld.experiments.registry import run_experiment  # noqa: E402


def test_reaches_grid_digits_and_modular():
    grid = {"test_acc": 0.95, "acc_se": 0.005, "train_loss": 0.2}
    assert lrs.reaches_grid("digits-mlp", {"test_acc": 0.945, "acc_se": 0.005}, grid)      # −0.5 pt
    assert not lrs.reaches_grid("digits-mlp", {"test_acc": 0.93, "acc_se": 0.004}, grid)   # −2 pt > 1 pt
    # a large standard error widens the tolerance to 2 se = 4 points
    assert lrs.reaches_grid("digits-cnn", {"test_acc": 0.92, "acc_se": 0.02}, grid)
    assert lrs.reaches_grid("modular", {"train_loss": 0.39}, grid)                          # < 2×
    assert not lrs.reaches_grid("modular", {"train_loss": 0.41}, grid)                      # > 2×
    assert not lrs.reaches_grid("modular", {"train_loss": math.nan}, grid)


def test_task_score_and_verdicts():
    r = {"diverged": False, "val_acc": 0.9, "val_loss": 0.3, "train_loss": 0.5}
    assert lrs.task_score("digits-mlp", r) == pytest.approx(0.9, abs=1e-5)
    assert lrs.task_score("modular", r) == -0.5
    assert lrs.task_score("digits-mlp", {**r, "diverged": True}) == -math.inf
    assert lrs.speedup_verdict([2000, 1500]) == "holds"
    assert lrs.speedup_verdict([2000, 15]) == "partly"
    assert lrs.speedup_verdict([3, 15]) == "fails"


SEQ = np.random.SeedSequence(5, spawn_key=(0, 0))


def _train(folder, lr):
    from shld.experiments._tasks import train_sgd
    from shld.runs import RunFolder

    return train_sgd("digits-mlp", SEQ, lr=lr, batch_size=32, epochs=2, run=RunFolder.create(folder, {}),
                     resume=False)


def _independent_probe(task_name, seq):
    """λ_max, tr Σ, ‖G‖² and GᵀHG at θ₀ computed without the monitor: per-sample gradients from torch.func
    (tr Σ with ddof = 1, as the monitor defines it) and the top Hessian eigenvalue from ARPACK on
    Hessian-vector products by double backward."""
    import scipy.sparse.linalg as sla
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, grad, vmap

    from shld.experiments._tasks import make_task

    task = make_task(task_name, seq)
    model = task.make_model()
    x, y = task.data.x_train, task.data.y_train
    params = {k: v.detach() for k, v in model.named_parameters()}

    def one(p, xi, yi):
        return F.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    per = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
    G = torch.cat([g.reshape(len(x), -1) for g in per.values()], 1).double()
    mean = G.mean(0)
    trace = float(((G - mean) ** 2).sum() / (len(x) - 1))
    ps = list(model.parameters())
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), ps, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])

    def hvp(v):
        out = torch.autograd.grad(flat, ps, torch.as_tensor(np.ravel(v), dtype=flat.dtype), retain_graph=True)
        return torch.cat([o.reshape(-1) for o in out]).double().numpy()

    n = flat.numel()
    op = sla.LinearOperator((n, n), matvec=hvp, dtype=np.float64)
    lam = float(sla.eigsh(op, k=1, which="LA", tol=1e-6, v0=np.ones(n), return_eigenvectors=False)[0])
    g = flat.detach().double().numpy()
    return {"d": n, "lambda_max": lam, "trace_sigma": trace, "grad_sq_norm": float(mean @ mean),
            "gHg": float(g @ hvp(g))}


def test_probe_picks_follow_their_definitions_from_independent_values(tmp_path):
    pr = lrs.run_probe("digits-mlp", SEQ, batch_size=32, lanczos_steps=12, range_steps=40)
    ref = _independent_probe("digits-mlp", SEQ)
    B, d = pr["batch_size"], ref["d"]
    assert d == pr["d"] == 64 * 128 + 128 + 128 * 10 + 10
    # measured: all four within 6e-8 relative (float32 sums); λ_max from 12 Lanczos steps (tol 1e-6) vs ARPACK
    for key, rel in (("trace_sigma", 1e-6), ("grad_sq_norm", 1e-6), ("lambda_max", 1e-5), ("gHg", 1e-5)):
        assert pr[key] == pytest.approx(ref[key], rel=rel), key
    lam, tr, g2 = ref["lambda_max"], ref["trace_sigma"], ref["grad_sq_norm"]
    # seed: 2 D/λ with D = tr Σ/(2 B d)
    assert pr["picks"]["seed"] == pytest.approx(tr / (B * d * lam), rel=1e-5)
    # the other reading of the seed's D: the total variance tr Σ/(2B), d times larger
    assert pr["picks"]["seed_total"] == pytest.approx(tr / (B * lam), rel=1e-5)
    assert pr["picks"]["two_over_lambda"] == pytest.approx(2 / lam, rel=1e-5)
    eps_max = g2 / ref["gHg"]
    assert pr["picks"]["mccandlish"] == pytest.approx(eps_max / (1 + (tr / g2) / B), rel=1e-5)
    lo, hi = lrs.RANGE_LR
    assert lo / lrs.RANGE_DIVIDE <= pr["picks"]["range_test"] <= hi / lrs.RANGE_DIVIDE
    # the probe's cost: one pass over the training set plus 2 per sample per Hessian-vector product
    assert pr["probe_samples"] == pr["n_train"] * (1 + 2 * pr["n_hvp"])


def test_training_is_reproducible(tmp_path):
    a = _train(tmp_path / "a", 0.1)
    b = _train(tmp_path / "b", 0.1)
    assert a["test_acc"] == b["test_acc"] and a["train_loss"] == b["train_loss"]
    assert a["steps"] == 2 * math.ceil(a["samples"] / 2 / 32)   # ceil(n_train / B) steps per epoch
    d = _train(tmp_path / "d", 1e4)
    assert d["diverged"]                                          # an absurd lr is flagged, not hidden


def test_tiny_lr_selection_run(tmp_path):
    run, s = run_experiment("lr-selection", tmp_path / "lr", progress=False, tasks="digits-mlp",
                            epochs=1, grid_points=3, grid_min=0.05, lanczos_steps=4, range_steps=20)
    rows = validate_claims(s["claims"])
    assert {r["id"] for r in rows} >= {"lr-seed-accuracy", "lr-speedup-1000x", "lr-imagenet"}
    imagenet = next(r for r in rows if r["id"] == "lr-imagenet")
    assert imagenet["verdict"] == "not testable here"
    t = s["tasks"]["digits-mlp"]
    # the grid's best rate is the grid member with the highest validation accuracy, read from the members
    import json

    grid = [json.loads(p.read_text())["result"] for p in (tmp_path / "lr" / "members").glob("*grid*.json")]
    assert len(grid) == 3 and len({g["val_acc"] for g in grid}) == 3        # no tie at this seed
    best = max(grid, key=lambda g: g["val_acc"])
    assert t["grid_best_lr"] == pytest.approx(best["lr"], rel=1e-12)
    assert t["grid_best"]["test_acc"] == best["test_acc"]
    assert set(t["methods"]) == set(lrs.METHODS)
    assert (tmp_path / "lr" / "figures" / "lr_selection.png").exists()
    # probe + 3 grid rates + the 5 methods' rates, each a member result
    assert len(list((tmp_path / "lr" / "members").glob("*.json"))) == 1 + 3 + 5
    seed_row = next(r for r in rows if r["id"] == "lr-seed-accuracy")
    assert "D per coordinate" in seed_row["measured"] and "D total" in seed_row["measured"]


def _per_task(seed_reaches, total_reaches, speedup):
    """A built per-task table: the seed's two readings reach the grid or not; the probe is `speedup`× cheaper
    than this audit's grid."""
    def method(reaches, lr):
        return {"lr": lr, "lr_ratio": lr / 0.1, "reaches_grid": reaches, "test_acc": 0.9, "acc_se": 0.01,
                "speedup_samples": speedup}
    methods = {m: method(False, 1.0) for m in lrs.METHODS}
    methods["seed"] = method(seed_reaches, 3e-5)
    methods["seed_total"] = method(total_reaches, 0.12)
    return {"digits-mlp": {"grid_best_lr": 0.1, "grid_best": {"test_acc": 0.92, "acc_se": 0.01},
                           "methods": methods}}


def test_seed_rows_judge_both_readings_of_d_and_of_the_grid():
    params = lrs.LRSelectionParams(tasks="digits-mlp", grid_points=10, epochs=8)
    rows = {r["id"]: r for r in lrs._claims(_per_task(False, True, 80.0), params, "f.png")}
    assert rows["lr-seed-accuracy"]["verdict"] == "depends on reading"      # per coordinate fails, total holds
    assert rows["lr-seed-lr-close"]["verdict"] == "depends on reading"      # 3e-5 vs 0.1 far; 0.12 close
    # 80× on a 10 × 8 grid is 80·(10·90)/(10·8) = 900× on a 10 × 90 grid: both below 1000 → fails
    assert rows["lr-speedup-1000x"]["verdict"] == "fails"
    rows = {r["id"]: r for r in lrs._claims(_per_task(True, True, 100.0), params, "f.png")}
    assert rows["lr-seed-accuracy"]["verdict"] == "holds"
    assert rows["lr-speedup-1000x"]["verdict"] == "depends on reading"      # 100× here, 1125× on 10 × 90
    assert "1.12e+03×" in rows["lr-speedup-1000x"]["measured"]
