"""Seed example 3: grokking on modular arithmetic, with C(t) as an early-warning signal.

Trains the quadratic-activation MLP on (a + b) mod p (full-batch AdamW with weight decay) for a few
seeds and a random-label control, with the SHLD monitor on every epoch, and prints when train
accuracy reached 99 %, when test accuracy reached 50 % / 95 % (grokking), when each early-warning
rule fired, and the claims rows (seed's number, measured number, verdict). Figures (accuracy, loss
and C(t) on shared epoch axes, events marked) go to the run folder.

    python examples/grokking.py                    # p = 59, 3 seeds + control (1-3 minutes on 2 cores)
    python examples/grokking.py --p 113 --epochs 6000 --train-fraction 0.4 --width 256
    python examples/grokking.py --small            # seconds (used by the test suite)
"""

import argparse

from shld.experiments.registry import run_experiment

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="runs/example-grokking")
parser.add_argument("--p", type=int, default=59)
parser.add_argument("--train-fraction", type=float, default=0.5)
parser.add_argument("--width", type=int, default=128)
parser.add_argument("--epochs", type=int, default=1500)
parser.add_argument("--seeds", type=int, default=3)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--small", action="store_true", help="tiny run (used by the test suite)")
args = parser.parse_args()

sizes = dict(p=args.p, train_fraction=args.train_fraction, width=args.width, epochs=args.epochs,
             n_seeds=args.seeds, post_epochs=100)
if args.small:
    sizes = dict(p=11, train_fraction=0.6, width=32, epochs=60, n_seeds=1, post_epochs=10, lr=0.01)
run, summary = run_experiment("grokking", args.out, resume=False, progress=not args.small, seed=args.seed,
                              **sizes)

for i, s in enumerate(summary["per_seed"]):
    ev = s["events"]
    fired = ", ".join(f"{k} @ {v:.0f}" for k, v in s["fires"].items() if v is not None) or "none"
    print(f"seed {i}: train 99 % @ {ev['t_train99']}, test 50 % @ {ev['t_test50']}, "
          f"test 95 % @ {ev['t_test95']}; rules fired: {fired}")
if summary["control"] is not None:
    c = summary["control"]
    print(f"random-label control: final train acc {c['final_train_acc']:.3f}, test acc {c['final_test_acc']:.3f}")
print()
for row in summary["claims"]:
    print(f"[{row['verdict']:>17}] {row['claim']}: seed {row['seed_value']!r}; measured {row['measured']}")
print(f"\nfigures in {run.figures} and {run.path}/seed_*/figures")
