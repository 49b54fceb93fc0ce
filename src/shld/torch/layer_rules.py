"""Per-layer rules of the norm trick: ``‖c_i‖²`` of each sample's gradient contribution, per layer.

A rule is ``rule(mod, x, g) -> {param: (B,) tensor}``: ``x`` is the layer's (detached) input of one
call, ``g`` the gradient of the loss with respect to its output, both with the batch as leading
dimension; the value for a parameter is the squared norm of each sample's contribution to that
parameter's gradient. No rule loops over samples, and no rule stores a per-sample gradient beyond
one layer's, freed at once.

For a layer that is linear in its weight with a sequence/spatial axis of length ``T`` (input rows
``a_t`` of width ``p``, output-gradient rows ``b_t`` of width ``q``) the per-sample weight gradient
is ``Σ_t b_t a_tᵀ`` and its squared norm is computed in the cheaper of two forms
(:func:`gram_or_direct`, "ghost norm", Li et al. 2022, arXiv:2110.05679; Bu et al. 2023):

* Gram form ``Σ_{t,s} (a_t·a_s)(b_t·b_s)``: cost ``T²(p + q)`` per sample;
* direct form: the ``q × p`` per-sample gradient itself, cost ``T p q``;

the Gram form is used when ``T² ≤ p q``.

Covered layers
    ``nn.Linear``, Hugging Face ``Conv1D`` (GPT-2: ``y = x W + b`` with ``W`` of shape (in, out)),
    ``nn.Conv1d/2d/3d`` (any groups, stride, dilation, numeric or string padding, every padding
    mode), ``nn.Embedding`` (padding_idx: the padding row gets no gradient; not
    ``scale_grad_by_freq``), the affine parameters of ``nn.LayerNorm``, ``nn.GroupNorm``,
    ``nn.RMSNorm`` and ``nn.BatchNorm1d/2d/3d``, and ``nn.MultiheadAttention`` (dropout included, read
    from the autograd graph, see :func:`mha_from_graph`;
    a rule with a ``capture`` attribute receives the whole call instead of the first input).

BatchNorm in train mode
    The batch statistics couple the samples. The record then uses the **row decomposition** of the
    batch gradient: ``c_i`` is the part of the batch gradient that flows through sample ``i``'s
    row of each layer's input (``Σ_i c_i`` is the batch gradient exactly). For BatchNorm's own
    affine parameters and for every layer after the last train-mode BatchNorm this equals
    ``∇_θ ℓ_i`` — the gradient of sample ``i``'s own loss term with the batch (and so its
    statistics) fixed as it was in the forward pass (γ and β do not enter the statistics). For a
    layer *before* a train-mode BatchNorm, ``c_i`` also carries the statistics' terms of the other
    samples' losses. Eval mode (running statistics) has no coupling: exact per-sample gradients.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["gram_or_direct", "norm_trick_rule", "is_batchnorm_training", "own_parameters"]


#: None: the cheaper form per layer; "gram" or "direct" force one (for tests).
FORCE_FORM: str | None = None

#: Whether a convolution on the direct form takes its weight gradient from the per-sample
#: gradients (:class:`ConvPerSampleGrad`); False keeps autograd's own backward (for tests).
FUSE_CONV: bool = True


def use_gram(T: int, p: int, q: int) -> bool:
    """The ghost-norm choice: the ``T × T`` Gram form when ``T² ≤ p q``, else the outer product."""
    if FORCE_FORM is not None:
        return FORCE_FORM == "gram"
    return T * T <= p * q


def gram_or_direct(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample ``‖b_iᵀ a_i‖²`` (Frobenius) for a: (N, T, p), b: (N, T, q) -> (N,), by the cheaper
    of the ``T × T`` Gram form and the ``q × p`` outer-product (per-sample gradient) form."""
    T, p, q = a.shape[1], a.shape[2], b.shape[2]
    if T == 1:
        a, b = a[:, 0], b[:, 0]
        return torch.linalg.vecdot(a, a) * torch.linalg.vecdot(b, b)
    if use_gram(T, p, q):
        return (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(b, b.transpose(1, 2))).sum((1, 2))
    gi = torch.bmm(b.transpose(1, 2), a)  # one layer's per-sample gradient, freed on return
    return (gi * gi).sum((1, 2))


def _wants(p) -> bool:
    return p is not None and p.requires_grad


def _bias_sq(b: torch.Tensor) -> torch.Tensor:
    """b: (B, q, T) output gradient with the sequence/spatial axis last -> ‖Σ_t b_t‖² per sample."""
    s = b.sum(2)
    return torch.linalg.vecdot(s, s)


