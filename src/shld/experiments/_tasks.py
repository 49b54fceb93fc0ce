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
from shld.experiments._torch_train import Data, make_generator

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
    s_split, s_init = seq.spawn(2)
    g_split = make_generator(s_split)
    if name == "modular":
        from shld.experiments.modular import EmbedMLP, modular_dataset

        x, y = modular_dataset(MODULAR_P, "add")
        n_classes = MODULAR_P

        def factory():
            return EmbedMLP(MODULAR_P, width=128, embed_dim=16, generator=make_generator(s_init))
    else:
        x, y = _digits()
        n_classes = 10
        if name == "digits-cnn":
            x = x.reshape(-1, 1, 8, 8)

            def factory():
                net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                                    nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
                return _init_(net, make_generator(s_init))
        else:
            def factory():
                net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
                return _init_(net, make_generator(s_init))
    tr, va, te = _split3(len(y), g_split)
    return Task(name, Data(x[tr], y[tr], x[te], y[te]), x[va], y[va], factory, n_classes)


__all__ = ["TASKS", "Task", "make_task"]
