"""Noise-statistics backends: where ``Σ_i ‖g_i‖²`` (or its group analogue) comes from.

Every backend produces, per parameter group, the three numbers that
:func:`shld.torch.stats.trace_sigma_from_groups` needs: ``Σ_j b_j ‖m_j‖²`` (``m_j`` the mean
gradient of group ``j`` of samples, in the **mean-loss** convention), the number of sample
groups ``k`` and the total sample count ``B``. ``‖g_B‖²`` comes from the parameter-gradient hooks
(or ``.grad`` under DDP).

``norm_trick``
    Exact per-sample squared gradient norms from module hooks: for ``nn.Linear`` the per-sample
    weight gradient is ``Σ_t b_t a_tᵀ`` (``a`` input activation, ``b`` output gradient), so
    ``‖·‖² = Σ_{t,s} (a_t·a_s)(b_t·b_s)`` — with no sequence axis simply ``‖a‖²‖b‖²``. Conv1d/2d
    (via ``unfold``), Embedding (token-equality mask) and LayerNorm (normalised input) likewise.
    Per-sample gradient tensors are never stored; for a layer with a sequence/spatial axis of
    length ``T`` the cheaper of the ``T×T`` Gram form and the per-sample gradient of *that layer*
    (``out × in`` per sample, freed at once) is used. Any other module that owns trainable
    parameters is unsupported.
``microbatch``
    Split the batch into ``k`` sub-batches, compute each sub-batch gradient with
    ``torch.autograd.grad`` (one extra forward/backward of the batch in total, ``.grad`` is not
    touched); works for any model (BatchNorm then sees sub-batch statistics).
``accumulation`` / ``ddp``
    The micro-steps of gradient accumulation, or the ranks of DDP, are the groups: their local
    gradients are seen by the parameter hooks, the global one is their sum (``.grad``). Almost free.
``vmap``
    Exact per-sample gradients with ``torch.func.vmap(grad)`` — the brute-force reference
    (memory ``B × d``; no BatchNorm in train mode).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

BACKENDS = ("auto", "norm_trick", "microbatch", "accumulation", "ddp", "vmap")


# ---------------------------------------------------------------------------------------------
# per-sample squared norms for one module call (inputs detached; grad_out of the loss as given)
# ---------------------------------------------------------------------------------------------
def _gram_or_direct(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ_i-wise ‖b_i a_iᵀ‖² for a: (B, T, p), b: (B, T, q) -> (B,)."""
    T, p, q = a.shape[1], a.shape[2], b.shape[2]
    if T == 1:
        a, b = a[:, 0], b[:, 0]
        return torch.linalg.vecdot(a, a) * torch.linalg.vecdot(b, b)
    if T * T <= p * q:
        return (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(b, b.transpose(1, 2))).sum((1, 2))
    gi = torch.bmm(b.transpose(1, 2), a)  # one layer's per-sample gradient, freed on return
    return (gi * gi).sum((1, 2))


def _linear(mod, x, g):
    B = x.shape[0]
    if x.dim() == 2:  # fast path: ‖b aᵀ‖² = ‖a‖²‖b‖², bias ‖b‖²
        bn = torch.linalg.vecdot(g, g)
        out = {}
        if mod.weight.requires_grad:
            out[mod.weight] = torch.linalg.vecdot(x, x) * bn
        if mod.bias is not None and mod.bias.requires_grad:
            out[mod.bias] = bn
        return out
    a = x.reshape(B, -1, x.shape[-1])
    b = g.reshape(B, -1, g.shape[-1])
    out = {}
    if mod.weight.requires_grad:
        out[mod.weight] = _gram_or_direct(a, b)
    if mod.bias is not None and mod.bias.requires_grad:
        bs = b.sum(1)
        out[mod.bias] = (bs * bs).sum(1)
    return out


