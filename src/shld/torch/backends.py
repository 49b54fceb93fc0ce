"""Noise-statistics backends: where ``Σ_i ‖g_i‖²`` (or its group analogue) comes from.

Every backend produces, per parameter group, the three numbers that
:func:`shld.torch.stats.trace_sigma_from_groups` needs: ``Σ_j b_j ‖m_j‖²`` (``m_j`` the mean
gradient of group ``j`` of samples, in the **mean-loss** convention), the number of sample
groups ``k`` and the total sample count ``B``. ``‖g_B‖²`` comes from the parameter-gradient hooks
(or ``.grad`` under DDP).

``norm_trick``
    Exact per-sample squared gradient norms from module hooks: for ``nn.Linear`` the per-sample
    weight gradient is ``Σ_t b_t a_tᵀ`` (``a`` input activation, ``b`` output gradient), so
    ``‖·‖² = Σ_{t,s} (a_t·a_s)(b_t·b_s)`` — with no sequence axis simply ``‖a‖²‖b‖²``. Hugging
    Face Conv1D, Conv1d/2d/3d (any groups, stride, dilation, padding), Embedding (token-equality
    mask), the affine parameters of LayerNorm/GroupNorm/RMSNorm/BatchNorm likewise: the rules are
    in :mod:`shld.torch.layer_rules`. Per-sample gradient tensors are never stored; for a layer
    with a sequence/spatial axis of length ``T`` the cheaper of the ``T×T`` Gram form and the
    per-sample gradient of *that layer* (``out × in`` per sample, freed at once) is used. A
    convolution on the latter form takes its weight gradient on tracked steps from those
    per-sample gradients (:class:`~shld.torch.layer_rules.ConvPerSampleGrad`: equal to autograd's
    up to the order of summation) instead of computing it a second time. Any other module that
    owns trainable parameters is unsupported.
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

import warnings

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from . import layer_rules as lr

BACKENDS = ("auto", "norm_trick", "microbatch", "accumulation", "ddp", "vmap")


# ---------------------------------------------------------------------------------------------
# the norm trick: per-layer rules live in layer_rules; here coverage and the hooks
# ---------------------------------------------------------------------------------------------
_gram_or_direct = lr.gram_or_direct
_norm_trick_rule = lr.norm_trick_rule


def _tie(mods) -> tuple[nn.Module, nn.Module] | None:
    """``(embedding, linear)`` when the modules sharing one parameter are an ``nn.Embedding`` and an
    ``nn.Linear`` head tied on their weight (input/output embeddings), else None."""
    if len(mods) != 2:
        return None
    emb = [m for m in mods if type(m) is nn.Embedding]
    lin = [m for m in mods if type(m) is nn.Linear]
    if len(emb) == 1 and len(lin) == 1 and emb[0].weight is lin[0].weight:
        return emb[0], lin[0]
    return None


def _shared(modules) -> dict[int, list[tuple[str, nn.Module]]]:
    """Parameters (by id) owned by more than one of ``modules`` -> their owners."""
    owners: dict[int, list] = {}
    for name, mod in modules:
        for p in lr.own_parameters(mod):
            owners.setdefault(id(p), []).append((name, mod))
    return {k: v for k, v in owners.items() if len(v) > 1}


def norm_trick_coverage(model: nn.Module, params) -> tuple[list[tuple[str, nn.Module]], list[str]]:
    """(supported modules that own trainable parameters, descriptions of unsupported ones).

    A parameter shared by several modules (weight tying) is supported only for an ``nn.Embedding``
    tied to an ``nn.Linear`` head (the cross term of the two contributions is added exactly);
    other sharing makes both owners unsupported."""
    wanted = {id(p) for p in params}
    supported, unsupported = [], []
    # an attention layer's out_proj is covered by the attention's rule (it is never called itself)
    absorbed = {id(m.out_proj) for m in model.modules()
                if type(m) is nn.MultiheadAttention and _norm_trick_rule(m)[0] is not None}
    for name, mod in model.named_modules():
        own = [p for p in lr.own_parameters(mod) if id(p) in wanted]
        if not own or id(mod) in absorbed:
            continue
        rule, why = _norm_trick_rule(mod)
        if rule is None:
            unsupported.append(f"{name or '<root>'} ({type(mod).__name__}: {why})")
        else:
            supported.append((name, mod))
    bad = set()
    for pid, owners in _shared(supported).items():
        if pid in wanted and _tie([m for _, m in owners]) is None:
            names = [n or "<root>" for n, _ in owners]
            for n, m in owners:
                if n not in bad:
                    bad.add(n)
                    others = ", ".join(o for o in names if o != (n or "<root>"))
                    unsupported.append(f"{n or '<root>'} ({type(m).__name__}: parameter shared with {others})")
    supported = [(n, m) for n, m in supported if n not in bad]
    return supported, unsupported


def seq_first_modules(model: nn.Module) -> set[int]:
    """Ids of the modules whose batched input is sequence-first, ``(T, B, ...)``, by construction:
    the linear and norm layers inside ``nn.TransformerEncoderLayer``/``nn.TransformerDecoderLayer``
    built with ``batch_first=False`` (PyTorch's default), and the final ``norm`` of an
    ``nn.TransformerEncoder``/``nn.TransformerDecoder`` over such layers. Their rules take the
    sample axis from dim 1 (the attention rule reads ``batch_first`` itself)."""
    out: set[int] = set()
    layers = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
    for mod in model.modules():
        if isinstance(mod, layers) and not mod.self_attn.batch_first:
            out |= {id(m) for name, m in mod.named_children() if name.startswith(("linear", "norm"))}
        elif isinstance(mod, (nn.TransformerEncoder, nn.TransformerDecoder)) and mod.norm is not None:
            first = mod.layers[0] if len(mod.layers) else None
            if isinstance(first, layers) and not first.self_attn.batch_first:
                out.add(id(mod.norm))
    return out


class NormTrickHooks:
    """Forward hooks that, during one tracked step, accumulate ``Σ_i ‖c_i‖²`` per parameter.

    ``c_i`` is sample ``i``'s contribution to the gradient of the loss as back-propagated (for a
    mean loss ``c_i = g_i / B``). Hooks exist only between :meth:`attach` and :meth:`detach`.

    Two cases beyond one rule per call: an ``nn.Embedding`` whose weight is tied to an
    ``nn.Linear`` head gets the cross term ``2⟨E_i, H_i⟩`` of the two contributions (paired by call
    order), and an ``nn.Embedding`` called with a leading dimension of 1 inside a larger batch
    (positions broadcast over the batch, as in GPT-2) has its output expanded to the batch, so
    that its output gradient is seen per sample (values downstream are unchanged). So has one called
    with 1-D ids whose length is not the batch size (positions as nanoGPT passes them: ``wpe(arange(T))``,
    output (T, d) → (B, T, d)); 1-D ids as long as the batch are one id per sample.

    ``calls`` and ``samples`` count, per module, the calls whose output gradient arrived (forward
    passes that were back-propagated) and their samples along the sample axis: a grad-enabled
    forward that is never back-propagated (an evaluation inside ``track()``) adds nothing. Modules
    in ``seq_first`` (:func:`seq_first_modules`) take the sample axis of a 3-D input from dim 1.
    """

    def __init__(self, modules: list[tuple[str, nn.Module]], seq_first=()):
        self.modules = modules
        self._seq_first = set(seq_first)
        self._gen = 0  # hooks left on the graph of an earlier step (or attach) do nothing
        self.handles: list = []
        self.sq: dict[int, torch.Tensor] = {}
        self.calls: dict[str, int] = {}
        self.samples: dict[str, int] = {}
        self._ties = {}
        for owners in _shared(modules).values():
            pair = _tie([m for _, m in owners])
            if pair is not None:
                self._ties[id(pair[0])] = ("emb", pair)
                self._ties[id(pair[1])] = ("lin", pair)
        self._warned: set[str] = set()

    def attach(self) -> None:
        self._gen += 1
        self.sq, self.calls, self.samples, self._fwd_calls = {}, {}, {}, {}
        self.paths: dict[str, str] = {}  # attention layers: "graph" or "recompute" (last call)
        self._pending: dict[tuple, dict] = {}
        self._first, self._batch, self._unexpanded = None, None, None
        for name, mod in self.modules:
            rule, _ = _norm_trick_rule(mod)
            if hasattr(rule, "capture"):  # a rule that needs the whole call (attention)
                self.handles.append(mod.register_forward_hook(self._make_call_hook(name, rule), with_kwargs=True))
            else:
                self.handles.append(mod.register_forward_hook(self._make_hook(name, rule)))

    def _count(self, name: str, n: int) -> None:
        """One back-propagated call of module ``name`` on ``n`` samples."""
        self.calls[name] = self.calls.get(name, 0) + 1
        self.samples[name] = self.samples.get(name, 0) + int(n)

    def _add(self, p, v) -> None:
        s = v.sum()
        self.sq[id(p)] = self.sq[id(p)] + s if id(p) in self.sq else s

    def _make_hook(self, name, rule):
        tie = self._ties.get(id(dict(self.modules)[name]))
        seq_first = id(dict(self.modules)[name]) in self._seq_first

        def hook(mod, inputs, output):
            if not (torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.requires_grad):
                return None
            gen = self._gen
            x = inputs[0].detach()
            if self._first is None:
                self._first = name
            if name == self._first:  # a new forward pass begins: its batch size
                self._batch, self._unexpanded = x.shape[0], None
            new_out = None
            if (rule is lr.embedding and x.dim() == 1 and name != self._first and self._batch
                    and x.shape[0] != self._batch):
                # 1-D ids of another length than the batch: positions broadcast over it (nanoGPT's
                # wpe(arange(T))); seen per sample as GPT-2's (1, T) ids are
                x = x.unsqueeze(0).expand(self._batch, x.shape[0])
                output = new_out = output.unsqueeze(0).expand(self._batch, *output.shape)
            elif rule is lr.embedding and x.shape[0] == 1 and (self._batch or 1) > 1:
                x = x.expand(self._batch, *x.shape[1:])
                output = new_out = output.expand(self._batch, *output.shape[1:])
            elif rule is lr.embedding and x.shape[0] == 1:
                self._unexpanded = name
            elif self._unexpanded is not None and x.shape[0] > 1:
                self._warn("broadcast", f"norm trick: embedding {self._unexpanded} was called with a leading "
                           f"dimension of 1 before the batch (of {x.shape[0]}) was seen: its per-sample norms "
                           "are those of one sample; use backend='microbatch'")
            if rule is lr.batchnorm and lr.is_batchnorm_training(mod):
                self._warn("batchnorm", f"norm trick: BatchNorm layer {name or '<root>'} normalises with "
                           "the batch's statistics (train mode), which couple the samples; the record uses "
                           "the row decomposition of the batch gradient: exact per-sample gradients for its "
                           "affine parameters and the layers after it, while layers before it also carry "
                           "the statistics' terms (see shld.torch.layer_rules)")
            k = self._fwd_calls.get(name, 0)  # the call's index (pairs tied embedding/head calls)
            self._fwd_calls[name] = k + 1
            flip = seq_first and x.dim() == 3  # (T, B, d) -> the rule sees (B, T, d)
            if flip:
                x = x.transpose(0, 1)
            n = x.shape[0]
            kw = {}
            if rule is lr.batchnorm and lr.is_batchnorm_training(mod):
                kw["stats"] = lr.batchnorm_saved_stats(mod, output)
            if rule is lr.conv and new_out is None and lr.FUSE_CONV:
                plan = lr.conv_fused_plan(mod, output)
                if plan is not None:   # the weight gradient is taken from the per-sample gradients
                    def sink(norms):
                        if gen != self._gen:
                            return
                        self._count(name, n)
                        for key, v in norms.items():
                            self._add(getattr(mod, key), v)
                    return lr.ConvPerSampleGrad.apply(plan[0], mod.weight, mod.bias, output.detach(), plan[1:],
                                                      sink)

            def on_grad(g):
                if gen != self._gen:
                    return
                self._count(name, n)
                with torch.no_grad():
                    g = g.detach().transpose(0, 1) if flip else g.detach()
                    xx, g = _compute_dtype(mod, x, g)
                    for p, v in rule(mod, xx, g, **kw).items():
                        self._add(p, v)
                    if tie is not None:
                        self._tie_grad(tie, k, xx, g)
            output.register_hook(on_grad)
            return new_out
        return hook

    def _make_call_hook(self, name, rule):
        def hook(mod, args, kwargs, output):
            out = output[0] if isinstance(output, tuple) else output
            if not (torch.is_grad_enabled() and isinstance(out, torch.Tensor) and out.requires_grad):
                return
            call, B = rule.capture(mod, args, kwargs)
            gen = self._gen
            if self._first is None:
                self._first = name
            if name == self._first:
                self._batch, self._unexpanded = B, None
            plan = rule.from_graph(mod, out, call) if lr.MHA_FROM_GRAPH else None
            del call["stop"]
            self.paths[name] = "graph" if plan is not None else "recompute"
            if plan is not None:
                self._hook_from_graph(name, mod, out, call, plan)
                return
            if mod.training and mod.dropout > 0:
                self._warn(f"dropout:{name}", f"norm trick: attention layer {name or '<root>'} has dropout="
                           f"{mod.dropout} in train mode and its projections were not found in the autograd "
                           "graph (an unexpected graph): its dropout pattern cannot be recomputed, so its "
                           "per-sample norms are recorded as NaN (use backend='microbatch')")
                out.register_hook(lambda g: self._poison(name, mod, B) if gen == self._gen else None)
                return

            def on_grad(g):
                if gen != self._gen:
                    return
                self._count(name, B)
                with torch.no_grad():
                    c = {key: _compute_dtype(mod, t)[0] if torch.is_tensor(t) else t for key, t in call.items()}
                    for p, v in rule(mod, c, _compute_dtype(mod, g.detach())[0]).items():
                        self._add(p, v)
            out.register_hook(on_grad)
        return hook

    def _hook_from_graph(self, name, mod, out, call, plan) -> None:
        """Attention read from the autograd graph (:func:`shld.torch.layer_rules.mha_from_graph`):
        the out-projection at the output's gradient, each in-projection segment when autograd
        reaches the node that consumes it (its output gradient is ``[∂q ∂k ∂v]`` of the segment).
        Inputs are read from what the projections saved, so nothing beyond autograd's own tensors
        is kept alive."""
        ctx_node, segs = plan
        B, L = call["q"].shape[0], call["q"].shape[1]
        unbatched = call["unbatched"]
        seq_first = not mod.batch_first or unbatched
        gen = self._gen

        def on_out(g):
            if gen != self._gen:
                return
            self._count(name, B)
            with torch.no_grad():
                g = g.detach()
                g = g.unsqueeze(0) if unbatched else (g.transpose(0, 1) if seq_first else g)
                ctx = None
                if ctx_node is not None:                # saved input of out_proj: rows (position, sample)
                    ctx = lr._saved_input(ctx_node).reshape(L, B, -1).transpose(0, 1)
                ctx, g = _compute_dtype(mod, ctx, g) if ctx is not None else (None, _compute_dtype(mod, g)[0])
                for p, v in lr._mha_out_proj(mod, ctx, g).items():
                    self._add(p, v)
        out.register_hook(on_out)
        for node, off, width, x_node, x in segs:
            node.register_prehook(self._segment_hook(mod, off, width, B, x.shape[1], x_node,
                                                     x if x_node is None else None, gen))

    def _segment_hook(self, mod, off, width, B, n, x_node, x, gen):
        def pre(grad_outputs):
            G = grad_outputs[0]
            if G is None or gen != self._gen:
                return None
            with torch.no_grad():
                G = G.detach().reshape(n, B, width).transpose(0, 1)   # rows (position, sample)
                xx = x if x_node is None else lr._saved_input(x_node).reshape(n, B, -1).transpose(0, 1)
                xx, G = _compute_dtype(mod, xx, G)
                for p, v in lr._mha_in_segment(mod, off, xx, G).items():
                    self._add(p, v)
            return None
        return pre

    def _poison(self, name, mod, B) -> None:
        self._count(name, B)
        for p in lr.own_parameters(mod):
            if p.requires_grad:
                self._add(p, torch.tensor(float("nan"), dtype=p.dtype, device=p.device))

    def _tie_grad(self, tie, k, x, g) -> None:
        role, (emb, lin) = tie
        got = self._pending.setdefault((id(emb), k), {})
        got[role] = (x, g)
        if len(got) == 2:
            del self._pending[(id(emb), k)]
            self._add(emb.weight, 2.0 * lr.tied_embedding_linear_cross(emb, *got["emb"], *got["lin"]))

    def _warn(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(msg, RuntimeWarning, stacklevel=3)

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def batch_size(self) -> int | None:
        """Samples seen by the first hooked module whose output was back-propagated (summed over
        micro-steps)."""
        for name, _ in self.modules:
            if name in self.samples:
                return self.samples[name]
        return None


def _compute_dtype(mod: nn.Module, *ts):
    """The tensors in the dtype of ``mod``'s parameters when they are floating point of another dtype.

    Under autocast a layer's inputs and output gradients are float16/bfloat16 while its parameters
    (and their gradients) stay float32: the per-sample norms are computed in the parameters' dtype,
    like the gradients they add up to (float16 convolutions also have no CPU kernel)."""
    p = next(iter(lr.own_parameters(mod)), None)
    if p is None or not p.is_floating_point():
        return ts
    return tuple(t.to(p.dtype) if t.is_floating_point() and t.dtype != p.dtype else t for t in ts)


def flat_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``⟨a, b⟩`` over all entries (0-d tensor); either may be a sparse COO gradient
    (``nn.Embedding(sparse=True)``), which is never made dense."""
    if a.is_sparse or b.is_sparse:
        return (a * b).sum()
    return torch.dot(a.reshape(-1), b.reshape(-1))


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
        self.pass_sq = [[] for _ in range(n)]  # ‖c_j‖² of each backward pass j
        for k, p in enumerate(self.params):
            self.handles.append(p.register_hook(self._make_hook(k, p)))

    def _make_hook(self, k, p):
        def hook(g):
            with torch.no_grad():
                g2 = flat_dot(g, g)
                tot = g2
                if p.grad is not None:
                    tot = tot + 2.0 * flat_dot(g, p.grad)
                self.pass_sq[k].append(g2)
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
