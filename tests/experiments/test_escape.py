"""Noise-assisted escape: fractions vs the Fokker–Planck survival probability, the control's budget,
resume after an injected failure."""

import json

import numpy as np
import pytest

import shld.experiments.escape as esc
from shld.claims import validate_claims
from shld.experiments.registry import run_experiment


def _prm(**kw):
    p = dict(n_walkers=4000, n_steps=5000, barrier=1.0, D=0.3, dt=0.002, threshold=0.5, factor=10.0,
             literal_factor=5.0, hold_steps=10, min_step=50)
    p.update(kw)
    return p


@pytest.mark.parametrize("landscape", ["double-well", "tilted-double-well"])
def test_escape_fraction_agrees_with_fokker_planck_survival(landscape):
    from shld.fokker_planck import Grid, fokker_planck_operator, survival
    from shld.landscapes import make_landscape

    prm = _prm()
    r = esc._run_arm({"landscape": landscape, "arm": "none", "seed": 11, "params": prm})
    L = make_landscape(landscape, barrier=1.0)
    x_left = sorted(L.minima, key=lambda c: c.location[0])[0].location[0]
    grid = Grid.from_landscape(L, 800)
    op = fokker_planck_operator(grid, L, D=prm["D"])
    x = grid.points()[:, 0]
    rho0 = np.exp(-0.5 * ((x - x_left) / 0.01) ** 2)          # the walkers' common start, resolved
    T = prm["n_steps"] * prm["dt"]
    times, S = survival(op, rho0, lambda p: p[:, 0] >= r["x_right"], T, 0.002, n_records=11)
    n = prm["n_walkers"]
    escaped_fp = 1.0 - S[1:]
    escaped_mc = np.array([np.mean(r["fpt_steps"] * prm["dt"] <= t + 1e-9) for t in times[1:]])
    assert escaped_mc[-1] > 0.1                               # the comparison is not about zeros
    se = np.sqrt(np.maximum(escaped_fp * (1 - escaped_fp), 1.0 / n) / n)
    # binomial error; 3.5 s.e. for 10 correlated comparisons (family-wise), plus 0.005 absolute for the
    # Euler step (dt = 0.002) and the discrete check of the target at step ends
    np.testing.assert_array_less(np.abs(escaped_mc - escaped_fp), 3.5 * se + 0.005)


def test_random_control_spends_exactly_the_paired_budget():
    rng = np.random.default_rng(0)
    n_boosts = np.array([0, 1, 5, 40, 10_000])               # the last exceeds the slots: capped
    ctrl = esc.RandomBoosts(n_boosts, 1000, factor=10.0, hold_steps=10, min_step=50, rng=rng)
    state = ctrl.init_state(n_boosts.size)
    boosted = np.zeros(n_boosts.size, int)
    for step in range(1000):
        ctrl.update(state, step, np.zeros(n_boosts.size))
        boosted += state["multiplier"] == 10.0
    n_slots = (1000 - 50 - 1) // 10
    np.testing.assert_array_equal(boosted, 10 * np.minimum(n_boosts, n_slots))
    np.testing.assert_array_equal(state["n_interventions"], np.minimum(n_boosts, n_slots))


def test_run_resumes_after_an_injected_failure(tmp_path, monkeypatch):
    params = dict(n_walkers=200, n_steps=400, short_steps=100, seed=2)
    calls = {"n": 0}
    real = esc._run_arm

    def flaky(task):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("injected failure")
        return real(task)

    monkeypatch.setattr(esc, "_run_arm", flaky)
    with pytest.raises(RuntimeError, match="injected"):
        run_experiment("escape", tmp_path / "a", progress=False, **params)
    # the three members that finished before the failure are kept, and only the others run again
    assert len(list((tmp_path / "a" / "members").glob("*.json"))) == 3
    calls["n"] = 0
    monkeypatch.setattr(esc, "_run_arm", flaky)
    calls["n"] = -100
    _, resumed = run_experiment("escape", tmp_path / "a", resume=True, progress=False, **params)
    assert calls["n"] == -100 + 8 - 3          # 8 members, 3 done before
    _, whole = run_experiment("escape", tmp_path / "b", progress=False, **params)
    assert json.dumps(resumed["stats"], sort_keys=True) == json.dumps(whole["stats"], sort_keys=True)
    assert resumed["claims"] == whole["claims"]
    rows = validate_claims(whole["claims"])
    assert {r["id"] for r in rows} >= {"escape-stuck-symmetric", "escape-100-rule-tilted",
                                       "escape-rule-vs-control-tilted"}
    # the random-time control spends the rule arm's budget walker by walker
    for ln in esc.LANDSCAPES:
        s = whole["stats"][ln]
        assert s["control"]["interventions_per_walker"] <= s["rule"]["interventions_per_walker"] + 1e-12
    assert (tmp_path / "b" / "figures" / "escape.png").exists()