def _conv(mod, x, g):
    """Per-sample weight gradients of one conv layer via a grouped weight-gradient convolution
    (the batch as ``groups``): ``B × Cout × Cin × k`` numbers, the size of B copies of the weight."""
    B, Cin = x.shape[0], x.shape[1]
    Cout = g.shape[1]
    out = {}
    if mod.weight.requires_grad:
        xi = x.reshape(1, B * Cin, *x.shape[2:])
        go = g.reshape(1, B * Cout, *g.shape[2:])
        w = mod.weight.detach()
        ww = w.expand(B, *w.shape).reshape(B * Cout, *w.shape[1:])
        _, gw, _ = torch.ops.aten.convolution_backward(
            go, xi, ww, None, list(mod.stride), list(_pad(mod)), list(mod.dilation), False,
            [0] * len(mod.stride), B, [False, True, False])
        gw = gw.reshape(B, -1)
        out[mod.weight] = torch.linalg.vecdot(gw, gw)
    if mod.bias is not None and mod.bias.requires_grad:
        bs = g.reshape(B, Cout, -1).sum(2)
        out[mod.bias] = torch.linalg.vecdot(bs, bs)
    return out


def _pad(mod):
    p = mod.padding
    if p == "valid":
        return (0,) * len(mod.kernel_size)
    return p


def _embedding(mod, idx, g):
    B = idx.shape[0]
    i = idx.reshape(B, -1)
    b = g.reshape(B, i.shape[1], -1)
    if mod.padding_idx is not None:
        b = b * (i != mod.padding_idx).unsqueeze(-1)
    if i.shape[1] == 1:
        return {mod.weight: (b * b).sum((1, 2))}
    eq = (i.unsqueeze(2) == i.unsqueeze(1)).to(b.dtype)
    return {mod.weight: (eq * torch.bmm(b, b.transpose(1, 2))).sum((1, 2))}


def _layernorm(mod, x, g):
    B = x.shape[0]
    n = math.prod(mod.normalized_shape)
    xhat = F.layer_norm(x, mod.normalized_shape, eps=mod.eps)
    b = g.reshape(B, -1, n)
    out = {}
    if mod.weight is not None and mod.weight.requires_grad:
        w = (b * xhat.reshape(B, -1, n)).sum(1)
        out[mod.weight] = (w * w).sum(1)
    if mod.bias is not None and mod.bias.requires_grad:
        bs = b.sum(1)
        out[mod.bias] = (bs * bs).sum(1)
    return out


def _norm_trick_rule(mod: nn.Module):
    """The per-sample rule for ``mod``, or None with a reason string when unsupported."""
    if type(mod) is nn.Linear:
        return _linear, None
    if type(mod) in (nn.Conv1d, nn.Conv2d):
        if mod.groups != 1:
            return None, f"groups={mod.groups}"
        if mod.padding_mode != "zeros":
            return None, f"padding_mode={mod.padding_mode!r}"
        if isinstance(mod.padding, str) and mod.padding != "valid":
            return None, f"padding={mod.padding!r}"
        return _conv, None
    if type(mod) is nn.Embedding:
        if mod.scale_grad_by_freq:
            return None, "scale_grad_by_freq=True"
        return _embedding, None
    if type(mod) is nn.LayerNorm:
        return _layernorm, None
    return None, "no per-sample rule for this layer type"


def norm_trick_coverage(model: nn.Module, params) -> tuple[list[tuple[str, nn.Module]], list[str]]:
    """(supported modules that own trainable parameters, descriptions of unsupported ones)."""
    wanted = {id(p) for p in params}
    supported, unsupported = [], []
    covered = set()
    for name, mod in model.named_modules():
        own = [p for p in mod.parameters(recurse=False) if id(p) in wanted]
        if not own:
            continue
        rule, why = _norm_trick_rule(mod)
        if rule is None:
            unsupported.append(f"{name or '<root>'} ({type(mod).__name__}: {why})")
        else:
            supported.append((name, mod))
            covered.update(id(p) for p in own)
    return supported, unsupported


