"""Reference models for tests and benchmarks, built only from layers with exact per-sample rules.

torchvision cannot be installed beside torch 2.13.0 on the project's machines, so the models the
monitor is tested and benchmarked on are defined here: a ResNet-style CNN (grouped and depthwise
convolutions, BatchNorm, GroupNorm), a small vision transformer (``nn.TransformerEncoder`` with
``nn.MultiheadAttention``) and GPT-2 from a ``transformers.GPT2Config`` (no weights are downloaded).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResBlock", "SmallResNet", "TinyViT", "tiny_gpt2"]


class ResBlock(nn.Module):
    """Grouped 3x3 conv -> BatchNorm -> ReLU -> depthwise 3x3 (reflect padding) -> BatchNorm, plus
    the identity (or a strided 1x1 conv) on the skip path."""

    def __init__(self, cin, cout, stride=1, groups=2):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding="same", groups=cout, padding_mode="reflect", bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Identity() if stride == 1 and cin == cout
                     else nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.skip(x))


class SmallResNet(nn.Module):
    """A ResNet-style CNN built only from layers with norm-trick rules (torchvision cannot be
    installed beside torch 2.13 here): stem conv + BatchNorm, two residual blocks with grouped and
    depthwise convs, GroupNorm, global pooling, a Linear head."""

    def __init__(self, cin=2, width=4, classes=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(ResBlock(width, width), ResBlock(width, 2 * width, stride=2))
        self.gn = nn.GroupNorm(2, 2 * width)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        h = self.gn(self.blocks(self.stem(x)))
        return self.fc(h.mean((2, 3)))


def tiny_gpt2(seed=0, n_layer=2, tie=True, n_embd=32, n_head=2, vocab_size=50, n_positions=16):
    """GPT-2 from a small ``GPT2Config`` (no weights are downloaded), dropout off, weights tied."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=vocab_size,
                     n_positions=n_positions, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                     eos_token_id=0, tie_word_embeddings=tie)
    return GPT2LMHeadModel(cfg)


class TinyViT(nn.Module):
    """A small vision transformer from layers with norm-trick rules: patch embedding (a strided
    Conv2d), learned positions (an nn.Embedding broadcast over the batch), ``nn.TransformerEncoder``
    blocks (``nn.MultiheadAttention``, LayerNorm, Linear; ``dropout`` 0 by default, exact on the norm
    trick's path either way), mean pooling and a Linear head."""

    def __init__(self, cin=2, size=8, patch=4, dim=16, heads=2, depth=2, classes=3, norm_first=False, dropout=0.0):
        super().__init__()
        self.patches = nn.Conv2d(cin, dim, patch, stride=patch)
        self.n = (size // patch) ** 2
        self.pos = nn.Embedding(self.n, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=dropout, batch_first=True,
                                           norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        h = self.patches(x).flatten(2).transpose(1, 2)                    # (B, n, dim)
        h = h + self.pos(torch.arange(self.n, device=x.device).unsqueeze(0))
        return self.head(self.norm(self.encoder(h)).mean(1))
