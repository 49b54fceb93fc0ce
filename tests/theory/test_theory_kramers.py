import math
import warnings

import numpy as np
import pytest

from shld.landscapes import make_landscape
from shld.theory import (
    escape_time_seed,
    eyring_kramers_rate,
    kramers_langer_rate,
    kramers_rate_seed,
    kramers_rates,
    mfpt_1d,
)


def test_seed_and_langer_forms_on_the_double_well():
    h, a, D = 1.5, 1.2, 0.1
    dw = make_landscape("double-well", barrier=h, a=a)
    k = kramers_rates(dw, D)
    cm, cs = 8 * h / a**2, -4 * h / a**2
    assert k.barrier == pytest.approx(h, rel=1e-12)
    assert k.curv_min == pytest.approx(cm, rel=1e-12)
    assert k.curv_saddle == pytest.approx(cs, rel=1e-12)
    assert k.langer == pytest.approx(math.sqrt(cm * -cs) / (2 * math.pi) * math.exp(-h / D), rel=1e-12)
    assert k.seed == pytest.approx(cm / (2 * math.pi) * math.exp(-h / D), rel=1e-12)
    # the seed's prefactor misses the barrier curvature: off by sqrt(U''min/|U''saddle|) = sqrt(2)
    assert k.seed / k.langer == pytest.approx(math.sqrt(2), rel=1e-12)
    assert k.eyring_kramers == pytest.approx(k.langer, rel=1e-12)


def test_eyring_kramers_reduces_to_langer_with_harmonic_extra_axes():
    dw1 = make_landscape("double-well", barrier=1.0)
    dw3 = make_landscape("double-well", barrier=1.0, dim=3, k_perp=2.5)
    assert kramers_rates(dw3, 0.2).eyring_kramers == pytest.approx(kramers_rates(dw1, 0.2).langer, rel=1e-12)
    # a softer transverse direction at the saddle than at the minimum changes the prefactor
    r = eyring_kramers_rate(np.diag([8.0, 1.0]), np.diag([-4.0, 4.0]), 1.0, 0.1)
    assert r == pytest.approx(4 / (2 * math.pi) * math.sqrt(8 / 16) * math.exp(-10), rel=1e-12)


def test_rates_vanish_cleanly_for_huge_barrier_over_D():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kramers_rate_seed(8.0, 1.0, 1e-6) == 0.0
        assert kramers_langer_rate(8.0, -4.0, 1.0, 1e-6) == 0.0
        assert eyring_kramers_rate([8.0], [-4.0], 1.0, 1e-6) == 0.0
        assert escape_time_seed(1.0, 1e-6) == math.inf
        assert kramers_rates(make_landscape("double-well"), 1e-6).mfpt_langer == math.inf
        assert escape_time_seed(0.0, 0.1) == 0.0


def test_langer_rate_is_inverse_mfpt_to_far_side_and_half_to_saddle():
    dw = make_landscape("double-well", barrier=1.0)
    gaps = []
    for ratio in (5.0, 10.0, 20.0, 40.0, 80.0):
        D = 1.0 / ratio
        k = kramers_rates(dw, D)
        gaps.append(abs(mfpt_1d(dw.u, D, -1.0, 1.0) * k.langer - 1.0))
    # monotone approach, correction O(D/ΔE): the product gap*ΔE/D stays bounded
    assert all(x > y for x, y in zip(gaps[:-1], gaps[1:]))
    assert gaps[-1] < 0.01
    assert gaps[-1] * 80 < 1.0 and gaps[0] * 5 < 1.0
    # MFPT to the saddle top is about half the escape time
    D = 1 / 80
    assert mfpt_1d(dw.u, D, -1.0, 0.0) * 2 * kramers_rates(dw, D).langer == pytest.approx(1.0, abs=0.01)


def test_tilted_well_both_directions_and_muller_brown_saddles():
    tw = make_landscape("tilted-double-well", barrier=1.0)
    gaps = []
    for D in (0.05, 0.02, 0.01):
        kl, kr = kramers_rates(tw, D, minimum="left"), kramers_rates(tw, D, minimum="right")
        xl, xr = kl.minimum.location[0], kr.minimum.location[0]
        assert kl.barrier < kr.barrier                      # the right well is deeper
        gaps.append([abs(mfpt_1d(tw.u, D, xl, xr) * kl.langer - 1),
                     abs(mfpt_1d(tw.u, D, xr, xl) * kr.langer - 1)])
    gaps = np.array(gaps)
    assert np.all(np.diff(gaps, axis=0) < 0) and np.all(gaps[-1] < 0.01)
    mb = make_landscape("muller-brown")
    assert [kramers_rates(mb, 10.0, minimum=m).saddle.label for m in ("A", "B", "C")] == ["A-C", "C-B", "C-B"]


@pytest.mark.parametrize("call, name", [
    (lambda: kramers_rate_seed(1.0, 1.0, 0.0), "`D`"),
    (lambda: kramers_rate_seed(-1.0, 1.0, 0.1), "`omega0`"),
    (lambda: kramers_langer_rate(1.0, 0.0, 1.0, 0.1), "`curv_saddle`"),
    (lambda: kramers_langer_rate(1.0, -1.0, -1.0, 0.1), "`barrier`"),
    (lambda: eyring_kramers_rate(np.eye(2), np.eye(2), 1.0, 0.1), "`hess_saddle`"),
    (lambda: eyring_kramers_rate(-np.eye(2), np.diag([-1.0, 1.0]), 1.0, 0.1), "`hess_min`"),
    (lambda: kramers_rates(make_landscape("double-well"), 0.1, minimum="nowhere"), "`minimum`"),
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises((ValueError, TypeError), match=name):
        call()
