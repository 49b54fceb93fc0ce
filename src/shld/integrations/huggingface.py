"""Hugging Face adapter: :class:`ShldTrainerCallback` drives a :class:`shld.torch.Monitor` inside
``transformers.Trainer``.

``on_step_begin`` → ``Monitor.begin()`` (once per optimizer step, before the first micro-batch),
``on_pre_optimizer_step`` → ``Monitor.end()`` (after all micro-batches' backward; HF clips the
gradients just before this hook, which does not matter: the monitor reads the gradients through
its own hooks during backward). Records are added to the Trainer's log history under
``shld/<key>`` on the next ``on_log``; the monitor is available as ``callback.monitor``.

The Trainer does not expose the batch to callbacks, so the default backend is the norm trick
(batch size from the hooked layers) and curvature is not available here. Hugging Face models
average the loss over *tokens*; the per-sample gradient is then each sequence's share of that
mean, times B (the mean-loss convention of :mod:`shld.torch.stats`).
"""

from __future__ import annotations

import math

from transformers import TrainerCallback

from shld.torch import Monitor


class ShldTrainerCallback(TrainerCallback):
    def __init__(self, **monitor_kwargs):
        if monitor_kwargs.get("curvature_schedule") is not None:
            raise ValueError("`curvature_schedule` is not available in the Hugging Face adapter "
                             "(the Trainer does not pass batches to callbacks)")
        self.monitor_kwargs = monitor_kwargs
        self.monitor: Monitor | None = None
        self._unlogged: list[dict] = []

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.monitor is None:
            self.monitor = Monitor(model, optimizer, **self.monitor_kwargs)

    def on_step_begin(self, args, state, control, **kwargs):
        if self.monitor._active is None:
            self.monitor.begin()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.monitor is not None and self.monitor._active is not None:
            rec = self.monitor.end()
            if rec is not None:
                self._unlogged.append(rec)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self._unlogged:
            rec = self._unlogged[-1]
            logs.update({f"shld/{k}": float(v) for k, v in rec.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)})
            self._unlogged = []

    def on_train_end(self, args, state, control, **kwargs):
        if self.monitor is not None:
            self.monitor.close()