class NormTrickHooks:
    """Forward hooks that, during one tracked step, accumulate ``Σ_i ‖c_i‖²`` per parameter.

    ``c_i`` is sample ``i``'s contribution to the gradient of the loss as back-propagated (for a
    mean loss ``c_i = g_i / B``). Hooks exist only between :meth:`attach` and :meth:`detach`.
    """

    def __init__(self, modules: list[tuple[str, nn.Module]]):
        self.modules = modules
        self.handles: list = []
        self.sq: dict[int, torch.Tensor] = {}
        self.calls: dict[str, int] = {}
        self.samples: dict[str, int] = {}

    def attach(self) -> None:
        self.sq, self.calls, self.samples = {}, {}, {}
        for name, mod in self.modules:
            rule, _ = _norm_trick_rule(mod)
            self.handles.append(mod.register_forward_hook(self._make_hook(name, rule)))

    def _make_hook(self, name, rule):
        def hook(mod, inputs, output):
            if not (torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.requires_grad):
                return
            x = inputs[0].detach()
            self.calls[name] = self.calls.get(name, 0) + 1
            self.samples[name] = self.samples.get(name, 0) + int(x.shape[0])

            def on_grad(g):
                with torch.no_grad():
                    for p, v in rule(mod, x, g.detach()).items():
                        s = v.sum()
                        self.sq[id(p)] = self.sq[id(p)] + s if id(p) in self.sq else s
            output.register_hook(on_grad)
        return hook

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def batch_size(self) -> int | None:
        """Samples seen by the first hooked module (summed over micro-steps)."""
        for name, _ in self.modules:
            if name in self.samples:
                return self.samples[name]
        return None


class ParamGradHooks:
    """Tensor hooks on the parameters: per backward pass, ``‖c‖²`` of each parameter's
    contribution, and ``‖Σ c‖²`` over the passes of the step accumulated as
    ``‖c_j‖² + 2 c_j · p.grad`` (``p.grad`` holds the earlier passes when the hook fires; it must
    be None or zero when the step begins)."""

    def __init__(self, params):
        self.params = params
        self.handles: list = []

    def attach(self) -> None:
        n = len(self.params)
        self.local_sq = [None] * n     # Σ_j ‖c_j‖²
        self.total_sq = [None] * n     # ‖Σ_j c_j‖²
        self.passes = [0] * n
        for k, p in enumerate(self.params):
            self.handles.append(p.register_hook(self._make_hook(k, p)))

    def _make_hook(self, k, p):
        def hook(g):
            with torch.no_grad():
                gf = g.reshape(-1)
                g2 = torch.dot(gf, gf)
                tot = g2
                if p.grad is not None:
                    tot = tot + 2.0 * torch.dot(gf, p.grad.reshape(-1))
                self.local_sq[k] = g2 if self.local_sq[k] is None else self.local_sq[k] + g2
                self.total_sq[k] = tot if self.total_sq[k] is None else self.total_sq[k] + tot
                self.passes[k] += 1
        return hook

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


# ---------------------------------------------------------------------------------------------
# batches as pytrees
# ---------------------------------------------------------------------------------------------
def batch_size_of(batch) -> int | None:
    """Leading dimension shared by the tensors in ``batch`` (any pytree), or None."""
    leaves, _ = tree_flatten(batch)
    sizes = {t.shape[0] for t in leaves if isinstance(t, torch.Tensor) and t.dim() > 0}
    if len(sizes) == 1:
        return sizes.pop()
    return None


def split_batch(batch, k: int) -> list:
    """Split every tensor leaf (leading dim B) into ``k`` contiguous parts."""
    leaves, spec = tree_flatten(batch)
    parts = [torch.tensor_split(t, k) if isinstance(t, torch.Tensor) and t.dim() > 0 else None
             for t in leaves]
    out = []
    for j in range(k):
        out.append(tree_unflatten([p[j] if p is not None else leaf for p, leaf in zip(parts, leaves)],
                                  spec))
    return out


