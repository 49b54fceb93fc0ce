"""A position-dependent preconditioner P(θ) keeps exp(−L/D) stationary only with the drift correction
D·∇·P(θ), and with its sign right.

For dθ = (−P L' + s·D·P') dt + √(2DP) dW the zero-flux Fokker–Planck solution is
ρ ∝ exp(−L/D)·P^{s−1}: s = 1 is the Gibbs law, s = −1 (the sign flipped) weights it by P⁻², s = 0 (no
correction) by P⁻¹. With L = θ²/2, D = 0.5 and P = 1 + θ², each case's variance is a 1-D quadrature, and the
ensemble must match its own case and be told apart from the others.
"""

import numpy as np
import pytest
from scipy import integrate

from shld.dynamics import simulate
from shld.landscapes import make_landscape

D, N, DT, STEPS = 0.5, 20000, 2e-3, 5000      # t = 10: ten relaxation times of the slowest mode (rate ≥ 1)


def _exact_var(s: int) -> float:
    w = lambda x: np.exp(-x * x / (2 * D)) * (1 + x * x) ** (s - 1)   # noqa: E731
    z = integrate.quad(w, -np.inf, np.inf)[0]
    return integrate.quad(lambda x: x * x * w(x), -np.inf, np.inf)[0] / z


def _ensemble_var(sign: int) -> float:
    L = make_landscape("quadratic", eigenvalues=np.array([1.0]))
    res = simulate(L, np.zeros(1), D=D, dt=DT, n_steps=STEPS, n_walkers=N, seed=3, record_every=STEPS,
                   preconditioner=lambda th: 1.0 + th * th, divergence=lambda th: sign * 2.0 * th,
                   observables=("loss",))
    return float(np.var(res.final_theta[:, 0], ddof=1))


@pytest.mark.parametrize("sign", [1, -1])
def test_divergence_correction_gives_its_own_stationary_law(sign):
    v = _ensemble_var(sign)
    se = _exact_var(sign) * np.sqrt(2 / (N - 1))           # SE of a sample variance (kurtosis of the
    # Gibbs case is 3; the P⁻² case is lighter-tailed, so √(2/(N−1))·σ² bounds it); EM bias O(dt) ≈ 1e-3
    assert abs(v - _exact_var(sign)) < 4 * se + 2e-3, (v, _exact_var(sign))
    if sign == 1:
        assert abs(v - D) < 4 * se + 2e-3                    # the Gibbs variance D for L = θ²/2
    else:
        # power: the flipped sign is far from Gibbs (0.5 vs 0.22, some 50 standard errors)
        assert abs(v - D) > 10 * se
