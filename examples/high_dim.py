"""Seed example 2: a high-dimensional quadratic — convergence rate, noise floor and scaling with d.

Measures E[L(t)] against the exact Euler–Maruyama curve and the seed's Theorem 4 bound, the stationary
C, and D recovered from the mean-squared displacement, for several dimensions.

    python examples/high_dim.py            # defaults
    python examples/high_dim.py --small    # a few seconds
"""

import argparse

from shld.experiments.registry import run_experiment

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="runs/example-high-dim")
parser.add_argument("--small", action="store_true", help="tiny run (used by the test suite)")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

sizes = dict(dims=[5, 20], n_walkers=50, n_steps=800) if args.small else {}
run, summary = run_experiment("high-dim", args.out, resume=False, progress=not args.small,
                              seed=args.seed, **sizes)
print(f"figures in {run.figures}")
