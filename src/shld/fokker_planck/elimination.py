r"""Subtraction-free Gaussian elimination for Markov generators (GTH elimination, sparse).

A continuous-time Markov chain on n cells is given by its off-diagonal rates N_ij ≥ 0 (i → j,
units 1/time) and its exit rates s_i ≥ 0 (out of the chain: into an absorbing target or
through an absorbing wall). Its generator is L = N − diag(s + N·1). Two problems are solved:

* ``solve(b)``: x = (−L)^{−1} b for b ≥ 0 (mean first-passage time: b = 1);
* ``stationary()``: the left null vector ρ L = 0 of a chain without exits (ρ ≥ 0, Σρ = 1).

Why not a sparse LU: the diagonal of L is the rounded sum of the rates. Across a barrier of
height ΔE the rates span e^{ΔE/D}; once that exceeds 1/ε ≈ 4.5e15 (ΔE/D ≳ 36), the small
exit rates that decide τ ~ e^{ΔE/D} are below the rounding of the diagonal and an LU returns
noise — negative times included. Grassmann, Taksar & Heyman (Oper. Res. 33, 1985) showed that
elimination stays accurate when every pivot is recomputed as a sum of positive terms,
d_k = s_k + Σ_j N_kj, instead of being updated by subtraction. Eliminating a cell k then
updates the remaining cells by

    N_ij ← N_ij + N_ik N_kj / d_k        (i ≠ j),        s_i ← s_i + N_ik s_k / d_k,

and forward/back substitution of b ≥ 0 only adds positive numbers: every entry of the result
has a relative error of a few ε times the number of operations, whatever the condition number
(O'Cinneide, Numer. Math. 65, 1993).

Vectorisation: cells are eliminated in levels, each an independent set of the remaining graph
(no two eliminated cells adjacent, so a level is one sparse product). A cell joins the level
when its degree (ties broken by a fixed pseudo-random rank) is the smallest among its neighbours — a parallel
minimum-degree ordering that keeps the fill of 2-D and 3-D grids moderate. When the remaining
graph turns dense it is finished by the same updates on a dense array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

#: switch to the dense finish when at most this many cells remain and the graph is this dense
_DENSE_CELLS, _DENSE_FILL = 2500, 0.1
#: cells per block of the dense finish (the block's own GTH loop is sequential; the update of
#: the rest is one matrix product of non-negative numbers)
_BLOCK = 96


class SingularGeneratorError(ValueError):
    """A cell has no way out at elimination time (a closed class without exits)."""


def _check_pivots(pivot, cells):
    bad = ~(pivot > 0)
    if np.any(bad):
        raise SingularGeneratorError(f"cell {int(cells[np.argmax(bad)])} cannot be left (no rate out of it "
                                     "at elimination time): the chain has a closed class without exits")


class _Block:
    """GTH factor of M = diag(s + N·1) − N on a small dense block: M = (I − P) (diag(p) − Q)
    with P = strict lower part of the updated rates / pivots, Q = strict upper part, p the
    pivots. Every solve with a non-negative right-hand side only adds non-negative numbers."""

    def __init__(self, N: np.ndarray, s: np.ndarray, cells: np.ndarray):
        N, s = N.copy(), s.copy()
        b = N.shape[0]
        pivot = np.empty(b)
        for k in range(b):
            rest = slice(k + 1, None)
            pivot[k] = s[k] + N[k, rest].sum()
            _check_pivots(pivot[k:k + 1], cells[k:k + 1])
            N[rest, rest] += np.outer(N[rest, k], N[k, rest] / pivot[k])
            s[rest] += N[rest, k] * (s[k] / pivot[k])
            np.fill_diagonal(N[rest, rest], 0.0)
        self.pivot = pivot
        self.lower = np.tril(N, -1) / pivot[None, :]      # P_ik = N'_ik / p_k
        self.upper = np.triu(N, 1)                        # Q_kj = N'_kj

    def solve(self, y: np.ndarray) -> np.ndarray:
        """x = M⁻¹ y for y ≥ 0, shape (b,) or (b, r)."""
        y = np.array(y, dtype=float)
        for k in range(1, y.shape[0]):
            y[k] += self.lower[k, :k] @ y[:k]
        for k in range(y.shape[0] - 1, -1, -1):
            y[k] = (y[k] + self.upper[k, k + 1:] @ y[k + 1:]) / self.pivot[k]
        return y

    def solve_left(self, w: np.ndarray) -> np.ndarray:
        """z = w M⁻¹ for w ≥ 0, shape (b,)."""
        v = np.array(w, dtype=float)
        for k in range(v.shape[0]):
            v[k] = (v[k] + v[:k] @ self.upper[:k, k]) / self.pivot[k]
        for k in range(v.shape[0] - 2, -1, -1):
            v[k] += v[k + 1:] @ self.lower[k + 1:, k]
        return v


@dataclass
class _Level:
    cells: np.ndarray        # global indices eliminated at this level
    pivot: np.ndarray | None  # independent set: d_k = s_k + Σ_j N_kj (> 0); else None
    block: _Block | None     # a dense block with rates inside it
    rest: np.ndarray         # global indices remaining after this level
    out: sp.spmatrix | np.ndarray   # N[cells, rest]: rates from the eliminated cells to the rest
    into: sp.spmatrix | np.ndarray  # N[rest, cells]: rates from the rest into the eliminated cells

    def inv(self, y):
        return y / (self.pivot if y.ndim == 1 else self.pivot[:, None]) if self.block is None \
            else self.block.solve(y)

    def inv_left(self, w):
        return w / self.pivot if self.block is None else self.block.solve_left(w)


class Elimination:
    """Factorise the chain (``rates`` N, CSR n×n with zero diagonal; ``exits`` s, shape (n,)).

    ``keep_last``: a cell that is never eliminated (the pin for :meth:`stationary`); without
    it every cell is eliminated and :meth:`solve` is available. ``rank`` (n,): cells of lower
    rank are eliminated first (a nested-dissection rank from :func:`nested_dissection_rank`
    keeps the fill of grid problems low); without it, minimum degree alone.
    """

    def __init__(self, rates: sp.csr_matrix, exits: np.ndarray, keep_last: int | None = None,
                 rank: np.ndarray | None = None):
        N = sp.csr_matrix(rates, dtype=float, copy=True)
        N.setdiag(0.0)
        N.eliminate_zeros()
        s = np.asarray(exits, dtype=float).copy()
        if (N.data.size and N.data.min() < 0) or (s.size and s.min() < 0):
            raise ValueError("rates and exits must be >= 0")
        self.n = N.shape[0]
        self.keep_last = keep_last
        self.levels: list[_Level] = []
        self._rank = np.zeros(self.n) if rank is None else np.asarray(rank, dtype=float)
        idx = np.arange(self.n)
        while idx.size > (0 if keep_last is None else 1):
            m = idx.size
            if m <= _DENSE_CELLS and N.nnz >= _DENSE_FILL * m * m:
                self._dense_finish(N.toarray(), s, idx)
                break
            chosen = self._independent_set(N, idx)
            K, F = np.flatnonzero(chosen), np.flatnonzero(~chosen)
            NK = N[K]
            pivot = s[K] + np.asarray(NK.sum(axis=1)).ravel()
            _check_pivots(pivot, idx[K])
            out, into = NK[:, F].tocsr(), N[F][:, K].tocsr()
            self.levels.append(_Level(idx[K], pivot, None, idx[F], out, into))
            s = s[F] + into @ (s[K] / pivot)
            N = (N[F][:, F] + into @ (sp.diags(1.0 / pivot) @ out)).tocsr()
            N.setdiag(0.0)       # a return to oneself is no transition (GTH: never subtracted)
            N.eliminate_zeros()
            idx = idx[F]

    # -- ordering ------------------------------------------------------------------
    def _independent_set(self, N: sp.csr_matrix, idx: np.ndarray) -> np.ndarray:
        """Cells whose (rank, degree, tie) is smaller than that of every neighbour."""
        m = N.shape[0]
        adj = (N + N.T).tocsr()
        deg = np.diff(adj.indptr)
        # degree first; ties broken by a fixed pseudo-random rank (an ordered tie-break would
        # pick one cell per run of equal degrees, e.g. one per level on a 1-D chain)
        tie = np.random.default_rng(m).permutation(m)
        key = (self._rank[idx] * (m + 1) + deg) * (m + 1) + tie
        if self.keep_last is not None:
            key[idx == self.keep_last] = np.inf
        nb_key = np.full(m, np.inf)
        rows = np.flatnonzero(deg)
        if rows.size:
            nb_key[rows] = np.minimum.reduceat(key[adj.indices], adj.indptr[rows])
        return key < nb_key

    def _dense_finish(self, N: np.ndarray, s: np.ndarray, idx: np.ndarray) -> None:
        """Blocked GTH on a dense array (the pinned cell, if any, last): each block is factorised
        by its own GTH loop, the rest is updated by N_FF += N_FK M_K⁻¹ N_KF, s_F += N_FK M_K⁻¹ s_K."""
        order = np.argsort(self._rank[idx], kind="stable")
        if self.keep_last is not None:
            order = np.concatenate([order[idx[order] != self.keep_last], np.flatnonzero(idx == self.keep_last)])
        N, s, idx = N[np.ix_(order, order)], s[order], idx[order]
        stop = idx.size - (0 if self.keep_last is None else 1)
        for a in range(0, stop, _BLOCK):
            b = min(a + _BLOCK, stop)
            K, F = slice(a, b), slice(b, None)
            NKF, NFK = N[K, F].copy(), N[F, K].copy()
            exits = s[K] + NKF.sum(axis=1)          # leaving the block: to the rest or out
            block = _Block(N[K, K], exits, idx[K])
            self.levels.append(_Level(idx[K], None, block, idx[F], NKF, NFK))
            if b < idx.size:
                solved = block.solve(np.column_stack([NKF, s[K]]))
                N[F, F] += NFK @ solved[:, :-1]
                s[F] += NFK @ solved[:, -1]
                np.fill_diagonal(N[F, F], 0.0)

    # -- solves ----------------------------------------------------------------------
    def solve(self, b: np.ndarray) -> np.ndarray:
        """x = (−L)^{−1} b for b ≥ 0 (every cell eliminated; relative accuracy per entry)."""
        if self.keep_last is not None:
            raise ValueError("this factorisation keeps a pinned cell: use stationary()")
        x = np.asarray(b, dtype=float).copy()
        if np.any(x < 0):
            raise ValueError("`b` must be >= 0 for a subtraction-free solve")
        for lv in self.levels:
            x[lv.rest] += lv.into @ lv.inv(x[lv.cells])
        for lv in reversed(self.levels):
            x[lv.cells] = lv.inv(x[lv.cells] + lv.out @ x[lv.rest])
        return x

    def solve_left(self, w: np.ndarray) -> np.ndarray:
        """z = w (−L)^{−1} for w ≥ 0 (every cell eliminated): the forward-equation counterpart
        of :meth:`solve` (e.g. the quasi-stationary density by inverse iteration)."""
        if self.keep_last is not None:
            raise ValueError("this factorisation keeps a pinned cell: use stationary()")
        z = np.asarray(w, dtype=float).copy()
        if np.any(z < 0):
            raise ValueError("`w` must be >= 0 for a subtraction-free solve")
        for lv in self.levels:
            z[lv.rest] += lv.out.T @ lv.inv_left(z[lv.cells])
        for lv in reversed(self.levels):
            z[lv.cells] = lv.inv_left(z[lv.cells] + lv.into.T @ z[lv.rest])
        return z

    def stationary(self) -> np.ndarray:
        """ρ ≥ 0 with ρ L = 0, Σρ = 1 (needs ``keep_last`` and a chain without exits)."""
        if self.keep_last is None:
            raise ValueError("stationary() needs the pinned cell `keep_last`")
        rho = np.zeros(self.n)
        rho[self.keep_last] = 1.0
        for lv in reversed(self.levels):
            rho[lv.cells] = lv.inv_left(lv.into.T @ rho[lv.rest])
            top = rho.max()
            if top > 1e150:      # ρ spans e^{ΔU/D}: rescale before it overflows (ρ is linear)
                rho /= top
        return rho / rho.sum()


def nested_dissection_rank(shape) -> np.ndarray:
    """Elimination rank of each cell of a grid (flat, C order) by geometric nested dissection.

    The box of cells is cut in half across its longest axis; the middle layer (the separator)
    is eliminated after both halves, which are cut in turn. A cell's rank is minus the depth
    of the cut whose separator holds it (cells never on a separator: the lowest rank). With
    this order the fill of an n-cell 2-D grid is O(n log n), as for a sparse LU ordered by
    nested dissection. Vectorised over cells: one pass per depth.
    """
    shape = np.asarray(shape, dtype=np.int64)
    coords = np.indices(tuple(shape)).reshape(len(shape), -1).T          # (n, d)
    lo = np.zeros_like(coords)
    hi = np.broadcast_to(shape, coords.shape).copy()
    rank = np.full(coords.shape[0], -np.inf)
    active = np.ones(coords.shape[0], dtype=bool)
    depth = 0
    while np.any(active):
        a = np.flatnonzero(active)
        width = hi[a] - lo[a]
        axis = np.argmax(width, axis=1)
        rows = np.arange(a.size)
        w = width[rows, axis]
        mid = lo[a, axis] + w // 2
        c = coords[a, axis]
        on_sep = (c == mid) | (w <= 1)
        rank[a[on_sep]] = -depth
        active[a[on_sep]] = False
        left, right = ~on_sep & (c < mid), ~on_sep & (c > mid)
        hi[a[left], axis[left]] = mid[left]
        lo[a[right], axis[right]] = mid[right] + 1
        depth += 1
    return rank - rank.min()
