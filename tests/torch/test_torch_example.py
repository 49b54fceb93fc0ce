"""examples/monitor_training.py runs end to end (one epoch) and writes its run folder."""

import importlib.util
from pathlib import Path

import pytest

from shld.runs import read_json, read_metrics

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monitor_training.py"


def test_monitor_training_example(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("monitor_training", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--out", str(tmp_path / "run"), "--epochs", "1", "--c-scheduler"])
    cols = read_metrics(out / "monitor.csv")
    assert len(cols["step"]) == 9  # 42 steps, one record every 5
    assert (out / "figures" / "monitor.png").stat().st_size > 0
    summary = read_json(out / "summary.json")
    assert summary["lambda_max_last"] > 0
    assert summary["final"]["regime"] in ("deterministic", "transitional", "critical", "diffusive")