# ---------------------------------------------------------------------------------------------
# linear layers
# ---------------------------------------------------------------------------------------------
def linear(mod, x, g):
    """``nn.Linear`` and Hugging Face ``Conv1D`` (the same map with the weight transposed; the
    squared norm does not see the transpose). Any number of leading axes after the batch."""
    B = x.shape[0]
    out = {}
    if x.dim() == 2:  # fast path: ‖b aᵀ‖² = ‖a‖²‖b‖², bias ‖b‖²
        bn = torch.linalg.vecdot(g, g)
        if _wants(mod.weight):
            out[mod.weight] = torch.linalg.vecdot(x, x) * bn
        if _wants(mod.bias):
            out[mod.bias] = bn
        return out
    a = x.reshape(B, -1, x.shape[-1])
    b = g.reshape(B, -1, g.shape[-1])
    if _wants(mod.weight):
        out[mod.weight] = gram_or_direct(a, b)
    if _wants(mod.bias):
        out[mod.bias] = _bias_sq(b.transpose(1, 2))
    return out


# ---------------------------------------------------------------------------------------------
# convolutions
# ---------------------------------------------------------------------------------------------
def _conv_input(mod, x):
    """(input padded as the layer pads it, padding still to apply inside the convolution)."""
    n = len(mod.kernel_size)
    if mod.padding_mode != "zeros":
        return F.pad(x, mod._reversed_padding_repeated_twice, mode=mod.padding_mode), (0,) * n
    if isinstance(mod.padding, str):  # 'valid' -> nothing, 'same' -> possibly asymmetric zeros
        rp = mod._reversed_padding_repeated_twice
        return (F.pad(x, rp) if any(rp) else x), (0,) * n
    return x, tuple(mod.padding)


def _patches(x, kernel, stride, dilation):
    """Unfold an already padded (B, C, *S) input into (B, C, T, K) patches, T output positions and
    K = prod(kernel), for any number of spatial dimensions (dilation by slicing the windows)."""
    n = len(kernel)
    for d in range(n):
        span = (kernel[d] - 1) * dilation[d] + 1
        x = x.unfold(2 + d, span, stride[d])
        if dilation[d] > 1:
            x = x[..., ::dilation[d]]
    # (B, C, O_1..O_n, K_1..K_n)
    B, C = x.shape[:2]
    T = math.prod(x.shape[2:2 + n])
    return x.reshape(B, C, T, -1)


