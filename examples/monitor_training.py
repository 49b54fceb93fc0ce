"""Train a small MLP on scikit-learn's digits with the SHLD monitor on.

    python examples/monitor_training.py --out runs/digits-monitor [--epochs 30] [--seed 0]
                                        [--c-scheduler]

Writes a run folder: ``config.json``, ``monitor.csv`` / ``monitor.jsonl`` (one record every 5 steps,
events), ``train.csv`` (loss and test accuracy per epoch), ``summary.json`` and
``figures/monitor.png`` (C(t) plug-in / unbiased / smoothed with its band, B_simple against the batch
size, λ_max against the stability limit 2/η).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> Path:
    import torch
    from torch import nn

    from shld.runs import MetricsWriter, RunFolder
    from shld.torch import CScheduler, Monitor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/digits-monitor")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--c-scheduler", action="store_true", help="let the seed's C rule move the learning rate")
    args = ap.parse_args(argv)

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=args.seed, stratify=y)
    Xtr, Xte = torch.from_numpy(Xtr), torch.from_numpy(Xte)
    ytr, yte = torch.from_numpy(ytr).long(), torch.from_numpy(yte).long()

    run = RunFolder.create(args.out, vars(args), exist_ok=True)
    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)

    def loss_fn(m, batch):
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    gen = torch.Generator().manual_seed(args.seed)
    fixed = (Xtr[:256], ytr[:256])  # curvature batch, held fixed so Lanczos's warm start pays off
    mon = Monitor(model, opt, loss_fn=loss_fn, schedule=5, curvature_schedule=25, curvature_batch=fixed,
                  out=run.path)
    sched = CScheduler(opt, mon, cooldown=50) if args.c_scheduler else None
    log = MetricsWriter(run.path / "train.csv")
    n = Xtr.shape[0]
    for epoch in range(args.epochs):
        perm = torch.randperm(n, generator=gen)
        losses = []
        for k in range(0, n - args.batch_size + 1, args.batch_size):
            idx = perm[k:k + args.batch_size]
            batch = (Xtr[idx], ytr[idx])
            opt.zero_grad()
            with mon.track(batch):
                loss = loss_fn(model, batch)
                loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            losses.append(loss.item())
        with torch.no_grad():
            acc = (model(Xte).argmax(1) == yte).float().mean().item()
        log.write({"epoch": epoch, "step": mon.step, "train_loss": float(np.mean(losses)), "test_acc": acc,
                   "lr": opt.param_groups[0]["lr"]})
    log.close()
    mon.close()
    last = mon.last
    run.write_summary({"steps": mon.step, "test_acc": acc, "final": {k: last[k] for k in (
        "C_plugin", "C_unbiased", "C_smoothed", "C_smoothed_se", "B_simple_smoothed", "D_seed", "D_sde",
        "D_eff", "regime")}, "lambda_max_last": float(mon.history("lambda_max")[~np.isnan(
            mon.history("lambda_max"))][-1]), "events": mon.events[-20:]})
    figure(mon, run.figures / "monitor.png", args)
    print(f"wrote {run.path} (test accuracy {acc:.3f}, {len(mon.records)} records, "
          f"{len(mon.events)} events)")
    return run.path


def figure(mon, path, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = mon.history("step")
    fig, ax = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    ax[0].plot(s, mon.history("C_plugin"), lw=0.6, alpha=0.6, label="plug-in (floor ≈ 2)")
    ax[0].plot(s, mon.history("C_unbiased"), lw=0.6, alpha=0.6, label="unbiased (one batch)")
    c, se = mon.history("C_smoothed"), mon.history("C_smoothed_se")
    ax[0].plot(s, c, color="k", label="smoothed (regime labels)")
    ax[0].fill_between(s, c - se, c + se, color="k", alpha=0.15, lw=0)
    for cut in (0.5, 2.0, 10.0):
        ax[0].axhline(cut, color="gray", ls=":", lw=0.8)
    ax[0].set_yscale("symlog", linthresh=0.1)
    ax[0].set_ylabel("C = 2B / B_simple")
    ax[0].legend(fontsize=8)
    ax[1].plot(s, mon.history("B_simple_smoothed"), color="C2", label="B_simple (smoothed)")
    ax[1].axhline(args.batch_size, color="gray", ls="--", label=f"batch size B = {args.batch_size}")
    ax[1].set_yscale("log")
    ax[1].set_ylabel("B_simple = tr Σ / ‖G‖²")
    ax[1].legend(fontsize=8)
    lam = mon.history("lambda_max")
    ok = ~np.isnan(lam)
    ax[2].plot(s[ok], lam[ok], "o-", color="C3", ms=3, label="λ_max (fixed batch)")
    lr = mon.history("lr")
    ax[2].plot(s, 2.0 / lr, color="gray", ls="--", label="2/η")
    ax[2].set_yscale("log")
    ax[2].set_ylabel("λ_max")
    ax[2].set_xlabel("step")
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1:])
