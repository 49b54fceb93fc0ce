"""Each study refuses a bad parameter in one line naming it, before its run folder exists. Every case here
passed validation before and failed late (after members had finished, leaving a folder that could not be
resumed), with a traceback, or with an internal name (``shape``, ``D``, ``n_steps``) instead of the option."""

from __future__ import annotations

import pytest

from shld.cli import main

CASES = [
    ("escape", ["--hold-steps", "0"], "`hold_steps` must be >= 1, got 0"),
    ("escape", ["--min-step", "-5"], "`min_step` must be >= 0, got -5"),
    ("escape", ["--hold-steps", "99999999999999999999"], "`hold_steps` must be <= n_steps=5000"),
    ("theorems", ["--t3-dt", "0"], "`t3_dt` must be > 0, got 0.0"),
    ("theorems", ["--t4-dt", "0"], "`t4_dt` must be > 0, got 0.0"),
    ("theorems", ["--t4-dim", "0"], "`t4_dim` must be >= 1, got 0"),
    ("theorems", ["--t3-D", "0"], "`t3_D` must be > 0, got 0.0"),
    ("theorems", ["--t4-D", "inf"], "`t4_D` must be finite"),
    ("theorems", ["--t4-time", "-1"], "`t4_time` must be > 0, got -1.0"),
    ("theorems", ["--t4-time", "0.001"], "`t4_time`=0.001 must be at least one step `t4_dt`=0.005"),
    ("kramers", ["--dim", "2", "--n-perp", "0"], "`n_perp` must be >= 3, got 0"),
    ("kramers", ["--ratios", "2,,3"], "argument --ratios: empty item in '2,,3'"),
    ("kramers", ["--ratios", "2,2.0000001"], "`ratios` must be distinct to 6 significant digits"),
    ("kramers", ["--ratios", "3,3"], "3 repeats"),
    ("double-descent", ["--p-min-ratio", "0"], "`p_min_ratio` must be > 0, got 0.0"),
    ("double-descent", ["--p-min-ratio", "5", "--p-max-ratio", "0.5"], "need p_min_ratio < 1 < p_max_ratio"),
    ("double-descent", ["--n-test", "0"], "`n_test` must be >= 1, got 0"),
    ("double-descent", ["--d-in", "0"], "`d_in` must be >= 1, got 0"),
    ("double-descent", ["--datasets", ""], "argument --datasets: empty item in ''"),
    ("double-descent", ["--datasets", "synthetic,synthetic"], "distinct names"),
    ("grokking", ["--p", "4"], "`p` must be a prime >= 3, got 4"),
    ("grokking", ["--width", "0"], "`width` must be >= 1, got 0"),
    ("grokking", ["--train-fraction", "0"], "`train_fraction` must be > 0, got 0.0"),
    ("grokking", ["--train-fraction", "1"], "`train_fraction` must be in (0, 1), got 1.0"),
    ("grokking", ["--model", "transformer", "--width", "30"], "must be a multiple of its 4 heads, got 30"),
    ("high-dim", ["--dims", "10", "10"], "`dims` must be distinct (each names a member), got [10, 10]"),
]


@pytest.mark.parametrize("study, argv, message", CASES, ids=[f"{s}{''.join(a)}" for s, a, _ in CASES])
def test_a_bad_parameter_is_refused_in_one_line_before_the_folder_exists(tmp_path, capsys, study, argv, message):
    if study == "grokking":
        pytest.importorskip("torch")
    out = tmp_path / "run"
    try:
        code = main(["run", study, *argv, "--out", str(out), "--no-progress"])
    except SystemExit as exc:             # argparse's own refusals (an empty list item) exit with 2
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    # one error line; argparse's own refusals print their usage above it
    assert code == 2 and message in err[-1], err
    assert len(err) == 1 or err[0].startswith("usage:") and all(x.startswith(" ") for x in err[1:-1]), err
    assert not out.exists()


@pytest.mark.parametrize("study, params, message", [
    ("kramers", {"ratios": "2,,3"}, "`ratios` must be comma-separated numbers like '2,3,4', got '2,,3'"),
    ("kramers", {"ratios": "2,-1"}, "`ratios` must be positive numbers"),
    ("double-descent", {"datasets": ""}, "`datasets` must be a comma-separated list of distinct names"),
    ("double-descent", {"datasets": "synthetic,"}, "`datasets` must be a comma-separated list of distinct names"),
])
def test_the_python_api_refuses_what_the_cli_parser_would(study, params, message):
    """From Python (run_experiment, a Study's validate) no argument parser stands in front of the study."""
    from shld.experiments.registry import get_study

    st = get_study(study)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        st.validate(st.Params(**params))
