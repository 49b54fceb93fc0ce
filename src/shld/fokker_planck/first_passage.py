"""First passage to a target set: mean first-passage time, survival, escape rate.

The target set T is a set of grid cells (a boolean mask, or a callable θ (..., d) → bool
evaluated at the cell centres). Cells of T are removed from the problem: probability that
flows into them is absorbed (ρ = 0 at their centres); absorbing walls of the operator also
absorb.

* Mean first-passage time τ(θ) = E[first time in T | θ(0) = θ] solves the backward
  (adjoint) equation  Aᵀ τ = −1  on the remaining cells (Aᵀ is the Markov generator of the
  discrete process), τ = 0 on T, any dimension. Units: dynamics time. The solve is
  subtraction-free (:mod:`shld.fokker_planck.elimination`): τ ~ e^{ΔE/D} keeps a relative
  accuracy of ~1e-12 of the discrete problem at any barrier, where a sparse LU of Aᵀ loses
  every digit once e^{ΔE/D} ≳ 1/ε (ΔE/D ≳ 36) and can return negative times.
* Survival S(t) = probability of not having reached T by time t, from the forward
  evolution of the absorbing problem (mass left).
* Escape rate: the slowest eigenvalue μ₀ of −A restricted to the complement of T; for a
  high barrier S(t) ≈ e^{−μ₀ t} after a short transient and μ₀ ≈ 1/τ. Below the resolution
  of shift-invert Lanczos/Arnoldi, μ₀ comes from inverse iteration with the subtraction-free
  solve (its eigenvector is positive, so every step adds positive numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from shld._validation import check_choice, check_finite_array, check_int, check_positive
from shld.fokker_planck.elimination import Elimination, SingularGeneratorError, nested_dissection_rank


def target_mask(grid, target) -> np.ndarray:
    """Boolean mask of the grid's shape from a mask array or a callable on cell centres."""
    if target is None:
        return np.zeros(grid.shape, dtype=bool)
    if callable(target):
        m = np.asarray(target(grid.points()))
    else:
        m = np.asarray(target)
    if m.dtype != bool:
        raise TypeError(f"`target` must give booleans, got dtype {m.dtype}")
    if m.shape == (grid.size,):
        m = m.reshape(grid.shape)
    if m.shape != grid.shape:
        raise ValueError(f"`target` mask must have the grid's shape {grid.shape}, got {m.shape}")
    return m


def _keep(op, target):
    mask = target_mask(op.grid, target)
    if mask.all():
        raise ValueError("`target` covers the whole grid: nothing is left to pass from")
    if not mask.any() and op.conservative:
        raise ValueError("`target` is empty and the operator has no absorbing wall: the first-passage "
                         "time is infinite")
    keep = ~mask.reshape(-1)
    return mask, keep


@dataclass
class FirstPassage:
    """``tau`` (grid.shape) mean first-passage time from each cell centre (0 on the target);
    ``target`` the mask. ``at(x0)`` interpolates τ linearly between cell centres (inside the grid's
    box; a point outside it is refused)."""

    tau: np.ndarray
    target: np.ndarray
    grid: object

    def at(self, x0):
        """τ at a point ``x0`` (shape (d,), or a scalar in 1-D) → float, or at points (..., d)
        (in 1-D also a plain list of points) → array."""
        x = np.atleast_1d(check_finite_array("x0", x0))
        if self.grid.dim == 1 and x.shape[-1] != 1:
            x = x[..., None]
        if x.shape[-1] != self.grid.dim:
            raise ValueError(f"`x0` must have last axis d={self.grid.dim}, got shape {x.shape}")
        lo, hi = np.asarray(self.grid.bounds, dtype=float).T
        outside = np.any((x < lo) | (x > hi), axis=-1)
        if outside.any():
            bad = x[outside][0]
            box = " × ".join(f"[{a:g}, {b:g}]" for a, b in self.grid.bounds)
            raise ValueError(f"`x0`={bad.tolist()} lies outside the grid's box {box}: τ is known only "
                             "inside it (solve on a larger grid)")
        interp = RegularGridInterpolator(self.grid.axes, self.tau, method="linear", bounds_error=False,
                                         fill_value=None)
        out = interp(x.reshape(-1, self.grid.dim)).reshape(x.shape[:-1])
        return float(out) if out.ndim == 0 else out


def _chain(op, keep: np.ndarray) -> Elimination:
    """The subtraction-free factorisation of −Aᵀ on the kept cells; exits = rates into removed
    cells plus absorbing walls (each a sum of positive rates, never a difference)."""
    N, kill = op.transition_rates()
    rows = N[keep]
    Nk = rows[:, keep].tocsr()
    exits = kill[keep] + np.asarray(rows[:, ~keep].sum(axis=1)).ravel()
    rank = nested_dissection_rank(op.grid.shape).reshape(-1)[keep]
    try:
        return Elimination(Nk, exits, rank=rank)
    except SingularGeneratorError as exc:
        raise ValueError("`target` is not reachable from every cell (a region without a path to the "
                         f"target or an absorbing wall): {exc}") from exc


