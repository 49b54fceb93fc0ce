"""A shared, resumable training loop for the PyTorch experiments (grokking, lr-selection,
batch-scaling).

One **record** per epoch ``e = 0 … epochs``: the row for epoch ``e`` describes the parameters
θ_e after ``e`` epochs (θ_0 is the initialisation):

* ``train_loss``, ``train_acc`` — mean cross-entropy and accuracy on the whole training set at
  θ_e (in full-batch mode taken from the forward pass of the step that starts at θ_e, which sees
  exactly the same data and parameters);
* ``test_loss``, ``test_acc`` — the same on the test set at θ_e;
* ``weight_norm`` — ‖θ_e‖₂ over all trainable parameters;
* the monitor's columns (see :class:`MonitorHook`) for the **first optimizer step of epoch e**,
  whose gradient is taken at θ_e — so in full-batch mode every column of a row refers to the
  same parameters. The last row (e = epochs) takes no step and has NaN monitor columns.

The loss is the **mean** cross-entropy over the batch (PyTorch's default reduction).

Checkpoints (``checkpoint.pt`` in the run folder, written atomically with ``torch.save`` to a
temporary file and ``os.replace``) hold the model, the optimizer, the data-order generator's
state, the monitor's state and the next epoch. On ``resume=True`` the loop loads it, drops the
metrics rows written after it (``MetricsWriter.truncate_after``) and continues: the final
metrics are those of an uninterrupted run (CPU, same thread count; the experiments set one
thread per process).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shld._validation import check_int
from shld.progress import progress_bar
from shld.runs import CorruptFileError, RunFolder, RunFolderError, atomic_write, check_identity, count_rows

CHECKPOINT = "checkpoint.pt"


@dataclass
class Data:
    """Train and test tensors: inputs ``x_*`` (any dtype, leading dim = samples), labels ``y_*`` long."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def n_train(self) -> int:
        return int(self.y_train.shape[0])


@contextlib.contextmanager
def one_thread():
    """Run the block with one torch thread (deterministic results, fair sharing when sweep members run
    side by side), restoring the previous thread count afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def weight_norm(model: nn.Module) -> float:
    with torch.no_grad():
        return math.sqrt(sum(float((p.detach() ** 2).sum()) for p in model.parameters()
                             if p.requires_grad))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 8192) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``(x, y)``."""
    if y.shape[0] == 0:
        return math.nan, math.nan
    loss_sum, correct = 0.0, 0
    for i in range(0, y.shape[0], chunk):
        out = model(x[i:i + chunk])
        loss_sum += float(F.cross_entropy(out, y[i:i + chunk], reduction="sum"))
        correct += int((out.argmax(1) == y[i:i + chunk]).sum())
    return loss_sum / y.shape[0], correct / y.shape[0]


