"""The ``backend`` fixture: every engine test that takes it runs on each backend of
:mod:`engine_backends` (numpy f64; torch f64/f32 on the CPU; torch on CUDA when there is one)."""

import pytest
from engine_backends import ENGINE_BACKENDS


@pytest.fixture(params=ENGINE_BACKENDS)
def backend(request):
    """Keyword arguments selecting one engine backend: ``simulate(..., **backend)``."""
    return dict(request.param)
