import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shld.theory import em_mean, em_variance, ou_mean, ou_variance

lam_s = st.floats(0.01, 10.0)
pos = st.floats(0.01, 5.0)


@settings(max_examples=60, deadline=None)
@given(lam=lam_s, D=pos, t=pos, s=pos, v0=st.floats(0.0, 3.0), m0=st.floats(-3.0, 3.0))
def test_ou_moments_are_a_semigroup(lam, D, t, s, v0, m0):
    # evolving for t then s from the intermediate law equals evolving for t + s (Markov property)
    v_t = ou_variance([lam], D, t, v0)[0]
    assert np.isclose(ou_variance([lam], D, s, v_t)[0], ou_variance([lam], D, t + s, v0)[0], rtol=1e-10)
    m_t = ou_mean([m0], [lam], t)[0]
    assert np.isclose(ou_mean([m_t], [lam], s)[0], ou_mean([m0], [lam], t + s)[0], rtol=1e-10, atol=1e-300)


@settings(max_examples=60, deadline=None)
@given(lam=lam_s, D=pos, dt=st.floats(0.001, 0.19), n=st.integers(0, 200), v0=st.floats(0.0, 3.0))
def test_em_variance_satisfies_its_recursion(lam, D, dt, n, v0):
    # v_{n+1} = (1 - lam dt)^2 v_n + 2 D dt, m_{n+1} = (1 - lam dt) m_n
    r = 1 - lam * dt
    v_n = em_variance([lam], D, dt, n, v0)[0]
    assert np.isclose(em_variance([lam], D, dt, n + 1, v0)[0], r * r * v_n + 2 * D * dt, rtol=1e-9)
    assert np.isclose(em_mean([1.0], [lam], dt, n + 1)[0], r * em_mean([1.0], [lam], dt, n)[0], rtol=1e-12)
