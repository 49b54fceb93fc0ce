"""benchmarks/gpu_check.py runs end to end on the CPU path (the GPU path is the same code on another
device): it prints its table, writes $OUT/gpu_check.json, and without CUDA exits 0 with a message."""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cpu_run_prints_one_table_and_writes_json(tmp_path, monkeypatch, capsys):
    import torch

    threads = torch.get_num_threads()
    monkeypatch.setenv("OUT", str(tmp_path))
    try:
        rc = load().main(["--device", "cpu", "--walkers", "300", "2000", "--block", "5", "--rounds", "2",
                          "--stat-walkers", "1500"])
    finally:
        torch.set_num_threads(threads)          # the script pins one thread for its CPU timings
    out = capsys.readouterr().out
    assert rc in (0, 1), out                     # 2 would mean a section raised
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["device"] == "cpu" and report["exit_status"] == rc
    assert [c["passed"] for c in report["checks"]] and all("error" not in c for c in report["checks"])
    rows = report["bench"]
    assert [r["N"] for r in rows] == [300, 2000]
    assert all(r["walker_steps_per_s"] > 0 and r["engine_over_randn"] > 0 for r in rows)
    assert "walker-steps/s" in out and "× randn" in out and "Gibbs KS" in out and "OU variance" in out
    mfpt = [c for c in report["checks"] if c["check"].startswith("MFPT")]
    assert len(mfpt) == 1 and mfpt[0]["all_hit"] and mfpt[0]["stopped_at"] > 0


def test_without_cuda_it_says_so_and_exits_0(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert load().main([]) == 0
    assert "no CUDA device here" in capsys.readouterr().out


def test_triton_kernel_rows_run_through_the_interpreter_on_cpu(tmp_path, monkeypatch, capsys):
    from shld.dynamics.triton_steps import interpreter_problem

    if interpreter_problem() is not None:
        pytest.skip(interpreter_problem())
    import torch

    threads = torch.get_num_threads()
    monkeypatch.setenv("OUT", str(tmp_path))
    try:
        rc = load().main(["--device", "cpu", "--walkers", "300", "--block", "8", "--rounds", "2", "--skip-stats",
                          "--kernels", "eager", "triton", "controller"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert rc == 0, out
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [(r["N"], r["kernel"]) for r in report["bench"]] == [(300, "eager"), (300, "triton"), (300, "controller")]
    assert all(r["walker_steps_per_s"] > 0 for r in report["bench"])
    assert "float32 triton" in out and "float32 eager" in out
