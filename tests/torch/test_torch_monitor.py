"""Monitor behaviour: no side effects, schedules, events, resume, sinks and bad input."""

import json
import math

import pytest
import torch
from _torch_models import ce, mlp
from torch import nn

from shld.runs import read_metrics
from shld.torch import EventDetector, Monitor


def _batch(B=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 5, generator=g), torch.randint(0, 3, (B,), generator=g)


class DropNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.drop, self.bn, self.fc2 = nn.Linear(5, 8), nn.Dropout(0.5), nn.BatchNorm1d(8), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.bn(self.drop(torch.tanh(self.fc1(x)))))


@pytest.mark.parametrize("backend", ["norm_trick", "microbatch", "vmap"])
def test_no_side_effects(backend):
    torch.manual_seed(0)
    model = DropNet() if backend == "microbatch" else nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5),
                                                                     nn.Linear(8, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = _batch()
    # one real step so the optimizer has state
    ce(model, batch).backward()
    opt.step()
    opt.zero_grad()
    mon = Monitor(model, opt, loss_fn=ce, schedule=1, curvature_schedule=1, backend=backend)
    for mode in (True, False):
        model.train(mode)
        before = [b.clone() for b in model.buffers()]
        torch.manual_seed(123)
        loss = ce(model, batch)
        loss.backward()
        want_grads = [p.grad.clone() for p in model.parameters()]
        want_rng = torch.get_rng_state()
        want_buffers = [b.clone() for b in model.buffers()]
        want_opt = {k: v.clone() for k, v in opt.state[next(model.parameters())].items()
                    if torch.is_tensor(v)}
        model.zero_grad()
        with torch.no_grad():
            for b, v in zip(model.buffers(), before):
                b.copy_(v)
        torch.manual_seed(123)
        with mon.track(batch):
            loss = ce(model, batch)
            loss.backward()
        assert mon.last is not None and math.isfinite(mon.last["lambda_max"])
        assert model.training is mode
        assert all(m.training is mode for m in model.modules())
        assert torch.equal(torch.get_rng_state(), want_rng)
        for p, g in zip(model.parameters(), want_grads):
            assert torch.equal(p.grad, g)
        for b, w in zip(model.buffers(), want_buffers):
            assert torch.equal(b, w)
        for k, v in opt.state[next(model.parameters())].items():
            if torch.is_tensor(v):
                assert torch.equal(v, want_opt[k])
        model.zero_grad()


def test_schedule_every_and_log_and_untracked_steps_add_no_hooks():
    model, batch = mlp(0), _batch()
    mon = Monitor(model, schedule=3)
    for _ in range(10):
        with mon.track():
            ce(model, batch).backward()
            if mon.step % 3 != 0:
                assert not mon._hooks_param.handles and not mon._hooks_norm.handles
        model.zero_grad()
    assert [r["step"] for r in mon.records] == [0, 3, 6, 9]
    mon = Monitor(model, schedule="log")
    for _ in range(30):
        with mon.track():
            ce(model, batch).backward()
        model.zero_grad()
    assert [r["step"] for r in mon.records] == [0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25]


@pytest.mark.parametrize("bad, match", [(0, "schedule` must be >= 1"), ([], "never fires"),
                                        (lambda s: False, "never fires"), ("weekly", "'log'"),
                                        (True, "must be an int")])
def test_schedule_that_never_fires_is_rejected(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Monitor(mlp(0), schedule=bad)


def test_bad_input_messages():
    frozen = mlp(0).requires_grad_(False)
    with pytest.raises(ValueError, match="no parameters with requires_grad"):
        Monitor(frozen)
    with pytest.raises(TypeError, match="`model` must be a torch.nn.Module"):
        Monitor("model")
    with pytest.raises(ValueError, match="`backend` must be one of"):
        Monitor(mlp(0), backend="magic")
    with pytest.raises(ValueError, match="`curvature_schedule` needs `loss_fn`"):
        Monitor(mlp(0), curvature_schedule=1)
    model, batch = mlp(0), _batch()
    mon = Monitor(model, loss_fn=lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1], reduction="none"),
                  schedule=1, curvature_schedule=1)
    with pytest.raises(ValueError, match="`loss_fn` must return a scalar loss, got a tensor of shape"):
        with mon.track(batch):
            ce(model, batch).backward()
    model.zero_grad()
    mon = Monitor(model, schedule=1)
    mon.begin()
    loss = nn.functional.cross_entropy(model(batch[0]), batch[1], reduction="none")
    loss.mean().backward()
    with pytest.raises(ValueError, match="`loss` must be a scalar tensor, got"):
        mon.end(loss)
    with pytest.raises(ValueError, match="`batch` is required"):
        Monitor(model, loss_fn=ce, backend="microbatch", schedule=1).begin()