def mean_first_passage_time(op, target=None) -> FirstPassage:
    """Solve Aᵀ τ = −1 off the target (and absorbing walls), τ = 0 on the target."""
    mask, keep = _keep(op, target)
    with np.errstate(over="ignore", invalid="ignore"):    # overflow is reported just below
        tau_keep = _chain(op, keep).solve(np.ones(int(keep.sum())))
    if not np.all(np.isfinite(tau_keep)):
        raise FloatingPointError("the mean first-passage time overflows a float (log τ > 709) somewhere on "
                                 "the grid: raise D or lower the barrier; shld.theory.mfpt_1d(..., log=True) "
                                 "gives log τ in 1-D")
    tau = np.zeros(op.grid.size)
    tau[keep] = tau_keep
    return FirstPassage(tau=tau.reshape(op.grid.shape), target=mask, grid=op.grid)


def _slowest_escape(op, keep, want_mode: bool, max_iter: int = 500, rtol: float = 1e-13):
    """μ₀ by inverse iteration x ← (−L)⁻¹x from x = 1 (and the quasi-stationary density by the
    same iteration from the left): x stays positive, so every iterate is accurate entrywise.
    Converges like (μ₀/μ₁)ᵏ: a few steps behind a high barrier."""
    chain = _chain(op, keep)
    x = np.ones(int(keep.sum()))
    mu = np.nan
    for _ in range(max_iter):
        y = chain.solve(x)
        mu_new = float(x.sum() / y.sum())
        x = y / y.max()
        if abs(mu_new - mu) <= rtol * mu_new:
            mu = mu_new
            break
        mu = mu_new
    else:
        raise ArithmeticError(f"inverse iteration for the escape rate did not converge in {max_iter} steps "
                              f"(last estimate {mu:.6g}): μ₀ and μ₁ are nearly equal; use escape_rate(..., k=2)")
    mode = None
    if want_mode:
        z = np.ones_like(x)
        for _ in range(max_iter):
            w = chain.solve_left(z)
            w /= w.max()
            if np.max(np.abs(w - z)) <= 1e-12:
                break
            z = w
        mode = w
    return mu, mode


def escape_rate(op, target=None, *, k: int = 1, return_modes: bool = False):
    """The ``k`` slowest decay rates of the absorbing problem (a :class:`Spectrum`); ``rates[0]``
    is the escape rate μ₀, ``modes[0]`` the quasi-stationary density (if requested).

    Shift-invert Lanczos/Arnoldi first; when μ₀ is below its resolution (a barrier of
    ΔE/D ≳ 30) μ₀ is recomputed by subtraction-free inverse iteration, which is accurate at
    any barrier. A faster rate below the resolution raises
    :class:`~shld.fokker_planck.spectrum.UnresolvedRateError`."""
    from shld.fokker_planck.spectrum import _embed, _rates_of, check_k, check_resolved, resolution

    mask, keep = _keep(op, target)
    k = check_k(k, int(np.count_nonzero(keep)), "the cells outside the target")
    A = op.matrix.tocsr()[keep][:, keep]
    S = op.symmetric_matrix().tocsr()[keep][:, keep] if op.is_gradient else None
    spec = _rates_of(op, A, S, k, None, return_modes, keep)
    if not spec.rates[0] >= resolution(A):
        mu0, mode0 = _slowest_escape(op, keep, return_modes)
        spec.rates[0], spec.imag[0] = mu0, 0.0
        if return_modes:
            spec.modes[0] = _embed(mode0[None, :], keep, op.grid.shape)[0]
    check_resolved(spec.rates, A, first=1)
    return spec


def survival(op, rho0, target, t_final: float, dt: float, *, n_records: int = 51, method: str = "tr-bdf2"):
    """S(t) = mass not yet absorbed, for ρ(0) = ``rho0`` (normalised), at ``n_records`` times.

    Returns ``(times, S)``."""
    from shld.fokker_planck.solvers import METHODS, _Stepper

    method = check_choice("method", method, METHODS)
    mask, keep = _keep(op, target)
    t_final = check_positive("t_final", t_final)
    dt = check_positive("dt", dt)
    rho = op.grid.check_density(rho0, "rho0", normalise=True).reshape(-1)
    u = rho[keep]
    A = op.matrix.tocsr()[keep][:, keep]
    times = np.linspace(0.0, t_final, check_int("n_records", n_records, minimum=2))
    m = max(1, int(np.ceil((times[1] - times[0]) / dt)))
    st = _Stepper(A, (times[1] - times[0]) / m, method)
    S = [u.sum() * op.grid.cell_volume]
    for _ in times[1:]:
        for _ in range(m):
            u = st.step(u)
            st.started = True
        S.append(u.sum() * op.grid.cell_volume)
    return times, np.asarray(S)
