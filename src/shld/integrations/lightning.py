"""Lightning adapter: :class:`ShldCallback` drives a :class:`shld.torch.Monitor` from Lightning hooks.

``on_train_batch_start`` → ``Monitor.begin(batch)`` (first micro-batch of an accumulation window),
``on_before_optimizer_step`` → ``Monitor.end()`` (after backward and accumulation, before
gradient clipping and the optimizer step). The record's numeric values are logged with
``pl_module.log_dict`` under ``shld/<key>``. With ``accumulate_grad_batches = k > 1`` the norm trick
still sees every micro-batch (pass ``backend="accumulation"`` to use the micro-steps as groups).

Curvature and the ``microbatch`` backend need ``loss_fn(model, batch) -> loss``; the default calls
``model.training_step(batch, 0)`` (which must then not call ``self.log`` unconditionally).
"""

from __future__ import annotations

import math

import lightning.pytorch as pl

from shld.torch import Monitor


def _training_step_loss(model, batch):
    out = model.training_step(batch, 0)
    return out["loss"] if isinstance(out, dict) else out


class ShldCallback(pl.Callback):
    """Lightning ``Callback`` running the SHLD monitor; ``monitor_kwargs`` go to :class:`Monitor`."""

    def __init__(self, loss_fn=None, log: bool = True, **monitor_kwargs):
        super().__init__()
        self.loss_fn = loss_fn
        self.log = log
        self.monitor_kwargs = monitor_kwargs
        self.monitor: Monitor | None = None
        self._pending_state = None
        self._sizes: list = []

    def on_train_start(self, trainer, pl_module):
        if self.monitor is None:
            opt = trainer.optimizers[0] if trainer.optimizers else None
            loss_fn = self.loss_fn
            if loss_fn is None and (self.monitor_kwargs.get("curvature_schedule") is not None
                                    or self.monitor_kwargs.get("backend") in ("microbatch", "vmap")):
                loss_fn = _training_step_loss
            self.monitor = Monitor(pl_module, opt, loss_fn=loss_fn, **self.monitor_kwargs)
            if self._pending_state is not None:
                self.monitor.load_state_dict(self._pending_state)
                self._pending_state = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        n = self._batch_size(batch)
        if batch_idx % max(trainer.accumulate_grad_batches, 1) == 0 and self.monitor._active is None:
            self._sizes = [n]
            bs = n * trainer.accumulate_grad_batches if n else None
            self.monitor.begin(batch, batch_size=bs if self.monitor.backend == "accumulation" else None)
        elif self.monitor._active is not None:
            self._sizes.append(n)

    def on_before_backward(self, trainer, pl_module, loss):
        # the step's loss: loss_reduction="auto" reads its reduction (Monitor.observe)
        if self.monitor is not None and self.monitor._active is not None and loss is not None and loss.dim() == 0:
            self.monitor.observe(loss)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if self.monitor is None or self.monitor._active is None:
            return
        act = self.monitor._active
        if self.monitor.backend == "accumulation" and self._sizes and None not in self._sizes:
            # the window's real micro-batch sizes (the last one of an epoch may be smaller)
            act["sizes"], act["batch_size"] = list(self._sizes), sum(self._sizes)
        rec = self.monitor.end()
        if rec is not None and self.log:
            vals = {f"shld/{k}": float(v) for k, v in rec.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
            pl_module.log_dict(vals, on_step=True, on_epoch=False)

    def on_train_end(self, trainer, pl_module):
        if self.monitor is not None:
            self.monitor.close()

    @staticmethod
    def _batch_size(batch):
        from shld.torch.backends import batch_size_of
        return batch_size_of(batch)

    def state_dict(self):
        return self.monitor.state_dict() if self.monitor is not None else {}

    def load_state_dict(self, state_dict):
        if state_dict:
            if self.monitor is not None:
                self.monitor.load_state_dict(state_dict)
            else:
                self._pending_state = state_dict
