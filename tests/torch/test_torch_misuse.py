"""Misuse the monitor refuses: each case raises or warns once with its cause, and no record holds a
wrong number (issue 11, "Misuse detection")."""

import json
import math
import warnings

import pytest
import torch
from _torch_models import ce, loop_per_sample_grads, mlp, trace_sigma_ref
from torch import nn

from shld.runs import read_metrics
from shld.torch import CScheduler, Monitor
from shld.torch.monitor import MonitorMisuseWarning

RTOL = 1e-4  # float32 hooks against float64 per-sample references


def _batch(B=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 5, generator=g), torch.randint(0, 3, (B,), generator=g)


def _ref(model, batch):
    """(tr Σ̂, ‖g_B‖², d) of the current trainable parameters from per-sample gradients."""
    tr, g2 = trace_sigma_ref(loop_per_sample_grads(model, ce, batch))
    return tr, g2, sum(p.numel() for p in model.parameters() if p.requires_grad)


def _misuse_warnings(record):
    return [w for w in record if issubclass(w.category, MonitorMisuseWarning)]


def _assert_refused(rec, cause):
    for key in ("grad_sq_norm", "trace_sigma", "grad_sq_norm_unbiased", "B_simple", "C_plugin",
                "C_unbiased", "D_seed", "C_smoothed"):
        assert math.isnan(rec[key]), (key, rec[key])
    assert rec["nonfinite"] is False and rec["regime"] == "undefined"
    assert cause in rec["reason"]


# --------------------------------------------------------------------------------------------
# gradients present before the step's backward: a missing zero_grad(), or backward() outside track()
# --------------------------------------------------------------------------------------------
def test_missing_zero_grad_is_refused_once_and_never_recorded_as_a_number():
    model, batch = mlp(0), _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: every step sees the same gradient
    tr, g2, _ = _ref(model, batch)
    mon = Monitor(model, opt, schedule=1, loss_reduction="mean")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with mon.track():                       # step 0: correct (.grad is None)
            ce(model, batch).backward()
        for _ in range(3):                      # steps 1-3: zero_grad() forgotten
            with mon.track():
                ce(model, batch).backward()
            opt.step()
    got = _misuse_warnings(caught)
    assert len(got) == 1  # once per cause, not every step
    msg = str(got[0].message)
    assert "zero_grad" in msg and "'0.weight'" in msg and "step 1" in msg
    assert mon.records[0]["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)
    assert mon.records[0]["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert mon.records[0]["reason"] == ""
    for rec in mon.records[1:]:
        _assert_refused(rec, "zero_grad")
        assert rec["dim"] == 75 and rec["batch_size"] == 16
    # zero_grad() again: the next step is measured correctly, the smoother saw no refused step
    opt.zero_grad()
    with mon.track():
        ce(model, batch).backward()
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert mon.last["C_smoothed"] == pytest.approx(mon.records[0]["C_smoothed"], rel=1e-9)


def test_backward_outside_track_before_the_step_is_refused():
    model, batch = mlp(0), _batch()
    mon = Monitor(model, schedule=1)
    ce(model, _batch(seed=1)).backward()     # gradients accumulated outside track()
    with pytest.warns(MonitorMisuseWarning, match="non-zero .grad"):
        with mon.track():
            ce(model, batch).backward()
    _assert_refused(mon.last, "zero_grad")


def test_zero_grad_without_set_to_none_is_not_misuse():
    model, batch = mlp(0), _batch()
    tr, g2, _ = _ref(model, batch)
    ce(model, _batch(seed=1)).backward()
    model.zero_grad(set_to_none=False)       # .grad are zero tensors, not None
    mon = Monitor(model, schedule=1, loss_reduction="mean")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonitorMisuseWarning)
        with mon.track():
            ce(model, batch).backward()
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)


def test_backward_after_track_is_refused_not_recorded_as_zero():
    model, batch = mlp(0), _batch()
    mon = Monitor(model, schedule=1)
    with pytest.warns(MonitorMisuseWarning, match="no backward pass"):
        with mon.track(batch):
            loss = ce(model, batch)          # forward inside ...
        loss.backward()                      # ... backward outside: the hooks never saw it
    _assert_refused(mon.last, "no backward pass")
    assert mon.last["batch_size"] == 16


def test_forward_before_track_is_refused_not_recorded_as_a_negative_variance():
    model, batch = mlp(0), _batch()
    mon = Monitor(model, schedule=1)
    loss = ce(model, batch)                  # forward outside ...
    with pytest.warns(MonitorMisuseWarning, match="belongs to a forward pass run before it"):
        with mon.track(batch_size=16):
            loss.backward()                  # ... backward inside: no per-sample norms were formed
    _assert_refused(mon.last, "no forward pass")
    assert mon.last["batch_size"] == 16


