"""Thin adapter: :class:`shld.torch.Monitor` as the training loop's :class:`MonitorHook`.

The loop calls :meth:`MonitorHook.wrap_step` on the first optimizer step of every epoch, so the
monitor's own step counter counts epochs; its noise schedule fires on every call (one record
per epoch) and λ_max (warm-started Lanczos) every ``lambda_every`` epochs (0: never). The loss
is the mean cross-entropy, as in the loop. All definitions (C, B_simple, D_seed, D_sde, ε_opt,
α_opt = 2 D_seed / λ_max …) are the monitor's: see :mod:`shld.torch.stats` and
:mod:`shld.torch.curvature`.
"""

from __future__ import annotations

import math

import torch.nn.functional as F

from shld.experiments._torch_train import MonitorHook

#: monitor keys copied into each epoch row of ``metrics.csv``
NOISE_COLUMNS = ("C_smoothed", "C_smoothed_se", "C_unbiased", "C_plugin", "grad_sq_norm", "trace_sigma",
                 "B_simple", "D_seed", "D_sde", "D_eff")
CURVATURE_COLUMNS = ("lambda_max", "eps_opt", "eps_opt_capped", "alpha_opt_seed", "stability_limit",
                     "eos_ratio", "n_hvp")


def ce_loss(model, batch):
    """Mean cross-entropy of ``model`` on ``batch = (x, y)`` (the loop's training loss)."""
    x, y = batch
    return F.cross_entropy(model(x), y)


class ShldMonitorHook(MonitorHook):
    def __init__(self, model, *, lr: float | None = None, lambda_every: int = 0, smoothing: float = 0.9,
                 lanczos_steps: int = 8, generator=None):
        from shld.torch import Monitor

        self.monitor = Monitor(model, loss_fn=ce_loss, schedule=1,
                               curvature_schedule=lambda_every if lambda_every else None, lr=lr,
                               smoothing=smoothing, lanczos_steps=lanczos_steps, events=None,
                               groups="none", generator=generator)
        self.columns = NOISE_COLUMNS + (CURVATURE_COLUMNS if lambda_every else ())
        self._last: dict = {}

    def wrap_step(self, step_fn, model, batch, step):
        n_before = len(self.monitor.records)
        with self.monitor.track(batch):
            loss, out = step_fn()
        self._last = self.monitor.records[-1] if len(self.monitor.records) > n_before else {}
        del self.monitor.records[:-1]  # keep memory flat over long runs (rows go to metrics.csv)
        return loss, out

    def record(self) -> dict:
        return {k: self._last.get(k, math.nan) for k in self.columns}

    def state_dict(self) -> dict:
        return self.monitor.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.monitor.load_state_dict(state)


def monitor_hook(model, *, lr: float | None = None, lambda_every: int = 0, **kw) -> ShldMonitorHook:
    """The hook used by the PyTorch experiments (see the module docstring)."""
    return ShldMonitorHook(model, lr=lr, lambda_every=lambda_every, **kw)


__all__ = ["ShldMonitorHook", "monitor_hook", "ce_loss", "NOISE_COLUMNS", "CURVATURE_COLUMNS"]
