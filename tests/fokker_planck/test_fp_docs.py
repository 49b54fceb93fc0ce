"""Every ```python block of docs/fokker_planck.md runs (examples are tested)."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "fokker_planck.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S) if DOC.exists() else []


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_doc_block_runs(code, capsys):
    import numpy as np

    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the doc's own example
    assert capsys.readouterr().out  # the example prints its results
    if "ev" in namespace:  # the quick start: what its comments promise
        grid, op = namespace["grid"], namespace["op"]
        assert grid.integrate(np.abs(namespace["rho_inf"] - op.gibbs())) < 1e-9
        assert np.max(np.abs(namespace["ev"].mass - 1.0)) < 1e-12
        # λ₁·T/2 → 1 as ΔE/D grows; at ΔE/D = 4 the two-state picture is within a few percent
        assert abs(namespace["gap"] * namespace["T"] / 2 - 1) < 0.1


def test_doc_has_blocks():
    assert len(BLOCKS) >= 1
