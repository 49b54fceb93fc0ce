"""The norm trick's per-layer rules (shld.torch.layer_rules) against torch.func per-sample gradients.

Everything runs in float64, where the rules and ``torch.func`` differ only by rounding (measured
≤ 1e-15 relative); RTOL = 1e-5 is the issue's bound. Each layer is checked twice: the rule's
per-sample squared norms against ``‖g_i‖²`` from :func:`shld.torch.per_sample_grads`, and the
monitor's ``trace_sigma`` and ``grad_sq_norm`` (backend ``norm_trick``) against the same
gradients. Both ghost-norm forms (Gram and outer product) are forced in turn as well as the
automatic choice.
"""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from _torch_models import SmallResNet, TinyViT, lm_loss, randomise_batchnorm, tiny_gpt2, trace_sigma_ref
from torch import nn

from shld.torch import Monitor, backends, layer_rules, per_sample_grads
from shld.torch.backends import norm_trick_coverage

RTOL = 1e-5


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(params=[None, "gram", "direct"], ids=["auto", "gram", "direct"])
def form(request, monkeypatch):
    monkeypatch.setattr(layer_rules, "FORCE_FORM", request.param)
    return request.param


class Probe(nn.Module):
    """One layer; the loss of sample i is ⟨layer(x_i), r_i⟩, so the output gradient is r / B."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


def probe_loss(model, batch):
    x, r = batch
    return (model(x) * r).flatten(1).sum(1).mean()


def _randomise(layer, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return layer


def _reference(model, loss_fn, batch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # torch.func: no batching rule for CPU flash attention
        grads = per_sample_grads(model, loss_fn, batch)
    return grads, trace_sigma_ref(torch.cat([g.reshape(g.shape[0], -1) for g in grads], 1))


def _monitor(model, loss_fn, batch, **kw):
    mon = Monitor(model, loss_fn=loss_fn, schedule=1, **kw)
    model.zero_grad()
    with mon.track(batch):
        loss_fn(model, batch).backward()
    model.zero_grad()
    return mon


def check_layer(layer, x, seed=0):
    """Rule vs torch.func per sample, and the monitor's tr Σ, ‖G‖² vs torch.func; returns the
    largest relative error seen."""
    model = Probe(_randomise(layer, seed))
    with torch.no_grad():
        out = model(x)
    r = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1))
    batch = (x, r)
    params = [p for p in model.parameters() if p.requires_grad]
    grads, (tr_ref, g2_ref) = _reference(model, probe_loss, batch)
    rule, why = layer_rules.norm_trick_rule(layer)
    assert rule is not None, why
    got = rule(layer, x, r)                           # gradient of Σ_i ⟨out_i, r_i⟩ is r
    assert set(got) == {p for p in layer.parameters() if p.requires_grad}
    err = 0.0
    for p, g in zip(params, grads):
        ref = g.reshape(g.shape[0], -1).pow(2).sum(1)
        assert ref.min() > 0
        err = max(err, float(((got[p] - ref).abs() / ref).max()))
    mon = _monitor(model, probe_loss, batch, backend="norm_trick")
    err = max(err, abs(mon.last["trace_sigma"] / tr_ref - 1), abs(mon.last["grad_sq_norm"] / g2_ref - 1))
    assert err < RTOL
    return err


def _x(*shape, seed=3):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# convolutions
# ---------------------------------------------------------------------------------------------
CONVS = [
    (nn.Conv1d, dict(in_channels=4, out_channels=6, kernel_size=3), (11,)),
    (nn.Conv1d, dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, stride=2, padding=1), (12,)),
    (nn.Conv1d, dict(in_channels=4, out_channels=8, kernel_size=2, groups=4, dilation=3, padding="same",
                     padding_mode="reflect"), (10,)),
    (nn.Conv1d, dict(in_channels=3, out_channels=6, kernel_size=3, padding=2, padding_mode="circular",
                     bias=False), (9,)),
    (nn.Conv1d, dict(in_channels=4, out_channels=2, kernel_size=4, padding="valid", stride=3), (13,)),
    (nn.Conv2d, dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, stride=(2, 1), dilation=(1, 2),
                     padding=(1, 2)), (7, 8)),
    (nn.Conv2d, dict(in_channels=4, out_channels=4, kernel_size=(2, 3), padding="same"), (6, 5)),
    (nn.Conv2d, dict(in_channels=4, out_channels=8, kernel_size=3, groups=4, padding=1, padding_mode="replicate",
                     bias=False), (5, 6)),
    (nn.Conv2d, dict(in_channels=2, out_channels=3, kernel_size=1, stride=2), (7, 7)),
    (nn.Conv3d, dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, stride=2, padding=1), (5, 6, 5)),
    (nn.Conv3d, dict(in_channels=2, out_channels=4, kernel_size=2, dilation=2, padding="same",
                     padding_mode="circular"), (4, 5, 4)),
    (nn.Conv3d, dict(in_channels=3, out_channels=3, kernel_size=(1, 3, 3), groups=3, padding=(0, 1, 1),
                     padding_mode="reflect"), (3, 4, 5)),
]


@pytest.mark.parametrize("cls,kw,spatial", CONVS, ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(CONVS)])
def test_conv_rule_matches_torch_func(cls, kw, spatial, form):
    layer = cls(**kw)
    check_layer(layer, _x(5, kw["in_channels"], *spatial))


def test_conv_choice_follows_the_cheaper_form(monkeypatch):
    # T = 4 output positions, p = 2·9, q = 3: T² = 16 ≤ 54 -> Gram; T = 64: 4096 > 54 -> outer product
    assert layer_rules.use_gram(4, 18, 3) and not layer_rules.use_gram(64, 18, 3)
    seen = []
    real = layer_rules.gram_or_direct
    monkeypatch.setattr(layer_rules, "gram_or_direct", lambda a, b: seen.append(a.shape) or real(a, b))
    layer = nn.Conv2d(2, 3, 3)
    layer_rules.conv(layer, _x(2, 2, 4, 4), _x(2, 3, 2, 2))     # T = 4: Gram, through patches
    layer_rules.conv(layer, _x(2, 2, 10, 10), _x(2, 3, 8, 8))   # T = 64: weight-gradient convolution
    assert seen == [(2, 4, 18)]


class ConvInNet(nn.Module):
    """A convolution between two differentiable maps, so its input gradient is needed too."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return torch.tanh(self.layer(torch.sin(x)))


