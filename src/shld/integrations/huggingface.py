"""Hugging Face adapter: :class:`ShldTrainerCallback` drives a :class:`shld.torch.Monitor` inside
``transformers.Trainer``.

``on_step_begin`` → ``Monitor.begin()`` (once per optimizer step, before the first micro-batch),
``on_pre_optimizer_step`` → ``Monitor.end()`` (after all micro-batches' backward; HF clips the
gradients just before this hook, which does not matter: the monitor reads the gradients through
its own hooks during backward). Records are added to the Trainer's log history under
``shld/<key>`` on the next ``on_log``; the monitor is available as ``callback.monitor``.

**Batches.** The Trainer does not hand the batch to callbacks. On a step that needs one (a
curvature step, or a noise step of the ``microbatch``/``vmap`` backends) the callback arms a
forward pre-hook on the model in ``on_step_begin``; the hook keeps the keyword inputs of the next
forward — the Trainer's ``model(**inputs)`` of the step's first micro-batch, already on the device —
and disarms itself. No user code changes. ``num_items_in_batch`` (the Trainer's token count for
gradient accumulation) is dropped, so the loss of the captured batch is the model's own mean over
its tokens. The captured inputs are in ``callback.last_batch``.

**Curvature** (``curvature_schedule=``): the Hessian is that of ``loss_fn(model, batch)`` on the
step's first micro-batch (or on ``curvature_batch=`` when given), taken at the parameters before
the optimizer step. The default ``loss_fn`` is the model's own loss, ``model(**batch).loss`` — the
Trainer's loss unless it uses label smoothing or ``compute_loss_func`` (then it pops ``labels``
before the forward, and a ``loss_fn`` must be passed). The forward runs in the model's current
mode: dropout, if the model has any, is part of that loss (under ``torch.random.fork_rng``, so the
training's random stream is not moved).

Hugging Face models average the loss over *tokens*; the per-sample gradient is then each sequence's
share of that mean, times B (the mean-loss convention of :mod:`shld.torch.stats`).
"""

from __future__ import annotations

import math
import warnings

from transformers import TrainerCallback

from shld.torch import Monitor

_DROPPED = ("num_items_in_batch",)


def hf_model_loss(model, batch):
    """The model's own loss on a batch of keyword inputs: ``model(**batch).loss``."""
    out = model(**batch)
    loss = out.get("loss") if isinstance(out, dict) else getattr(out, "loss", None)
    if loss is None and isinstance(out, (tuple, list)) and out:
        loss = out[0]
    if loss is None:
        raise ValueError("the model returned no loss for the captured batch (keys: "
                         f"{sorted(batch)}); the Trainer pops `labels` when it uses label smoothing or "
                         "`compute_loss_func`: pass `loss_fn=` (a callable (model, batch) -> loss) to "
                         "ShldTrainerCallback")
    return loss


class ShldTrainerCallback(TrainerCallback):
    """A :class:`shld.torch.Monitor` in ``transformers.Trainer``; keywords go to ``Monitor``.

    ``loss_fn`` defaults to :func:`hf_model_loss` (used by curvature and by the ``microbatch``/
    ``vmap`` backends); batches are captured as the module docstring says.
    """

    def __init__(self, **monitor_kwargs):
        self.monitor_kwargs = monitor_kwargs
        self.monitor: Monitor | None = None
        self.last_batch: dict | None = None
        self._unlogged: list[dict] = []
        self._hook = None
        self._armed = False
        self._captured: dict | None = None

    # --- batch capture -----------------------------------------------------------------------
    def _capture(self, module, args, kwargs):
        if self._armed:
            self._armed = False
            if args:
                raise ValueError("ShldTrainerCallback captures the batch from the model's keyword inputs, "
                                 f"but the forward was called with {len(args)} positional argument(s); "
                                 "pass `curvature_batch=` to the callback instead")
            self._captured = {k: v for k, v in kwargs.items() if k not in _DROPPED}

    def _needs_batch(self, noise: bool, curv: bool) -> bool:
        m = self.monitor
        return (curv and m.curvature_batch is None) or (noise and m.backend in ("microbatch", "vmap"))

    # --- Trainer events ------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.monitor is None:
            kw = dict(self.monitor_kwargs)
            if kw.get("loss_fn") is None:
                kw["loss_fn"] = hf_model_loss
                # the model's own loss is a mean over tokens (with num_items_in_batch, over the step's
                # tokens): the mean convention, and the Trainer never hands the loss to callbacks
                kw.setdefault("loss_reduction", "mean")
            self.monitor = Monitor(model, optimizer, **kw)
        if self._hook is None and model is not None:
            self._hook = model.register_forward_pre_hook(self._capture, with_kwargs=True)

    def on_step_begin(self, args, state, control, **kwargs):
        m = self.monitor
        if m._active is not None:
            return
        noise, curv = m.will_track()
        if self._needs_batch(noise, curv):
            if noise and m.backend in ("microbatch", "vmap") and args.gradient_accumulation_steps > 1:
                raise ValueError(f"backend={m.backend!r} needs the whole step's batch, but with "
                                 f"gradient_accumulation_steps={args.gradient_accumulation_steps} the "
                                 "callback sees one micro-batch; use the norm trick or backend='accumulation'")
            self._armed, self._captured = True, None
            m.begin({})  # a placeholder: the batch is the next forward's inputs, set before end()
        else:
            m.begin()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        m = self.monitor
        if m is None or m._active is None:
            return
        if self._armed or self._captured is not None:
            self._armed = False
            if self._captured is None:  # no forward of this model in the step: nothing to compute on
                warnings.warn(f"ShldTrainerCallback: no forward pass of the model between on_step_begin and "
                              f"on_pre_optimizer_step at step {m.step}; the batch could not be captured and "
                              "the step records no curvature", RuntimeWarning, stacklevel=2)
                m._active["curv"] = False
                if m._active["noise"] and m.backend in ("microbatch", "vmap"):
                    m._active["noise"] = False
            else:
                m._active["batch"] = self.last_batch = self._captured
            self._captured = None
        rec = m.end()
        if rec is not None:
            self._unlogged.append(rec)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self._unlogged:
            rec = self._unlogged[-1]
            logs.update({f"shld/{k}": float(v) for k, v in rec.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)})
            self._unlogged = []

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.monitor is not None:
            self.monitor.close()
