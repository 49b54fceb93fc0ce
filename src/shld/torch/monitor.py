"""The training monitor: C(t), gradient noise scale, temperatures and curvature, live.

Usage (plain PyTorch)::

    mon = Monitor(model, opt, loss_fn=lambda m, b: F.cross_entropy(m(b[0]), b[1]),
                  schedule=10, out="runs/x")           # writes runs/x/monitor.csv and .jsonl
    for step, (x, y) in enumerate(loader):
        opt.zero_grad()                                # .grad must be None/zero when a step begins
        with mon.track((x, y)):                        # forward + backward inside
            loss = F.cross_entropy(model(x), y)
            loss.backward()
        opt.step()
    mon.last["C_smoothed"], mon.history("B_simple"), mon.events

or ``mon.begin(batch)`` … ``mon.end(loss)`` around the forward/backward (what the Lightning and
Hugging Face adapters do). One ``begin``/``end`` pair is one optimizer step; the step counter
starts at 0. On steps where no schedule fires the monitor attaches no hooks at all.

Definitions, conventions (mean loss, per-sample Σ with ddof = 1, d = number of monitored
scalars, time ``t = step·η`` for ``D_sde``) and the plug-in bias: :mod:`shld.torch.stats`.

Each record (a dict; also a CSV row / JSON line) holds ``step``, ``lr``, ``backend``, the keys of
:data:`shld.torch.stats.NOISE_KEYS`, ``C_smoothed`` and ``C_smoothed_se`` (the regime labels use
``C_smoothed``), ``B_simple_smoothed``, ``regime``, ``nonfinite``, ``reason`` (empty, or why the
step's statistics are NaN: see "Misuse" below), per-group ``C/<group>`` and
``trace_sigma/<group>`` (unbiased, unsmoothed), and — on curvature steps — ``lambda_max``,
``batch_sharpness``, ``eos_ratio``, ``stability_limit``, ``eps_max``, ``eps_opt``,
``eps_opt_capped``, ``alpha_opt_seed``, ``n_hvp``, ``lanczos_error``.

Side effects: none on model mode, ``.grad``, optimizer state, buffers or the global RNG. Extra
forward passes (``microbatch``/``vmap`` backends, curvature) run under ``torch.random.fork_rng``
and restore the model's buffers (BatchNorm running statistics) afterwards.

Misuse (docs/torch.md, "Misuse the monitor refuses"): a step whose gradients the hooks cannot
attribute to it — ``.grad`` non-zero when its first backward pass begins (a missing
``zero_grad()``, a ``backward()`` outside and before ``track()``), or no backward pass inside
``track()`` — records NaN for every gradient statistic with a ``reason`` and warns once
(:class:`MonitorMisuseWarning`); parameters added, removed, replaced, frozen or unfrozen after
construction are noticed at the next tracked step: one warning, a ``params_changed`` event, and
the monitor rebuilds on the new parameters; a batch of size 1 records ``‖g_B‖²`` and NaN for
everything that needs a variance, with a reason (not "non-finite"); an ``out`` folder that holds a
monitor log is refused (``FileExistsError``) unless the monitor resumes after its last step.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shld._validation import check_choice, check_int, check_positive
from shld.observables.consolidation import regime_label

from . import backends as bk
from .curvature import HVP, curvature_quantities, lanczos
from .events import EventDetector
from .layer_rules import is_batchnorm_training as lr_is_bn_training
from .layer_rules import own_parameters as lr_own
from .schedule import as_schedule
from .sinks import LOG_FILES, CSVSink, JSONLSink, existing_logs, make_tensorboard
from .stats import NOISE_KEYS, RatioSmoother, noise_quantities, trace_sigma_from_groups

CURVATURE_KEYS = ("lambda_max", "batch_sharpness", "gHg", "eos_ratio", "stability_limit", "eps_max",
                  "eps_opt", "eps_opt_capped", "alpha_opt_seed", "n_hvp", "lanczos_error",
                  "lambda_max_products")

_REDUCTIONS = {0: "none", 1: "mean", 2: "sum"}

#: The reason recorded (and warned once) when a step has a single sample or group.
NO_VARIANCE = "batch of size 1 has no sample variance"


class MonitorMisuseWarning(RuntimeWarning):
    """The monitor met a misuse (see docs/torch.md, "Misuse the monitor refuses"): it records NaN
    with a ``reason`` or rebuilds, and warns once per cause. ``warnings.simplefilter("error",
    MonitorMisuseWarning)`` turns these into exceptions."""


class _CheckedParamGradHooks(bk.ParamGradHooks):
    """:class:`~shld.torch.backends.ParamGradHooks` that also keep, per parameter, ``‖p.grad‖²`` as
    found by the step's *first* backward pass (before anything of this step is accumulated), so that
    gradients left over from earlier (a missing ``zero_grad()``, a ``backward()`` outside
    ``track()``) are detected. Later passes of the same step (gradient accumulation) are not checked."""

    def attach(self) -> None:
        self.initial_sq = [None] * len(self.params)
        super().attach()

    def _make_hook(self, k, p):
        inner = super()._make_hook(k, p)

        def hook(g):
            if self.passes[k] == 0 and p.grad is not None:
                with torch.no_grad():
                    self.initial_sq[k] = bk.flat_dot(p.grad, p.grad)
            return inner(g)
        return hook


#: Nodes whose sum is not a sum over samples: a sum of several losses (``torch.stack([...]).sum()``)
#: or a weighted sum (``(w * per_sample).sum()``, weights that may add up to 1).
_NOT_A_SAMPLE_SUM = ("StackBackward", "CatBackward", "MulBackward", "DivBackward")


def detect_reduction(loss, batch_size: int | None = None) -> str | None:
    """``"mean"``/``"sum"`` read from the last autograd node of ``loss``, or None if unknown.

    Recognises ``x.mean()``/``x.sum()`` and the built-in losses that save their ``reduction``
    (``cross_entropy``/``nll_loss``, ``mse_loss``, ``binary_cross_entropy(_with_logits)``, ...).
    A sum is called ``"sum"`` only when it is a sum over samples: not a sum of stacked or
    concatenated losses, nor of a product or quotient (a weighted sum), and — with ``batch_size``
    given — only when the summed tensor's leading dimension is the batch size (a sum over the
    tokens of a batch is not ``B`` times its mean). Otherwise None.
    """
    fn = getattr(loss, "grad_fn", None)
    if fn is None:
        return None
    name = type(fn).__name__
    if name.startswith("MeanBackward"):
        return "mean"
    if name.startswith("SumBackward"):
        src = fn.next_functions[0][0] if fn.next_functions else None
        if src is not None and type(src).__name__.startswith(_NOT_A_SAMPLE_SUM):
            return None
        sizes = getattr(fn, "_saved_self_sym_sizes", None)
        if sizes is None or len(sizes) == 0:
            return None
        return "sum" if batch_size is None or int(sizes[0]) == batch_size else None
    red = getattr(fn, "_saved_reduction", None)
    if red is not None:
        red = _REDUCTIONS.get(int(red))
        if red == "sum" and batch_size is not None:
            try:  # the shape of the loss's input (its saved tensors are freed by backward)
                shape = fn.next_functions[0][0]._input_metadata[0].shape
            except (AttributeError, IndexError, TypeError, RuntimeError):
                return None
            if len(shape) == 0 or int(shape[0]) != batch_size:
                return None
        return red
    return None


def _check_scalar(loss) -> None:
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"`loss` must be a scalar tensor, got {shape}")


def _no_double_backward(exc: RuntimeError) -> bool:
    """Whether ``exc`` says an op has no (double) backward, the case the ``func`` fallback is for
    (not a NaN, a failed eigensolver or an error of the user's loss)."""
    if isinstance(exc, torch.linalg.LinAlgError):
        return False
    msg = str(exc)
    return "double backward" in msg or ("derivative for" in msg and "not implemented" in msg)


def _unwrap(model):
    """The module whose parameters and layers are monitored: DDP's ``.module`` and torch.compile's
    ``._orig_mod`` (the monitor's own passes — microbatch, vmap, curvature — run on it, uncompiled)."""
    for _ in range(3):
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            break
    return model


def _compiled(model) -> str | None:
    """A description when ``model`` runs through ``torch.compile`` (``torch.compile(m)`` or
    ``m.compile()`` on it or a submodule), for the norm trick's refusal; else None."""
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    compiled = [n or "<root>" for n, m in inner.named_modules()
                if getattr(m, "_compiled_call_impl", None) is not None
                or isinstance(getattr(m, "_orig_mod", None), nn.Module)]
    if not compiled:
        return None
    return (f"{compiled[0]} (compiled by torch.compile: the norm trick's layer hooks would run inside the "
            "compiled graph, where they keep traced, not real, activations and its AOT backends fail; the "
            "microbatch/vmap backends run their own passes on the uncompiled module, backend='vmap' is exact)")


def _describe_param_changes(old, new) -> str:
    """How the trainable parameters of snapshot ``new`` differ from those of ``old`` (snapshots are
    lists of ``(name, parameter, requires_grad, shape)``), e.g. ``"replaced: fc.weight, fc.bias"``."""
    old_by_name = {n: rg for n, _, rg, _ in old}
    new_by_name = {n: rg for n, _, rg, _ in new}
    old_by_id = {id(p): (n, rg, sh) for n, p, rg, sh in old}
    new_by_id = {id(p): rg for _, p, rg, _ in new}
    kinds = {k: [] for k in ("added", "removed", "replaced", "renamed", "resized", "frozen", "unfrozen")}
    for n, p, rg, sh in new:
        if not rg:
            continue
        if id(p) in old_by_id:
            m, was_rg, old_sh = old_by_id[id(p)]
            if not was_rg:
                kinds["unfrozen"].append(n)
            elif m != n:
                kinds["renamed"].append(f"{m} -> {n}")
            elif sh != old_sh:
                kinds["resized"].append(f"{n} {list(old_sh)} -> {list(sh)}")
        elif old_by_name.get(n, False):
            kinds["replaced"].append(n)
        else:
            kinds["added"].append(n)
    for n, p, rg, _ in old:
        if not rg:
            continue
        if id(p) in new_by_id:
            if not new_by_id[id(p)]:
                kinds["frozen"].append(n)
        elif not new_by_name.get(n, False):
            kinds["removed"].append(n)
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in kinds.items() if v) or "order changed"


