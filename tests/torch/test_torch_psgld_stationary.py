"""pSGLD's stationary variance on a quadratic, with the noise scale pinned and a wrong temperature rejected.

L = a·θ²/2 per chain (K independent chains, elementwise preconditioner). With the RMSprop average v held
near its stationary value a·T (α = 0.9999, v started there) P ≈ 1/√v stays within a few percent of its
mean P̄, and Euler–Maruyama for dθ = −P·aθ dt + √(2TP) dW has the stationary variance
T/(a(1 − ηaP̄/2)): T/a up to the O(η) bias, whatever P̄. (With α = 0.99 and v tracking each chain's recent
gradients, P correlates with |θ| and the variance is ~20 % high: pSGLD without Li et al.'s Γ term is only
approximately invariant, as the optimizer's docstring says.)
"""

import math

import pytest

torch = pytest.importorskip("torch")

from shld.torch import SGLD  # noqa: E402

A, T, LR, K, STEPS = 2.0, 0.5, 0.01, 10000, 600


def _stationary_variance(temperature: float) -> tuple[float, float]:
    start = torch.randn(K, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * math.sqrt(T / A)
    theta = torch.nn.Parameter(start)
    opt = SGLD([theta], lr=LR, temperature=temperature, precondition=True, alpha=0.9999,
               generator=torch.Generator().manual_seed(5))
    opt.state[theta]["v"] = torch.full((K,), A * temperature, dtype=torch.float64)   # E[g²] = a·T
    for _ in range(STEPS):          # started in the stationary law; 600 steps = 12 relaxation times 1/(ηaP̄)
        theta.grad = A * theta.detach()                # ∇(aθ²/2), without a graph
        opt.step()
    P = 1.0 / (opt.state[theta]["v"].sqrt() + 1e-5)
    return float(theta.detach().var()), float(P.mean())


def test_psgld_samples_the_gibbs_variance_and_rejects_a_wrong_temperature():
    var, P = _stationary_variance(T)
    exact = T / (A * (1 - LR * A * P / 2))
    se = exact * math.sqrt(2 / (K - 1))             # independent chains: SE of a Gaussian sample variance
    assert abs(var - exact) < 4 * se, (var, exact, se)
    # power: the same check at 0.8·T is off by 20 %, about 14 standard errors
    wrong, _ = _stationary_variance(0.8 * T)
    assert abs(wrong - exact) > 10 * se
