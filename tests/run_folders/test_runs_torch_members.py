"""Member folders of the PyTorch studies (grokking, lr-selection, batch-scaling) under the contract:
their config.json and checkpoint.pt carry an identity, a resume refuses another member's files, and a
resume with metrics rows missing refuses before touching the CSV."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from shld.experiments._torch_train import Data, train  # noqa: E402
from shld.runs import RunFolder, RunFolderError, make_identity  # noqa: E402
from shld.seeds import torch_generator  # noqa: E402


def _setup(path, identity):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=g), torch.randint(0, 2, (40,), generator=g)
    data = Data(x[:30], y[:30], x[30:], y[30:])
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = {"experiment": "probe-member", "key": identity, "seed": 0}
    run = RunFolder.create(path, cfg, exist_ok=True, identity=make_identity("probe-member", cfg))
    return model, opt, data, run


def _crash(epoch, row):
    if epoch == 3:
        raise RuntimeError("simulated crash")
    return {}


def test_member_config_and_checkpoint_identity(tmp_path):
    m, opt, data, run = _setup(tmp_path / "m", 1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(m, opt, data, epochs=6, run=run, generator=torch_generator(1), checkpoint_every=1, extra=_crash)
    with pytest.raises(RunFolderError, match=r"m/config.json belongs to another run: its parameters hash"):
        _setup(tmp_path / "m", 2)                                   # another member's folder
    # another member's checkpoint copied in: refused by name, before anything is trained
    m2, opt2, data2, run2 = _setup(tmp_path / "other", 2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(m2, opt2, data2, epochs=6, run=run2, generator=torch_generator(1), checkpoint_every=1, extra=_crash)
    (tmp_path / "m" / "checkpoint.pt").write_bytes((tmp_path / "other" / "checkpoint.pt").read_bytes())
    m, opt, data, run = _setup(tmp_path / "m", 1)
    with pytest.raises(RunFolderError, match=r"m/checkpoint.pt belongs to another run"):
        train(m, opt, data, epochs=6, run=run, generator=torch_generator(1), checkpoint_every=1, resume=True)


@pytest.mark.parametrize("damage", ["empty", "missing", "garbage"])
def test_member_resume_with_rows_missing_or_corrupt_checkpoint(tmp_path, damage):
    m, opt, data, run = _setup(tmp_path / "m", 1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(m, opt, data, epochs=6, run=run, generator=torch_generator(1), checkpoint_every=1, extra=_crash)
    metrics, ckpt = tmp_path / "m" / "metrics.csv", tmp_path / "m" / "checkpoint.pt"
    if damage == "empty":
        metrics.write_text("")
    elif damage == "missing":
        metrics.unlink()
    else:
        ckpt.write_bytes(b"\x00 not a torch file")
    before = metrics.read_bytes() if metrics.exists() else None
    m, opt, data, run = _setup(tmp_path / "m", 1)
    what = "not a readable checkpoint" if damage == "garbage" else "rows written before the checkpoint"
    with pytest.raises(RunFolderError, match=what) as info:
        train(m, opt, data, epochs=6, run=run, generator=torch_generator(1), checkpoint_every=1, resume=True)
    assert "\n" not in str(info.value)
    assert (metrics.read_bytes() if metrics.exists() else None) == before      # refused without touching it