class MonitorHook:
    """The interface the loop uses to observe optimizer steps (adapters wrap ``shld.torch``).

    ``wrap_step(step_fn, model, batch, step)`` runs ``step_fn()`` — which computes the loss
    and calls ``backward`` — under whatever instrumentation the monitor needs, and returns
    ``(loss tensor, logits)`` as ``step_fn`` does; ``record()`` returns the dict of columns for
    the last observed step (called once per epoch, after the epoch's first step);
    ``columns`` lists those keys; ``state_dict``/``load_state_dict`` make it resumable.
    """

    columns: tuple[str, ...] = ()

    def wrap_step(self, step_fn, model, batch, step: int):
        return step_fn()

    def record(self) -> dict:
        return {}

    def after_optimizer_step(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _save_torch(path: Path, obj: Any) -> None:
    """``torch.save`` through the one atomic writer (per-process temporary, fsync, rename)."""
    atomic_write(path, lambda fh: torch.save(obj, fh), binary=True)


def _load_torch(path: Path, run: RunFolder) -> dict:
    try:
        state = torch.load(path, weights_only=False)
        if not isinstance(state, dict) or "model" not in state or "next_epoch" not in state:
            raise ValueError("it is not a training checkpoint")
    except Exception as exc:
        raise CorruptFileError(f"{path}: not a readable checkpoint ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}); remove it to restart the "
                               "run from the beginning") from None
    if run.identity is not None:
        check_identity(run.identity, state.get("identity"), str(path))
    return state


def train(model: nn.Module, optimizer: torch.optim.Optimizer, data: Data, *, epochs: int,
          run: RunFolder, generator: torch.Generator, batch_size: int | None = None,
          monitor: MonitorHook | None = None, checkpoint_every: int = 50, resume: bool = False,
          progress: bool = False, desc: str = "train",
          extra: Callable[[int, dict], dict] | None = None,
          stop: Callable[[dict], bool] | None = None) -> dict[str, np.ndarray]:
    """Train ``model`` with ``optimizer`` for ``epochs`` epochs; write ``metrics.csv`` to ``run``.

    ``batch_size=None`` (or ≥ n_train) is full-batch: one step per epoch on the whole training
    set. Otherwise each epoch visits a fresh random permutation (drawn from ``generator``) in
    batches of ``batch_size`` (the last one may be smaller). ``extra(epoch, row)`` may add
    columns to a row; ``stop(row)`` returning True ends training after that row (recorded in the
    checkpoint so a resume does not continue); ``stop`` may keep state, it sees every row in
    order (on resume the kept rows are replayed to it first). Returns the metrics columns.
    """
    epochs = check_int("epochs", epochs, minimum=0)
    n = data.n_train
    full = batch_size is None or batch_size >= n
    if not full:
        check_int("batch_size", batch_size, minimum=1)
    monitor = monitor or MonitorHook()
    ckpt_path = run.path / CHECKPOINT
    writer = run.metrics()
    start = 0
    step = 0
    if resume and ckpt_path.exists():
        state = _load_torch(ckpt_path, run)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        monitor.load_state_dict(state["monitor"])
        start, step = int(state["next_epoch"]), int(state["step"])
        kept = count_rows(writer.path, "epoch", upto=start - 1)
        if kept < start:   # one row per epoch before the checkpoint; refuse before touching the file
            raise RunFolderError(
                f"{writer.path} holds {kept} of the {start} rows written before the checkpoint at epoch {start} "
                f"(emptied, cut or deleted); resuming would lose them: remove {ckpt_path} to restart this run "
                "from the beginning, or use another --out")
        writer.truncate_after("epoch", start - 1)
        if stop is not None and start > 0:  # replay the kept rows so a stateful stop rule catches up
            kept = run.read_metrics()
            for i in range(len(kept.get("epoch", []))):
                stop({k: v[i] for k, v in kept.items()})
        if state.get("stopped"):
            start = epochs + 1
    elif resume:  # nothing to resume from: start clean
        writer.truncate_after("epoch", -1)

    def checkpoint(next_epoch: int, stopped: bool = False) -> None:
        _save_torch(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "generator": generator.get_state(), "monitor": monitor.state_dict(),
                                "next_epoch": next_epoch, "step": step, "stopped": stopped,
                                "identity": run.identity})

    bar = progress_bar(epochs + 1, desc, "epoch", enabled=progress, initial=start)
    nan_cols = dict.fromkeys(monitor.columns, math.nan)
    try:
        for epoch in range(start, epochs + 1):
            row: dict = {"epoch": epoch, "step": step}
            row["test_loss"], row["test_acc"] = evaluate(model, data.x_test, data.y_test)
            row["weight_norm"] = weight_norm(model)
            row["lr"] = float(optimizer.param_groups[0]["lr"])
            if epoch == epochs:
                row["train_loss"], row["train_acc"] = evaluate(model, data.x_train, data.y_train)
                row.update(nan_cols)
            else:
                if full:
                    batches = [torch.arange(n)]
                else:
                    perm = torch.randperm(n, generator=generator)
                    batches = list(torch.split(perm, batch_size))
                    row["train_loss"], row["train_acc"] = evaluate(model, data.x_train, data.y_train)
                model.train()
                for j, idx in enumerate(batches):
                    xb, yb = data.x_train[idx], data.y_train[idx]

                    def step_fn(xb=xb, yb=yb):
                        out = model(xb)
                        loss = F.cross_entropy(out, yb)
                        loss.backward()
                        return loss, out

                    optimizer.zero_grad(set_to_none=True)
                    if j == 0:
                        loss, out = monitor.wrap_step(step_fn, model, (xb, yb), step)
                        row.update({k: monitor.record().get(k, math.nan) for k in monitor.columns})
                        if full:
                            row["train_loss"] = float(loss.detach())
                            row["train_acc"] = float((out.detach().argmax(1) == yb).float().mean())
                    else:
                        step_fn()
                    optimizer.step()
                    monitor.after_optimizer_step()
                    step += 1
                model.eval()
            if extra is not None:
                row.update(extra(epoch, row))
            writer.write(row)
            stopped = stop is not None and stop(row)
            bar.update(1)
            bar.set_postfix_str(f"train={row['train_acc']:.3f}, test={row['test_acc']:.3f}", refresh=False)
            if stopped:
                checkpoint(epoch + 1, stopped=True)
                break
            if (epoch + 1) % checkpoint_every == 0 or epoch == epochs:
                checkpoint(epoch + 1)
    finally:
        writer.close()
        bar.close()
    return run.read_metrics()


__all__ = ["Data", "MonitorHook", "train", "one_thread", "evaluate", "weight_norm", "CHECKPOINT"]