def _fused_grads(layer, x, r, fuse, monkeypatch, *, penalty=False):
    """(x.grad, parameter grads, fused-path flag) of Σ⟨net(x), r⟩ / B in a tracked step; with
    ``penalty`` the loss adds the squared norms of its gradients in x and in the layer's
    parameters (a backward with create_graph=True inside the step)."""
    monkeypatch.setattr(layer_rules, "FUSE_CONV", fuse)
    net = ConvInNet(layer)
    mon = Monitor(net, loss_fn=probe_loss, schedule=1)
    x = x.clone().requires_grad_()
    net.zero_grad()
    seen = []
    with mon.track((x, r)):
        h = layer.register_forward_hook(lambda m, i, o: seen.append(type(o.grad_fn).__name__))
        loss = (net(x) * r).flatten(1).sum(1).mean()
        h.remove()
        if penalty:
            grads = torch.autograd.grad(loss, [x, *layer.parameters()], create_graph=True)
            loss = loss + sum((g * g).sum() for g in grads)
        loss.backward()
    return x.grad, [p.grad.clone() for p in layer.parameters()], seen == ["ConvPerSampleGradBackward"], mon.last


def _fused_equals_autograd(layer, x, r, monkeypatch, **kw):
    """The fused and the unfused tracked step give the same gradients (float64, to rounding); the
    first is fused, the second not. Returns the fused step's record."""
    gx0, gp0, fused0, _ = _fused_grads(layer, x, r, False, monkeypatch, **kw)
    gx1, gp1, fused1, rec = _fused_grads(layer, x, r, True, monkeypatch, **kw)
    assert fused1 and not fused0
    torch.testing.assert_close(gx1, gx0, rtol=1e-12, atol=1e-14)
    for a, b in zip(gp1, gp0):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    return rec


@pytest.mark.parametrize("cls,kw,spatial", CONVS, ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(CONVS)])
def test_fused_conv_backward_gives_autograds_gradients(cls, kw, spatial, monkeypatch):
    # on the direct form the weight gradient is the sum of the per-sample gradients and the input
    # gradient comes alone from convolution_backward: every gradient must equal autograd's own
    # backward (float64: to rounding), and the norms must still match torch.func
    monkeypatch.setattr(layer_rules, "FORCE_FORM", "direct")
    layer = _randomise(cls(**kw))
    x = _x(5, kw["in_channels"], *spatial)
    with torch.no_grad():
        r = torch.randn(layer(x).shape, generator=torch.Generator().manual_seed(4))
    rec = _fused_equals_autograd(layer, x, r, monkeypatch)
    _, (tr_ref, g2_ref) = _reference(ConvInNet(layer), probe_loss, (x, r))
    assert rec["trace_sigma"] == pytest.approx(tr_ref, rel=RTOL)
    assert rec["grad_sq_norm"] == pytest.approx(g2_ref, rel=RTOL)


def test_fused_conv_backward_stays_differentiable_under_create_graph(monkeypatch):
    # a gradient penalty (backward of a backward) through the fused node: its second-order terms
    # must equal autograd's, else the weight gradient would silently lose them
    monkeypatch.setattr(layer_rules, "FORCE_FORM", "direct")
    layer = _randomise(nn.Conv2d(3, 4, 3, padding=1))
    x = _x(4, 3, 6, 6)
    r = _x(4, 4, 6, 6, seed=5)
    _fused_equals_autograd(layer, x, r, monkeypatch, penalty=True)


def test_conv_on_the_gram_form_keeps_autograds_backward(monkeypatch):
    # the Gram form has no per-sample gradient to sum: the fused node must not be used there
    monkeypatch.setattr(layer_rules, "FORCE_FORM", "gram")
    layer = _randomise(nn.Conv2d(3, 4, 3, padding=1))
    x = _x(4, 3, 6, 6)
    _, _, fused, rec = _fused_grads(layer, x, _x(4, 4, 6, 6, seed=5), True, monkeypatch)
    assert not fused and math.isfinite(rec["trace_sigma"])


