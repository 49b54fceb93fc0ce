"""Lightning and Hugging Face adapters with the real libraries on a tiny model."""

import pytest
import torch
from _torch_models import loop_per_sample_grads, trace_sigma_ref
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

RTOL = 1e-4


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def _ce(m, b):
    return nn.functional.cross_entropy(m(b[0]), b[1])


def _tiny_lightning():
    pl = pytest.importorskip("lightning.pytorch")

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return _ce(self, batch)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return pl, Tiny


def test_lightning_callback_records_the_exact_trace_sigma(tmp_path):
    pl, Tiny = _tiny_lightning()
    from shld.integrations.lightning import ShldCallback

    x, y = _data()
    module = Tiny()
    # reference: per-sample gradients on the first batch at the initial parameters
    tr_ref, g2_ref = trace_sigma_ref(loop_per_sample_grads(module, _ce, (x[:16], y[:16])))
    cb = ShldCallback(schedule=5, curvature_schedule=10, loss_fn=_ce, out=tmp_path)
    trainer = pl.Trainer(max_steps=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[cb])
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False))
    recs = cb.monitor.records
    assert [r["step"] for r in recs] == [0, 5, 10]
    assert recs[0]["trace_sigma"] == pytest.approx(tr_ref, rel=RTOL)
    assert recs[0]["grad_sq_norm"] == pytest.approx(g2_ref, rel=RTOL)
    assert recs[0]["lr"] == 0.1 and recs[0]["backend"] == "norm_trick"
    assert recs[2]["lambda_max"] > 0
    assert (tmp_path / "monitor.csv").exists()
    assert "shld/C_smoothed" in trainer.callback_metrics
    assert module.training  # Lightning leaves it in train mode after fit; the monitor changed nothing


def test_lightning_gradient_accumulation_is_one_step_of_all_micro_batches():
    pl, Tiny = _tiny_lightning()
    from shld.integrations.lightning import ShldCallback

    x, y = _data()
    module = Tiny()
    # Lightning divides each micro-batch loss by 2: one optimizer step = mean loss over 16 samples
    tr_ref, g2_ref = trace_sigma_ref(loop_per_sample_grads(module, _ce, (x[:16], y[:16])))
    cb = ShldCallback(schedule=2)
    trainer = pl.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[cb],
                         accumulate_grad_batches=2)
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=8, shuffle=False))
    recs = cb.monitor.records
    assert [r["step"] for r in recs] == [0, 2]
    assert recs[0]["batch_size"] == 16
    assert recs[0]["trace_sigma"] == pytest.approx(tr_ref, rel=RTOL)
    assert recs[0]["grad_sq_norm"] == pytest.approx(g2_ref, rel=RTOL)


def test_huggingface_trainer_callback(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")
    from shld.integrations.huggingface import ShldTrainerCallback

    class TinyHF(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))

        def forward(self, x, labels=None):
            logits = self.net(x)
            out = {"logits": logits}
            if labels is not None:
                out["loss"] = nn.functional.cross_entropy(logits, labels)
            return out

    class DS(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    x, y = _data()
    model = TinyHF()
    cb = ShldTrainerCallback(schedule=4)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=16,
                                          max_steps=8, learning_rate=0.1, report_to=[], logging_steps=4,
                                          save_strategy="no", use_cpu=True, dataloader_drop_last=True,
                                          max_grad_norm=1.0, seed=0)
    seen = []

    class Recorder(transformers.TrainerCallback):  # runs after ours: sees the logs we added
        def on_log(self, args, state, control, logs=None, **kw):
            seen.append(dict(logs))

    trainer = transformers.Trainer(model=model, args=args, train_dataset=DS(x, y), callbacks=[cb, Recorder()])
    # the HF sampler shuffles: compute the reference on the batch the Trainer actually draws first
    first = next(iter(trainer.get_train_dataloader()))
    tr_ref, g2_ref = trace_sigma_ref(loop_per_sample_grads(model.net, _ce, (first["x"], first["labels"])))
    trainer.train()
    recs = cb.monitor.records
    assert [r["step"] for r in recs] == [0, 4]
    assert recs[0]["trace_sigma"] == pytest.approx(tr_ref, rel=RTOL)
    assert recs[0]["grad_sq_norm"] == pytest.approx(g2_ref, rel=RTOL)
    assert any("shld/C_smoothed" in h for h in seen)