def test_accumulation_inside_one_step_is_legitimate():
    """Micro-batches inside one track(): the later backward passes find the earlier ones in .grad."""
    model, batch = mlp(0), _batch()
    tr, g2, _ = _ref(model, batch)
    halves = [(batch[0][:8], batch[1][:8]), (batch[0][8:], batch[1][8:])]
    for backend in ("norm_trick", "accumulation"):
        mon = Monitor(model, schedule=1, backend=backend, loss_reduction="mean")
        with warnings.catch_warnings():
            warnings.simplefilter("error", MonitorMisuseWarning)
            with mon.track(batch_size=16):
                for h in halves:
                    (ce(model, h) / 2).backward()
        model.zero_grad()
        assert mon.last["reason"] == ""
        assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)
        if backend == "norm_trick":
            assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
        else:
            assert math.isfinite(mon.last["trace_sigma"])


# --------------------------------------------------------------------------------------------
# parameters added, removed, replaced, frozen or unfrozen after the monitor was built
# --------------------------------------------------------------------------------------------
def _replace(model):
    torch.manual_seed(5)
    model[2] = nn.Linear(8, 3)
    return "replaced: 2.weight, 2.bias"


def _unfreeze(model):
    model[0].requires_grad_(True)
    return "unfrozen: 0.weight, 0.bias"


def _freeze(model):
    model[2].requires_grad_(False)
    return "frozen: 2.weight, 2.bias"


def _add(model):
    torch.manual_seed(6)
    model.append(nn.Tanh())
    model.append(nn.Linear(3, 3))
    return "added: 4.weight, 4.bias"


def _remove(model):
    del model[1:]                              # only the first layer is left: logits of 8 classes
    return "removed: 2.weight, 2.bias"


@pytest.mark.parametrize("change, d_before, d_after", [(_replace, 75, 75), (_unfreeze, 27, 75),
                                                       (_freeze, 75, 48), (_add, 75, 87),
                                                       (_remove, 75, 48)])
def test_parameter_changes_warn_once_and_rebuild(change, d_before, d_after, tmp_path):
    model, batch = mlp(0), _batch()
    if change is _unfreeze:
        model[0].requires_grad_(False)
    mon = Monitor(model, schedule=1, out=tmp_path)
    with mon.track():
        ce(model, batch).backward()
    model.zero_grad()
    assert mon.last["dim"] == d_before
    what = change(model)
    tr, g2, d = _ref(model, batch)
    assert d == d_after
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            with mon.track():
                ce(model, batch).backward()
            model.zero_grad()
    got = _misuse_warnings(caught)
    assert len(got) == 1 and what in str(got[0].message) and f"d = {d_before} -> {d_after}" in str(got[0].message)
    for rec in mon.records[1:]:
        assert rec["dim"] == d_after
        assert rec["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)
        assert rec["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    # the running averages restart on the new parameters: C_smoothed is this step's C
    assert mon.records[1]["C_smoothed"] == pytest.approx(mon.records[1]["C_unbiased"], rel=1e-9)
    mon.close()
    lines = [json.loads(s) for s in (tmp_path / "monitor.jsonl").read_text().splitlines()]
    ev = [e for e in lines if e["type"] == "event" and e["kind"] == "params_changed"]
    assert len(ev) == 1 and ev[0]["step"] == 1 and ev[0]["dim"] == d_after


class Scale(nn.Module):
    """A custom layer with its own parameter: no per-sample rule, so the norm trick cannot cover it."""

    def __init__(self, n):
        super().__init__()
        self.s = nn.Parameter(torch.linspace(0.5, 1.5, n))

    def forward(self, x):
        return x * self.s


def test_parameter_change_to_an_unsupported_layer_falls_back_with_its_warning():
    model, batch = mlp(0), _batch()
    mon = Monitor(model, loss_fn=ce, schedule=1)
    assert mon.backend == "norm_trick"
    model.insert(1, Scale(8))
    tr, g2, d = _ref(model, batch)
    with pytest.warns(RuntimeWarning) as caught:
        with mon.track(batch):
            ce(model, batch).backward()
    msgs = " | ".join(str(w.message) for w in caught)
    assert "added: 1.s; renamed: 2.weight -> 3.weight, 2.bias -> 3.bias" in msgs and "Scale" in msgs
    assert mon.backend == "microbatch" and mon.last["dim"] == d == 83
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)  # sub-batch gradients sum to g_B


# --------------------------------------------------------------------------------------------
# CScheduler(key=...)
# --------------------------------------------------------------------------------------------
def test_cscheduler_unknown_key_is_refused_with_the_allowed_keys():
    model = mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, opt, schedule=1)
    with pytest.raises(ValueError, match=r"`key` must be one of .*'C_smoothed'.*'C/0'.*got 'C_smoothd'"):
        CScheduler(opt, mon, key="C_smoothd")
    with pytest.raises(ValueError, match=r"'C/2'.*got 'C/7'"):
        CScheduler(opt, mon, key="C/7")
    with pytest.raises(ValueError, match="got 'C_smoothd'"):
        CScheduler(opt, key="C_smoothd")
    # valid keys act: C_unbiased of this batch is below `low`, so the rate goes up by `up`
    sched = CScheduler(opt, mon, key="C_unbiased", low=1e9, high=2e9)
    with mon.track():
        ce(model, _batch()).backward()
    assert math.isfinite(mon.last["C_unbiased"])
    assert sched.step() == 1.5 and opt.param_groups[0]["lr"] == pytest.approx(0.15)
    assert CScheduler(opt, mon, key="C/0").key == "C/0"