class Monitor:
    """Records gradient-noise and curvature diagnostics of a PyTorch training run.

    Parameters
    ----------
    model : nn.Module (or DistributedDataParallel)
        Its parameters with ``requires_grad=True`` are monitored (``d`` = their total size).
    optimizer : torch.optim.Optimizer, optional
        Only read: ``param_groups[0]["lr"]`` is η (for ``D_sde``, ``D_eff``, ``eos_ratio``).
    loss_fn : callable ``(model, batch) -> scalar loss``, optional
        Needed by the ``microbatch`` and ``vmap`` backends and by curvature. Must use the
        same reduction as the training loss.
    schedule : int | "log" | list | callable
        When noise statistics are recorded (default every 10 steps).
    curvature_schedule : same, or None (default: no curvature)
        When λ_max etc. are computed (needs ``loss_fn`` and a batch).
    curvature_batch : batch, optional
        A fixed batch on which the Hessian is taken at every curvature step (recommended: the
        warm start then pays off — the top eigenvector of *different* mini-batches' Hessians
        overlaps little, see docs/torch.md). Default: the step's own batch (passed to ``begin``).
    backend : "auto" | "norm_trick" | "microbatch" | "accumulation" | "ddp" | "vmap"
        ``auto``: ``ddp`` when ``torch.distributed`` runs with world size > 1 and the norm trick
        cannot cover the model, else ``norm_trick`` when every trainable layer is supported, else
        ``microbatch`` (one warning naming the unsupported layer; needs ``loss_fn``).
    microbatches : int
        Number of sub-batches ``k`` of the ``microbatch`` backend.
    loss_reduction : "auto" | "mean" | "sum"
        The training loss's batch reduction. ``auto`` reads it from the loss passed to
        :meth:`observe` or :meth:`end` (:func:`detect_reduction`), else from ``loss_fn``'s output,
        else assumes ``mean`` with one :class:`MonitorMisuseWarning`.
    groups : "layer" | "param_groups" | "none" | dict[str, iterable of Parameter]
        Per-group C: by owning module, by optimizer param group, none, or explicit.
    smoothing : float in [0, 1)
        β of the running averages behind ``C_smoothed``.
    lanczos_steps, lanczos_tol : int, float
        Hessian-vector products per curvature step (at most) and the stopping tolerance;
        Lanczos is warm-started from the previous curvature step's Ritz vector.
    lanczos_cold_steps : int
        Products allowed on the first (cold) curvature step, so that the warm start begins from a
        converged vector (default 32), and the most a warm call may spend to reach
        ``lanczos_accuracy``.
    lanczos_accuracy : float or None
        Relative accuracy every warm call must reach by its error estimate: a call whose estimate
        is above it after ``lanczos_steps`` products (nearly degenerate top eigenvalues) goes on
        up to ``lanczos_cold_steps`` products (``lambda_max_products`` records the count). The warm
        start is the previous call's top Ritz *cluster* (one vector when the top is well separated),
        see :func:`shld.torch.curvature.lanczos`. None: stop at ``lanczos_steps`` (the old rule).
    batch_sharpness : bool
        Spend one more product on ``gᵀHg`` (batch sharpness, ε_opt).
    events : EventDetector | None
        Default watches ``C_smoothed`` (crossing 1, regime changes, drops by 2× within 5 records).
    grad_scaler : torch.amp.GradScaler, optional
        Squared norms are divided by ``scale²`` (the hooks see scaled gradients).
    on_nonfinite : "record" | "raise"
        NaN/inf gradients are recorded (``nonfinite=True``, an event) or raise FloatingPointError.
    out : path, optional
        Folder for ``monitor.csv`` and ``monitor.jsonl`` (records and events), opened at the first
        :meth:`begin`. A folder that already holds either file is refused (``FileExistsError``
        naming it) unless :meth:`load_state_dict` resumed this monitor at a step after the log's last
        record; the log is then continued.
    tensorboard : path, optional
        TensorBoard log dir (skipped with a warning if tensorboard is missing).
    generator : torch.Generator, optional
        For Lanczos's cold start (default: a generator seeded with 0).
    """

    def __init__(self, model: nn.Module, optimizer=None, *, loss_fn=None, schedule=10,
                 curvature_schedule=None, curvature_batch=None, backend: str = "auto", microbatches: int = 4,
                 loss_reduction: str = "auto", groups="layer", lr=None, smoothing: float = 0.9,
                 lanczos_steps: int = 8, lanczos_tol: float = 1e-4, lanczos_cold_steps: int = 32,
                 lanczos_accuracy: float | None = 1e-3, batch_sharpness: bool = True,
                 events: EventDetector | None | str = "default", grad_scaler=None,
                 on_nonfinite: str = "record", out=None, tensorboard=None,
                 generator: torch.Generator | None = None, hvp_method: str = "double_backward"):
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.schedule = as_schedule(schedule, "schedule")
        if self.schedule is None:
            raise ValueError("`schedule` must not be None (use a list of steps or a callable)")
        self.curvature_schedule = as_schedule(curvature_schedule, "curvature_schedule")
        self.curvature_batch = curvature_batch
        self.backend_request = check_choice("backend", backend, bk.BACKENDS)
        self.microbatches = check_int("microbatches", microbatches, minimum=2)
        self.loss_reduction = check_choice("loss_reduction", loss_reduction, ("auto", "mean", "sum"))
        self.lr = None if lr is None else check_positive("lr", lr, allow_zero=True)
        self.lanczos_steps = check_int("lanczos_steps", lanczos_steps, minimum=1)
        self.lanczos_tol = check_positive("lanczos_tol", lanczos_tol)
        self.lanczos_cold_steps = check_int("lanczos_cold_steps", lanczos_cold_steps, minimum=1)
        self.lanczos_accuracy = (None if lanczos_accuracy is None
                                 else check_positive("lanczos_accuracy", lanczos_accuracy))
        self.batch_sharpness = bool(batch_sharpness)
        self.grad_scaler = grad_scaler
        self.on_nonfinite = check_choice("on_nonfinite", on_nonfinite, ("record", "raise"))
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.hvp_method = check_choice("hvp_method", hvp_method, ("double_backward", "func"))

        self._groups = groups
        self._dist = None
        self._setup_params()

        if (self.curvature_schedule is not None) and loss_fn is None:
            raise ValueError("`curvature_schedule` needs `loss_fn` (a callable (model, batch) -> loss)")
        self.backend = self._choose_backend()
        self.smoother = RatioSmoother(smoothing)
        self.events_detector = EventDetector() if events == "default" else events
        self.sinks = []
        self.out = None if out is None else Path(out)
        self._log_opened = False  # monitor.csv/.jsonl open at the first begin(), see _open_log
        self._resumed = False
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
        if tensorboard is not None:
            tb = make_tensorboard(tensorboard)
            if tb is not None:
                self.sinks.append(tb)
        self.step = 0
        self.records: list[dict] = []
        self.events: list[dict] = []
        self._callbacks = []
        self._ritz = None
        self._active = None
        self._warned = set()
        self._detected = None   # the reduction last read under loss_reduction="auto" (None: unknown)
        self._probed = False    # loss_fn's output has been read once for its reduction
        self._step_red = None
        self._size_hook = None
        self._dist = None
        self._make_hooks()

    # ----------------------------------------------------------------------------------------
    def _make_hooks(self) -> None:
        self._hooks_norm = (bk.NormTrickHooks(self._nt_modules, bk.seq_first_modules(_unwrap(self.model)))
                            if self.backend == "norm_trick" else None)
        self._hooks_param = _CheckedParamGradHooks(self.params)

    def _param_snapshot(self) -> list[tuple]:
        """``(name, parameter, requires_grad, shape)`` of every parameter of the model, now (the
        parameters themselves are held, so that their ``id`` cannot be reused while compared)."""
        return [(n, p, p.requires_grad, tuple(p.shape)) for n, p in _unwrap(self.model).named_parameters()]

    @staticmethod
    def _trainable_key(snapshot) -> list[tuple]:
        return [(n, id(p), shape) for n, p, rg, shape in snapshot if rg]

    def _setup_params(self) -> None:
        """The monitored parameters (those with ``requires_grad=True`` now), d and the groups."""
        snapshot = self._param_snapshot()
        named = [(n, p) for n, p, rg, _ in snapshot if rg]
        if not named:
            raise ValueError("`model` has no parameters with requires_grad=True; nothing to monitor")
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.dim = sum(p.numel() for p in self.params)
        self.group_names, self.group_of = self._make_groups(self._groups, named)
        self._snapshot = snapshot
        self._key = self._trainable_key(snapshot)

    def _check_params(self) -> None:
        """Parameters added, removed, replaced, resized, renamed, frozen or unfrozen since the
        monitor was built (or last rebuilt): warn once for the change, emit a ``params_changed``
        event and rebuild (parameters, d, groups, backend, hooks); the running averages and the
        Lanczos vector restart, since they belong to the old parameter space."""
        snapshot = self._param_snapshot()
        if self._trainable_key(snapshot) == self._key:
            return
        changes = _describe_param_changes(self._snapshot, snapshot)
        d_old = self.dim
        self._setup_params()
        self._dist = None
        try:
            self.backend = self._choose_backend()
        except ValueError:  # e.g. backend='norm_trick' and a new layer it cannot cover
            self._key = None  # not rebuilt: check (and raise) again at the next tracked step
            raise
        self._make_hooks()
        self.smoother.reset()
        self._ritz = None
        msg = (f"the model's trainable parameters changed after the Monitor was built ({changes}; "
               f"d = {d_old} -> {self.dim}), seen at step {self.step}: the monitor now follows the new "
               f"parameters (backend {self.backend!r}); C_smoothed and the Lanczos warm start restart")
        warnings.warn(msg, MonitorMisuseWarning, stacklevel=4)
        self._event({"step": self.step, "kind": "params_changed", "key": "dim", "value": self.dim,
                     "dim": self.dim, "dim_before": d_old, "changes": changes})

    def _make_groups(self, groups, named):
        if isinstance(groups, dict):
            ids = {}
            for g, ps in groups.items():
                for p in ps:
                    ids[id(p)] = str(g)
            labels = [ids.get(id(p), "other") for _, p in named]
        elif groups == "layer":
            labels = [n.rsplit(".", 1)[0] if "." in n else "<root>" for n, _ in named]
        elif groups == "param_groups":
            if self.optimizer is None:
                raise ValueError("`groups`='param_groups' needs `optimizer`")
            ids = {id(p): f"group{i}" for i, g in enumerate(self.optimizer.param_groups) for p in g["params"]}
            labels = [ids.get(id(p), "other") for _, p in named]
        elif groups == "none":
            labels = ["all"] * len(named)
        else:
            raise ValueError(f"`groups` must be 'layer', 'param_groups', 'none' or a dict, got {groups!r}")
        names = list(dict.fromkeys(labels))
        return names, [names.index(x) for x in labels]

    def _distributed(self) -> bool:
        if self._dist is None:
            self._dist = (torch.distributed.is_available() and torch.distributed.is_initialized()
                          and torch.distributed.get_world_size() > 1)
        return self._dist

    def _choose_backend(self) -> str:
        req = self.backend_request
        inner = _unwrap(self.model)
        self._nt_modules, unsupported = bk.norm_trick_coverage(inner, self.params)
        compiled = _compiled(self.model)
        if compiled is not None:
            self._nt_modules, unsupported = [], [compiled, *unsupported]
        if req in ("microbatch", "vmap") and self.loss_fn is None:
            raise ValueError(f"`backend`={req!r} needs `loss_fn` (a callable (model, batch) -> loss)")
        if req == "ddp" and not self._distributed():
            raise ValueError("`backend`='ddp' needs an initialised torch.distributed process group "
                             "with world size > 1")
        if req == "norm_trick" and unsupported:
            raise ValueError(f"`backend`='norm_trick' does not support layer {unsupported[0]}; use "
                             "backend='auto' to fall back")
        if req != "auto":
            return req
        if not unsupported:
            return "norm_trick"
        if self._distributed():
            bk.warn_unsupported(unsupported, "ddp")
            return "ddp"
        if self.loss_fn is None:
            raise ValueError(f"the norm trick does not support layer {unsupported[0]} and the fallback "
                             "backend 'microbatch' needs `loss_fn`; pass loss_fn or backend='accumulation'")
        bk.warn_unsupported(unsupported, "microbatch")
        return "microbatch"

    def on_event(self, fn) -> None:
        """Call ``fn(event_dict)`` for every event from now on."""
        self._callbacks.append(fn)

    # ----------------------------------------------------------------------------------------
    def will_track(self, step: int | None = None) -> tuple[bool, bool]:
        s = self.step if step is None else step
        noise = bool(self.schedule(s))
        curv = self.curvature_schedule is not None and bool(self.curvature_schedule(s))
        return noise, curv

    def begin(self, batch=None, *, batch_size=None) -> bool:
        """Start step ``self.step``; returns whether anything is recorded on it.

        ``batch`` (any pytree of tensors with leading dim B) is needed by the ``microbatch`` and
        ``vmap`` backends and by curvature; ``batch_size`` (total samples in the step, all
        micro-steps) is needed by ``accumulation`` and otherwise inferred. Under ``accumulation`` it
        may list the micro-batches' sizes, ``[b_1, …, b_k]`` (one per backward pass); an int is checked
        against the sample counts of the model's forward passes.
        """
        if self._active is not None:
            raise RuntimeError("Monitor.begin() called twice without end()")
        sizes = None
        if isinstance(batch_size, (list, tuple)):
            sizes = [check_int("batch_size", b, minimum=1) for b in batch_size]
            if not sizes:
                raise ValueError("`batch_size` must be an int or a non-empty list of micro-batch sizes, got []")
            batch_size = sum(sizes)
        elif batch_size is not None:
            batch_size = check_int("batch_size", batch_size, minimum=1)
        if self.out is not None and not self._log_opened:
            self._open_log()
        noise, curv = self.will_track()
        if noise or curv:
            self._check_params()
        self._active = {"noise": noise, "curv": curv, "batch": batch, "batch_size": batch_size, "loss": None,
                        "sizes": sizes, "forward_sizes": []}
        if not (noise or curv):
            return False
        self._dist = None  # re-read once per tracked step
        if ((curv and self.curvature_batch is None) or (noise and self.backend in ("microbatch", "vmap"))) \
                and batch is None:
            raise ValueError(f"`batch` is required on step {self.step} (backend={self.backend!r}"
                             f"{', curvature' if curv else ''})")
        if noise and self.backend == "vmap":
            bn = [n or "<root>" for n, m in _unwrap(self.model).named_modules()
                  if isinstance(m, nn.modules.batchnorm._BatchNorm) and lr_is_bn_training(m)]
            if bn:
                self._active = None
                raise ValueError(f"`backend`='vmap' cannot run BatchNorm layer {bn[0]} in train mode (its batch "
                                 "statistics couple the samples and torch.func cannot update its running "
                                 "statistics per sample): use backend='norm_trick' or 'microbatch', or eval mode")
        if noise and self.backend in ("norm_trick", "accumulation", "ddp"):
            self._active["hooked"] = True
            self._hooks_param.attach()
            if self.backend == "norm_trick":
                self._hooks_norm.attach()
            elif self.backend == "accumulation":  # the micro-batches' sizes, from the model's forwards
                seen = self._active["forward_sizes"]

                def count(mod, args, kwargs):
                    if torch.is_grad_enabled():
                        seen.append(bk.batch_size_of((args, kwargs)))
                self._size_hook = self.model.register_forward_pre_hook(count, with_kwargs=True)
        return True

    def end(self, loss=None) -> dict | None:
        """Finish the step (after backward, before ``optimizer.step()``); returns its record or None."""
        if self._active is None:
            raise RuntimeError("Monitor.end() called without begin()")
        act, self._active = self._active, None
        try:
            if not (act["noise"] or act["curv"]):
                return None
            if loss is None:
                loss = act.get("loss")
            if loss is not None:
                _check_scalar(loss)
            self._step_red = self._resolve_reduction(act, loss)
            record = {"step": self.step, "lr": self._lr(), "backend": self.backend}
            record.update(dict.fromkeys(NOISE_KEYS, math.nan))
            record.update({"C_smoothed": math.nan, "C_smoothed_se": math.nan,
                           "B_simple_smoothed": math.nan, "regime": "undefined", "nonfinite": False,
                           "reason": ""})
            for g in self.group_names:
                record[f"C/{g}"] = math.nan
                record[f"trace_sigma/{g}"] = math.nan
            if self.curvature_schedule is not None:
                record.update(dict.fromkeys(CURVATURE_KEYS, math.nan))
            if act["noise"]:
                self._noise(record, act)
            # the step's own backward is over: the hooks must not see the curvature's passes (torch.func
            # transforms would hand them functorch-wrapped tensors; double backward would feed them)
            self._detach_hooks()
            if act["curv"]:
                cb = self.curvature_batch
                self._curvature(record, act["batch"] if cb is None else cb)
            self._emit(record)
            return record
        finally:
            self._detach_hooks()
            self.step += 1

    def _detach_hooks(self) -> None:
        if self._size_hook is not None:
            self._size_hook.remove()
            self._size_hook = None
        self._hooks_param.detach()
        if self._hooks_norm is not None:
            self._hooks_norm.detach()

    def observe(self, loss) -> None:
        """Hand the step's training loss to the monitor (inside ``track()``, or between ``begin`` and
        ``end``): with ``loss_reduction="auto"`` its reduction is read from it, as from
        ``end(loss)``. ``with mon.track(batch) as m: loss = ...; loss.backward(); m.observe(loss)``."""
        if self._active is None:
            raise RuntimeError("Monitor.observe() called outside a step: call it inside track() or "
                               "between begin() and end()")
        _check_scalar(loss)
        self._active["loss"] = loss

    @contextlib.contextmanager
    def track(self, batch=None, *, batch_size=None):
        """Context manager around one step's forward and backward; ``begin`` + ``end``. Yields the
        monitor (``observe(loss)`` hands it the loss)."""
        self.begin(batch, batch_size=batch_size)
        ok = False
        try:
            yield self
            ok = True
        finally:
            if ok:
                self.end()
            else:  # an exception inside: drop the step's hooks, keep counting steps
                self._active = None
                self._detach_hooks()
                self.step += 1

    # ----------------------------------------------------------------------------------------
    def _lr(self):
        if self.lr is not None:
            return self.lr
        if self.optimizer is not None:
            return float(self.optimizer.param_groups[0]["lr"])
        return None

    def _reduction(self) -> str:
        """The reduction of the step being recorded (see :meth:`_resolve_reduction`)."""
        if self.loss_reduction != "auto":
            return self.loss_reduction
        return self._step_red or self._detected or "mean"

    def _resolve_reduction(self, act, loss) -> str:
        """``loss_reduction``, or under ``"auto"``: the reduction read from this step's loss (passed to
        ``end``/``observe``), else the last one read (from a loss or from ``loss_fn``'s output), else
        one probe of ``loss_fn`` on the step's batch; when none of these tells, ``"mean"`` with one
        :class:`MonitorMisuseWarning` (a sum loss would make ‖g‖², tr Σ and D B² too large)."""
        if self.loss_reduction != "auto":
            return self.loss_reduction
        hn = self._hooks_norm
        B = self._expected_batch(act) or (hn.batch_size() if hn is not None else None)
        red = detect_reduction(loss, B) if loss is not None else None
        if red is None and self._detected is None and not self._probed and self.loss_fn is not None:
            probe = act["batch"] if self.curvature_batch is None or act["noise"] else self.curvature_batch
            if probe is not None and bk.batch_size_of(probe):
                self._probed = True
                with self._isolated(), torch.enable_grad():
                    red = detect_reduction(bk.call_loss(self.loss_fn, _unwrap(self.model), probe),
                                           bk.batch_size_of(probe))
        if red is not None:
            if red == "sum" and self._detected != "sum":
                self._warn_once("reduction_sum", "loss_reduction='auto': the loss is a 'sum' over the batch's "
                                "samples; statistics are converted to the mean convention (pass "
                                "loss_reduction='sum' to silence this)")
            self._detected = red
            return red
        if self._detected is not None:
            return self._detected
        self._warn_once("reduction_unknown", (
            f"step {self.step}: loss_reduction='auto' but the loss's reduction could not be read (no loss "
            "handed to the monitor, or one that is not a plain mean/sum over the batch's samples): mean is "
            "assumed; a sum loss would make grad_sq_norm, trace_sigma and D B² times too large and "
            "lambda_max B times. Pass loss_reduction='mean' or 'sum', call mon.observe(loss) inside "
            "track() (or end(loss)), or pass loss_fn"))
        return "mean"

    def _scale2(self) -> float:
        s = self.grad_scaler
        if s is not None and getattr(s, "is_enabled", lambda: True)():
            return float(s.get_scale()) ** 2
        return 1.0

    def _group_sums(self, *per_param_lists) -> list[torch.Tensor]:
        """Per-parameter scalars (0-d tensors or None) summed by group: one (n_groups,) float64 CPU
        tensor per list, with a single device-to-host transfer for all of them."""
        flat = [v for lst in per_param_lists for v in lst if v is not None]
        if not flat:
            vals = []
        elif len({v.dtype for v in flat}) == 1:
            vals = torch.stack(flat).tolist()  # one transfer; summed below in Python floats (double)
        else:
            vals = [float(v) for v in flat]
        out = []
        i = 0
        for lst in per_param_lists:
            acc = [0.0] * len(self.group_names)
            for k, v in enumerate(lst):
                if v is not None:
                    acc[self.group_of[k]] += vals[i]
                    i += 1
            out.append(torch.tensor(acc, dtype=torch.float64))
        return out

    def _group_sum(self, per_param) -> torch.Tensor:
        return self._group_sums(per_param)[0]

    def _noise(self, record, act):
        red = self._reduction()
        be = self.backend
        s2 = self._scale2()
        if be in ("norm_trick", "accumulation", "ddp"):  # read the step's backward through hooks
            why = self._gradient_misuse()
            if why is not None:
                self._refuse(record, act, why)
                return
        if be == "norm_trick":
            h = self._hooks_norm
            B, why = self._norm_trick_samples(h, act)
            if why is not None:
                self._refuse(record, act, why)
                return
            N = B if red == "mean" else 1.0
            sq, tot = self._group_sums([h.sq.get(id(p)) for p in self.params], self._hooks_param.total_sq)
            sq = sq * (N * N)  # Σ_i‖g_i‖²
            if self._distributed():
                B, sq, mean_sq = self._ddp_reduce(B, sq, red)
            else:
                mean_sq = tot * (N / B) ** 2
            k = B
        elif be in ("accumulation", "ddp"):
            hp = self._hooks_param
            k = max(hp.passes) if hp.passes else 0
            if be == "ddp":
                B = act["batch_size"] or bk.batch_size_of(act["batch"])
                if B is None:
                    raise ValueError("backend='ddp' needs the local `batch` or `batch_size` in begin()")
                local = self._group_sum(hp.local_sq)
                m2 = local if red == "mean" else local / (B * B)  # ‖m_r‖², m_r the local mean grad
                B, sq, mean_sq = self._ddp_reduce(B, m2 * B, red, per_sample=False)
                k = torch.distributed.get_world_size()
            else:
                B = act["batch_size"]
                if B is None:
                    raise ValueError("backend='accumulation' needs `batch_size` (total samples in the step) "
                                     "in begin()/track()")
                if k < 2:
                    raise ValueError(f"backend='accumulation' needs >= 2 backward passes per step, got {k}")
                sizes, why = self._micro_batch_sizes(act, B, k)
                if why is not None:
                    self._refuse(record, act, why)
                    return
                if len(set(sizes)) == 1:
                    b = B / k
                    local = self._group_sum(hp.local_sq)  # Σ_j ‖c_j‖²
                    if red == "mean":   # loss_j = mean over b / k  ->  m_j = k c_j
                        sq = b * k * k * local
                        mean_sq = self._group_sum(hp.total_sq)
                    else:               # loss_j = sum over b  ->  m_j = c_j / b
                        sq = local / b
                        mean_sq = self._group_sum(hp.total_sq) / (B * B)
                elif red == "sum":      # loss_j = sum over b_j  ->  m_j = c_j / b_j: Σ b_j‖m_j‖² = Σ ‖c_j‖²/b_j
                    sq = sum(self._group_sum([v[j] if len(v) == k else None for v in hp.pass_sq]) / b
                             for j, b in enumerate(sizes))
                    mean_sq = self._group_sum(hp.total_sq) / (B * B)
                else:
                    why = (f"micro-batches of unequal sizes {sizes} under a mean loss: the accumulated gradient "
                           "depends on how each micro-loss was weighted (loss/k or loss·b_j/B)")
                    self._warn_once("unequal_mean", (
                        f"step {self.step}: backend='accumulation': {why}, which the monitor cannot see; the "
                        "step's gradient statistics are recorded as NaN. Use sum losses per micro-batch "
                        "(loss_reduction='sum'), equal micro-batches, or backend='norm_trick'"))
                    self._refuse(record, act, why)
                    return
        elif be == "microbatch":
            with self._isolated():
                wsq, msq, B, k = bk.microbatch_stats(self.model, self.loss_fn, act["batch"], self.params,
                                                     self.microbatches, red)
            sq, mean_sq = self._group_sum(wsq), self._group_sum(msq)
            s2 = 1.0
        else:  # vmap
            with self._isolated():
                grads = bk.per_sample_grads(_unwrap(self.model), self.loss_fn, act["batch"], self.params)
            B = grads[0].shape[0]
            sq = self._group_sum([(g.double() ** 2).sum() for g in grads])
            mean_sq = self._group_sum([(g.double().mean(0) ** 2).sum() for g in grads])
            k = B
            s2 = 1.0
        sq, mean_sq = sq / s2, mean_sq / s2
        tr_g = [trace_sigma_from_groups(a, B, k, m) for a, m in zip(sq.tolist(), mean_sq.tolist())]
        g2 = float(mean_sq.sum())
        tr = float(sum(tr_g))
        lr = record["lr"]
        if lr is not None and red == "sum":
            lr = lr * B  # a step η·Σ_i g_i is a step η·B on the mean loss
        q = noise_quantities(g2, tr, int(B), self.dim, lr)
        record.update(q)
        no_variance = k < 2  # one sample (or one group): tr Σ̂ and all that needs it are NaN
        nonfinite = not math.isfinite(g2) or (not no_variance and not math.isfinite(tr))
        record["nonfinite"] = nonfinite
        if nonfinite:
            record["reason"] = "non-finite gradient"
        if no_variance:
            why = NO_VARIANCE if int(B) == 1 else f"{k} sample group: no variance between groups"
            record["reason"] = why
            self._warn_once("no_variance", f"step {self.step}: {why}; trace_sigma, B_simple, D_seed and "
                            "the C values are NaN (not 'non-finite'), grad_sq_norm is recorded, and "
                            "C_smoothed keeps its running average")
        if nonfinite and self.on_nonfinite == "raise":
            raise FloatingPointError(f"non-finite gradient statistics at step {self.step}: "
                                     f"‖g‖²={g2}, tr Σ={tr} (on_nonfinite='raise')")
        for name, trg, m in zip(self.group_names, tr_g, mean_sq.tolist()):
            record[f"trace_sigma/{name}"] = trg
            record[f"C/{name}"] = 2.0 * B * (m - trg / B) / trg if trg > 0 else math.nan
        if not nonfinite:
            c, se = self.smoother.update(q["grad_sq_norm_unbiased"], tr / B, scale=2.0)
        else:
            c, se = self.smoother.value(scale=2.0)
        record["C_smoothed"], record["C_smoothed_se"] = c, se
        record["B_simple_smoothed"] = 2.0 * B / c if (math.isfinite(c) and c > 0) else math.inf
        record["regime"] = regime_label(c)

    def _gradient_misuse(self) -> str | None:
        """Why the hooks' view of this step's gradient cannot be trusted, or None.

        * No parameter hook fired: the backward ran outside ``track()`` (after ``end()``), so the
          step's gradient was never seen (the hooks would report 0).
        * Norm trick only: the backward ran inside but its forward before ``track()``: the
          per-sample norms were never formed (tr Σ̂ would come out negative).
        * A parameter's ``.grad`` was non-zero when the step's *first* backward pass reached it:
          gradients from before the step (a missing ``zero_grad()``, a ``backward()`` outside and
          before ``track()``) would be counted as this step's. Later passes of the same step
          (gradient accumulation inside one ``track()``) are legitimate and not checked.
        """
        hp = self._hooks_param
        if not any(hp.passes):
            self._warn_once("no_backward", f"step {self.step}: no backward pass inside track(): the step's "
                            "gradient was never seen (call loss.backward() inside track() or between "
                            "begin() and end(); under Lightning, a training_step that returns None skips the "
                            "backward); its gradient statistics are recorded as NaN")
            return "no backward pass inside track()"
        h = self._hooks_norm
        if self.backend == "norm_trick" and h is not None and h.batch_size() is None:
            self._warn_once("no_forward", f"step {self.step}: the backward pass inside track() belongs to a "
                            "forward pass run before it: the norm trick's per-sample norms come from the "
                            "forward pass (run the forward inside track() too); the step's gradient "
                            "statistics are recorded as NaN")
            return "no forward pass inside track()"
        init = [(k, v) for k, v in enumerate(hp.initial_sq) if v is not None]
        if not init:
            return None
        ts = [v for _, v in init]
        vals = (torch.stack(ts).tolist() if len({(v.dtype, v.device) for v in ts}) == 1
                else [float(v) for v in ts])
        stale = [(self.names[k], v) for (k, _), v in zip(init, vals) if not v == 0.0]
        if not stale:
            return None
        (name, v), more = stale[0], len(stale) - 1
        self._warn_once("stale_grad", (
            f"step {self.step}: parameter {name!r}{f' (and {more} more)' if more else ''} had a non-zero "
            f".grad (‖grad‖² = {v:.3g}) when the step's first backward pass reached it: gradients from "
            "before the step (a missing optimizer.zero_grad(), or a backward() outside track()) would be "
            "counted as this step's. Its gradient statistics are recorded as NaN; call zero_grad() "
            "before every tracked step and put all micro-batches of a step inside one track() "
            "(optimizer.zero_grad() leaves parameters outside the optimizer alone: use "
            "model.zero_grad(), or requires_grad_(False) on parameters that are not trained)"))
        return "non-zero .grad before the step's backward (missing zero_grad() or backward() outside track())"

    def _refuse(self, record, act, why: str) -> None:
        """A step whose gradient statistics would be wrong: NaN for all of them (C_smoothed too),
        with ``reason``; batch size and d are kept. The running averages are not touched."""
        h = self._hooks_norm
        B = self._expected_batch(act) or (h.batch_size() if h is not None else None)
        record["batch_size"] = int(B) if B else math.nan
        record["dim"] = self.dim
        record["reason"] = why

    def _micro_batch_sizes(self, act, B: int, k: int) -> tuple[list | None, str | None]:
        """The ``k`` micro-batch sizes of an ``accumulation`` step: ``batch_size`` as a list, else the
        sample counts of the model's ``k`` forward passes when they add up to ``B``; ``(None, why)``
        when they cannot be known (then an equal split would be a guess)."""
        sizes = act["sizes"]
        if sizes is not None:
            if len(sizes) != k:
                why = f"batch_size lists {len(sizes)} micro-batches, the step had {k} backward passes"
            else:
                return sizes, None
        else:
            seen = act["forward_sizes"]
            if len(seen) == k and None not in seen and sum(seen) == B:
                return seen, None
            why = (f"micro-batch sizes unknown: the model's forward passes saw {seen} samples (leading "
                   f"dimension of their inputs), not {k} passes adding up to batch_size={B}")
        self._warn_once("micro_sizes", (
            f"step {self.step}: backend='accumulation': {why}; tr Σ needs each micro-batch's size. The step's "
            "gradient statistics are recorded as NaN: pass batch_size=[b_1, ..., b_k] to track()/begin()"))
        return None, why

    def _expected_batch(self, act) -> int | None:
        """The step's sample count as the user stated it: ``batch_size``, or the leading dimension of
        ``batch`` when the step has one backward pass (with several, ``batch`` may be one micro-batch,
        as the Lightning adapter passes it)."""
        if act["batch_size"]:
            return int(act["batch_size"])
        passes = self._hooks_param.passes if act.get("hooked") else []
        if act["batch"] is not None and max(passes, default=0) <= 1:
            return bk.batch_size_of(act["batch"])
        return None

    def _norm_trick_samples(self, h, act) -> tuple[int | None, str | None]:
        """``(B, None)``: the samples every hooked layer saw, once each per backward pass; or
        ``(None, why)`` when the per-sample norms are not those of the step's samples:

        * a layer applied more than once per backward pass (weight sharing over depth, a recurrent
          or looped cell, two forward passes of one sample combined in one loss): its norms miss
          the cross terms between the applications; calls that are disjoint chunks of the batch
          (their samples add up to the stated batch) are fine;
        * layers that saw different numbers of samples along dim 0, or a number other than the
          batch passed to ``track()``: a layer with the batch on another axis (sequence-first
          input, ``(T, B, ...)``) reads positions as samples.
        Forward passes that were never back-propagated are not counted (see NormTrickHooks)."""
        hp = self._hooks_param
        pos = {id(p): k for k, p in enumerate(self.params)}
        expected = self._expected_batch(act)
        seen = []
        for name, mod in self._nt_modules:
            if name in h.calls:
                passes = max((hp.passes[pos[id(p)]] for p in lr_own(mod) if id(p) in pos), default=0)
                seen.append((name or "<root>", h.calls[name], h.samples[name], passes))
        for name, calls, n, passes in seen:
            if calls > passes and not (expected and n == expected):
                self._warn_once("repeated", (
                    f"step {self.step}: norm trick: layer {name!r} was applied {calls} times in {passes} backward "
                    f"pass(es) ({n} samples along dim 0{f', the batch has {expected}' if expected else ''}): weight "
                    "sharing over depth, a recurrent or looped cell, or several forward passes of the same samples "
                    "combined in one loss; its per-sample norms would miss the cross terms between the applications. "
                    "The step's gradient statistics are recorded as NaN: use backend='microbatch' or 'vmap' (or, if "
                    "the calls are disjoint parts of the batch, pass the batch or batch_size to track())"))
                return None, f"layer {name} applied {calls} times in {passes} backward pass(es) (weight sharing)"
        sizes = dict.fromkeys(n for _, _, n, _ in seen)
        if len(sizes) > 1 or (expected and seen and seen[0][2] != expected):
            a = seen[0]
            b = next((x for x in seen if x[2] != a[2]), None)
            saw = f"layer {a[0]!r} saw {a[2]} samples along dim 0" + (
                f", layer {b[0]!r} {b[2]}" if b is not None else f", the batch passed to track() has {expected}")
            self._warn_once("sample_axis", (
                f"step {self.step}: norm trick: {saw}: a layer whose input has the batch on another axis (a "
                "sequence-first layout (T, B, ...), e.g. a Linear or LayerNorm on a transposed tensor) would read "
                "positions as samples. The step's gradient statistics are recorded as NaN: put the batch first "
                "(batch_first=True), or use backend='microbatch' or 'vmap'"))
            return None, f"layers disagree on the batch size ({saw})"
        return (seen[0][2] if seen else None), None

    def _ddp_reduce(self, B, sq, red, per_sample=True):
        """All-reduce sample counts and Σ b‖m‖²; ‖ḡ‖² from the synchronised ``.grad``."""
        dist = torch.distributed
        t = torch.cat([torch.tensor([float(B)], dtype=torch.float64), sq])
        if dist.get_backend() == "nccl":  # NCCL reduces device tensors only
            t = t.to(self.params[0].device)
        dist.all_reduce(t)
        t = t.cpu()
        Bg = int(round(t[0].item()))
        with torch.no_grad():
            gsq = self._group_sum([(p.grad.double() ** 2).sum() if p.grad is not None else None
                                   for p in self.params])
        # DDP averages local gradients over ranks: mean loss -> ḡ; sum loss -> (B/R)·ḡ
        if red == "sum":
            gsq = gsq / (Bg / dist.get_world_size()) ** 2
        return Bg, t[1:], gsq

    @contextlib.contextmanager
    def _isolated(self):
        """Extra forwards leave the global RNG and the model's buffers as they were."""
        inner = _unwrap(self.model)
        saved = [(b, b.detach().clone()) for b in inner.buffers()]
        with torch.random.fork_rng(devices=[]):
            try:
                yield
            finally:
                with torch.no_grad():
                    for b, v in saved:
                        b.copy_(v)

    def _curvature(self, record, batch):
        model = _unwrap(self.model)
        with self._isolated():
            try:
                hvp = self._hvp(model, batch, self.hvp_method)
            except RuntimeError as exc:  # an op without double backward: torch.func fallback
                if self.hvp_method != "double_backward" or not _no_double_backward(exc):
                    raise
                warnings.warn(f"double-backward HVP failed ({exc}); falling back to hvp_method='func'",
                              RuntimeWarning, stacklevel=4)
                self.hvp_method = "func"
                hvp = self._hvp(model, batch, "func")
            bad = [n for n, t in (("loss", hvp.loss), ("gradient", hvp.grad)) if not bool(torch.isfinite(t).all())]
            if bad:
                self._curvature_nonfinite(record, f"non-finite {' and '.join(bad)} on the curvature batch")
                return
            lam, ritz, info = self._lanczos(hvp)
            if not math.isfinite(lam):
                self._curvature_nonfinite(record, "non-finite Hessian-vector product on the curvature batch")
                return
            self._ritz = info["warm_start"]  # the top Ritz cluster: next call's (block) warm start
            gHg = math.nan
            g = hvp.grad
            g2 = float((g * g).sum())
            if self.batch_sharpness:
                gHg = float(torch.dot(g, hvp(g)))
        B = record["batch_size"] if isinstance(record["batch_size"], int) else None
        if B is None:
            B = self.records[-1]["batch_size"] if self.records else None
        if not isinstance(B, int):
            B = bk.batch_size_of(batch)
        Bs = record["B_simple_smoothed"]
        if not (isinstance(Bs, float) and math.isfinite(Bs)):
            Bs = self.records[-1]["B_simple_smoothed"] if self.records else math.nan
        Dseed = record["D_seed"]
        if not math.isfinite(Dseed) and self.records:
            Dseed = self.records[-1].get("D_seed", math.nan)
        Bc = bk.batch_size_of(batch) or B  # the batch the Hessian was taken on
        if self._reduction() == "sum" and Bc:
            # curvature of the mean loss: H_mean = H_sum / Bc, g_mean = g_sum / Bc
            lam, gHg, g2 = lam / Bc, gHg / Bc ** 3, g2 / Bc ** 2
        lr = record["lr"]
        if lr is not None and self._reduction() == "sum" and B:
            lr = lr * B
        record.update(curvature_quantities(lam, gHg, g2, lr, Bs, B or 1, Dseed))
        record["n_hvp"] = hvp.n_products
        record["lanczos_error"] = info["error_estimate"]
        record["lambda_max_products"] = info["n_products"]

    def _hvp(self, model, batch, method):
        return HVP(model, self.loss_fn, batch, params=self.params, method=method)

    def _lanczos(self, hvp):
        v0, steps = self._ritz, self.lanczos_steps
        if v0 is None or v0.shape[-1] != hvp.dim:
            v0 = torch.randn(hvp.dim, generator=self.generator, dtype=torch.float64).to(hvp.grad)
            steps = max(steps, self.lanczos_cold_steps)
        return lanczos(hvp, v0, max_iter=steps, tol=self.lanczos_tol, accuracy=self.lanczos_accuracy,
                       max_products=max(steps, self.lanczos_cold_steps))

    def _curvature_nonfinite(self, record, why: str) -> None:
        """A curvature step whose loss, gradient or Hessian products are NaN/inf: its curvature keys
        stay NaN, the record says why (``nonfinite``, ``reason``, a ``nonfinite`` event) and the
        Lanczos warm start and ``hvp_method`` are kept; ``on_nonfinite='raise'`` raises."""
        if self.on_nonfinite == "raise":
            raise FloatingPointError(f"step {self.step}: {why} (on_nonfinite='raise')")
        record["nonfinite"] = True
        record["reason"] = "; ".join(r for r in (record["reason"], why) if r)

    def _emit(self, record):
        self.records.append(record)
        evs = self.events_detector.update(record) if self.events_detector is not None else []
        for s in self.sinks:
            s.write(record)
        for e in evs:
            self._event(e)

    def _event(self, e):
        self.events.append(e)
        for s in self.sinks:
            s.event(e)
        for fn in self._callbacks:
            fn(e)

    def _warn_once(self, cause: str, message: str) -> None:
        if cause not in self._warned:
            self._warned.add(cause)
            warnings.warn(message, MonitorMisuseWarning, stacklevel=5)

    def _open_log(self) -> None:
        """Open ``monitor.csv``/``monitor.jsonl`` in ``out`` (at the first :meth:`begin`, so that a
        :meth:`load_state_dict` after construction is known). A log already there is refused unless
        this monitor was resumed from a state whose step lies beyond the log's last record; then
        the log is continued. Steps are never interleaved or repeated."""
        for path, last in existing_logs(self.out):
            held = f"records up to step {last}" if last is not None else "no record yet"
            if not self._resumed:
                raise FileExistsError(
                    f"`out`={str(self.out)!r} already holds a monitor log, {path} ({held}); a new "
                    f"Monitor would write steps from {self.step} into it. Use a new folder, remove the "
                    "file, or call load_state_dict() with the state of the run that wrote it to continue "
                    "after its last step")
            if last is not None and last >= self.step:
                raise FileExistsError(
                    f"`out`={str(self.out)!r}: {path} holds {held} but the monitor resumes at step "
                    f"{self.step}; continuing would repeat steps {self.step}..{last}. Use a new folder, "
                    f"or resume from a state saved after step {last}")
        self.sinks += [CSVSink(self.out / LOG_FILES[0]), JSONLSink(self.out / LOG_FILES[1])]
        self._log_opened = True

    # ----------------------------------------------------------------------------------------
    @property
    def last(self) -> dict | None:
        """The latest record (None before the first)."""
        return self.records[-1] if self.records else None

    def history(self, key: str) -> np.ndarray:
        """One key over all records as a float array (missing → NaN)."""
        return np.array([float(r.get(key, math.nan)) if not isinstance(r.get(key), str) else math.nan
                         for r in self.records])

    def state_dict(self) -> dict:
        """Counters, running averages, event state and the Lanczos vector (records are not kept)."""
        return {"step": self.step, "smoother": self.smoother.state_dict(),
                "events": self.events_detector.state_dict() if self.events_detector else None,
                "ritz": None if self._ritz is None else self._ritz.detach().cpu().clone(),
                "loss_reduction": self.loss_reduction, "detected_reduction": self._detected}

    def load_state_dict(self, state: dict) -> None:
        """Continue a run: counters, averages, events, Lanczos vector. An ``out`` log written by that
        run is then continued (if its last record is before ``state["step"]``)."""
        self.step = int(state["step"])
        self._resumed = True
        self.smoother.load_state_dict(state["smoother"])
        if self.events_detector is not None and state.get("events") is not None:
            self.events_detector.load_state_dict(state["events"])
        ritz = state.get("ritz")
        self._ritz = None if ritz is None else ritz.to(self.params[0].device)
        self.loss_reduction = state.get("loss_reduction", self.loss_reduction)
        self._detected = state.get("detected_reduction", self._detected)

    def close(self) -> None:
        for s in self.sinks:
            s.close()
        self.sinks = []
        if not self.records:
            warnings.warn(f"Monitor recorded nothing in {self.step} steps: check `schedule`",
                          RuntimeWarning, stacklevel=2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
