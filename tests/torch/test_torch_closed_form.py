"""Linear regression with Gaussian inputs and noise: Σ and ‖G‖² in closed form.

Model: x ~ N(0, I_p), y = xᵀw* + ε, ε ~ N(0, s²); per-sample loss ℓ = ½(xᵀw − y)², mean over the
batch. At w = w* + δ: g_i = x_i (x_iᵀδ − ε_i), G = δ and (Isserlis)
    Σ = (‖δ‖² + s²) I + δδᵀ,   tr Σ = p(‖δ‖² + s²) + ‖δ‖²,   ‖G‖² = ‖δ‖².
So B_simple = tr Σ/‖δ‖², C = 2B/B_simple, D_seed = tr Σ/(2Bp), D_sde = η D_seed, D_eff = η² tr Σ/(pB).
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from shld.torch import Monitor

P, B, S, M, LR = 20, 64, 1.0, 400, 0.05
Z = 4.0  # |mean − truth| < 4 standard errors: two-sided p ≈ 6e-5 per check at a fixed seed


def _truth(delta2):
    tr = P * (delta2 + S * S) + delta2
    return tr, delta2


def _records(delta_norm, smoothing=0.98):
    gen = torch.Generator().manual_seed(1)
    w_star = torch.randn(P, generator=gen)
    delta = torch.randn(P, generator=gen)
    delta = delta / delta.norm() * delta_norm
    model = nn.Linear(P, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_((w_star + delta)[None])
    mon = Monitor(model, schedule=1, lr=LR, smoothing=smoothing, events=None)
    for _ in range(M):
        x = torch.randn(B, P, generator=gen)
        y = x @ w_star + S * torch.randn(B, generator=gen)
        with mon.track():
            (0.5 * (model(x).squeeze(1) - y) ** 2).mean().backward()
        model.zero_grad()
    return mon, float(delta_norm) ** 2


def _mean_se(a):
    a = np.asarray(a, dtype=float)
    return a.mean(), a.std(ddof=1) / math.sqrt(a.size)


def test_trace_sigma_grad_norm_and_D_match_closed_form():
    mon, d2 = _records(0.3)
    tr, g2 = _truth(d2)
    m, se = _mean_se(mon.history("trace_sigma"))
    assert abs(m - tr) < Z * se, (m, tr, se)
    # the unbiased ‖G‖² is unbiased; the plug-in ‖g_B‖² is off by its known bias tr Σ / B
    m, se = _mean_se(mon.history("grad_sq_norm_unbiased"))
    assert abs(m - g2) < Z * se
    m, se = _mean_se(mon.history("grad_sq_norm"))
    assert abs(m - (g2 + tr / B)) < Z * se
    assert m - g2 > 10 * se  # and that bias is resolved
    for key, want in (("D_seed", tr / (2 * B * P)), ("D_sde", LR * tr / (2 * B * P)),
                      ("D_eff", LR ** 2 * tr / (P * B))):
        m, se = _mean_se(mon.history(key))
        assert abs(m - want) < Z * se, key


def test_unbiased_C_is_on_target_where_plugin_has_its_floor():
    # true C well below 1: C = 2B‖δ‖²/tr Σ
    mon, d2 = _records(0.1)
    tr, g2 = _truth(d2)
    C_true = 2 * B * g2 / tr
    assert C_true < 0.5
    m_unb, se_unb = _mean_se(mon.history("C_unbiased"))
    m_plug, se_plug = _mean_se(mon.history("C_plugin"))
    # C_unbiased is a ratio (tr Σ̂ in the denominator); its ratio bias ~ C·Var(tr Σ̂)/trΣ² ≈ C/(B p)
    # is far below one standard error here, so the test is |mean − truth| < Z·SE
    assert abs(m_unb - C_true) < Z * se_unb
    assert abs(m_plug - (C_true + 2.0)) < Z * se_plug       # plug-in: E ≈ C + 2
    assert m_plug - C_true > 2.0 - Z * se_plug
    # the smoothed estimate (ratio of running means) carries a band that covers the truth
    last = mon.last
    assert abs(last["C_smoothed"] - C_true) < Z * last["C_smoothed_se"]
    assert last["regime"] == "diffusive"
    # B_simple = tr Σ/‖G‖²: the smoothed one is 2B/C_smoothed
    assert last["B_simple_smoothed"] == pytest.approx(2 * B / last["C_smoothed"])


def test_zero_smoothing_is_the_single_record_estimate():
    mon, d2 = _records(0.3, smoothing=0.0)
    c = mon.history("C_unbiased")
    # with β = 0 the smoothed value is the single-record one
    assert np.allclose(mon.history("C_smoothed"), c, rtol=1e-9, atol=1e-12)


def test_noise_quantities_agree_with_core_definitions_and_edge_cases():
    from shld.observables import d_eff_seed, d_sde
    from shld.torch import noise_quantities

    q = noise_quantities(grad_sq_norm=0.5, trace_sigma=8.0, batch_size=16, dim=4, lr=0.1)
    assert q["D_sde"] == pytest.approx(d_sde(0.1, 8.0, 16, 4))
    assert q["D_eff"] == pytest.approx(d_eff_seed(0.1, 8.0 / 4, 16))
    assert q["C_plugin"] == pytest.approx(2 * 16 * 0.5 / 8.0)
    assert q["C_unbiased"] == pytest.approx(q["C_plugin"] - 2.0)
    assert q["C_plugin"] == pytest.approx(2 * 16 / q["B_simple_plugin"])
    assert q["C_plugin"] == pytest.approx(0.5 / (q["D_seed"] * 4))   # the seed's ‖∇L‖²/(D·d)
    q = noise_quantities(0.1, 8.0, 16, 4, lr=0.0)                    # lr = 0 is data, not an error
    assert q["D_sde"] == 0.0 and q["B_simple"] == math.inf           # ‖G‖²_unb = 0.1 − 0.5 < 0
    q = noise_quantities(float("nan"), 8.0, 16, 4)
    assert math.isnan(q["C_plugin"]) and math.isnan(q["D_sde"])


def test_smoothed_band_has_nominal_coverage_over_replicas():
    # R independent replicas of the fixed-parameter regression; C_smoothed after M records with β=0.9
    # (n_eff ≈ 19). Over iid records the delta-method band should cover the truth ~95 % of the time at
    # ±2 SE: P(coverage < 0.87 | p = 0.95, R = 100) ≈ 1e-3. Its width must match the spread across
    # replicas within a factor 1.5.
    R, Mr = 100, 60
    gen = torch.Generator().manual_seed(11)
    w_star = torch.randn(P, generator=gen)
    delta = torch.randn(P, generator=gen)
    delta = delta / delta.norm() * 0.2
    tr, g2 = _truth(0.04)
    C_true = 2 * B * g2 / tr
    model = nn.Linear(P, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_((w_star + delta)[None])
    cs, ses = [], []
    for _ in range(R):
        mon = Monitor(model, schedule=1, smoothing=0.9, events=None)
        for _ in range(Mr):
            x = torch.randn(B, P, generator=gen)
            y = x @ w_star + S * torch.randn(B, generator=gen)
            with mon.track():
                (0.5 * (model(x).squeeze(1) - y) ** 2).mean().backward()
            model.zero_grad()
        cs.append(mon.last["C_smoothed"])
        ses.append(mon.last["C_smoothed_se"])
    cs, ses = np.array(cs), np.array(ses)
    coverage = np.mean(np.abs(cs - C_true) < 2 * ses)
    assert coverage >= 0.87, coverage
    ratio = np.mean(ses) / np.std(cs, ddof=1)
    assert 1 / 1.5 < ratio < 1.5, ratio