def test_nonfinite_gradients_are_recorded_and_training_goes_on():
    model, batch = mlp(0), _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    mon = Monitor(model, opt, schedule=1)
    mon.on_event(seen.append)
    with mon.track():
        (ce(model, batch) * float("nan")).backward()
    assert mon.last["nonfinite"] is True
    assert math.isnan(mon.last["trace_sigma"])
    assert mon.last["reason"] == "non-finite gradient"   # review item 12: it was empty
    assert any(e["kind"] == "nonfinite" for e in seen)
    opt.zero_grad()
    with mon.track():  # the run continues and the smoother was not poisoned
        ce(model, batch).backward()
    assert math.isfinite(mon.last["C_smoothed"])
    opt.zero_grad()
    strict = Monitor(model, schedule=1, on_nonfinite="raise")
    with pytest.raises(FloatingPointError, match="step 0"):
        with strict.track():
            (ce(model, batch) * float("inf")).backward()


def test_events_threshold_regime_and_sharp_drop():
    det = EventDetector(thresholds=(1.0,), drop_factor=3.0, window=3)
    kinds = []
    for step, c in enumerate([20.0, 15.0, 12.0, 3.0, 0.8, 0.7]):
        kinds.append([e["kind"] for e in det.update({"step": step, "C_smoothed": c})])
    assert "sharp_drop" in kinds[3] and "regime_change" in kinds[3]
    assert "cross_below" in kinds[4]
    assert kinds[5] == []
    with pytest.raises(ValueError, match="`drop_factor` must be > 1"):
        EventDetector(drop_factor=1.0)


def _train(mon, model, opt, n, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(16, 5, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        opt.zero_grad()
        with mon.track((x, y)):
            ce(model, (x, y)).backward()
        opt.step()
    return gen


def test_state_dict_resume_continues_the_averages(tmp_path):
    model = mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, opt, loss_fn=ce, schedule=2, curvature_schedule=4, out=tmp_path / "a")
    _train(mon, model, opt, 20, 0)
    full = mon.history("C_smoothed")
    # the same run split in two, through state dicts
    model = mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, opt, loss_fn=ce, schedule=2, curvature_schedule=4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        x, y = torch.randn(16, 5, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        opt.zero_grad()
        with mon.track((x, y)):
            ce(model, (x, y)).backward()
        opt.step()
    state = mon.state_dict()
    first = mon.history("C_smoothed")
    mon2 = Monitor(model, opt, loss_fn=ce, schedule=2, curvature_schedule=4)
    mon2.load_state_dict(state)
    for _ in range(10):
        x, y = torch.randn(16, 5, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        opt.zero_grad()
        with mon2.track((x, y)):
            ce(model, (x, y)).backward()
        opt.step()
    resumed = list(first) + list(mon2.history("C_smoothed"))
    assert resumed == pytest.approx(list(full), rel=1e-6)
    # the sinks wrote as they went
    mon.close()
    cols = read_metrics(tmp_path / "a" / "monitor.csv")
    assert list(cols["step"]) == list(range(0, 20, 2))
    lines = [json.loads(s) for s in (tmp_path / "a" / "monitor.jsonl").read_text().splitlines()]
    assert sum(1 for d in lines if d["type"] == "record") == 10


def test_per_group_C_and_groups_option():
    model, batch = mlp(0), _batch()
    opt = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.01}],
                          lr=0.1)
    mon = Monitor(model, opt, schedule=1, groups="param_groups")
    with mon.track():
        ce(model, batch).backward()
    assert {"C/group0", "C/group1"} <= set(mon.last)
    assert mon.last["trace_sigma/group0"] + mon.last["trace_sigma/group1"] == pytest.approx(
        mon.last["trace_sigma"])
    assert mon.last["lr"] == 0.1
    with pytest.raises(ValueError, match="`groups` must be"):
        Monitor(model, groups="per-layer")


def test_tensorboard_sink(tmp_path):
    pytest.importorskip("tensorboard")
    model, batch = mlp(0), _batch()
    mon = Monitor(model, schedule=1, tensorboard=tmp_path / "tb")
    with mon.track():
        ce(model, batch).backward()
    mon.close()
    assert any((tmp_path / "tb").iterdir())
