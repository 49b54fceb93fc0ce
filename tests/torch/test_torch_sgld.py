"""SGLD against the conjugate Gaussian posterior; degenerate limits; the C-driven scheduler."""

import math

import pytest
import torch
from torch import nn

from shld.torch import SGLD, CScheduler


def _posterior_problem(n=20, sigma=1.0, tau=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = 1.5 + sigma * torch.randn(n, generator=g, dtype=torch.float64)
    prec = n / sigma**2 + 1 / tau**2
    mean = float(y.sum() / sigma**2 / prec)
    return y, mean, 1.0 / prec


def test_sgld_samples_conjugate_gaussian_posterior():
    # y_i ~ N(θ, σ²), θ ~ N(0, τ²); U(θ) = Σ(y_i − θ)²/(2σ²) + θ²/(2τ²) → posterior N(μ, s²).
    # K independent chains in one parameter tensor; full-batch gradient; T = 1.
    y, mu, s2 = _posterior_problem()
    a = 1.0 / s2                      # curvature of U
    lr = 0.05 / a                     # ηa = 0.05
    K = 10000
    theta = nn.Parameter(torch.zeros(K, dtype=torch.float64))
    opt = SGLD([theta], lr=lr, temperature=1.0, generator=torch.Generator().manual_seed(7))
    n, sy = y.numel(), float(y.sum())
    for _ in range(300):              # (1 − ηa)^300 ≈ 2e-7: burn-in complete
        opt.zero_grad()
        # Σ_i (y_i − θ)²/2 up to a constant, via the sufficient statistics (n, Σy)
        U = (n * theta**2 / 2 - theta * sy + theta**2 / (2 * 4.0)).sum()
        U.backward()
        opt.step()
    x = theta.detach()
    # Euler–Maruyama on a quadratic: exact stationary law N(μ, s²/(1 − ηa/2)); the chains are
    # independent so the standard errors are exact: SE(mean) = sd/√K, SE(var) = var·√(2/(K−1))
    var_disc = s2 / (1 - 0.05 / 2)
    Z = 4.0
    assert abs(x.mean().item() - mu) < Z * math.sqrt(var_disc / K)
    assert abs(x.var().item() - var_disc) < Z * var_disc * math.sqrt(2 / (K - 1))
    # and the posterior itself within discretisation bias (2.6 %) + MC error
    assert x.var().item() == pytest.approx(s2, rel=0.026 + Z * math.sqrt(2 / (K - 1)))


def test_zero_temperature_is_sgd_and_same_seed_same_bits():
    torch.manual_seed(0)
    net = nn.Linear(4, 2)
    x, y = torch.randn(8, 4), torch.randn(8, 2)

    def run(opt_cls, **kw):
        m = nn.Linear(4, 2)
        m.load_state_dict(net.state_dict())
        opt = opt_cls(m.parameters(), **kw)
        for _ in range(5):
            opt.zero_grad()
            ((m(x) - y) ** 2).mean().backward()
            opt.step()
        return torch.cat([p.detach().reshape(-1) for p in m.parameters()])

    assert torch.equal(run(SGLD, lr=0.1, temperature=0.0), run(torch.optim.SGD, lr=0.1))
    assert torch.equal(run(SGLD, lr=0.1, temperature=0.0, weight_decay=0.1),
                       run(torch.optim.SGD, lr=0.1, weight_decay=0.1))
    a = run(SGLD, lr=0.1, temperature=0.5, generator=torch.Generator().manual_seed(3))
    b = run(SGLD, lr=0.1, temperature=0.5, generator=torch.Generator().manual_seed(3))
    c = run(SGLD, lr=0.1, temperature=0.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    m = nn.Linear(4, 2)
    opt = SGLD(m.parameters(), lr=0.1, temperature=0.5, precondition=True)
    st = torch.get_rng_state()
    ((m(x) - y) ** 2).mean().backward()
    opt.step()
    assert torch.equal(torch.get_rng_state(), st)  # never the global RNG


def test_zero_gradient_zero_noise_does_not_move_and_lr_scheduler_works():
    p = nn.Parameter(torch.ones(3))
    opt = SGLD([p], lr=0.1, temperature=0.0, precondition=True)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = torch.zeros(3)
        opt.step()
        sched.step()
    assert torch.equal(p.detach(), torch.ones(3))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / 8)
    sd = opt.state_dict()
    opt2 = SGLD([p], lr=0.1, temperature=1.0)
    opt2.load_state_dict(sd)
    assert torch.equal(opt2.generator.get_state(), opt.generator.get_state())


def test_sgld_bad_input():
    p = [nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="`temperature` must be >= 0"):
        SGLD(p, temperature=-1)
    with pytest.raises(ValueError, match="`lr` must be > 0"):
        SGLD(p, lr=0)
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator"):
        SGLD(p, generator=1)


class _FakeMonitor:
    def __init__(self):
        self.last = None

    def record(self, step, C):
        self.last = {"step": step, "C_smoothed": C}


def test_c_scheduler_rule_bounds_cooldown_and_state():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    mon = _FakeMonitor()
    sch = CScheduler(opt, mon, low=0.5, high=20, up=1.5, down=0.7, max_lr=0.2, cooldown=1)
    assert sch.step() is None                       # no record yet
    mon.record(0, 0.1)
    assert sch.step() == 1.5 and opt.param_groups[0]["lr"] == pytest.approx(0.15)
    mon.record(1, 0.1)
    assert sch.step() is None                       # cooldown
    assert sch.step() == 1.5 and opt.param_groups[0]["lr"] == pytest.approx(0.2)  # clipped at max_lr
    assert sch.step() is None                       # the same record is used once
    mon.record(5, 50.0)
    sch.wait = 0
    assert sch.step() == 0.7 and opt.param_groups[0]["lr"] == pytest.approx(0.14)
    mon.record(6, 5.0)
    sch.wait = 0
    assert sch.step() is None                       # in band: unchanged
    state = sch.state_dict()
    sch2 = CScheduler(opt, mon)
    sch2.load_state_dict(state)
    assert sch2.last_record_step == 6 and sch2.max_lr == [0.2]
    with pytest.raises(ValueError, match="`high` must be > `low`"):
        CScheduler(opt, mon, low=2, high=1)