# --------------------------------------------------------------------------------------------
# Monitor(out=...) on a folder that already holds a monitor log
# --------------------------------------------------------------------------------------------
def _run(mon, model, n):
    for _ in range(n):
        with mon.track():
            ce(model, _batch()).backward()
        model.zero_grad()


def test_out_folder_with_a_log_is_refused_and_a_resumed_run_continues_it(tmp_path):
    model = mlp(0)
    mon = Monitor(model, schedule=1, out=tmp_path)
    _run(mon, model, 3)
    state = mon.state_dict()
    mon.close()
    before = (tmp_path / "monitor.csv").read_text()
    again = Monitor(model, schedule=1, out=tmp_path)
    with pytest.raises(FileExistsError, match=r"monitor\.csv.*up to step 2.*load_state_dict"):
        _run(again, model, 3)
    assert (tmp_path / "monitor.csv").read_text() == before  # nothing interleaved
    # resuming from an older state would repeat steps 1-2: refused too
    old = Monitor(model, schedule=1, out=tmp_path)
    old.load_state_dict({**state, "step": 1})
    with pytest.raises(FileExistsError, match="resumes at step 1"):
        _run(old, model, 1)
    # resuming from the state that wrote the log continues it: steps 3, 4, 5
    resumed = Monitor(model, schedule=1, out=tmp_path)
    resumed.load_state_dict(state)
    _run(resumed, model, 3)
    resumed.close()
    assert list(read_metrics(tmp_path / "monitor.csv")["step"]) == [0, 1, 2, 3, 4, 5]
    steps = [json.loads(s)["step"] for s in (tmp_path / "monitor.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 5


def test_two_live_monitors_on_one_folder_do_not_interleave(tmp_path):
    model = mlp(0)
    first = Monitor(model, schedule=1, out=tmp_path)
    second = Monitor(model, schedule=1, out=tmp_path)
    with first.track():
        ce(model, _batch()).backward()
    model.zero_grad()
    with pytest.raises(FileExistsError, match="monitor"):
        with second.track():
            ce(model, _batch()).backward()
    first.close()
    assert list(read_metrics(tmp_path / "monitor.csv")["step"]) == [0]


# --------------------------------------------------------------------------------------------
# a batch of size 1
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["norm_trick", "microbatch", "vmap"])
def test_batch_of_size_one_has_no_variance_but_a_gradient(backend):
    model = mlp(0)
    batch = _batch(B=1)
    _, g2, _ = _ref(model, batch)
    mon = Monitor(model, loss_fn=ce, schedule=1, backend=backend)
    seen = []
    mon.on_event(seen.append)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            with mon.track(batch):
                ce(model, batch).backward()
            model.zero_grad()
    got = _misuse_warnings(caught)
    assert len(got) == 1 and "batch of size 1 has no sample variance" in str(got[0].message)
    for rec in mon.records:
        assert rec["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)
        assert rec["batch_size"] == 1
        assert math.isnan(rec["trace_sigma"]) and math.isnan(rec["B_simple"]) and math.isnan(rec["D_seed"])
        assert rec["nonfinite"] is False
        assert rec["reason"] == "batch of size 1 has no sample variance"
    assert not any(e["kind"] == "nonfinite" for e in seen)


# --------------------------------------------------------------------------------------------
# the norm trick's per-sample norms must be those of the step's samples (review items 2-4)
# --------------------------------------------------------------------------------------------
class Looped(nn.Module):
    """One Linear cell applied twice per forward (weight sharing over depth)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.cell = nn.Linear(5, 5)

    def forward(self, x):
        return self.cell(torch.tanh(self.cell(x)))[:, :3]


class LinearOnSeqFirst(nn.Module):
    """A Linear applied to a (T, B, d) tensor: dim 0 holds positions, not samples."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inner, self.head = nn.Linear(5, 6), nn.Linear(6, 3)

    def forward(self, x):                       # x: (B, T, 5)
        return self.head(torch.tanh(self.inner(x.transpose(0, 1))).mean(0))


@pytest.mark.parametrize("with_batch", [True, False], ids=["track(batch)", "track()"])
def test_a_layer_applied_twice_per_forward_is_refused(with_batch):
    # before: B = 24 (true 12) and tr Σ 5.28 (exact 2.23), with no warning when every layer ran twice
    model, batch = Looped(), _batch(12)
    with pytest.warns(MonitorMisuseWarning, match="layer 'cell' was applied 2 times in 1 backward pass"):
        mon = Monitor(model, schedule=1)
        with mon.track(batch if with_batch else None):
            ce(model, batch).backward()
    model.zero_grad()
    _assert_refused(mon.last, "layer cell applied 2 times")
    assert mon.last["batch_size"] == (12 if with_batch else 24)   # without a batch, only the hooks' count
    # the remedy the warning names is exact
    tr, g2, _ = _ref(model, batch)
    mb = Monitor(model, loss_fn=ce, schedule=1, backend="vmap", loss_reduction="mean")
    with mb.track(batch):
        ce(model, batch).backward()
    model.zero_grad()
    assert mb.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)


def test_disjoint_chunks_of_the_batch_in_one_backward_are_exact():
    # the same layer called on two halves of the batch, one loss: calls > passes but each sample once
    model, batch = mlp(0), _batch(12)
    tr, g2, _ = _ref(model, batch)
    x, y = batch
    mon = Monitor(model, schedule=1, loss_reduction="mean")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonitorMisuseWarning)
        with mon.track(batch):
            out = torch.cat([model(x[:5]), model(x[5:])])
            torch.nn.functional.cross_entropy(out, y).backward()
    model.zero_grad()
    assert mon.last["batch_size"] == 12 and mon.last["reason"] == ""
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)


