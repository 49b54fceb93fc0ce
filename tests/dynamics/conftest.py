"""Backends of the engine's parametrised tests: numpy float64 (the reference), torch float64 and
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


@pytest.fixture(params=ENGINE_BACKENDS)
def backend(request):
    """Keyword arguments selecting one engine backend: ``simulate(..., **backend)``."""
    return dict(request.param)