def call_loss(loss_fn, model, batch, *, what="loss_fn") -> torch.Tensor:
    loss = loss_fn(model, batch)
    if isinstance(loss, dict) and "loss" in loss:
        loss = loss["loss"]
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"`{what}` must return a scalar torch.Tensor, got {type(loss).__name__}")
    if loss.dim() != 0:
        raise ValueError(f"`{what}` must return a scalar loss, got a tensor of shape {tuple(loss.shape)}"
                         " (reduce it with .mean() or .sum())")
    return loss


def microbatch_stats(model, loss_fn, batch, params, k: int, reduction: str):
    """Per-parameter ``Σ_j b_j‖m_j‖²`` and ``‖Σ_j b_j m_j / B‖²`` over ``k`` sub-batches.

    Returns (weighted_sq list, mean_sq list, B, k_used) in the mean-loss convention.
    """
    subs = [s for s in split_batch(batch, k) if (batch_size_of(s) or 0) > 0]
    B = 0
    wsq = [torch.zeros((), dtype=p.dtype, device=p.device) for p in params]
    acc = [torch.zeros_like(p) for p in params]
    for sub in subs:
        b = batch_size_of(sub)
        loss = call_loss(loss_fn, model, sub)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        scale = 1.0 if reduction == "mean" else 1.0 / b
        with torch.no_grad():
            for i, g in enumerate(grads):
                if g is None:
                    continue
                m = g * scale
                wsq[i] += b * (m * m).sum()
                acc[i].add_(m, alpha=b)
        B += b
    mean_sq = [((a / B) ** 2).sum() for a in acc]
    return wsq, mean_sq, B, len(subs)


def per_sample_grads(model: nn.Module, loss_fn, batch, params=None):
    """Exact per-sample gradients ``g_i = ∇ℓ_i`` with ``torch.func`` (the reference backend).

    ``ℓ_i = loss_fn(model, sample_i)`` with ``sample_i`` the batch restricted to sample ``i``
    (leading dim 1), so the result does not depend on mean/sum reduction. Returns a list of
    tensors of shape ``(B, *p.shape)`` aligned with ``params`` (default: trainable parameters).
    """
    from torch.func import functional_call, grad, vmap

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if params is None:
        params = [p for _, p in named]
    ids = {id(p): n for n, p in named}
    pnames = [ids[id(p)] for p in params]
    frozen = {n: p.detach() for n, p in model.named_parameters() if n not in set(pnames)}
    buffers = dict(model.named_buffers())

    def one(ps, sample):
        sample = tree_map(lambda t: t.unsqueeze(0) if isinstance(t, torch.Tensor) else t, sample)

        class _Call:  # loss_fn sees something that behaves like the model
            def __call__(self, *a, **kw):
                return functional_call(model, ({**frozen, **dict(zip(pnames, ps))}, buffers), a, kw)

            def __getattr__(self, item):
                return getattr(model, item)

        loss = loss_fn(_Call(), sample)
        if isinstance(loss, dict):
            loss = loss["loss"]
        return loss

    leaves, spec = tree_flatten(batch)
    in_dims = tree_unflatten([0 if isinstance(t, torch.Tensor) and t.dim() > 0 else None for t in leaves],
                             spec)
    ps = tuple(p.detach() for p in params)
    with torch.random.fork_rng(devices=[]):
        return list(vmap(grad(one), in_dims=(None, in_dims), randomness="different")(ps, batch))


def warn_unsupported(unsupported: list[str], fallback: str) -> None:
    warnings.warn(
        f"the norm trick does not support layer {unsupported[0]}"
        + (f" (and {len(unsupported) - 1} more: {', '.join(unsupported[1:4])})" if len(unsupported) > 1
           else "")
        + f"; the monitor falls back to backend={fallback!r}", RuntimeWarning, stacklevel=3)
