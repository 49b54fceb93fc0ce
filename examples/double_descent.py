"""Model-wise double descent with random ReLU features (the seed's example 4, at CPU size).

Runs the ``double-descent`` experiment (the same code as ``shld run double-descent``) at a small
size: min-norm least squares, small ridge and gradient descent with C(t) at each feature count
p, on a noisy teacher-student task with n training points. The test error peaks at p = n.

    python examples/double_descent.py --out runs/dd-example

The seed's example trains ResNets on CIFAR-10 with PyTorch/torchvision; random features show
the same model-wise curve in seconds and need neither.
"""

from __future__ import annotations

import argparse
import tempfile

import matplotlib

matplotlib.use("Agg")

from shld.experiments.registry import run_experiment  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="run folder (default: a temporary folder)")
    ap.add_argument("--n-train", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="shld-dd-")
    run, summary = run_experiment(
        "double-descent", out, progress=False, seed=args.seed, datasets="synthetic", n_train=args.n_train,
        n_test=500, d_in=10, n_p=13, n_draws=3, gd_steps=400, gd_record_every=20)
    d = summary["datasets"]["synthetic"]
    print(f"n = {d['n']} training points; test MSE (min-norm, mean over 3 draws) by p/n:")
    for r, e, c in zip(d["p_over_n"], d["test_mse_minnorm_mean"], d["gd_C_final_median"]):
        print(f"  p/n = {r:5.2f}   test MSE = {e:10.3f}   C after GD = {c:.3g}")
    print(f"peak at p = {d['peak_p']} (p/n = {d['peak_p_over_n']:.2f})")
    print(f"figures in {run.path / 'figures'}")
    return summary


if __name__ == "__main__":
    main()
