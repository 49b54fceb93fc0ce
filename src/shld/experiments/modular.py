"""Modular arithmetic data and small models for the grokking experiments.

The task: given ``(a, b)`` predict ``(a ∘ b) mod p`` for ``∘`` in

=======  =====================================  ================================
``op``   label                                   pairs
=======  =====================================  ================================
add      (a + b) mod p                           all a, b in 0..p-1   (p² pairs)
sub      (a − b) mod p                           all a, b in 0..p-1   (p² pairs)
mul      (a · b) mod p                           all a, b in 0..p-1   (p² pairs)
div      (a · b⁻¹) mod p  (b⁻¹ by Fermat)        a in 0..p-1, b in 1..p-1
=======  =====================================  ================================

Inputs are integer pairs ``x`` of shape ``(n, 2)`` (long); labels ``y`` shape ``(n,)``.
Nothing is downloaded; the data are generated.

Models (all take ``x`` of shape ``(n, 2)`` and return logits ``(n, p)``):

* :class:`QuadraticMLP` — the 2-layer MLP on one-hot pairs with a quadratic activation,
  ``f(a, b) = W₂ᵀ (W₁ᵀ [e_a; e_b])²`` (Gromov 2023, "Grokking modular arithmetic"). The
  one-hot product ``W₁ᵀ [e_a; e_b]`` is computed as the row lookup ``U[a] + V[b]``, which is
  the same function and much cheaper.
* :class:`EmbedMLP` — token embeddings of ``a`` and ``b`` concatenated, then a ReLU hidden
  layer and a linear read-out.
* :class:`OneLayerTransformer` — the one-layer transformer of Nanda et al. 2023 ("Progress measures
  for grokking via mechanistic interpretability") on the sequence ``a b =``.

Randomness: initialisation and splits take a ``torch.Generator`` explicitly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from shld._validation import check_choice, check_int, check_real

OPERATIONS = ("add", "sub", "mul", "div")


def _is_prime(p: int) -> bool:
    if p < 2:
        return False
    return all(p % k for k in range(2, int(math.isqrt(p)) + 1))


def modular_dataset(p: int, op: str = "add") -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs of the task ``(a op b) mod p``: returns ``x`` (n, 2) long and ``y`` (n,) long.

    ``p`` must be prime (division needs inverses; the other operations are kept to the same
    convention). For ``div`` the pairs with b = 0 are left out (n = p(p−1)); otherwise n = p².
    """
    p = check_int("p", p, minimum=2)
    if not _is_prime(p):
        raise ValueError(f"`p` must be a prime, got {p}")
    op = check_choice("op", op, OPERATIONS)
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    if op == "div":
        keep = b != 0
        a, b = a[keep], b[keep]
        inv = torch.tensor([pow(int(v), p - 2, p) for v in range(p)])
        y = (a * inv[b]) % p
    elif op == "add":
        y = (a + b) % p
    elif op == "sub":
        y = (a - b) % p
    else:
        y = (a * b) % p
    return torch.stack([a, b], dim=1), y


