"""The `shld` command line itself (review of the command line, items D and C2): list options, no
abbreviations, a bare `shld run`, members that share a key, a closed stdout. Run-folder behaviour is in
tests/run_folders/."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shld.cli import build_parser, main
from shld.experiments import registry
from shld.experiments.registry import run_experiment
from shld.experiments.study import Member, Study, Summary

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _exit(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err


# --- list options: spaces, commas or both; no empty item ---------------------------------------------------

@pytest.mark.parametrize("argv, dest, value", [
    (["run", "high-dim", "--dims", "10", "100"], "dims", [10, 100]),
    (["run", "high-dim", "--dims", "10,100"], "dims", [10, 100]),
    (["run", "high-dim", "--dims", "10", "100,400"], "dims", [10, 100, 400]),
    (["run", "kramers", "--ratios", "2,3"], "ratios", "2,3"),
    (["run", "kramers", "--ratios", "2", "3"], "ratios", "2,3"),           # was: unrecognized arguments: 3
    (["run", "kramers", "--ratios", " 2, 3"], "ratios", "2,3"),
])
def test_list_options_take_spaces_or_commas(argv, dest, value):
    assert getattr(build_parser().parse_args(argv), dest) == value


@pytest.mark.parametrize("argv, what", [
    (["run", "kramers", "--ratios", "2,,3"], "argument --ratios: empty item in '2,,3'"),   # was accepted as is
    (["run", "high-dim", "--dims", "10,"], "argument --dims: empty item in '10,'"),
    (["run", "kramers", "--ratios", ""], "argument --ratios: empty item in ''"),
    (["run", "high-dim", "--dims", "10,x"], "argument --dims: invalid int value: 'x'"),
])
def test_list_options_refuse_empty_and_bad_items(tmp_path, capsys, argv, what):
    code, err = _exit([*argv, "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and what in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_help_shows_a_list_default_as_it_is_typed(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "high-dim", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0 and "(default: 10 100 400)" in text and "[10, 100, 400]" not in text


# --- no abbreviations; a bare `shld run` is an error -----------------------------------------------------

@pytest.mark.parametrize("argv, bad", [
    (["run", "double-well", "--n-step", "5"], "--n-step"),        # was silently --n-steps 5
    (["reproduce", "--qu"], "--qu"),
    (["report", "somewhere", "--red"], "--red"),
])
def test_options_cannot_be_abbreviated(tmp_path, capsys, monkeypatch, argv, bad):
    monkeypatch.chdir(tmp_path)
    code, err = _exit(argv, capsys)
    assert code == 2 and f"unrecognized arguments: {bad}" in err
    assert list(tmp_path.iterdir()) == []


def test_bare_run_exits_2_with_its_usage(capsys):
    code, err = _exit(["run"], capsys)
    assert code == 2 and err.startswith("usage: shld run") and "the following arguments are required: NAME" in err


# --- members that share a key: the parameter and the values are named ----------------------------------------

@dataclass
class _ToyParams:
    values: list[float] = field(default_factory=lambda: [1.0, 2.0], metadata={"help": "values"})
    ratios: str = field(default="1,2", metadata={"help": "comma-separated ratios"})
    by: str = field(default="values", metadata={"help": "which list makes the members",
                                                 "choices": ["values", "ratios"]})
    seed: int = field(default=0, metadata={"help": "root seed"})


class _Toy(Study):
    name = "toy-keys"
    Params = _ToyParams

    def members(self, params, done):
        vals = params.values if params.by == "values" else [float(x) for x in params.ratios.split(",")]
        return [Member(f"v={v:g}", {"index": i, "v": v}) for i, v in enumerate(vals)]

    def run_member(self, params, member, ctx):
        return {"v": member.task["v"]}

    def analyse(self, params, results):
        return Summary([], {"n": len(results)})


@pytest.mark.parametrize("kw, named", [
    (dict(values=[2.0, 2.0000001]), "from `values` = [2.0, 2.0000001]: the values 2.0 and 2.0000001"),
    (dict(values=[3.0, 3.0]), "from `values` = [3.0, 3.0]: the values 3.0 and 3.0"),
    (dict(by="ratios", ratios="2,2.0000001"), "from `ratios` = '2,2.0000001': the values 2.0 and 2.0000001"),
])
def test_members_that_share_a_key_name_the_parameter_and_the_values(tmp_path, kw, named):
    with registry.registered(_Toy()):
        with pytest.raises(ValueError) as info:
            run_experiment("toy-keys", tmp_path / "r", progress=False, **kw)
    msg = str(info.value)
    assert msg.startswith("study 'toy-keys': two members share the key 'v=") and named in msg, msg
    assert msg.endswith("each member needs a key of its own: give distinct values")
    assert not (tmp_path / "r").exists()                 # found before any work: nothing is left


# --- a reader that closes stdout early ----------------------------------------------------------------------

def test_a_closed_stdout_ends_quietly(tmp_path):
    """`shld list | head -1`: the reader goes away; no BrokenPipeError traceback, exit 141 (as SIGPIPE)."""
    cli = "import sys; from shld.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", cli, "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": SRC})
    proc.stdout.close()                   # before the command prints (it is still importing)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err


def test_python_dash_m_shld_is_the_shld_command():
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-m", "shld", "list"], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": src})
    assert out.returncode == 0 and out.stdout.startswith("experiments: ") and "double-well" in out.stdout
