"""Small CPU tasks shared by the learning-rate and batch-size experiments.

Each task is built from a ``numpy.random.SeedSequence`` (its split, initialisation and data order
come from spawned children) and returns a :class:`Task`: train / validation / test tensors and a
model factory. Nothing is downloaded: digits ship with scikit-learn
(``sklearn.datasets.load_digits``, 1797 8×8 images, 10 classes), modular arithmetic is generated.

==============  ================================================================  ==============
name            model                                                             data
==============  ================================================================  ==============
digits-mlp      64 → 128 ReLU → 10                                                digits, /16
digits-cnn      conv3×3(1→8) ReLU, conv3×3(8→16) ReLU, maxpool 2, linear 256→10   digits 1×8×8
modular         embedding(16) ×2 → 128 ReLU → p (:class:`~.modular.EmbedMLP`)     (a+b) mod 23
==============  ================================================================  ==============

Splits are 60 % train / 20 % validation / 20 % test (validation picks the grid's best
learning rate; test reports accuracy).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from shld._validation import check_choice
from shld.experiments._torch_train import Data
from shld.seeds import child_seed, torch_generator

TASKS = ("digits-mlp", "digits-cnn", "modular")
MODULAR_P = 23


@dataclass
class Task:
    name: str
    data: Data
    x_val: torch.Tensor
    y_val: torch.Tensor
    make_model: Callable[[], nn.Module]
    n_classes: int


def _init_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """PyTorch's default uniform ±1/√fan-in init for Linear/Conv, drawn from ``generator``."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                fan_in = m.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                m.weight.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=generator)
    return module


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.data / 16.0, dtype=torch.float32), torch.tensor(d.target, dtype=torch.long)


def _split3(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=generator)
    a, b = int(round(0.6 * n)), int(round(0.8 * n))
    return perm[:a], perm[a:b], perm[b:]


def make_task(name: str, seq: np.random.SeedSequence) -> Task:
    """Build task ``name`` (one of :data:`TASKS`) from the seed stream ``seq``."""
    check_choice("task", name, TASKS)
    # children by spawn key, not seq.spawn(), which advances seq: the same seq always builds the same task
    s_split, s_init = child_seed(seq, 0), child_seed(seq, 1)
    g_split = torch_generator(s_split)
    if name == "modular":
        from shld.experiments.modular import EmbedMLP, modular_dataset

        x, y = modular_dataset(MODULAR_P, "add")
        n_classes = MODULAR_P

        def factory():
            return EmbedMLP(MODULAR_P, width=128, embed_dim=16, generator=torch_generator(s_init))
    else:
        x, y = _digits()
        n_classes = 10
        if name == "digits-cnn":
            x = x.reshape(-1, 1, 8, 8)

            def factory():
                net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                                    nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
                return _init_(net, torch_generator(s_init))
        else:
            def factory():
                net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
                return _init_(net, torch_generator(s_init))
    tr, va, te = _split3(len(y), g_split)
    return Task(name, Data(x[tr], y[tr], x[te], y[te]), x[va], y[va], factory, n_classes)


#: a run is stopped as diverged when its training loss is not finite or exceeds this × its first value
DIVERGE_FACTOR = 10.0


def train_sgd(task_name: str, seq: np.random.SeedSequence, *, lr: float, batch_size: int, epochs: int, run,
              resume: bool, monitor: bool = False) -> dict:
    """Train task ``task_name`` (built from ``seq``) with plain SGD at learning rate ``lr`` and batch size
    ``batch_size`` for ``epochs`` epochs into ``run`` (a :class:`~shld.runs.RunFolder`; checkpoints twice,
    resumable); stops early when the training loss diverges (:data:`DIVERGE_FACTOR`). Returns the final
    numbers and the ``train_loss`` curve; with ``monitor``, also the SHLD monitor's C_unbiased at the
    first step of every epoch (``C_curve``). Shared by the learning-rate and batch-size studies."""
    from shld.experiments._torch_train import evaluate, one_thread, train

    with one_thread():
        task = make_task(task_name, seq)
        model = task.make_model()
        opt = torch.optim.SGD(model.parameters(), lr=float(lr))
        state = {"first": None, "diverged": False}

        def stop(row):
            tl = row["train_loss"]
            if state["first"] is None:
                state["first"] = tl
            if not math.isfinite(tl) or tl > DIVERGE_FACTOR * state["first"]:
                state["diverged"] = True
            return state["diverged"]

        g_order = torch_generator(child_seed(seq, 10))  # children 0, 1: the task's split and init
        hook = None
        if monitor:
            from shld.experiments._torch_monitor import monitor_hook

            hook = monitor_hook(model, lr=float(lr))
        cols = train(model, opt, task.data, epochs=epochs, run=run, generator=g_order, batch_size=batch_size,
                     monitor=hook, checkpoint_every=max(1, epochs // 2), resume=resume, stop=stop)
        val_loss, val_acc = evaluate(model, task.x_val, task.y_val)
    diverged = bool(state["diverged"]) or not math.isfinite(float(cols["train_loss"][-1]))
    steps = float(cols["step"][-1])
    return {"task": task_name, "lr": float(lr), "diverged": diverged, "val_acc": val_acc, "val_loss": val_loss,
            "test_acc": float(cols["test_acc"][-1]), "test_loss": float(cols["test_loss"][-1]),
            "train_loss": float(cols["train_loss"][-1]), "n_test": int(task.data.y_test.shape[0]),
            "steps": steps, "samples": float(min(steps * batch_size, cols["epoch"][-1] * task.data.n_train)),
            "train_loss_curve": np.asarray(cols["train_loss"], float),
            **({"C_curve": np.asarray(cols["C_unbiased"], float)} if monitor else {})}


__all__ = ["TASKS", "Task", "make_task", "train_sgd", "DIVERGE_FACTOR"]