def test_a_layer_with_the_batch_on_dim_1_is_refused():
    # before: B recorded as T = 4 and tr Σ 23 % off, silently
    model = LinearOnSeqFirst()
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(6, 4, 5, generator=g), torch.randint(0, 3, (6,), generator=g))
    with pytest.warns(MonitorMisuseWarning, match="layer 'inner' saw 4 samples along dim 0, layer 'head' 6"):
        mon = Monitor(model, schedule=1)
        with mon.track(batch):
            ce(model, batch).backward()
    model.zero_grad()
    _assert_refused(mon.last, "layers disagree on the batch size")
    assert mon.last["batch_size"] == 6
    # every layer seeing positions (the head too) is caught by the batch passed to track()
    flat = nn.Sequential(nn.Linear(5, 3))
    mon = Monitor(flat, schedule=1)
    xs = batch[0].transpose(0, 1)               # (T, B, 5): dim 0 holds positions
    with pytest.warns(MonitorMisuseWarning, match="layer '0' saw 4 samples along dim 0, the batch passed"):
        with mon.track(batch):
            flat(xs).mean(0).pow(2).sum(1).mean().backward()
    _assert_refused(mon.last, "layers disagree on the batch size")


def test_a_forward_inside_track_that_is_never_back_propagated_is_not_counted():
    # before: a metric forward without no_grad() inflated B (20, true 8) and tr Σ (5.37, exact 2.12)
    model, data = mlp(0), _batch(20)
    batch = (data[0][:8], data[1][:8])
    tr, g2, _ = _ref(model, batch)
    mon = Monitor(model, schedule=1, loss_reduction="mean")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonitorMisuseWarning)
        with mon.track(batch):
            ce(model, batch).backward()
            (model(data[0][8:]).argmax(1) == data[1][8:]).float().mean()   # grad enabled, no backward
    model.zero_grad()
    assert mon.last["batch_size"] == 8 and mon.last["reason"] == ""
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)