def conv(mod, x, g):
    """``nn.Conv1d/2d/3d`` with any groups, stride, dilation, padding and padding mode.

    Per group the layer is linear in its weight with input rows = patches (``p = C_in/groups · K``)
    and output rows ``q = C_out/groups`` over ``T`` output positions. Gram form (patches unfolded,
    ``T²`` per sample and group) when ``T² ≤ p q``; otherwise the per-sample weight gradient by one
    weight-gradient convolution with the batch folded into the groups (no patches stored).
    """
    B, Cout, G = x.shape[0], g.shape[1], mod.groups
    k = tuple(mod.kernel_size)
    out = {}
    if _wants(mod.weight):
        xp, pad = _conv_input(mod, x)
        T = math.prod(g.shape[2:])
        p = (x.shape[1] // G) * math.prod(k)
        q = Cout // G
        if use_gram(T, p, q):
            if any(pad):
                xp = F.pad(xp, [v for d in reversed(pad) for v in (d, d)])
            a = _patches(xp, k, mod.stride, mod.dilation)                      # (B, Cin, T, K)
            a = a.reshape(B, G, -1, T, a.shape[-1]).permute(0, 1, 3, 2, 4).reshape(B * G, T, p)
            b = g.reshape(B * G, q, T).transpose(1, 2)
            out[mod.weight] = gram_or_direct(a, b).reshape(B, G).sum(1)
        else:
            gw = per_sample_conv_weight_grad(xp, g, mod.weight.detach(), mod.stride, pad, mod.dilation, G)
            gw = gw.reshape(B, -1)
            out[mod.weight] = torch.linalg.vecdot(gw, gw)
    if _wants(mod.bias):
        out[mod.bias] = _bias_sq(g.reshape(B, Cout, -1))
    return out


def per_sample_conv_weight_grad(xp, g, w, stride, pad, dilation, groups) -> torch.Tensor:
    """Per-sample weight gradients ``(B, C_out, C_in/groups, *kernel)`` of a convolution with input
    ``xp`` (padded as the convolution consumed it), output gradient ``g`` and weight ``w``: one
    weight-gradient convolution with the batch folded into the groups (no patches stored)."""
    B, Cout = g.shape[0], g.shape[1]
    ww = w.expand(B, *w.shape).reshape(B * Cout, *w.shape[1:])
    _, gw, _ = torch.ops.aten.convolution_backward(
        g.reshape(1, B * Cout, *g.shape[2:]), xp.reshape(1, -1, *xp.shape[2:]), ww, None,
        list(stride), list(pad), list(dilation), False, [0] * (w.dim() - 2), B * groups,
        [False, True, False])
    return gw.reshape(B, *w.shape)


def conv_fused_plan(mod, output):
    """``(input as the convolution consumed it, stride, padding, dilation, groups)`` when the
    convolution's weight gradient can be taken from its per-sample gradients (see
    :class:`ConvPerSampleGrad`), else None: a plain ``ConvolutionBackward0`` node in one dtype, no
    autocast, a trainable weight, and the direct form of the ghost norm or per-sample gradients no
    larger than the output (``B·|w| ≤ B·C_out·T``)."""
    node = getattr(output, "grad_fn", None)
    if type(node).__name__ != "ConvolutionBackward0" or not _wants(mod.weight):
        return None
    try:
        if node._saved_transposed or node._saved_weight is not mod.weight:
            return None
        xp = node._saved_input
        plan = (xp, tuple(node._saved_stride), tuple(node._saved_padding), tuple(node._saved_dilation),
                int(node._saved_groups))
    except (AttributeError, RuntimeError):
        return None
    if xp.dtype != mod.weight.dtype or output.dtype != mod.weight.dtype or torch.is_autocast_enabled(xp.device.type):
        return None
    k = mod.weight.shape[2:]
    T = math.prod(output.shape[2:])
    if use_gram(T, (xp.shape[1] // plan[4]) * math.prod(k), mod.weight.shape[0] // plan[4]) and (
            FORCE_FORM == "gram" or output.shape[0] * mod.weight.numel() > output.numel()):
        # where the Gram form is the cheaper *extra* work, the per-sample gradients still win on this
        # path (they replace autograd's weight gradient) while they are no larger than the layer's
        # output: the patch embedding of a vision transformer (p = 48 ≤ T = 64 positions) is one
        return None
    return plan


class ConvPerSampleGrad(torch.autograd.Function):
    """A convolution's backward that computes the weight gradient as the sum of the per-sample
    weight gradients the norm trick needs anyway ("book-keeping", Bu et al. 2023,
    arXiv:2210.00038): the input gradient alone, plus one batch-folded weight-gradient convolution,
    instead of autograd's joint input-and-weight backward plus that convolution. The forward returns
    the convolution's output already computed; ``sink({param: (B,) squared norms})`` receives the
    per-sample squared norms. The weight gradient equals autograd's up to the order of summation."""

    @staticmethod
    def forward(ctx, xp, weight, bias, y, geometry, sink):
        ctx.save_for_backward(xp, weight)
        ctx.geometry, ctx.sink = geometry, sink
        return y

    @staticmethod
    def backward(ctx, g):
        xp, w = ctx.saved_tensors
        stride, pad, dilation, groups = ctx.geometry
        conv_args = (list(stride), list(pad), list(dilation), False, [0] * len(stride), groups)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]     # False for an absent bias
        B = g.shape[0]
        gx = gw = gb = None
        graph = torch.is_grad_enabled()    # backward(create_graph=True): gradients stay differentiable
        if need_x or (graph and need_w):
            gx, gw, _ = torch.ops.aten.convolution_backward(g, xp, w, None, *conv_args,
                                                            [need_x, graph and need_w, False])
        if graph and need_b:
            gb = g.sum([d for d in range(g.dim()) if d != 1])
        with torch.no_grad():
            out = {}
            if need_w:
                gws = per_sample_conv_weight_grad(xp.detach(), g.detach(), w.detach(), stride, pad, dilation,
                                                  groups)
                if not graph:
                    gw = gws.sum(0)
                flat = gws.reshape(B, -1)
                out["weight"] = torch.linalg.vecdot(flat, flat)
            if need_b:
                s = g.detach().reshape(B, g.shape[1], -1).sum(2)
                if not graph:
                    gb = s.sum(0)
                out["bias"] = torch.linalg.vecdot(s, s)
            ctx.sink(out)
        return gx, gw, gb, None, None, None


# ---------------------------------------------------------------------------------------------
# embeddings
# ---------------------------------------------------------------------------------------------
def embedding_rows(mod, idx, g):
    """(token ids (B, T), output gradients (B, T, d) with padding rows zeroed)."""
    B = idx.shape[0]
    i = idx.reshape(B, -1)
    b = g.reshape(B, i.shape[1], -1)
    if mod.padding_idx is not None:
        b = b * (i != mod.padding_idx).unsqueeze(-1)
    return i, b


def embedding(mod, idx, g):
    """``nn.Embedding``: per-sample gradient ``Σ_t e_{i_t} b_tᵀ``, squared norm
    ``Σ_{t,s} [i_t = i_s] (b_t·b_s)``; the padding row receives no gradient."""
    i, b = embedding_rows(mod, idx, g)
    if i.shape[1] == 1 or (i.stride(0) == 0 and torch.unique(i[0]).numel() == i.shape[1]):
        # one row per sample, or one row of distinct ids broadcast over the batch (positions)
        return {mod.weight: torch.linalg.vecdot(b.reshape(b.shape[0], -1), b.reshape(b.shape[0], -1))}
    eq = (i.unsqueeze(2) == i.unsqueeze(1)).to(b.dtype)
    return {mod.weight: (eq * torch.bmm(b, b.transpose(1, 2))).sum((1, 2))}


def tied_embedding_linear_cross(emb, idx, g_emb, x_lin, g_lin) -> torch.Tensor:
    """Per-sample ``⟨E_i, H_i⟩`` for a weight shared by an ``nn.Embedding`` (``E_i = Σ_t e_{i_t} b_tᵀ``)
    and an ``nn.Linear`` head (``H_i = Σ_s G_s a_sᵀ``): ``Σ_{t,s} G_s[i_t] (b_t·a_s)``."""
    i, b = embedding_rows(emb, idx, g_emb)                       # (B, T), (B, T, d)
    B = i.shape[0]
    a = x_lin.reshape(B, -1, x_lin.shape[-1])                    # (B, S, d)
    G = g_lin.reshape(B, a.shape[1], -1)                         # (B, S, V)
    sel = torch.gather(G, 2, i.unsqueeze(1).expand(B, G.shape[1], i.shape[1]))  # (B, S, T): G_s[i_t]
    return (sel * torch.bmm(a, b.transpose(1, 2))).sum((1, 2))


# ---------------------------------------------------------------------------------------------
# normalisation layers: y = w ⊙ x̂ + b with x̂ independent of (w, b)
# ---------------------------------------------------------------------------------------------
def _affine(mod, xhat, b, axis):
    """Per-sample ``‖Σ b ⊙ x̂‖²`` (weight) and ``‖Σ b‖²`` (bias); x̂ and b are (B, ·, ·) with the
    parameter's elements on one axis, summed over the other (``axis``). ``xhat`` is the caller's own
    temporary and is overwritten (no second activation-sized buffer)."""
    out = {}
    if _wants(getattr(mod, "weight", None)):
        w = xhat.mul_(b).sum(axis)
        out[mod.weight] = torch.linalg.vecdot(w, w)
    if _wants(getattr(mod, "bias", None)):
        s = b.sum(axis)
        out[mod.bias] = torch.linalg.vecdot(s, s)
    return out


def layernorm(mod, x, g):
    """``nn.LayerNorm`` (elementwise_affine and bias optional): x̂ = layer_norm(x) without affine."""
    B, n = x.shape[0], math.prod(mod.normalized_shape)
    xhat = F.layer_norm(x, mod.normalized_shape, eps=mod.eps)
    return _affine(mod, xhat.reshape(B, -1, n), g.reshape(B, -1, n), 1)


def rmsnorm(mod, x, g):
    """``nn.RMSNorm``: x̂ = x / rms(x) (weight only)."""
    B, n = x.shape[0], math.prod(mod.normalized_shape)
    xhat = F.rms_norm(x, mod.normalized_shape, eps=mod.eps)
    return _affine(mod, xhat.reshape(B, -1, n), g.reshape(B, -1, n), 1)


def groupnorm(mod, x, g):
    """``nn.GroupNorm``: per-channel affine over x̂ = group_norm(x) without affine."""
    B, C = x.shape[0], x.shape[1]
    xhat = F.group_norm(x, mod.num_groups, eps=mod.eps)
    return _affine(mod, xhat.reshape(B, C, -1), g.reshape(B, C, -1), 2)


def is_batchnorm_training(mod) -> bool:
    """Whether this BatchNorm call normalises with the batch's statistics (``F.batch_norm``'s rule)."""
    return mod.training or (mod.running_mean is None and mod.running_var is None)


def batchnorm_saved_stats(mod, output):
    """The batch mean and 1/std that the forward's own batch-norm kernel saved (CPU's
    ``NativeBatchNormBackward0`` in train mode), or None (then :func:`batchnorm` computes them)."""
    node = getattr(output, "grad_fn", None)
    if type(node).__name__ != "NativeBatchNormBackward0" or not getattr(node, "_saved_training", False):
        return None
    try:
        mean, invstd = node._saved_result1, node._saved_result2
    except (AttributeError, RuntimeError):
        return None
    C = mod.num_features
    if mean.shape != (C,) or invstd.shape != (C,) or not mean.is_floating_point():
        return None
    return mean, invstd


def batchnorm(mod, x, g, stats=None):
    """BatchNorm's affine parameters: ``x̂ = (x − μ) r`` per channel, so the per-sample weight
    gradient is ``r_c Σ_s b_{cs} (x_{cs} − μ_c)`` and the bias gradient ``Σ_s b_{cs}``. Both come
    from one pass of the batch-norm backward kernel with every (sample, channel) pair as a channel of
    its own (its weight and bias gradients are exactly these sums): no centred copy of ``x``, no
    ``x̂`` and no temporary of the activation's size. In train mode ``(μ, r)`` are the batch
    statistics (``stats`` when the forward's kernel saved them, else computed), in eval mode the
    running ones."""
    B, C = x.shape[0], x.shape[1]
    xs, gs = x.reshape(B, C, -1), g.reshape(B, C, -1)
    if stats is not None:
        mean, r = (t.to(x.dtype) for t in stats)
    elif is_batchnorm_training(mod):
        mean = xs.mean((0, 2))
        xc = xs - mean.reshape(1, C, 1)
        r = torch.rsqrt(torch.linalg.vecdot(xc, xc).sum(0) / (B * xs.shape[2]) + mod.eps)
    else:
        mean = mod.running_mean.to(x.dtype)
        r = torch.rsqrt(mod.running_var.to(x.dtype) + mod.eps)
    want_w, want_b = _wants(getattr(mod, "weight", None)), _wants(getattr(mod, "bias", None))
    if not (want_w or want_b):
        return {}
    S = xs.shape[2]
    _, w, s = torch.ops.aten.native_batch_norm_backward(
        gs.reshape(1, B * C, S), xs.reshape(1, B * C, S), None, None, None, mean.repeat(B), r.repeat(B), True,
        0.0, [False, want_w, want_b])
    out = {}
    if want_w:
        w = w.reshape(B, C)
        out[mod.weight] = torch.linalg.vecdot(w, w)
    if want_b:
        s = s.reshape(B, C)
        out[mod.bias] = torch.linalg.vecdot(s, s)
    return out


# ---------------------------------------------------------------------------------------------
# multi-head attention
# ---------------------------------------------------------------------------------------------
_MHA_SIGNATURE = inspect.signature(nn.MultiheadAttention.forward)


def _float_mask(mask, dtype):
    if mask is None or mask.is_floating_point():
        return None if mask is None else mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


def mha_capture(mod, args, kwargs):
    """(the call's inputs batch first and detached, with the merged additive mask (B|1, H|1, L, S);
    the batch size) from a forward hook's ``args``/``kwargs``."""
    a = _MHA_SIGNATURE.bind(mod, *args, **kwargs)
    a.apply_defaults()
    q, k, v = (a.arguments[n].detach() for n in ("query", "key", "value"))
    if q.dim() == 2:                                   # unbatched: one sample
        q, k, v = q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0)
    elif not mod.batch_first:
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    B, L, S, H = q.shape[0], q.shape[1], k.shape[1], mod.num_heads
    mask = _float_mask(a.arguments["attn_mask"], q.dtype)
    if mask is None and a.arguments["is_causal"]:
        mask = _float_mask(torch.ones(L, S, dtype=torch.bool, device=q.device).triu(1), q.dtype)
    if mask is not None:
        mask = mask.reshape(1, 1, L, S) if mask.dim() == 2 else mask.reshape(B, H, L, S)
    kpm = _float_mask(a.arguments["key_padding_mask"], q.dtype)
    if kpm is not None:
        kpm = kpm.reshape(B, 1, 1, S)
        mask = kpm if mask is None else mask + kpm
    same = a.arguments["query"] is a.arguments["key"] and a.arguments["key"] is a.arguments["value"]
    kv = a.arguments["key"] is a.arguments["value"]
    stop = [a.arguments[n].grad_fn for n in ("query", "key", "value")]
    return {"q": q, "k": k, "v": v, "mask": mask, "unbatched": a.arguments["query"].dim() == 2, "self": same,
            "kv": kv, "stop": [f for f in stop if f is not None]}, B


