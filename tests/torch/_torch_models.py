"""Tiny models shared by the torch tests."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from shld.torch.models import ResBlock, SmallResNet, TinyViT, tiny_gpt2  # noqa: F401  (re-exported for the tests)


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


def lm_loss(model, batch):
    """Next-token cross-entropy, mean over the batch's tokens."""
    ids = batch[0]
    logits = model(ids).logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