def test_patch_embedding_takes_the_fused_backward_where_its_gram_form_is_cheaper(monkeypatch):
    # a ViT's patch embedding: T = 64 positions, p = 3·16 = 48, q = 128, so T² ≤ p q (the Gram form is
    # the cheaper extra) but its per-sample gradients (B·6144) are smaller than its output (B·8192):
    # fused, with autograd's gradients and torch.func's norms; forced to the Gram form it is not fused
    layer = _randomise(nn.Conv2d(3, 128, 4, stride=4))
    assert layer_rules.use_gram(64, 48, 128)
    x = _x(3, 3, 32, 32)
    with torch.no_grad():
        r = torch.randn(layer(x).shape, generator=torch.Generator().manual_seed(4))
    rec = _fused_equals_autograd(layer, x, r, monkeypatch)
    _, (tr_ref, _) = _reference(ConvInNet(layer), probe_loss, (x, r))
    assert rec["trace_sigma"] == pytest.approx(tr_ref, rel=RTOL)
    monkeypatch.setattr(layer_rules, "FORCE_FORM", "gram")
    assert not _fused_grads(layer, x, r, True, monkeypatch)[2]


def test_resnet_convolutions_take_the_fused_backward():
    # the benchmark's ResNet owes its CPU overhead to this path (docs/benchmarks.md): at 32×32 all six
    # convolutions are on the direct form and must take their weight gradient from the per-sample ones
    model = SmallResNet(cin=3, width=16, classes=10).float()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    mon = Monitor(model, loss_fn=_ce, schedule=1)
    x = torch.randn(8, 3, 32, 32, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # BatchNorm in train mode
        with mon.track((x, torch.zeros(8, dtype=torch.long))):
            hs = [c.register_forward_hook(lambda m, i, o: seen.append(type(o.grad_fn).__name__)) for c in convs]
            _ce(model, (x, torch.zeros(8, dtype=torch.long))).backward()
            for h in hs:
                h.remove()
    assert seen == ["ConvPerSampleGradBackward"] * 6


# ---------------------------------------------------------------------------------------------
# Hugging Face Conv1D (GPT-2's linear layers, weight (in, out))
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 5), (6, 4, 5), (6, 3, 2, 5)], ids=["flat", "seq", "seq2"])
def test_hf_conv1d_rule_matches_torch_func(shape, form):
    from transformers.pytorch_utils import Conv1D

    check_layer(Conv1D(7, 5), _x(*shape))


# ---------------------------------------------------------------------------------------------
# Embedding
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(8,), (8, 6), (8, 3, 4)], ids=["one", "seq", "seq2"])
@pytest.mark.parametrize("padding_idx", [None, 0, 2])
def test_embedding_rule_matches_torch_func(shape, padding_idx):
    # few tokens so that most samples repeat a token and hit the padding row
    idx = torch.randint(0, 4, shape, generator=torch.Generator().manual_seed(1))
    if len(shape) > 1:
        idx[0] = 1                      # one sample without padding, one made only of padding
        idx[1] = 0 if padding_idx is None else padding_idx
    layer = nn.Embedding(4, 5, padding_idx=padding_idx)
    model = Probe(_randomise(layer))
    r = _x(*shape, 5)
    grads, (tr_ref, g2_ref) = _reference(model, probe_loss, (idx, r))
    if padding_idx is not None:
        assert float(grads[0][:, padding_idx].abs().max()) == 0.0   # the padding row gets no gradient
    got = layer_rules.embedding(layer, idx, r)[layer.weight]
    torch.testing.assert_close(got, grads[0].reshape(len(idx), -1).pow(2).sum(1), rtol=RTOL, atol=1e-300)
    mon = _monitor(model, probe_loss, (idx, r), backend="norm_trick")
    assert mon.last["trace_sigma"] == pytest.approx(tr_ref, rel=RTOL)
    assert mon.last["grad_sq_norm"] == pytest.approx(g2_ref, rel=RTOL)


# ---------------------------------------------------------------------------------------------
# normalisation layers
# ---------------------------------------------------------------------------------------------
NORMS = [
    (lambda: nn.LayerNorm(5), (6, 4, 5)),
    (lambda: nn.LayerNorm(5), (6, 5)),
    (lambda: nn.LayerNorm((4, 5), bias=False), (6, 3, 4, 5)),
    (lambda: nn.RMSNorm(5), (6, 4, 5)),
    (lambda: nn.RMSNorm((4, 5), eps=1e-3), (6, 2, 4, 5)),
    (lambda: nn.GroupNorm(2, 6), (6, 6, 4, 3)),
    (lambda: nn.GroupNorm(3, 6, bias=False), (6, 6, 5)),
    (lambda: nn.GroupNorm(1, 4), (6, 4)),
    (lambda: nn.BatchNorm1d(4).eval(), (6, 4)),
    (lambda: nn.BatchNorm1d(4).eval(), (6, 4, 5)),
    (lambda: nn.BatchNorm2d(3).eval(), (6, 3, 4, 5)),
    (lambda: nn.BatchNorm3d(3).eval(), (6, 3, 2, 3, 4)),
]


