"""Every ```python block of the README, docs/core.md and docs/studies.md runs (the README's first block at full size)."""

import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/core.md", "docs/studies.md"]


def blocks(name):
    text = (ROOT / name).read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("name,i,code", [(n, i, c) for n in DOCS for i, c in enumerate(blocks(n))],
                         ids=lambda v: str(v)[:20] if isinstance(v, str) else str(v))
def test_doc_block_runs(name, i, code):
    # the block fails the test by raising (an error, or an assert written in the block)
    exec(compile(code, f"{name}[{i}]", "exec"), {"__name__": "__docs__"})


def test_docs_have_python_blocks():
    assert len(blocks("README.md")) >= 2 and len(blocks("docs/core.md")) >= 3
