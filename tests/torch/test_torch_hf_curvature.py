"""Curvature inside the real ``transformers.Trainer``: the callback captures the batch with a forward
pre-hook and its λ_max equals a converged Lanczos on the same batch and parameters."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")

from shld.integrations.huggingface import ShldTrainerCallback, hf_model_loss  # noqa: E402
from shld.torch import lambda_max  # noqa: E402


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n=32, T=12, vocab=50, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, T), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def tiny_gpt2():
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg)


def test_trainer_records_lambda_max_of_the_step_batch(tmp_path):
    model = tiny_gpt2()
    cb = ShldTrainerCallback(schedule=1, curvature_schedule=[1, 3], lanczos_steps=8, lanczos_tol=1e-6)
    snaps = {}

    class Snapshot(transformers.TrainerCallback):  # runs after ours, before the optimizer step
        def on_pre_optimizer_step(self, args, state, control, **kw):
            if cb.last_batch is not None and cb.monitor.records[-1]["step"] in (1, 3):
                step = cb.monitor.records[-1]["step"]
                if step not in snaps:
                    snaps[step] = (copy.deepcopy(model.state_dict()),
                                   {k: v.clone() for k, v in cb.last_batch.items()})

    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4,
                                          learning_rate=1e-3, report_to=[], use_cpu=True, logging_steps=1,
                                          save_strategy="no", seed=0)
    seen = []

    class Logs(transformers.TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            seen.append(dict(logs))

    trainer = transformers.Trainer(model=model, args=args, train_dataset=Tokens(),
                                   callbacks=[cb, Snapshot(), Logs()])
    trainer.train()
    recs = {r["step"]: r for r in cb.monitor.records}
    assert sorted(recs) == [0, 1, 2, 3]
    assert all(recs[s]["lambda_max"] != recs[s]["lambda_max"] for s in (0, 2))  # NaN off-schedule
    assert sorted(snaps) == [1, 3]
    assert sum("shld/lambda_max" in h for h in seen) == 2
    for step, (state, batch) in snaps.items():
        assert set(batch) == {"input_ids", "labels"} and batch["input_ids"].shape == (4, 12)
        ref_model = tiny_gpt2()
        ref_model.load_state_dict(state)
        ref_model.train()
        gen = torch.Generator().manual_seed(1)
        ref, _, info = lambda_max(ref_model, hf_model_loss, batch, max_iter=80, tol=1e-9, generator=gen)
        assert info["residual"] < 1e-3 * abs(ref)
        assert recs[step]["lambda_max"] == pytest.approx(ref, rel=1e-3)
        assert recs[step]["lambda_max_products"] >= 1
    # the captured batch was the step's own training batch: the logged loss is its loss
    assert recs[1]["batch_size"] == 4


def test_captured_batch_without_labels_asks_for_loss_fn():
    model = tiny_gpt2()
    with pytest.raises(ValueError, match="loss_fn"):
        hf_model_loss(model, {"input_ids": torch.zeros((2, 4), dtype=torch.long)})


def test_step_without_a_forward_warns_and_records_no_curvature():
    from types import SimpleNamespace

    model = tiny_gpt2()
    cb = ShldTrainerCallback(schedule=1, curvature_schedule=1)
    args = SimpleNamespace(gradient_accumulation_steps=1)
    cb.on_train_begin(args, None, None, model=model)
    batch = {"input_ids": Tokens().ids[:4], "labels": Tokens().ids[:4]}
    cb.on_step_begin(args, None, None)
    model(**batch).loss.backward()  # a normal step: the batch is captured
    cb.on_pre_optimizer_step(args, None, None)
    model.zero_grad()
    assert torch.equal(cb.last_batch["input_ids"], batch["input_ids"])
    assert cb.monitor.records[-1]["lambda_max"] > 0
    cb.on_step_begin(args, None, None)  # a step whose forward the hook never sees
    with pytest.warns(RuntimeWarning, match="no forward pass"):
        cb.on_pre_optimizer_step(args, None, None)
    rec = cb.monitor.records[-1]
    assert rec["step"] == 1 and rec["lambda_max"] != rec["lambda_max"]
    cb.on_train_end(args, None, None)
    assert cb._hook is None
