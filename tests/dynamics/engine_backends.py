"""Backends of the engine's parametrised tests (imported by conftest.py and by tests that mark some
backends slow): numpy float64 (the reference), torch float64 and
float32 on the CPU, and torch on CUDA when this machine has one (skipped otherwise)."""

import pytest


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None, False
    return torch, bool(torch.cuda.is_available())


_torch, _cuda = _torch_cuda()
_no_torch = pytest.mark.skipif(_torch is None, reason="PyTorch is not installed")
_no_cuda = pytest.mark.skipif(not _cuda, reason="no CUDA device")

ENGINE_BACKENDS = [
    pytest.param(dict(backend="numpy", dtype="float64"), id="numpy-f64"),
    pytest.param(dict(backend="torch", dtype="float64", device="cpu"), id="torch-f64-cpu", marks=_no_torch),
    pytest.param(dict(backend="torch", dtype="float32", device="cpu"), id="torch-f32-cpu", marks=_no_torch),
    pytest.param(dict(backend="torch", dtype="float32", device="cuda"), id="torch-f32-cuda",
                 marks=[_no_torch, _no_cuda]),
    pytest.param(dict(backend="torch", dtype="float64", device="cuda"), id="torch-f64-cuda",
                 marks=[_no_torch, _no_cuda]),
]


def engine_backends(slow=()):
    """ENGINE_BACKENDS with the ids in ``slow`` also marked slow (for tests too long to run on every
    backend by default): ``@pytest.mark.parametrize("backend", engine_backends(slow=[...]))``."""
    out = []
    for p in ENGINE_BACKENDS:
        marks = list(p.marks) + ([pytest.mark.slow] if p.id in slow else [])
        out.append(pytest.param(*p.values, id=p.id, marks=marks))
    return out
