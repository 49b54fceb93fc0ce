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


def test_seed_drop_rule_uses_the_previous_200_epochs_only():
    e = np.arange(600.0)
    C = np.full_like(e, 1.5)
    C[100] = 10.0          # a spike; C = 1.5 later is ≤ ½ of it only while the spike is in the window
    ones = np.ones_like(e)
    assert rule_fires(e, C, ones, ones, arm=250)["seed_c_drop"] == 250.0     # spike 150 epochs back
    assert rule_fires(e, C, ones, ones, arm=300)["seed_c_drop"] == 300.0     # exactly 200 back: inside
    assert rule_fires(e, C, ones, ones, arm=301)["seed_c_drop"] is None      # 201 back: outside
    assert rule_fires(e, C, ones, ones, arm=None)["seed_c_drop"] is None     # never armed
