"""The slowest relaxation rates of the Fokker–Planck operator.

The rates are the eigenvalues λ₀ ≤ λ₁ ≤ … of −A (units 1/time). With reflecting or periodic
walls λ₀ = 0 (the stationary state); in a double well λ₁ is the total transition rate
k₁₂ + k₂₁ between the wells when the barrier is high (ΔE/D ≫ 1), up to relative corrections
of order λ₁/λ₂.

A gradient drift with constant D satisfies detailed balance, so S = G^{−1/2} A G^{1/2}
(G = diag of the discrete Gibbs density) is symmetric with the same eigenvalues: the
symmetric shift-invert Lanczos solver ``scipy.sparse.linalg.eigsh`` is used, with the shift
σ slightly below 0 (S is singular at 0). Eigenvectors are mapped back to densities
ρ_k = G^{1/2} v_k. A non-gradient drift or D(θ) uses ``eigs`` (Arnoldi) on A itself and
returns the real parts (the imaginary parts are kept in ``imag``).

Resolution: both solvers return eigenvalues with an absolute error of order ε·‖A‖, so a
rate below ``resolution(A)`` = 1e4·ε·max|A_ii| (relative error possibly above ~1e-4) cannot be
trusted — behind a barrier ΔE/D ≳ 30 the slowest rates are e^{−ΔE/D}-small and come out as
noise, even negative. Such a rate raises :class:`UnresolvedRateError` naming the remedy; it is
never returned. With reflecting or periodic walls λ₀ = 0 exactly (probability is conserved)
and is returned as 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from shld._validation import check_int

#: rates below RESOLUTION_EPS·ε·max|A_ii| are refused (see the module docstring)
RESOLUTION_EPS = 1e4

#: a non-symmetric operator's rates are the k smallest real parts among the WINDOW·k + 10 eigenvalues
#: nearest 0 in modulus (a mode whose |Im λ| puts it outside that window is not seen: raise k to widen it)
WINDOW = 2


class UnresolvedRateError(ArithmeticError):
    """A relaxation or escape rate is below the eigensolver's resolution (a result that cannot
    be trusted); the message names the remedy."""


def resolution(A) -> float:
    """The smallest rate the shift-invert eigensolvers resolve for the operator ``A`` (1/time)."""
    scale = float(np.max(np.abs(A.diagonal()))) if A.shape[0] else 0.0
    return RESOLUTION_EPS * np.finfo(float).eps * scale


def check_resolved(rates: np.ndarray, A, first: int = 0) -> None:
    """Raise :class:`UnresolvedRateError` if any of ``rates[first:]`` is below ``resolution(A)``."""
    res = resolution(A)
    bad = np.flatnonzero(~(np.asarray(rates[first:]) >= res))
    if bad.size:
        i = first + int(bad[0])
        raise UnresolvedRateError(
            f"rate {i} = {rates[i]:.3g} is below the eigensolver's resolution {res:.3g} (= 1e4·ε·max|A_ii|): "
            "it cannot be trusted (a barrier of ΔE/D ≳ 30 makes it e^{−ΔE/D}-small). Remedy: for a barrier "
            "crossing use mean_first_passage_time(op, target) or escape_rate(op, target) with the target at "
            "the other well (subtraction-free, accurate at any barrier); or raise D")


@dataclass
class Spectrum:
    """``rates`` (k,) ascending, ``modes`` (k, *grid.shape) right eigenvectors of A as densities
    (or None), ``imag`` (k,) imaginary parts (zeros for the symmetric case)."""

    rates: np.ndarray
    modes: np.ndarray | None
    imag: np.ndarray

    @property
    def gap(self) -> float:
        """The smallest nonzero rate λ₁ (for a conservative operator) — the spectral gap."""
        if self.rates.shape[0] < 2:
            raise ValueError(f"the gap λ₁ needs the two slowest rates; this spectrum has k={self.rates.shape[0]} "
                             "(compute it with k >= 2)")
        return float(self.rates[1])


def _shift(M) -> float:
    """A small negative shift: far below the smallest rates, well away from singular."""
    scale = float(np.max(np.abs(M.diagonal()))) if M.shape[0] else 1.0
    return -1e-9 * scale


#: fill-reducing ordering for the shift-invert LU: the operators are structurally symmetric
#: grid Laplacian-like matrices, for which minimum degree on AᵀA+A gives about half the fill of
#: SuperLU's default COLAMD (and a 2–3× faster factorisation at 512² cells)
PERMC = "MMD_AT_PLUS_A"


def _shift_invert(M: sp.spmatrix, sigma: float):
    """LinearOperator x ↦ (M − σI)⁻¹x from one sparse LU (the cost that dominates eigs/eigsh)."""
    n = M.shape[0]
    lu = spla.splu((M - sigma * sp.identity(n, format="csc")).tocsc(), permc_spec=PERMC)
    dtype = np.result_type(M.dtype, np.float64)
    return spla.LinearOperator((n, n), matvec=lu.solve, dtype=dtype)


def _start_vector(n: int) -> np.ndarray:
    """A fixed start vector for ARPACK: without one it draws a random start on every call, and the
    rates then differ in the last digits from run to run (same inputs, different bits)."""
    return np.random.default_rng(0x5EED).standard_normal(n)


def _sym_eigs(S: sp.spmatrix, k: int, sigma: float | None, want_vectors: bool, v0=None):
    n = S.shape[0]
    if n <= max(k + 2, 40):
        w, v = np.linalg.eigh(-S.toarray())
        return w[:k], v[:, :k]
    sigma = _shift(S) if sigma is None else sigma
    M = (-S).tocsc()
    v0 = _start_vector(n) if v0 is None else v0
    w, v = spla.eigsh(M, k=k, sigma=sigma, which="LM", v0=v0, OPinv=_shift_invert(M, sigma),
                      ncv=min(n - 1, max(2 * k + 1, 20)), return_eigenvectors=True)
    order = np.argsort(w)
    return w[order], v[:, order]


def check_k(k, n_cells: int, cells: str = "grid size") -> int:
    """``k`` rates of an operator on ``n_cells`` cells: an int with 1 ≤ k < n_cells − 1 (the eigensolvers'
    limit), else an error naming ``k`` and the ``cells`` it is counted against."""
    k = check_int("k", k, minimum=1)
    if k >= n_cells - 1:
        raise ValueError(f"`k` must be < {cells} − 1 = {n_cells - 1}, got {k}")
    return k


def relaxation_rates(op, k: int = 4, *, sigma: float | None = None, return_modes: bool = False) -> Spectrum:
    """The ``k`` slowest relaxation rates of ``op`` (eigenvalues of −A, ascending). ``sigma`` moves the
    shift-invert target: the ``k`` rates nearest ``sigma`` are returned, and the stationary rate λ₀ = 0
    of a conservative operator is set to exactly 0 only when the computed one is that mode (within the
    solver's resolution)."""
    k = check_k(k, op.grid.size)
    spec = _rates_of(op, op.matrix, op.symmetric_matrix() if op.is_gradient else None, k, sigma,
                     return_modes, None)
    first = 0
    if op.conservative and abs(spec.rates[0]) <= resolution(op.matrix):
        # probability is conserved: λ₀ = 0 exactly (the computed one is noise). Not with a `sigma` far from 0,
        # whose window need not hold λ₀ (its first rate is then a real one)
        spec.rates[0], spec.imag[0], first = 0.0, 0.0, 1
    check_resolved(spec.rates, op.matrix, first=first)
    return spec


def _rates_of(op, A, S, k, sigma, return_modes, keep) -> Spectrum:
    shape = op.grid.shape
    if S is not None:
        w, v = _sym_eigs(S, k, sigma, return_modes)
        modes = None
        if return_modes:
            u = op.potential if keep is None else op.potential[keep]
            half = np.exp(-0.5 * (u - u.min()) / op.D)
            modes = (v * half[:, None]).T
            modes /= np.max(np.abs(modes), axis=1, keepdims=True)
        return Spectrum(rates=w, modes=_embed(modes, keep, shape), imag=np.zeros_like(w))
    n = A.shape[0]
    if n <= max(k + 2, 40):
        w, v = np.linalg.eig(-A.toarray())
    else:
        sig = _shift(A) if sigma is None else sigma
        M = (-A).tocsc()
        # shift-invert returns the eigenvalues nearest sig in modulus; with a rotational (non-gradient) drift a
        # slow mode can have a large imaginary part (1 ± 3i lies farther from 0 than the real 2), so a window
        # of WINDOW·k + 10 of them is fetched and the k smallest real parts are kept from it
        kk = min(n - 2, WINDOW * k + 10)
        w, v = spla.eigs(M, k=kk, sigma=sig, which="LM", v0=_start_vector(n), OPinv=_shift_invert(M, sig),
                         ncv=min(n - 1, max(2 * kk + 1, 20)))
    order = np.argsort(w.real)[:k]
    w, v = w[order], v[:, order]
    modes = None
    if return_modes:
        modes = v.real.T
        modes /= np.max(np.abs(modes), axis=1, keepdims=True)
    return Spectrum(rates=w.real, modes=_embed(modes, keep, shape), imag=w.imag)


def _embed(modes, keep, shape):
    if modes is None:
        return None
    if keep is None:
        return modes.reshape((modes.shape[0],) + tuple(shape))
    full = np.zeros((modes.shape[0], keep.size))
    full[:, keep] = modes
    return full.reshape((modes.shape[0],) + tuple(shape))