@pytest.mark.parametrize("make,shape", NORMS, ids=[f"{i}" for i in range(len(NORMS))])
def test_norm_layer_rule_matches_torch_func(make, shape):
    layer = make()
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        randomise_batchnorm(layer)
    check_layer(layer, _x(*shape))


def test_frozen_affine_parameters_are_left_out():
    layer = nn.LayerNorm(5)
    layer.bias.requires_grad_(False)
    got = layer_rules.layernorm(layer, _x(3, 5), _x(3, 5, seed=4))
    assert set(got) == {layer.weight}


# ---------------------------------------------------------------------------------------------
# BatchNorm in train mode: the row decomposition of the batch gradient
# ---------------------------------------------------------------------------------------------
class BNNet(nn.Module):
    """fc1 -> BatchNorm (train: batch statistics) -> tanh -> fc2."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.bn, self.fc2 = nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Linear(6, 3)
        randomise_batchnorm(self)

    def forward(self, x, w1=None, b1=None):
        if w1 is None:
            h = self.fc1(x)
        else:  # per-sample copies of fc1's parameters (the reference for the row decomposition)
            h = torch.einsum("boi,bi->bo", w1, x) + b1
        return self.fc2(torch.tanh(self.bn(h)))


def _ce(model, batch):
    return F.cross_entropy(model(batch[0]), batch[1])


def _own_loss_grads(model, batch):
    """∇_θ ℓ_i with the whole batch in the forward (its statistics fixed as the batch makes them):
    torch.func.jacrev of the vector of per-sample losses."""
    from torch.func import functional_call, jacrev

    x, y = batch
    names = [n for n, p in model.named_parameters()]
    ps = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}   # the forward updates running stats

    def losses(ps, buffers):
        return F.cross_entropy(functional_call(model, (ps, buffers), (x,)), y, reduction="none")

    J = jacrev(losses)(ps, buffers)
    return {n: J[n] for n in names}


def _row_decomposition_fc1(model, batch):
    """Per-sample c_i of fc1 by autograd through per-sample copies of its weight and bias:
    B ∂L/∂W_i with L the batch (mean) loss."""
    x, y = batch
    B = x.shape[0]
    w = model.fc1.weight.detach().expand(B, -1, -1).clone().requires_grad_()
    b = model.fc1.bias.detach().expand(B, -1).clone().requires_grad_()
    gw, gb = torch.autograd.grad(F.cross_entropy(model(x, w, b), y), (w, b))
    return gw * B, gb * B


def _tr(*grads):
    return trace_sigma_ref(torch.cat([g.reshape(g.shape[0], -1) for g in grads], 1))


@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm1d, (6, 4)), (nn.BatchNorm2d, (6, 4, 3, 5))])
def test_batchnorm_statistics_saved_by_the_forward_equal_computed_ones(cls, shape):
    # train mode: the rule takes μ and 1/σ from the forward's kernel when it saved them (CPU)
    bn = _randomise(cls(4)).train()
    x = _x(*shape) * 3 + 2
    out = bn(x)
    stats = layer_rules.batchnorm_saved_stats(bn, out)
    assert stats is not None
    g = _x(*shape, seed=5)
    a, b = layer_rules.batchnorm(bn, x, g, stats=stats), layer_rules.batchnorm(bn, x, g)
    for p in (bn.weight, bn.bias):
        torch.testing.assert_close(a[p], b[p], rtol=1e-12, atol=0)
    # eval mode (running statistics) saves none
    bn.eval()
    assert layer_rules.batchnorm_saved_stats(bn, bn(x)) is None


def test_batchnorm_train_mode_is_the_row_decomposition_and_warns_once():
    model = BNNet().train()
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(8, 5, generator=g), torch.randint(0, 3, (8,), generator=g))
    own = _own_loss_grads(model, batch)
    w1, b1 = _row_decomposition_fc1(model, batch)
    mon = Monitor(model, schedule=1)
    assert mon.backend == "norm_trick"
    with pytest.warns(RuntimeWarning, match=r"BatchNorm layer bn .*train mode") as caught:
        for _ in range(2):
            with mon.track(batch):
                _ce(model, batch).backward()
            model.zero_grad()
    assert sum("BatchNorm" in str(w.message) for w in caught) == 1
    rec = mon.last
    # BatchNorm's affine parameters and the layer after it: the sample's own loss term, exactly
    for name in ("bn", "fc2"):
        tr, g2 = _tr(own[f"{name}.weight"], own[f"{name}.bias"])
        assert rec[f"trace_sigma/{name}"] == pytest.approx(tr, rel=RTOL)
    # the layer before it: the row decomposition (per-sample copies of its parameters) ...
    tr_rows, _ = _tr(w1, b1)
    assert rec["trace_sigma/fc1"] == pytest.approx(tr_rows, rel=RTOL)
    # ... which is not ∇ℓ_i there: the statistics carry the other samples' loss terms
    tr_own, _ = _tr(own["fc1.weight"], own["fc1.bias"])
    assert abs(tr_rows / tr_own - 1) > 1e-2
    # both decompositions add up to the batch gradient
    torch.testing.assert_close(w1.mean(0), own["fc1.weight"].mean(0), rtol=1e-10, atol=1e-12)
    all_rows = [w1, b1] + [own[n] for n in ("bn.weight", "bn.bias", "fc2.weight", "fc2.bias")]
    _, g2 = _tr(*all_rows)
    assert rec["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)


def test_batchnorm_without_running_stats_uses_batch_statistics_in_eval_mode():
    layer = nn.BatchNorm2d(3, track_running_stats=False).eval()
    assert layer_rules.is_batchnorm_training(layer)
    model = nn.Sequential(layer, nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(6, 3, 4, 4, generator=g), torch.randint(0, 2, (6,), generator=g))
    own = _own_loss_grads(model, batch)
    with pytest.warns(RuntimeWarning, match="BatchNorm layer 0"):
        mon = _monitor(model, _ce, batch)
    # nothing trainable before the BatchNorm: every per-sample gradient is the sample's own
    tr, g2 = _tr(*own.values())
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)


# ---------------------------------------------------------------------------------------------
# nn.MultiheadAttention
# ---------------------------------------------------------------------------------------------
class AttnProbe(nn.Module):
    """Self- or cross-attention through one nn.MultiheadAttention; inputs and output batch first,
    the layer itself batch first or not."""

    def __init__(self, mha, cross, mask):
        super().__init__()
        self.mha, self.cross, self.mask = mha, cross, mask
        L, S = 5, (6 if cross else 5)
        g = torch.Generator().manual_seed(7)
        self.register_buffer("am2", torch.randn(L, S, generator=g) if not cross else torch.rand(L, S, generator=g) > 0.7)

    def forward(self, x, kv, kpm, am):
        t = (lambda z: z) if self.mha.batch_first else (lambda z: z.transpose(0, 1))
        q = t(x)
        k = t(kv) if self.cross else q
        kw = {}
        if self.mask in ("kpm", "both"):
            kw["key_padding_mask"] = kpm
        if self.mask in ("2d", "both"):
            kw["attn_mask"] = self.am2
        if self.mask == "3d":
            kw["attn_mask"] = am.reshape(-1, *am.shape[2:])     # (B·H, L, S), per sample
        if self.mask == "causal":
            kw["attn_mask"] = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
            kw["is_causal"] = True
        return t(self.mha(q, k, k, need_weights=self.mask == "kpm", **kw)[0])


def attn_loss(model, batch):
    x, kv, kpm, am, r = batch
    return (model(x, kv, kpm, am) * r).flatten(1).sum(1).mean()


# (batch_first, cross: False (self-attention), "packed" (key/value of width E, one in_proj_weight) or
#  True (kdim = vdim = 6: separate q/k/v_proj_weight), bias, mask, extra)
ATTN = [
    (True, False, True, "none", ""), (False, False, True, "kpm", ""), (True, False, False, "2d", ""),
    (False, False, True, "3d", ""), (True, False, True, "causal", ""), (True, True, True, "both", ""),
    (False, True, False, "kpm", ""), (True, True, True, "3d", ""),
    (True, False, True, "both", "bias_kv"), (False, True, True, "kpm", "zero_attn"),
    (True, False, False, "3d", "bias_kv+zero_attn"), (False, False, True, "none", "bias_kv+zero_attn"),
    (True, "packed", True, "kpm", ""), (False, "packed", True, "2d", "bias_kv"),
]


def _attn_case(batch_first, cross, bias, mask, extra, dropout=0.0):
    torch.manual_seed(0)
    E, H, B, L, S = 8, 2, 4, 5, (6 if cross else 5)
    kdim = 6 if cross is True else None
    mha = nn.MultiheadAttention(E, H, bias=bias, batch_first=batch_first, kdim=kdim, vdim=kdim,
                                add_bias_kv="bias_kv" in extra, add_zero_attn="zero_attn" in extra, dropout=dropout)
    assert mha._qkv_same_embed_dim is (cross is not True)
    model = AttnProbe(_randomise(mha), cross, mask)
    g = torch.Generator().manual_seed(1)
    kpm = torch.zeros(B, S, dtype=torch.bool)
    kpm[1, -2:] = True
    kpm[2, 0] = True
    batch = (torch.randn(B, L, E, generator=g), torch.randn(B, S, kdim or E, generator=g), kpm,
             torch.randn(B, H, L, S, generator=g), torch.randn(B, L, E, generator=g))
    return model, batch


class _Paths:
    """Records which way each attention layer was measured ("graph" or "recompute")."""

    def __init__(self, monkeypatch):
        self.seen = []
        orig = backends.NormTrickHooks.detach

        def detach(hooks):
            self.seen.append(dict(getattr(hooks, "paths", {})))
            orig(hooks)
        monkeypatch.setattr(backends.NormTrickHooks, "detach", detach)


@pytest.mark.parametrize("from_graph", [True, False], ids=["graph", "recompute"])
@pytest.mark.parametrize("batch_first,cross,bias,mask,extra", ATTN,
                         ids=["-".join(map(str, c)).rstrip("-") for c in ATTN])
def test_multihead_attention_rule_matches_torch_func(batch_first, cross, bias, mask, extra, from_graph, form,
                                                     monkeypatch):
    if not from_graph and form is not None:
        pytest.skip("the recompute path is checked with the automatic form only")
    monkeypatch.setattr(layer_rules, "MHA_FROM_GRAPH", from_graph)
    paths = _Paths(monkeypatch)
    model, batch = _attn_case(batch_first, cross, bias, mask, extra)
    _, (tr, g2) = _reference(model, attn_loss, batch)
    assert norm_trick_coverage(model, list(model.parameters()))[1] == []
    mon = _no_fallback(model, attn_loss, batch)
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)
    # the out-projection is accounted for by the attention's rule, as its own group
    assert set(mon.group_names) == {"mha", "mha.out_proj"}
    # the graph is read unless bias_k/bias_v or a zero attention position are added
    assert paths.seen[-1] == {"mha": "graph" if from_graph and not extra else "recompute"}


def test_multihead_attention_rule_recompute_matches_per_sample():
    # the recompute rule alone, per sample, for a call with distinct query, key and value
    torch.manual_seed(0)
    mha = _randomise(nn.MultiheadAttention(8, 2, batch_first=True))
    x = [_x(3, 5, 8, seed=s) for s in (1, 2, 3)]
    r = _x(3, 5, 8, seed=4)
    call, _ = layer_rules.mha_capture(mha, tuple(x), {})
    with torch.no_grad():
        got = layer_rules.mha(mha, call, r)
    params = list(mha.parameters())
    for i in range(3):
        out = mha(*(t[i:i + 1] for t in x))[0]
        grads = torch.autograd.grad((out * r[i:i + 1]).sum(), params)
        for p, gi in zip(params, grads):
            assert float(got[p][i]) == pytest.approx(float(gi.pow(2).sum()), rel=RTOL)


class DropoutAttn(nn.Module):
    """Attention with dropout on self-, key=value- or three-input calls; per-sample losses."""

    def __init__(self, batch_first, inputs, kdim=None):
        super().__init__()
        self.mha = _randomise(nn.MultiheadAttention(8, 2, dropout=0.3, batch_first=batch_first, kdim=kdim,
                                                    vdim=kdim))
        self.inputs = inputs

    def forward(self, x, k, v):
        t = (lambda z: z) if self.mha.batch_first else (lambda z: z.transpose(0, 1))
        q = t(x)
        args = {"self": (q, q, q), "kv": (q, t(k), t(k)), "qkv": (q, t(k), t(v))}[self.inputs]
        return t(self.mha(*args, need_weights=False)[0])


@pytest.mark.parametrize("batch_first,inputs,kdim", [(True, "self", None), (False, "self", None),
                                                     (True, "kv", None), (False, "qkv", None), (True, "qkv", 6)])
def test_multihead_attention_with_dropout_is_exact(batch_first, inputs, kdim):
    # per-sample gradients of the losses of one forward pass (one dropout pattern), by autograd one
    # sample at a time; the monitor reads the same pass's projections from its graph
    torch.manual_seed(0)
    model = DropoutAttn(batch_first, inputs, kdim).train()
    B, L, S, E = 4, 5, 6, 8
    x, k, v, r = _x(B, L, E, seed=1), _x(B, S, kdim or E, seed=2), _x(B, S, kdim or E, seed=3), _x(B, L, E, seed=4)
    assert norm_trick_coverage(model, list(model.parameters()))[1] == []
    mon = Monitor(model, schedule=1, loss_reduction="mean")
    params = [p for p in model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with mon.track((x, k, v)):
            losses = (model(x, k, v) * r).flatten(1).sum(1)
            losses.mean().backward(retain_graph=True)
    per = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[i], params, retain_graph=True)])
                       for i in range(B)])
    tr, g2 = trace_sigma_ref(per)
    # the dropout pattern matters: without it (eval mode) the gradients differ
    assert mon.backend == "norm_trick"
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)
    model.eval()
    eval_per = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        (model(x[i:i + 1], k[i:i + 1], v[i:i + 1]) * r[i:i + 1]).sum(), params)]) for i in range(B)])
    assert trace_sigma_ref(eval_per)[0] != pytest.approx(tr, rel=1e-2)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_tiny_vit_with_dropout_is_exact(norm_first):
    # dropout in the attention, the feed-forward block and the residuals: the per-sample gradients of
    # one forward pass's losses (one dropout pattern), by autograd one sample at a time
    torch.manual_seed(0)
    model = TinyViT(norm_first=norm_first, dropout=0.2).train()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 2, 8, 8, generator=g), torch.randint(0, 3, (5,), generator=g)
    mon = Monitor(model, schedule=1, loss_reduction="mean")
    params = list(model.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with mon.track((x, y)):
            losses = F.cross_entropy(model(x), y, reduction="none")
            losses.mean().backward(retain_graph=True)
    assert mon.backend == "norm_trick"
    per = torch.stack([torch.cat([gi.reshape(-1) for gi in torch.autograd.grad(losses[i], params, retain_graph=True)])
                       for i in range(5)])
    tr, g2 = trace_sigma_ref(per)
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)


def test_multihead_attention_with_dropout_and_bias_kv_falls_back():
    model = nn.MultiheadAttention(8, 2, dropout=0.1, add_bias_kv=True)
    supported, unsupported = norm_trick_coverage(model, list(model.parameters()))
    assert unsupported[0].startswith("<root> (MultiheadAttention: dropout=0.1 with add_bias_kv/add_zero_attn")
    # its out_proj (a Linear subclass, never called as a module) is not taken as covered either
    assert len(unsupported) == 2 and "out_proj (NonDynamicallyQuantizableLinear" in unsupported[1]


def test_multihead_attention_with_dropout_unrecognised_graph_records_nan(monkeypatch):
    # if the graph were not recognised, dropout could not be recomputed: NaN with one warning, never
    # a number from the wrong attention pattern
    monkeypatch.setattr(layer_rules.mha, "from_graph", lambda *a: None)
    model = DropoutAttn(True, "self").train()
    x = _x(4, 5, 8, seed=1)
    mon = Monitor(model, schedule=1)
    with pytest.warns(RuntimeWarning, match="dropout=0.3 in train mode"):
        with mon.track((x,)):
            model(x, x, x).sum().backward()
    assert math.isnan(mon.last["trace_sigma"])


# ---------------------------------------------------------------------------------------------
# whole models stay on the exact path
# ---------------------------------------------------------------------------------------------
def _no_fallback(model, loss_fn, batch):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)    # the monitor's warnings (fallback and misuse)
        mon = _monitor(model, loss_fn, batch)
    assert mon.backend == "norm_trick"
    return mon


def test_small_resnet_in_eval_mode_is_exact():
    torch.manual_seed(0)
    model = randomise_batchnorm(SmallResNet()).eval()
    assert norm_trick_coverage(model, list(model.parameters()))[1] == []
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(6, 2, 8, 8, generator=g), torch.randint(0, 3, (6,), generator=g))
    _, (tr, g2) = _reference(model, _ce, batch)
    mon = _no_fallback(model, _ce, batch)
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)


def test_small_resnet_in_train_mode_stays_exact_path_with_one_warning():
    torch.manual_seed(0)
    model = SmallResNet().train()
    batch = (_x(6, 2, 8, 8), torch.randint(0, 3, (6,), generator=torch.Generator().manual_seed(0)))
    with pytest.warns(RuntimeWarning) as caught:
        mon = _monitor(model, _ce, batch)
    assert [str(w.message)[:29] for w in caught] == ["norm trick: BatchNorm layer s"]
    assert mon.backend == "norm_trick"


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_tiny_gpt2_is_exact(tie):
    # GPT-2 = Embedding (tokens; positions broadcast over the batch) + LayerNorm + HF Conv1D + an
    # lm_head tied to the token embedding; its attention has no parameters of its own (no
    # nn.MultiheadAttention)
    model = tiny_gpt2(tie=tie).double()
    assert (model.lm_head.weight is model.transformer.wte.weight) is tie
    batch = (torch.randint(0, 50, (6, 10), generator=torch.Generator().manual_seed(0)),)
    _, (tr, g2) = _reference(model, lm_loss, batch)
    mon = _no_fallback(model, lm_loss, batch)
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_tiny_vit_is_exact(norm_first, monkeypatch):
    torch.manual_seed(0)
    model = TinyViT(norm_first=norm_first)
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(5, 2, 8, 8, generator=g), torch.randint(0, 3, (5,), generator=g))
    _, (tr, g2) = _reference(model, _ce, batch)
    paths = _Paths(monkeypatch)
    mon = _no_fallback(model, _ce, batch)
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)
    # both blocks' attention read from the graph (the walk stops at each block's input)
    assert paths.seen[-1] == {f"encoder.layers.{i}.self_attn": "graph" for i in range(2)}


def test_tiny_gpt2_over_accumulation_micro_steps_is_exact():
    # two micro-batches in one step: the tied weight's two contributions pair up per micro-batch,
    # and the positions are expanded to each micro-batch's own size (4, then 2)
    model = tiny_gpt2(n_layer=1).double()
    ids = torch.randint(0, 50, (6, 8), generator=torch.Generator().manual_seed(1))
    _, (tr, g2) = _reference(model, lm_loss, (ids,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mon = Monitor(model, schedule=1, loss_reduction="mean")
        with mon.track(batch_size=6):
            for part in (ids[:4], ids[4:]):
                (lm_loss(model, (part,)) * len(part) / 6).backward()
    model.zero_grad()
    assert mon.backend == "norm_trick" and mon.last["batch_size"] == 6
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)


def test_float32_models_agree_to_float32_rounding():
    # the same paths in the dtype people train in: relative agreement ~1e-6, bound 1e-4
    g = torch.Generator().manual_seed(2)
    gpt = tiny_gpt2().float()
    vit = TinyViT(norm_first=True).float()
    for model, loss_fn, batch in (
            (gpt, lm_loss, (torch.randint(0, 50, (6, 10), generator=g),)),
            (vit, _ce, (torch.randn(5, 2, 8, 8, generator=g).float(), torch.randint(0, 3, (5,), generator=g)))):
        _, (tr, g2) = _reference(model, loss_fn, batch)
        mon = _no_fallback(model, loss_fn, batch)
        assert mon.last["trace_sigma"] == pytest.approx(tr, rel=1e-4)
        assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=1e-4)


def test_shared_weight_other_than_embedding_head_falls_back_naming_it():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)))

    model = TwoHeads()
    supported, unsupported = norm_trick_coverage(model, list(model.parameters()))
    assert supported == [] and len(unsupported) == 2
    assert unsupported[0] == "a (Linear: parameter shared with b)"
    with pytest.warns(RuntimeWarning, match=r"layer a \(Linear: parameter shared with b\)"):
        Monitor(model, loss_fn=lambda m, b: m(b[0]).pow(2).mean(), schedule=1)


def test_broadcast_embedding_before_the_batch_is_seen_warns():
    class PosFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos, self.fc = nn.Embedding(5, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x + self.pos(torch.arange(5).unsqueeze(0)))

    model = PosFirst()
    mon = Monitor(model, schedule=1)
    with pytest.warns(RuntimeWarning, match="embedding pos was called with a leading dimension of 1"):
        with mon.track(batch_size=4):
            model(_x(4, 5, 3)).pow(2).mean().backward()


class NanoPositions(nn.Module):
    """nanoGPT's embeddings: ``wte(idx) + wpe(arange(T))`` with 1-D position ids of length T, then a head."""

    def __init__(self, V=7, T=5, d=4):
        super().__init__()
        self.wte, self.wpe, self.head = nn.Embedding(V, d), nn.Embedding(T, d), nn.Linear(d, V)

    def forward(self, idx):
        return self.head(self.wte(idx) + self.wpe(torch.arange(idx.shape[1])))


