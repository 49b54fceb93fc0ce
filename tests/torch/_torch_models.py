"""Tiny models shared by the torch tests."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


class SeqNet(nn.Module):
    """Embedding -> Conv1d -> LayerNorm -> Linear over a token sequence (norm-trick layers with a
    sequence axis)."""

    def __init__(self, vocab=11, emb=6, ch=5, out=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb, padding_idx=0)
        self.conv = nn.Conv1d(emb, ch, 3, padding=1)
        self.ln = nn.LayerNorm(ch)
        self.fc = nn.Linear(ch, out)

    def forward(self, x):
        h = self.emb(x).transpose(1, 2)
        h = torch.tanh(self.conv(h)).transpose(1, 2)
        return self.fc(self.ln(h)).mean(1)


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(3, 4, 2, dilation=2, bias=False)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu(self.c1(x))
        h = torch.relu(self.c2(h))
        return self.fc(h.mean((2, 3)))


def ce(model, batch):
    return F.cross_entropy(model(batch[0]), batch[1])


def ce_sum(model, batch):
    return F.cross_entropy(model(batch[0]), batch[1], reduction="sum")


def mlp(seed=0, sizes=(5, 8, 3)):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


def loop_per_sample_grads(model, loss_fn, batch):
    """Brute force: one backward per sample (the twin of vmap)."""
    x, y = batch
    out = []
    params = [p for p in model.parameters() if p.requires_grad]
    for i in range(x.shape[0]):
        g = torch.autograd.grad(loss_fn(model, (x[i:i + 1], y[i:i + 1])), params)
        out.append(torch.cat([t.reshape(-1) for t in g]))
    return torch.stack(out)


def full_hessian(model, loss_fn, batch, vectorize=True):
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    ps = [p for p in model.parameters() if p.requires_grad]
    shapes = [p.shape for p in ps]
    flat = torch.cat([p.detach().reshape(-1) for p in ps]).double()

    def f(v):
        d, i = {}, 0
        for n, s in zip(names, shapes):
            k = s.numel()
            d[n] = v[i:i + k].view(s).float()
            i += k

        class M:
            def __call__(self, *a):
                return functional_call(model, d, a)
        return loss_fn(M(), batch).double()

    # plain autograd, reverse-over-reverse (torch.func's hessian/jacrev∘jacrev disagree with autograd's
    # padding_idx convention for nn.Embedding and are not symmetric there)
    return torch.autograd.functional.hessian(f, flat, vectorize=vectorize)


def trace_sigma_ref(G):
    """Unbiased tr Σ (ddof=1) and ‖g_B‖² from a (B, d) matrix of per-sample gradients."""
    G = G.double()
    B = G.shape[0]
    return float(((G - G.mean(0)) ** 2).sum() / (B - 1)), float((G.mean(0) ** 2).sum())


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


def randomise_batchnorm(model, seed=0):
    """Non-trivial running statistics and affine parameters (eval mode then differs from identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                    m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    return model


def tiny_gpt2(seed=0, n_layer=2, tie=True):
    """GPT-2 from a small ``GPT2Config`` (no weights are downloaded), dropout off, weights tied."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_embd=32, n_head=2, vocab_size=50, n_positions=16, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, tie_word_embeddings=tie)
    return GPT2LMHeadModel(cfg)


def lm_loss(model, batch):
    """Next-token cross-entropy, mean over the batch's tokens."""
    ids = batch[0]
    logits = model(ids).logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


class TinyViT(nn.Module):
    """A small vision transformer from layers with norm-trick rules: patch embedding (a strided
    Conv2d), learned positions (an nn.Embedding broadcast over the batch), ``nn.TransformerEncoder``
    blocks (``nn.MultiheadAttention``, LayerNorm, Linear; dropout 0: the attention's dropout
    pattern cannot be recomputed), mean pooling and a Linear head."""

    def __init__(self, cin=2, size=8, patch=4, dim=16, heads=2, depth=2, classes=3, norm_first=False):
        super().__init__()
        self.patches = nn.Conv2d(cin, dim, patch, stride=patch)
        self.n = (size // patch) ** 2
        self.pos = nn.Embedding(self.n, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True,
                                           norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        h = self.patches(x).flatten(2).transpose(1, 2)                    # (B, n, dim)
        h = h + self.pos(torch.arange(self.n, device=x.device).unsqueeze(0))
        return self.head(self.norm(self.encoder(h)).mean(1))
