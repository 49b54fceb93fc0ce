"""``shld run cifar-width``: the seed's "CIFAR-10 with ResNet, varying width" double-descent check, on a
local CIFAR-10 copy (nothing is downloaded).

A 2-layer ReLU MLP of each hidden width is trained with full-batch Adam on a subset of CIFAR-10 whose
training labels are partly randomised (label noise makes the interpolation peak visible); the test
error against width should peak near the smallest width that fits the training set (Nakkiran et al.
2021). Without ``--cifar-dir`` the study has no members and reports its row as not testable here.

Members: ``data`` (draws the subset, standardises it, writes ``cifar_subset.npz`` into the run folder)
and one ``width=W`` member per width, which reads that file (the run folder must be visible to the
workers, as it is for local executors).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shld.claims import FAILS, HOLDS, NOT_TESTABLE, claim_row
from shld.experiments.registry import register
from shld.experiments.study import Member, Study, Summary
from shld.plotting import pyplot, save_figure
from shld.runs import atomic_write
from shld.seeds import member_seed

SEED_TEXT = "CIFAR-10 with ResNet, varying width (validation of the double-descent prediction)"
RULE_CIFAR = ("model-wise double descent in width (Nakkiran et al. 2021): holds if the largest test error over "
              "the widths lies within one grid step of the smallest width whose training error is <= 1% "
              "(the interpolation threshold) and the widest model's test error is below that peak; fails "
              "otherwise; not testable without a local CIFAR-10 folder.")
SUBSET = "cifar_subset.npz"

AUDIT = {"quick": {}, "full": {"n_train": 4000, "n_test": 4000, "epochs": 1000}}


@dataclass
class CifarWidthParams:
    seed: int = field(default=0, metadata={"help": "root seed"})
    cifar_dir: str = field(default="", metadata={"help": "folder with CIFAR-10 in torchvision's python format "
                                                         "(cifar-10-batches-py); empty = not run"})
    n_train: int = field(default=1000, metadata={"help": "CIFAR-10 training images used", "min": 10})
    n_test: int = field(default=2000, metadata={"help": "CIFAR-10 test images used", "min": 10})
    widths: tuple[int, ...] = field(default=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
                                    metadata={"help": "hidden widths of the MLP", "min": 1})
    epochs: int = field(default=300, metadata={"help": "full-batch Adam epochs per width", "min": 1})
    label_noise: float = field(default=0.2, metadata={"help": "fraction of training labels randomised",
                                                      "min": 0, "max": 1})


def load_cifar10(folder: str | Path):
    """CIFAR-10 from torchvision's python format (no download): ``folder`` is ``cifar-10-batches-py``
    or its parent. Returns (X_train uint8 (50000, 3072), y_train, X_test, y_test) — or fewer rows when
    the folder holds smaller batches (as the tests' generated data set does)."""
    import pickle

    folder = Path(folder)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    train = sorted(folder.glob("data_batch_*"))
    test = folder / "test_batch"
    if not train or not test.exists():
        raise FileNotFoundError(f"`cifar_dir` {str(folder)!r} holds no data_batch_* / test_batch files "
                                "(torchvision's CIFAR-10 python format)")

    def read(path):
        with open(path, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
        return np.asarray(d[b"data"], dtype=np.uint8), np.asarray(d[b"labels"], dtype=np.int64)

    parts = [read(p) for p in train]
    Xte, yte = read(test)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), Xte, yte


def _subset(p: CifarWidthParams, path: Path) -> None:
    """Draw the training/test subset, randomise a fraction of the training labels, standardise with the
    training statistics, and write it atomically to ``path``."""
    Xtr, ytr, Xte, yte = load_cifar10(p.cifar_dir)
    rng = np.random.default_rng(member_seed(p.seed, 7))
    itr = rng.permutation(len(Xtr))[: p.n_train]
    ite = rng.permutation(len(Xte))[: p.n_test]
    xtr = Xtr[itr].astype(np.float32) / 255.0
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    y = ytr[itr].copy()
    flip = rng.random(y.size) < p.label_noise
    y[flip] = rng.integers(0, 10, flip.sum())
    arrays = {"Xtr": ((xtr - mu) / sd).astype(np.float32), "ytr": y,
              "Xte": ((Xte[ite].astype(np.float32) / 255.0 - mu) / sd).astype(np.float32), "yte": yte[ite]}
    atomic_write(path, lambda fh: np.savez(fh, **arrays), binary=True)


def train_width(data: Path, width: int, epochs: int, seed: int) -> dict:
    """Train a 2-layer ReLU MLP of ``width`` hidden units with full-batch Adam on the subset in ``data``."""
    import torch

    from shld.experiments._torch_train import one_thread

    d = np.load(data)
    Xtr, ytr, Xte, yte = (torch.from_numpy(d[k]) for k in ("Xtr", "ytr", "Xte", "yte"))
    with one_thread():
        gen = torch.Generator().manual_seed(int(member_seed(seed, 7, width).generate_state(1)[0]))
        lin1, lin2 = torch.nn.Linear(Xtr.shape[1], width), torch.nn.Linear(width, 10)
        for lin in (lin1, lin2):
            bound = 1.0 / np.sqrt(lin.in_features)
            with torch.no_grad():
                lin.weight.uniform_(-bound, bound, generator=gen)
                lin.bias.uniform_(-bound, bound, generator=gen)
        model = torch.nn.Sequential(lin1, torch.nn.ReLU(), lin2)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(epochs):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(Xtr), ytr).backward()
            opt.step()
        with torch.no_grad():
            train_err = float((model(Xtr).argmax(1) != ytr).float().mean())
            test_err = float((model(Xte).argmax(1) != yte).float().mean())
            train_loss = float(torch.nn.functional.cross_entropy(model(Xtr), ytr))
    return {"width": width, "n_params": sum(p.numel() for p in model.parameters()), "train_err": train_err,
            "test_err": test_err, "train_loss": train_loss}


