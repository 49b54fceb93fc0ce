"""Early-warning detectors: the vectorised trailing window maximum against its definition, and the
arming rule (nothing fires before ``arm``)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shld.observables.early_warning import rule_fires, trailing_max


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))), min_size=1, max_size=60),
       st.integers(0, 70))
def test_trailing_max_is_the_windowed_maximum(values, window):
    x = np.array(values)
    xm = np.where(np.isfinite(x), x, -np.inf)
    naive = np.array([xm[max(0, i - window):i + 1].max() for i in range(len(x))])
    np.testing.assert_array_equal(trailing_max(x, window), naive)


def test_rules_fire_on_a_change_after_arming_only():
    """C = 1.5 with a spike to 10 at epoch 100: "C ≤ ½ of its 200-epoch maximum" is true from 101 while the
    spike is inside the window (to epoch 300), false after it."""
    e = np.arange(600.0)
    C = np.full_like(e, 1.5)
    C[100] = 10.0
    ones = np.ones_like(e)
    assert rule_fires(e, C, ones, ones, arm=50)["seed_c_drop"] == 101       # becomes true after arming
    assert rule_fires(e, C, ones, ones, arm=100)["seed_c_drop"] == 101
    assert rule_fires(e, C, ones, ones, arm=101)["seed_c_drop"] is None     # already true when armed
    assert rule_fires(e, C, ones, ones, arm=250)["seed_c_drop"] is None     # true at arming, never rises again
    assert rule_fires(e, C, ones, ones, arm=None)["seed_c_drop"] is None    # never armed
    # the window is 200 epochs: a spike at 100 makes the condition false again from epoch 301
    win = trailing_max(C, 200)
    assert win[300] == 10.0 and win[301] == 1.5