@pytest.mark.parametrize("B", [3, 8])       # shorter and longer than T = 5
def test_one_dimensional_position_ids_are_seen_per_sample(B):
    """1-D position ids of length T ≠ B are broadcast over the batch: exact, like GPT-2's (1, T) ids.
    (Before, the T positions were read as T samples: tr Σ 619.6 against 583.5 at B = 3.)"""
    model = _randomise(NanoPositions())
    idx = torch.randint(0, 7, (B, 5), generator=torch.Generator().manual_seed(B))
    batch = (idx, torch.randn(B, 5, 7, generator=torch.Generator().manual_seed(1)))
    _, (tr_ref, g2_ref) = _reference(model, probe_loss, batch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mon = _monitor(model, probe_loss, batch, backend="norm_trick")
    assert mon.last["trace_sigma"] == pytest.approx(tr_ref, rel=RTOL)
    assert mon.last["grad_sq_norm"] == pytest.approx(g2_ref, rel=RTOL)


# ---------------------------------------------------------------------------------------------
# sequence-first transformer layers (PyTorch's default batch_first=False), review item 2
# ---------------------------------------------------------------------------------------------
class SeqFirstEncoder(nn.Module):
    """nn.TransformerEncoder over layers with batch_first=False (input (T, B, d)) and a final norm; the
    batch is (B, T, d) and is transposed inside."""

    def __init__(self, d=8, depth=2, decoder=False):
        super().__init__()
        cls = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
        stack = nn.TransformerDecoder if decoder else nn.TransformerEncoder
        kw = {} if decoder else {"enable_nested_tensor": False}
        self.decoder = decoder
        self.enc = stack(cls(d, 2, 16, dropout=0.0), depth, norm=nn.LayerNorm(d), **kw)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        h = x.transpose(0, 1)
        h = self.enc(h, h) if self.decoder else self.enc(h)
        return self.head(h.mean(0))


@pytest.mark.parametrize("decoder", [False, True], ids=["encoder", "decoder"])
def test_sequence_first_transformer_layers_are_exact_per_group(decoder):
    # before: linear1/2 and the norms took dim 0 (positions) as the sample axis, with no warning
    # (enc.linear2 0.152 against 0.439); now their rules read the batch from dim 1
    torch.manual_seed(0)
    model = SeqFirstEncoder(decoder=decoder)
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(6, 5, 8, generator=g), torch.randint(0, 3, (6,), generator=g))
    grads, (tr, g2) = _reference(model, _ce, batch)
    mon = _no_fallback(model, _ce, batch)
    assert mon.last["batch_size"] == 6 and mon.last["reason"] == ""
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)
    names = [n for n, _ in model.named_parameters()]
    for group in ("enc.layers.0.linear2", "enc.layers.1.norm1", "enc.norm"):
        G = torch.cat([t.reshape(6, -1) for n, t in zip(names, grads) if n.rsplit(".", 1)[0] == group], 1)
        assert mon.last[f"trace_sigma/{group}"] == pytest.approx(trace_sigma_ref(G)[0], rel=RTOL)