def split_indices(n: int, train_fraction: float, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """A random split of ``range(n)`` into disjoint train and test index sets covering all of it.

    The train set has ``round(train_fraction·n)`` elements (at least 1, at most n−1).
    """
    n = check_int("n", n, minimum=2)
    f = check_real("train_fraction", train_fraction)
    if not 0.0 < f < 1.0:
        raise ValueError(f"`train_fraction` must be in (0, 1), got {train_fraction!r}")
    n_train = min(max(int(round(f * n)), 1), n - 1)
    perm = torch.randperm(n, generator=generator)
    return perm[:n_train].sort().values, perm[n_train:].sort().values


class QuadraticMLP(nn.Module):
    """``logits = W (U[a] + V[b])²`` — the one-hot 2-layer MLP with x² activation.

    ``U[a] + V[b]`` is ``W₁ᵀ [e_a; e_b]`` written as two embedding lookups (``nn.Embedding``, no
    bias), ``W`` an ``nn.Linear(width, p, bias=False)``; built from standard layers so that the
    monitor's per-sample norm trick covers every parameter.

    Init: entries of ``U, V ~ N(0, 1/(2p))`` (a dense layer on a one-hot input of fan-in 2p with
    1/√fan-in scaling), ``W ~ N(0, 1/width)``.
    """

    def __init__(self, p: int, width: int = 256, *, generator: torch.Generator):
        super().__init__()
        self.p = check_int("p", p, minimum=2)
        self.width = check_int("width", width, minimum=1)
        self.U = nn.Embedding(p, width)
        self.V = nn.Embedding(p, width)
        self.W = nn.Linear(width, p, bias=False)
        with torch.no_grad():
            scale_in = 1.0 / math.sqrt(2 * p)
            self.U.weight.copy_(torch.randn(p, width, generator=generator) * scale_in)
            self.V.weight.copy_(torch.randn(p, width, generator=generator) * scale_in)
            self.W.weight.copy_(torch.randn(p, width, generator=generator) / math.sqrt(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.U(x[:, 0]) + self.V(x[:, 1])
        return self.W(h * h)


class EmbedMLP(nn.Module):
    """One embedding table shared by ``a`` and ``b`` (dimension ``embed_dim``, N(0, 1) init), the
    two vectors concatenated, a ReLU hidden layer of ``width`` units and a linear read-out to
    ``p`` logits (PyTorch's default uniform ±1/√fan-in init, drawn from ``generator``)."""

    def __init__(self, p: int, width: int = 256, embed_dim: int = 64, *, generator: torch.Generator):
        super().__init__()
        self.p = check_int("p", p, minimum=2)
        check_int("width", width, minimum=1)
        check_int("embed_dim", embed_dim, minimum=1)
        self.embed = nn.Embedding(p, embed_dim)
        self.hidden = nn.Linear(2 * embed_dim, width)
        self.out = nn.Linear(width, p)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(p, embed_dim, generator=generator))
            for lin in (self.hidden, self.out):
                bound = 1.0 / math.sqrt(lin.in_features)
                lin.weight.uniform_(-bound, bound, generator=generator)
                lin.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed(x).reshape(x.shape[0], -1)
        return self.out(torch.relu(self.hidden(e)))


class OneLayerTransformer(nn.Module):
    """Nanda et al. (2023)'s grokking transformer: the input ``(a, b)`` is read as the sequence
    ``a b =`` (``=`` is token ``p``); token and learned position embeddings of width ``d_model``, one
    attention layer (``n_heads`` heads, ``nn.MultiheadAttention`` without biases), a ReLU MLP of width
    ``4·d_model`` with biases, residual connections, no LayerNorm, and an unembedding to ``p`` logits
    read at the ``=`` position. Nanda et al.: d_model = 128, 4 heads, d_mlp = 512.

    Only the logits at the last position enter the loss, and with one layer they depend on the other
    positions through their keys and values alone, so the query, the MLP and the unembedding are
    computed at that position only: the same function and gradients as the full causal model,
    at under half its cost. (A causal mask is then implicit: the last position sees all three.)

    Init as in Nanda et al.'s code: every weight N(0, 1/d_model) except the unembedding,
    N(0, 1/(p + 1)) (their vocabulary holds ``=`` too); biases zero.
    """

    def __init__(self, p: int, d_model: int = 128, n_heads: int = 4, *, generator: torch.Generator):
        super().__init__()
        self.p = check_int("p", p, minimum=2)
        check_int("d_model", d_model, minimum=1)
        check_int("n_heads", n_heads, minimum=1)
        if d_model % n_heads:
            raise ValueError(f"`d_model` ({d_model}) must be a multiple of `n_heads` ({n_heads})")
        self.tok = nn.Embedding(p + 1, d_model)
        self.pos = nn.Embedding(3, d_model)
        self.attn = nn.MultiheadAttention(d_model, n_heads, bias=False, batch_first=True)
        self.mlp_in = nn.Linear(d_model, 4 * d_model)
        self.mlp_out = nn.Linear(4 * d_model, d_model)
        self.unembed = nn.Linear(d_model, p, bias=False)
        self.register_buffer("positions", torch.arange(3), persistent=False)
        std = 1.0 / math.sqrt(d_model)
        with torch.no_grad():
            for w in (self.tok.weight, self.pos.weight, self.attn.in_proj_weight, self.attn.out_proj.weight,
                      self.mlp_in.weight, self.mlp_out.weight):
                w.copy_(torch.randn(w.shape, generator=generator) * std)
            self.unembed.weight.copy_(torch.randn(self.unembed.weight.shape, generator=generator)
                                      / math.sqrt(p + 1))
            for b in (self.mlp_in.bias, self.mlp_out.bias):
                b.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eq = torch.full((x.shape[0], 1), self.p, dtype=x.dtype, device=x.device)
        resid = self.tok(torch.cat([x, eq], 1)) + self.pos(self.positions)     # (n, 3, d_model)
        last = resid[:, 2:]                                                     # the "=" position
        attended, _ = self.attn(last, resid, resid, need_weights=False)
        h = (last + attended)[:, 0]
        h = h + self.mlp_out(torch.relu(self.mlp_in(h)))
        return self.unembed(h)


MODELS = ("quadratic", "embed", "transformer")


def make_model(kind: str, p: int, width: int, *, generator: torch.Generator) -> nn.Module:
    """A model by name: ``"quadratic"`` (:class:`QuadraticMLP`), ``"embed"`` (:class:`EmbedMLP`) or
    ``"transformer"`` (:class:`OneLayerTransformer` with ``d_model = width`` and 4 heads)."""
    kind = check_choice("model", kind, MODELS)
    if kind == "quadratic":
        return QuadraticMLP(p, width, generator=generator)
    if kind == "transformer":
        return OneLayerTransformer(p, width, 4, generator=generator)
    return EmbedMLP(p, width, generator=generator)


__all__ = ["OPERATIONS", "MODELS", "modular_dataset", "split_indices", "QuadraticMLP", "EmbedMLP",
           "OneLayerTransformer", "make_model"]
