"""The monitor on a ``torch.compile``'d model.

The norm trick cannot see inside a compiled graph (its layer hooks would run under dynamo's tracing,
keeping traced activations; AOT backends fail), so a compiled model falls back — with a warning that
says why — to the ``microbatch`` backend, or runs ``vmap`` (exact) when asked; both make their own
passes on the uncompiled module, as curvature does. ``backend="aot_eager"`` runs dynamo and
AOTAutograd without a C++ compiler; the real inductor compile is a slow test.
"""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
from torch import nn

from shld.torch import Monitor, lambda_max


def _setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3))
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(32, 10, generator=g), torch.randint(0, 3, (32,), generator=g))
    return model, batch


def ce(model, batch):
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def _eager_reference(model, batch):
    """grad_sq_norm and the exact tr Σ from the norm trick on an eager copy; λ_max, converged."""
    ref = copy.deepcopy(model)
    mon = Monitor(ref, loss_fn=ce, schedule=1)
    assert mon.backend == "norm_trick"
    with mon.track(batch):
        ce(ref, batch).backward()
    lam, _, _ = lambda_max(ref, ce, batch, max_iter=60, tol=1e-10, generator=torch.Generator().manual_seed(0))
    return mon.last["grad_sq_norm"], mon.last["trace_sigma"], lam


def _train_steps(compiled, mon, batch, n=2):
    for _ in range(n):
        compiled.zero_grad()
        with mon.track(batch):
            ce(compiled, batch).backward()
    return mon.records


@pytest.mark.parametrize("dynamo_backend", ["eager", "aot_eager"])
def test_compiled_model_falls_back_with_a_reason_and_records_right_values(dynamo_backend):
    model, batch = _setup()
    g2_ref, tr_ref, lam_ref = _eager_reference(model, batch)
    compiled = torch.compile(model, backend=dynamo_backend)
    with pytest.warns(RuntimeWarning, match=r"torch\.compile.*microbatch"):
        mon = Monitor(compiled, loss_fn=ce, schedule=1, curvature_schedule=1, lanczos_cold_steps=60)
    assert mon.backend == "microbatch"
    assert mon.names == ["0.weight", "0.bias", "2.weight", "2.bias"]  # not "_orig_mod.0.weight"
    recs = _train_steps(compiled, mon, batch)
    for r in recs:  # parameters do not move (no optimizer): every step sees the same values
        assert r["grad_sq_norm"] == pytest.approx(g2_ref, rel=1e-5)
        assert r["trace_sigma"] > 0 and r["reason"] == ""
        assert r["lambda_max"] == pytest.approx(lam_ref, rel=1e-4)


def test_compiled_model_with_vmap_is_exact():
    model, batch = _setup()
    g2_ref, tr_ref, _ = _eager_reference(model, batch)
    compiled = torch.compile(model, backend="aot_eager")
    mon = Monitor(compiled, loss_fn=ce, schedule=1, backend="vmap")
    for r in _train_steps(compiled, mon, batch):
        assert r["trace_sigma"] == pytest.approx(tr_ref, rel=1e-5)
        assert r["grad_sq_norm"] == pytest.approx(g2_ref, rel=1e-5)


def test_norm_trick_refuses_a_compiled_model_and_says_why():
    model, _ = _setup()
    with pytest.raises(ValueError, match=r"torch\.compile.*inside the compiled graph"):
        Monitor(torch.compile(model, backend="aot_eager"), backend="norm_trick")
    # in-place compilation of a submodule is caught too, and without loss_fn there is no fallback
    model[0].compile(backend="aot_eager")
    with pytest.raises(ValueError, match=r"torch\.compile.*loss_fn"):
        Monitor(model)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("cc") is None,
                    reason="inductor needs a C++ compiler on CPU")
def test_inductor_compiled_model():
    model, batch = _setup()
    g2_ref, tr_ref, lam_ref = _eager_reference(model, batch)
    compiled = torch.compile(model)
    mon = Monitor(compiled, loss_fn=ce, schedule=1, backend="vmap", curvature_schedule=1,
                  lanczos_cold_steps=60)
    for r in _train_steps(compiled, mon, batch):
        assert r["trace_sigma"] == pytest.approx(tr_ref, rel=1e-4)
        assert r["grad_sq_norm"] == pytest.approx(g2_ref, rel=1e-4)
        assert r["lambda_max"] == pytest.approx(lam_ref, rel=1e-4)