def mha(mod, call, g):
    """``nn.MultiheadAttention`` (packed or separate in-projection, biases, ``add_bias_kv``,
    ``add_zero_attn``, out-projection, masks, ``batch_first`` either way). The attention is
    recomputed from the captured inputs (no grad) and differentiated by hand, per sample: with
    ``A = softmax(q kᵀ/√h + M)`` per head, ``ctx = A v``, ``y = ctx W_oᵀ + b_o`` and ``G = ∂ℓ/∂y``:
    ``∂ctx = G W_o``, ``∂v = Aᵀ ∂ctx``, ``∂S = A ⊙ (∂A − rowsum(∂A ⊙ A))`` with ``∂A = ∂ctx vᵀ``,
    ``∂q = ∂S k/√h``, ``∂k = ∂Sᵀ q/√h``. Each projection is then a linear layer with inputs
    (query, key or value; ctx) and output gradients (∂q, ∂k, ∂v; G)."""
    xq, xk, xv, mask = call["q"], call["k"], call["v"], call["mask"]
    B, E, H = xq.shape[0], xq.shape[2], mod.num_heads
    h = E // H
    if call["unbatched"]:
        g = g.unsqueeze(0)
    elif not mod.batch_first:
        g = g.transpose(0, 1)
    if mod._qkv_same_embed_dim:
        Wq, Wk, Wv = mod.in_proj_weight.chunk(3)
    else:
        Wq, Wk, Wv = mod.q_proj_weight, mod.k_proj_weight, mod.v_proj_weight
    bq, bk, bv = (None, None, None) if mod.in_proj_bias is None else mod.in_proj_bias.chunk(3)

    def heads(t):                                       # (B, n, E) -> (B, H, n, h)
        return t.reshape(B, t.shape[1], H, h).transpose(1, 2)

    def merge(t):                                       # (B, H, n, h) -> (B, n, E)
        return t.transpose(1, 2).reshape(B, t.shape[2], E)

    S = xk.shape[1]
    k, v = F.linear(xk, Wk, bk), F.linear(xv, Wv, bv)
    extra = 0
    if mod.bias_k is not None:                          # one more key/value position: the biases
        k = torch.cat([k, mod.bias_k.reshape(1, 1, E).expand(B, 1, E)], 1)
        v = torch.cat([v, mod.bias_v.reshape(1, 1, E).expand(B, 1, E)], 1)
        extra += 1
    q, k, v = heads(F.linear(xq, Wq, bq)), heads(k), heads(v)
    if mod.add_zero_attn:                               # and a zero key/value per head
        k, v = F.pad(k, (0, 0, 0, 1)), F.pad(v, (0, 0, 0, 1))
        extra += 1
    if mask is not None and extra:
        mask = F.pad(mask, (0, extra))                  # the added positions are never masked
    scale = 1.0 / math.sqrt(h)
    scores = q @ k.transpose(-1, -2) * scale
    if mask is not None:
        scores = scores + mask
    A = torch.softmax(scores, -1)
    if mask is not None:  # a fully masked row attends to nothing (as scaled_dot_product_attention)
        A = A.masked_fill(torch.isneginf(mask).all(-1, keepdim=True), 0.0)
    ctx = merge(A @ v)
    gctx = heads(g @ mod.out_proj.weight)
    gv = A.transpose(-1, -2) @ gctx
    gA = gctx @ v.transpose(-1, -2)
    gS = A * (gA - (gA * A).sum(-1, keepdim=True))
    gq, gk = merge(gS @ k) * scale, merge(gS.transpose(-1, -2) @ q) * scale
    gv = merge(gv)
    out = {}
    if mod.bias_k is not None:
        for bias, gx in ((mod.bias_k, gk), (mod.bias_v, gv)):
            if _wants(bias):
                out[bias] = torch.linalg.vecdot(gx[:, S], gx[:, S])
    gk, gv = gk[:, :S], gv[:, :S]
    _merge(out, _mha_out_proj(mod, ctx, g))
    if mod._qkv_same_embed_dim and call["self"]:       # one input: ‖[∂q ∂k ∂v]ᵀ x‖², one Gram of x
        _merge(out, _mha_in_segment(mod, 0, xq, torch.cat([gq, gk, gv], 2)))
    else:
        for off, x, gx in ((0, xq, gq), (E, xk, gk), (2 * E, xv, gv)):
            _merge(out, _mha_in_segment(mod, off, x, gx))
    return out