class CifarWidthStudy(Study):
    name = "cifar-width"
    help = ("Model-wise double descent in width on a local CIFAR-10 subset (2-layer MLP, noisy labels); "
            "nothing is downloaded.")
    Params = CifarWidthParams
    audit = AUDIT

    def validate(self, p) -> None:
        if p.cifar_dir and not Path(p.cifar_dir).is_dir():
            raise ValueError(f"`cifar_dir` must be a folder holding CIFAR-10 (cifar-10-batches-py), got "
                             f"{p.cifar_dir!r}")

    def members(self, p, done):
        if not p.cifar_dir or not _torch_available():
            return []
        out = [Member("data")]
        if "data" in done:
            out += [Member(f"width={int(w)}", {"width": int(w)}) for w in sorted(set(p.widths))]
        return out

    def run_member(self, p, member, ctx) -> dict:
        path = ctx.path / SUBSET
        if member.key == "data":
            t0 = time.perf_counter()
            _subset(p, path)
            return {"file": SUBSET, "seconds": round(time.perf_counter() - t0, 3)}
        return train_width(path, member.task["width"], p.epochs, p.seed)

    def analyse(self, p, results) -> Summary:
        why = ("no local CIFAR-10 folder given (--cifar-dir); nothing is downloaded" if not p.cifar_dir
               else None if _torch_available() else "PyTorch is not installed (pip install shld[torch])")
        if why:
            row = claim_row("dd-cifar-width", "model-wise double descent on CIFAR-10 (width sweep)", SEED_TEXT,
                            f"not run: {why}", NOT_TESTABLE, RULE_CIFAR)
            return Summary([row], {"widths": []})
        rows = [results[f"width={int(w)}"] for w in sorted(set(p.widths))]
        widths = np.array([r["width"] for r in rows])
        tr_err = np.array([r["train_err"] for r in rows])
        te_err = np.array([r["test_err"] for r in rows])
        i_peak = int(np.argmax(te_err))
        interp = np.nonzero(tr_err <= 0.01)[0]
        i_thr = int(interp[0]) if interp.size else None
        ok = i_thr is not None and abs(i_peak - i_thr) <= 1 and te_err[-1] < te_err[i_peak]
        thr_text = f"width {int(widths[i_thr])}" if i_thr is not None else "never reached"
        row = claim_row(
            "dd-cifar-width", "model-wise double descent on CIFAR-10 (width sweep)", SEED_TEXT,
            f"test error peaks at width {int(widths[i_peak])} ({te_err[i_peak]:.1%}); train error <= 1% first "
            f"at {thr_text}; widest ({int(widths[-1])}) {te_err[-1]:.1%} (2-layer MLP, n = {p.n_train}, "
            f"{p.label_noise:.0%} label noise; not a ResNet)",
            HOLDS if ok else FAILS, RULE_CIFAR, value=float(widths[i_peak]), figure="figures/cifar_width.png")
        return Summary([row], {"widths": rows})

    def figures(self, p, results, summary, figs) -> None:
        rows = summary["widths"]
        if not rows:
            return
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["width"] for r in rows], [r["test_err"] for r in rows], "o-", label="test error")
        ax.plot([r["width"] for r in rows], [r["train_err"] for r in rows], "s--", label="train error (noisy labels)")
        ax.set_xscale("log")
        ax.set_xlabel("hidden width")
        ax.set_ylabel("error")
        ax.set_title("CIFAR-10 subset, 2-layer MLP")
        ax.legend(fontsize=8)
        fig.tight_layout()
        save_figure(fig, figs / "cifar_width.png", tight=False, dpi=110)
        plt.close(fig)


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


register(CifarWidthStudy())