# --------------------------------------------------------------------------------------------
# loss_reduction="auto" (review items 1 and 7)
# --------------------------------------------------------------------------------------------
def test_auto_reduction_reads_a_sum_loss_handed_to_track():
    # before: with mon.track(...) the monitor never saw the loss, so 'auto' meant 'mean' silently and a
    # sum loss gave ‖g‖², tr Σ and D B² = 256 times too large
    model, batch = mlp(0), _batch()
    tr, g2, _ = _ref(model, batch)
    mon = Monitor(model, schedule=1)
    with pytest.warns(MonitorMisuseWarning, match="'sum' over the batch's samples"):
        with mon.track(batch) as m:
            loss = torch.nn.functional.cross_entropy(model(batch[0]), batch[1], reduction="sum")
            loss.backward()
            m.observe(loss)
    model.zero_grad()
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert mon.last["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)
    # loss_fn's output tells too (read once, on the step's batch), and the record is in the mean convention
    from _torch_models import ce_sum
    mon = Monitor(model, loss_fn=ce_sum, schedule=1)
    with pytest.warns(MonitorMisuseWarning, match="'sum'"):
        with mon.track(batch):
            ce_sum(model, batch).backward()
    model.zero_grad()
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    with pytest.raises(RuntimeError, match="observe\\(\\) called outside a step"):
        mon.observe(ce(model, batch))


def test_auto_reduction_that_cannot_be_read_warns_that_mean_is_assumed():
    model, batch = mlp(0), _batch()
    tr, _, _ = _ref(model, batch)
    mon = Monitor(model, schedule=1)
    with pytest.warns(MonitorMisuseWarning, match="mean is assumed; a sum loss would make"):
        with mon.track(batch):
            ce(model, batch).backward()
    model.zero_grad()
    assert mon.last["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    with warnings.catch_warnings():             # once per run
        warnings.simplefilter("error", MonitorMisuseWarning)
        with mon.track(batch):
            ce(model, batch).backward()
    model.zero_grad()


def test_sum_loss_fn_curvature_under_auto_is_the_mean_loss_hessian():
    # before: λ_max of a sum loss_fn was recorded B = 16 times too large (11.99 against 0.749)
    from _torch_models import ce_sum, full_hessian
    model, batch = mlp(0), _batch()
    lam_ref = torch.linalg.eigvalsh(full_hessian(model, ce, batch))[-1].item()
    mon = Monitor(model, loss_fn=ce_sum, schedule=[5], curvature_schedule=1, lanczos_steps=30, lanczos_tol=1e-10)
    with pytest.warns(MonitorMisuseWarning, match="'sum'"):
        with mon.track(batch):
            ce_sum(model, batch).backward()
    model.zero_grad()
    assert mon.last["lambda_max"] == pytest.approx(lam_ref, rel=1e-5)


def test_a_sum_of_mean_losses_is_not_taken_for_a_sum_reduction():
    # before: stack([mean, mean]).sum() was read as 'sum', every record was divided by B² and the
    # monitor switched to 'sum' for good (state_dict too)
    from shld.torch import detect_reduction
    model, batch = mlp(0), _batch()
    x, y = batch
    out = model(x)
    two_means = torch.stack([torch.nn.functional.cross_entropy(out, y), 0.1 * out.pow(2).mean()]).sum()
    per = torch.nn.functional.cross_entropy(out, y, reduction="none")
    weighted = (per * torch.full((16,), 1 / 16)).sum()
    assert detect_reduction(two_means, 16) is None and detect_reduction(weighted, 16) is None
    assert detect_reduction(per.sum(), 16) == "sum" and detect_reduction(per.sum(), 8) is None
    assert detect_reduction(torch.nn.functional.cross_entropy(out, y, reduction="sum"), 16) == "sum"
    # the monitor's record of the two-mean loss: mean convention (warned, not divided by B²)
    G = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        torch.stack([torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]),
                     0.1 * model(x[i:i + 1]).pow(2).mean()]).sum(), list(model.parameters()))]) for i in range(16)])
    from _torch_models import trace_sigma_ref
    tr, g2 = trace_sigma_ref(G)
    mon = Monitor(model, schedule=1)
    with pytest.warns(MonitorMisuseWarning, match="mean is assumed"):
        mon.begin(batch)
        out = model(x)
        loss = torch.stack([torch.nn.functional.cross_entropy(out, y), 0.1 * out.pow(2).mean()]).sum()
        loss.backward()
        rec = mon.end(loss)
    model.zero_grad()
    assert rec["trace_sigma"] == pytest.approx(tr, rel=RTOL)
    assert rec["grad_sq_norm"] == pytest.approx(g2, rel=RTOL)
    assert mon.state_dict()["loss_reduction"] == "auto"