def _merge(out: dict, more: dict) -> None:
    for p, v in more.items():
        out[p] = out[p] + v if p in out else v


def _mha_out_proj(mod, ctx, g):
    """The out-projection's squared norms from its input ``ctx`` and output gradient ``g``, both
    (B, L, E); ``ctx`` is only read when the weight is trained."""
    op, out = mod.out_proj, {}
    if _wants(op.weight):
        out[op.weight] = gram_or_direct(ctx, g)
    if _wants(op.bias):
        out[op.bias] = _bias_sq(g.transpose(1, 2))
    return out


def _mha_in_segment(mod, off, x, gx):
    """The part of the in-projection's squared norms from rows ``off .. off + width`` of the
    packed ``[q; k; v]`` projection (``width`` = gx's last dimension: E, 2E for key and value
    from one input, or 3E for self-attention), with input x (B, n, ·) and output gradient gx
    (B, n, width). Row blocks of a per-sample gradient are disjoint, so their squared norms add."""
    E, out = mod.embed_dim, {}
    if mod._qkv_same_embed_dim:
        if _wants(mod.in_proj_weight):
            out[mod.in_proj_weight] = gram_or_direct(x, gx)
    else:
        w = (mod.q_proj_weight, mod.k_proj_weight, mod.v_proj_weight)[off // E]
        if _wants(w):
            out[w] = gram_or_direct(x, gx)
    if _wants(mod.in_proj_bias):
        out[mod.in_proj_bias] = _bias_sq(gx.transpose(1, 2))
    return out


# -- attention from the autograd graph: the projections' output gradients as back-propagated --------
#: Take ``nn.MultiheadAttention``'s in-projection output gradients (∂q, ∂k, ∂v) and the
#: out-projection's input from the autograd graph of the call (no recomputation; exact with
#: attention dropout). False: always recompute (the fallback when the graph is not recognised).
MHA_FROM_GRAPH = True

_VIEWS = {"TBackward0", "ToCopyBackward0", "ViewBackward0", "ReshapeAliasBackward0", "UnsafeViewBackward0",
          "AliasBackward0", "ExpandBackward0"}


def _to_param(entry, targets: dict):
    """Follow a ``next_functions`` entry through single-input view/cast nodes and row splits (dim 0)
    to the AccumulateGrad of a parameter in ``targets`` (id -> parameter): (parameter, row offset of
    the part that reaches the node) or None."""
    node, nr = entry
    off = 0
    for _ in range(8):
        if node is None:
            return None
        name = type(node).__name__
        if name == "AccumulateGrad":
            p = node.variable
            return (p, off) if id(p) in targets else None
        if name in ("SplitBackward0", "SplitWithSizesBackward0"):
            if getattr(node, "_saved_dim", None) != 0:
                return None
            off += (nr * node._saved_split_size if name == "SplitBackward0"
                    else sum(node._saved_split_sizes[:nr]))
        elif name not in _VIEWS:
            return None
        nxt = [e for e in node.next_functions if e[0] is not None]
        if len(nxt) != 1:
            return None
        node, nr = nxt[0]
    return None


def _mha_segments(mod, call):
    """The in-projection's row segments (offset, width, input) as ``F.multi_head_attention_forward``
    computes them: one for self-attention, (query; key = value) or three."""
    E = mod.embed_dim
    if mod._qkv_same_embed_dim and call["self"]:
        return [(0, 3 * E, call["q"])]
    if mod._qkv_same_embed_dim and call["kv"]:
        return [(0, E, call["q"]), (E, 2 * E, call["k"])]
    return [(0, E, call["q"]), (E, E, call["k"]), (2 * E, E, call["v"])]


def mha_from_graph(mod, out, call, max_nodes: int = 400):
    """Read one attention call's projections from its autograd graph (the forward just ran).

    Walks back from the output ``out`` to the inputs' own nodes and finds the nodes that consume the
    projection parameters (through transposes, casts and the row splits of a packed weight). Returns
    None when the graph is not recognised (the caller then recomputes), else
    ``(ctx_node, [(node, offset, width, x_node, x), ...])``: the out-projection's node, whose saved
    input is ``ctx`` (rows ordered (position, sample)), and per in-projection segment the node whose
    output gradient is that segment's ``[∂q ∂k ∂v]`` rows, a node that saved the segment's input
    (or None) and the input as captured (B, n, ·). Needs no bias_k/bias_v or add_zero_attn."""
    if mod.bias_k is not None or mod.add_zero_attn or out.grad_fn is None:
        return None
    E = mod.embed_dim
    packed = mod._qkv_same_embed_dim
    inw = ([mod.in_proj_weight] if packed else [mod.q_proj_weight, mod.k_proj_weight, mod.v_proj_weight])
    want = [p for p in [*inw, mod.in_proj_bias] if _wants(p)]
    targets = {id(p): p for p in want}
    ow = mod.out_proj.weight if _wants(mod.out_proj.weight) else None
    if ow is not None:
        targets[id(ow)] = ow
    base = {id(mod.k_proj_weight): E, id(mod.v_proj_weight): 2 * E} if not packed else {}
    stop = set(call["stop"])
    found, saver, ctx_node = {}, {}, None
    seen, queue = set(), [out.grad_fn]
    while queue:
        node = queue.pop(0)
        if node in seen or node in stop:
            continue
        seen.add(node)
        if len(seen) > max_nodes:
            return None
        for entry in node.next_functions:
            if entry[0] is None:
                continue
            hit = _to_param(entry, targets)
            if hit is None:
                if type(entry[0]).__name__ != "AccumulateGrad":
                    queue.append(entry[0])
            elif hit[0] is ow:
                ctx_node = ctx_node or node
            else:
                off = base.get(id(hit[0]), 0) + hit[1]
                found.setdefault(off, node)
                if _saved_input(node) is not None:
                    saver.setdefault(off, node)
    if ow is not None and (ctx_node is None or _saved_input(ctx_node) is None):
        return None
    segs = []
    for off, width, x in _mha_segments(mod, call):
        needed = (packed and _wants(mod.in_proj_weight)) or _wants(mod.in_proj_bias) or \
            (not packed and _wants(inw[off // E]))
        if not needed:
            continue
        if off not in found:
            return None
        # the segment's input as the projection saved it (rows (position, sample)), when it did
        segs.append((found[off], off, width, saver.get(off), x))
    return ctx_node, segs


def _saved_input(node):
    """The first matrix a mm/addmm node saved (the linear layer's flattened input), or None."""
    name = type(node).__name__
    attr = {"AddmmBackward0": "_saved_mat1", "MmBackward0": "_saved_self"}.get(name)
    return None if attr is None else getattr(node, attr, None)


mha.capture = mha_capture
mha.from_graph = mha_from_graph


def own_parameters(mod: nn.Module) -> list:
    """The parameters a rule for ``mod`` accounts for: its own, and for ``nn.MultiheadAttention``
    also those of its ``out_proj`` (used through the functional form, never called as a module)."""
    ps = list(mod.parameters(recurse=False))
    if type(mod) is nn.MultiheadAttention:
        ps += list(mod.out_proj.parameters(recurse=False))
    return ps


# ---------------------------------------------------------------------------------------------
# lookup
# ---------------------------------------------------------------------------------------------
def _is_hf_conv1d(mod) -> bool:
    t = type(mod)
    return t.__name__ == "Conv1D" and t.__module__.startswith("transformers")


_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def norm_trick_rule(mod: nn.Module):
    """``(rule, None)`` for a supported layer, ``(None, reason)`` otherwise (exact types only: a
    subclass may change ``forward``)."""
    t = type(mod)
    if t is nn.Linear or _is_hf_conv1d(mod):
        return linear, None
    if t in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        return conv, None
    if t is nn.Embedding:
        if mod.scale_grad_by_freq:
            return None, "scale_grad_by_freq=True"
        return embedding, None
    if t is nn.LayerNorm:
        return layernorm, None
    if t is nn.RMSNorm:
        return rmsnorm, None
    if t is nn.GroupNorm:
        return groupnorm, None
    if t in _BATCHNORMS:
        return batchnorm, None
    if t is nn.MultiheadAttention:
        if mod.dropout > 0 and (mod.bias_k is not None or mod.add_zero_attn):
            return None, (f"dropout={mod.dropout} with add_bias_kv/add_zero_attn (the random attention "
                          "pattern cannot be recomputed, and these are not read from the autograd graph)")
        return mha, None
    return None, "no per-sample rule for this layer type"
