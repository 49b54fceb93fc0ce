r"""The finite-volume Fokker–Planck operator with Scharfetter–Gummel (exponentially fitted) fluxes.

Equation (Itô convention, t is dynamics time, D a temperature in loss units)::

    ∂ρ/∂t = −∇·J,      J = f ρ − ∇(D ρ)

for the SDE dθ = f(θ) dt + √(2 D(θ)) dW. With the gradient drift f = −∇L and a constant D
this is the seed's master equation ∂ρ/∂t = ∇·(ρ∇L) + D∇²ρ, whose stationary law is the Gibbs
density ρ* ∝ exp(−L/D).

Discretisation (cell-centred, uniform spacing h along each axis). The density holds cell
averages and dρ_i/dt = −Σ_faces ±J_face/h. The flux through the face between cells i and
j = i + e_k is

* gradient drift, constant D (ΔU = U_j − U_i, z = ΔU/D, B(z) = z/(e^z − 1))::

      J = (D/h) · [ B(z) ρ_i − B(−z) ρ_j ]

  Because B(−z) = e^z B(z), the discrete Gibbs density ρ_i ∝ e^{−U_i/D} has zero flux on
  every face exactly, so it is the discrete stationary state (detailed balance).
* general drift f and/or position-dependent D (Péclet number P = h f_k(face)/D(face))::

      J = (1/h) · [ B(−P) D_i ρ_i − B(P) D_j ρ_j ]

  (the exponentially fitted flux for the variable Dρ; for constant D and f = −ΔU/h it is the
  gradient flux above).

Both are second order in h for smooth data, stable and positivity preserving at any cell
Péclet number (the off-diagonal entries are ≥ 0 and every column sums to zero: the matrix
is the transpose of a Markov generator, so probability is conserved). An absorbing wall is
ρ = 0 at the wall, half a cell from the boundary cell's centre.

The sparse matrix ``A`` (``dρ/dt = A ρ`` with ρ flattened in C order) is assembled in one
shot from vectorised face lists (COO → CSR); no Python loop runs over cells.

References: Scharfetter & Gummel, IEEE Trans. Electron Devices 16, 64 (1969); Chang &
Cooper, J. Comput. Phys. 6, 1 (1970); Holubec, Kroy & Steffenoni, PRE 99, 032117 (2019).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from shld._validation import check_choice, check_positive, check_real
from shld.fokker_planck.boundaries import is_conservative, parse_boundary
from shld.fokker_planck.grid import Grid

#: cells whose Gibbs weight is below exp(−_GIBBS_CUTOFF) are ignored by the Péclet check
_GIBBS_CUTOFF = 25.0


class CoarseGridWarning(UserWarning):
    """The grid is too coarse for the drift (large cell Péclet number)."""


def bernoulli(z) -> np.ndarray:
    """B(z) = z / (e^z − 1), with B(0) = 1, evaluated stably (``expm1``; no overflow)."""
    z = np.asarray(z, dtype=float)
    bp, bn = _bernoulli_pair(np.abs(z))
    return np.where(z >= 0, bp, bn)


def _bernoulli_pair(x: np.ndarray):
    """(B(x), B(−x)) for x ≥ 0 from one ``expm1``: B(−x) = B(x) + x exactly, and neither term
    cancels for x ≥ 0 (B(x) ∈ (0, 1], the sum is ≥ x)."""
    em = np.expm1(np.minimum(x, 700.0))
    bp = np.divide(x, em, out=np.ones_like(x), where=x > 0)
    big = x > 700.0
    if big.any():  # B(x) = x e^{−x}/(1 − e^{−x}) → x e^{−x}, underflowing cleanly to 0
        bp[big] = x[big] * np.exp(-x[big])
    return bp, bp + x


def _sym_bernoulli(z) -> np.ndarray:
    """√(B(z)·B(−z)) = (|z|/2)/sinh(|z|/2): the symmetrised SG coefficient."""
    x = 0.5 * np.abs(np.asarray(z, dtype=float))
    with np.errstate(over="ignore", invalid="ignore"):
        out = x / np.sinh(x)
    out = np.where(x < 1e-8, 1.0, out)
    return np.where(x > 700.0, 0.0, out)


def _check_periodic_potential(grid: Grid, spec, pts, potential, U) -> None:
    """On a periodic axis U must take the same value on the two faces of the box: otherwise the face
    across the seam carries a jump U(hi) − U(lo) (a cliff, not a tilted ring), and the operator's
    equilibrium has no current where a tilted periodic potential has one. ``pts`` are the cell centres."""
    for k, (lo, _) in enumerate(spec):
        if lo != "periodic":
            continue
        a = np.take(pts, 0, axis=k).reshape(-1, grid.dim).copy()
        b = a.copy()
        a[:, k], b[:, k] = grid.bounds[k]
        ua = _eval_scalar_field("potential", potential, a, (a.shape[0],))
        ub = _eval_scalar_field("potential", potential, b, (b.shape[0],))
        jump = float(np.max(np.abs(ub - ua)))
        if not jump <= 1e-6 * (1.0 + float(np.max(np.abs(U)))):
            raise ValueError(f"`potential` is not periodic along axis {k}: U(hi) − U(lo) = {jump:.3g} across "
                             f"the box {grid.bounds[k].tolist()}, which boundary='periodic' would turn into a "
                             "cliff at the seam. For a tilted periodic landscape (a constant force on a ring) "
                             "pass the force as drift= instead of a potential")


def _face_lists(grid: Grid, spec, pts, need_face_points: bool):
    """Vectorised face lists: for every axis, the (i, j) cell pairs with j = i + e_k (periodic
    faces included), the face points (only when ``need_face_points``; else an empty array),
    and the absorbing-wall cells with their wall points. ``pts`` are the cell centres."""
    idx = np.arange(grid.size).reshape(grid.shape)
    fi, fj, fh, fax, fpts = [], [], [], [], []
    wc, wh, wax, wsign, wpts = [], [], [], [], []
    for k in range(grid.dim):
        h = grid.spacing[k]
        step = np.zeros(grid.dim)
        step[k] = 0.5 * h
        n = grid.shape[k]
        i = np.take(idx, np.arange(n - 1), axis=k).ravel()
        j = np.take(idx, np.arange(1, n), axis=k).ravel()
        p = np.take(pts, np.arange(n - 1), axis=k).reshape(-1, grid.dim) + step if need_face_points else None
        lo, hi = spec[k]
        if lo == "periodic":
            i = np.concatenate([i, np.take(idx, n - 1, axis=k).ravel()])
            j = np.concatenate([j, np.take(idx, 0, axis=k).ravel()])
            if need_face_points:
                p = np.concatenate([p, np.take(pts, n - 1, axis=k).reshape(-1, grid.dim) + step])
        fi.append(i)
        fj.append(j)
        fh.append(np.full(i.size, h))
        fax.append(np.full(i.size, k))
        if need_face_points:
            fpts.append(p)
        for side, kind, sign in ((0, lo, -1.0), (n - 1, hi, 1.0)):
            if kind != "absorbing":
                continue
            c = np.take(idx, side, axis=k).ravel()
            wc.append(c)
            wh.append(np.full(c.size, h))
            wax.append(np.full(c.size, k))
            wsign.append(np.full(c.size, sign))
            wpts.append(np.take(pts, side, axis=k).reshape(-1, grid.dim) + sign * step)
    def cat(xs, shape=(0,)):
        return np.concatenate(xs) if xs else np.zeros(shape)

    faces = (cat(fi).astype(np.int64), cat(fj).astype(np.int64), cat(fh), cat(fax).astype(np.int64),
             cat(fpts, (0, grid.dim)))
    walls = (cat(wc).astype(np.int64), cat(wh), cat(wax).astype(np.int64), cat(wsign),
             cat(wpts, (0, grid.dim)))
    return faces, walls


def _csr(n, rows, cols, vals, diag) -> sp.csr_matrix:
    """CSR matrix from distinct off-diagonal entries plus a diagonal, sorted in one lexsort
    (no COO duplicate summation: the diagonal is summed beforehand with ``bincount``)."""
    r = np.concatenate([rows, np.arange(n)])
    c = np.concatenate([cols, np.arange(n)])
    v = np.concatenate([vals, diag])
    order = np.argsort(r, kind="stable")  # radix sort: group by row (columns unsorted within a row)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
    return sp.csr_matrix((v[order], c[order], indptr), shape=(n, n))


def _eval_scalar_field(name, fn, x, expect_shape):
    try:
        v = np.asarray(fn(x), dtype=float)
    except Exception as exc:  # a user callable: say which argument failed
        raise TypeError(f"`{name}` could not be evaluated on points of shape {x.shape}: {exc}") from exc
    if v.shape != expect_shape:
        raise ValueError(f"`{name}` must map points (..., d) to (...), got shape {v.shape} "
                         f"for input {x.shape}")
    return v


class FokkerPlanckOperator:
    """The sparse generator ``A`` of dρ/dt = A ρ on a :class:`Grid` (see the module docstring).

    Build it with :func:`fokker_planck_operator`. Attributes: ``grid``, ``boundary`` (per-axis
    ``(lo, hi)`` kinds), ``D`` (float, or ``None`` when D is position dependent),
    ``potential`` (U at the cell centres, flat, or ``None`` for a non-gradient drift),
    ``matrix`` (CSR), ``is_gradient`` (True when the operator satisfies detailed balance with
    respect to the discrete Gibbs density, i.e. gradient drift and constant D, so that
    :meth:`symmetric_matrix` exists), ``conservative`` (no absorbing side), ``peclet``
    (largest cell Péclet number over the region that matters).
    """

    def __init__(self, grid, boundary, D, potential, faces, walls, face_data, wall_data, is_gradient,
                 D_field=None, scheme="sg"):
        self.scheme = scheme
        self.grid = grid
        self.boundary = boundary
        self.D = D
        self.D_field = D_field
        self.potential = potential
        self._faces = faces
        self._walls = walls
        self._face_data = face_data
        self._wall_data = wall_data
        self.is_gradient = is_gradient
        self.conservative = is_conservative(boundary)
        self._a, self._b, self._kill, self._peclet_faces = self._rates()
        self.matrix = self._assemble()
        self._sym = None

    # -- coefficients --------------------------------------------------------------
    def _rates(self):
        i, j, h, _, _ = self._faces
        wc, wh, _, _, _ = self._walls
        h2, wh2 = h * h, wh * wh
        if self.is_gradient:
            D = self.D
            z = self._face_data["dU"] / D
            pe = np.abs(z)
            if self.scheme == "sqra":  # square-root approximation: rates ∝ e^{∓z/2}
                zc = np.clip(z, -1400.0, 1400.0)
                a = (D / h2) * np.exp(-0.5 * zc)
                b = (D / h2) * np.exp(0.5 * zc)
            else:
                bp, bn = _bernoulli_pair(pe)  # B(|z|), B(−|z|)
                up = z >= 0
                a = (D / h2) * np.where(up, bp, bn)   # B(z)
                b = (D / h2) * np.where(up, bn, bp)   # B(−z)
            kill = 2.0 * D / wh2 * bernoulli(self._wall_data["dU"] / D) if wc.size else np.zeros(0)
        else:
            fd = self._face_data
            P = h * fd["f"] / fd["Df"]
            a = bernoulli(-P) * fd["Di"] / h2
            b = bernoulli(P) * fd["Dj"] / h2
            wd = self._wall_data
            Pw = 0.5 * wh * wd["fout"] / wd["Dw"]
            kill = 2.0 * bernoulli(-Pw) * wd["Di"] / wh2
            pe = np.abs(P)
        return a, b, kill, pe

    def _assemble(self) -> sp.csr_matrix:
        i, j = self._faces[0], self._faces[1]
        wc = self._walls[0]
        n = self.grid.size
        diag = -(np.bincount(i, weights=self._a, minlength=n) + np.bincount(j, weights=self._b, minlength=n))
        if wc.size:
            diag -= np.bincount(wc, weights=self._kill, minlength=n)
        return _csr(n, np.concatenate([j, i]), np.concatenate([i, j]), np.concatenate([self._a, self._b]), diag)

    # -- derived objects ------------------------------------------------------------
    @property
    def peclet(self) -> float:
        """Largest cell Péclet number |Δ U|/D (= h|f|/D) over the faces that matter: for a
        gradient drift those whose Gibbs weight exceeds e^{−25} relative to the minimum."""
        pe = self._peclet_faces
        if pe.size == 0:
            return 0.0
        if self.is_gradient:
            i, j = self._faces[0], self._faces[1]
            u = self.potential
            keep = np.minimum(u[i], u[j]) - u.min() <= _GIBBS_CUTOFF * self.D
            pe = pe[keep] if np.any(keep) else pe
        return float(pe.max())

    def symmetric_matrix(self) -> sp.csr_matrix:
        """S = G^{−1/2} A G^{1/2} with G = diag(discrete Gibbs): symmetric, same spectrum as A.

        Off-diagonals are (D/h²)·√(B(z)B(−z)) = (D/h²)(|z|/2)/sinh(|z|/2), computed without
        forming e^{−U/D} (no underflow at small D). Only for gradient drift with constant D.
        """
        if not self.is_gradient:
            raise ValueError("`op` must have a gradient drift and a constant D (detailed balance) to be "
                             "symmetrised; use the non-symmetric eigensolver instead")
        if self._sym is None:
            i, j, h, _, _ = self._faces
            if self.scheme == "sqra":
                off = self.D / (h * h)
            else:
                off = self.D / (h * h) * _sym_bernoulli(self._face_data["dU"] / self.D)
            self._sym = _csr(self.grid.size, np.concatenate([j, i]), np.concatenate([i, j]),
                             np.concatenate([off, off]), self.matrix.diagonal())
        return self._sym

    def transition_rates(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """The chain behind A: ``(N, kill)`` with N_ij ≥ 0 the rate of a jump from cell i to
        cell j (1/time; CSR, zero diagonal) and ``kill`` (n,) the absorption rate through
        absorbing walls. A = Nᵀ − diag(N·1 + kill). Kept separate (never differenced) for the
        subtraction-free solvers of :mod:`shld.fokker_planck.elimination`."""
        i, j = self._faces[0], self._faces[1]
        n = self.grid.size
        rows, cols, vals = np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([self._a, self._b])
        N = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
        N.eliminate_zeros()
        wc = self._walls[0]
        kill = np.bincount(wc, weights=self._kill, minlength=n) if wc.size else np.zeros(n)
        return N, kill

    def gibbs(self) -> np.ndarray:
        """The normalised discrete Gibbs density ∝ exp(−U_i/D) on the grid (closed form; the
        stationary state of a conservative gradient operator)."""
        if self.potential is None or self.D is None:
            raise ValueError("`op` has no potential or no constant D: the Gibbs density is not defined")
        u = self.potential
        w = np.exp(-(u - u.min()) / self.D)
        return (w / self.grid.integrate(w)).reshape(self.grid.shape)

    def with_D(self, D: float) -> FokkerPlanckOperator:
        """The same operator at another constant temperature D (faces reused; for schedules)."""
        if self.D is None:
            raise ValueError("`D` of this operator is position dependent; with_D needs a constant D")
        D = check_positive("D", D)
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.D = D
        if not self.is_gradient:
            fd = dict(self._face_data)
            fd.update(Di=np.full_like(fd["Di"], D), Dj=np.full_like(fd["Dj"], D),
                      Df=np.full_like(fd["Df"], D))
            wd = dict(self._wall_data)
            wd.update(Di=np.full_like(wd["Di"], D), Dw=np.full_like(wd["Dw"], D))
            new._face_data, new._wall_data = fd, wd
        new._a, new._b, new._kill, new._peclet_faces = new._rates()
        new.matrix = new._assemble()
        new._sym = None
        return new

    def apply(self, rho) -> np.ndarray:
        """A ρ in flux form (flat ρ): each face flux J_f = a ρ_i − b ρ_j is added to one cell and
        subtracted from the other, so Σ (Aρ) has no systematic round-off (unlike a matrix whose
        diagonal is a rounded sum) — the time steppers use it to conserve mass to ~1e-15/step."""
        i, j = self._faces[0], self._faces[1]
        wc = self._walls[0]
        n = self.grid.size
        flux = self._a * rho[i] - self._b * rho[j]
        out = np.bincount(j, weights=flux, minlength=n) - np.bincount(i, weights=flux, minlength=n)
        if wc.size:
            out -= np.bincount(wc, weights=self._kill * rho[wc], minlength=n)
        return out

    def mass(self, rho) -> float:
        return self.grid.integrate(rho)

    def __repr__(self) -> str:
        kind = "gradient" if self.is_gradient else "general"
        D = f"{self.D:g}" if self.D is not None else "D(θ)"
        return f"FokkerPlanckOperator({kind}, D={D}, {self.grid!r}, boundary={self.boundary})"


def fokker_planck_operator(grid: Grid, landscape=None, *, D, potential=None, drift=None,
                           boundary="reflecting", peclet_warn: float | None = 5.0,
                           scheme: str = "sg") -> FokkerPlanckOperator:
    """Assemble the Fokker–Planck operator on ``grid``.

    Parameters
    ----------
    grid : Grid
    landscape : Landscape, optional
        Gradient drift f = −∇L with U = L evaluated at the cell centres (and at absorbing walls).
    D : float > 0 or callable θ (..., d) → (...)
        Temperature (loss units). A callable gives a position-dependent D(θ) (Itô convention:
        J = fρ − ∇(Dρ)); the operator then no longer has the Gibbs law as stationary state.
    potential : callable θ → L(θ) or array of the grid's shape, optional
        Alternative to ``landscape``.
    drift : callable θ (..., d) → (..., d), optional
        A general (possibly non-gradient) drift f(θ), evaluated at the cell faces.
    boundary : str or per-axis spec, default "reflecting"
        See :mod:`shld.fokker_planck.boundaries`.
    peclet_warn : float or None
        Warn (:class:`CoarseGridWarning`) when the largest cell Péclet number over the region
        that matters exceeds this value; ``None`` disables the check.
    scheme : "sg" (default) or "sqra"
        Face rates for a gradient drift with constant D. "sg": Scharfetter–Gummel,
        (D/h²)·B(±z). "sqra": the square-root approximation (D/h²)·e^{∓z/2} (Lie, Fackeldey &
        Weber 2013; the discretisation fplanck uses). Both have the discrete Gibbs law as exact
        stationary state and are second order; SG's rates grow like |z| at large Péclet numbers,
        SqRA's like e^{|z|/2} (stiff, badly conditioned on coarse grids). Measured (benchmarks):
        SG is more accurate for the slowest rate λ₁, SqRA for the next few. Absorbing walls use
        the SG rate in both.
    """
    if not isinstance(grid, Grid):
        raise TypeError(f"`grid` must be a shld.fokker_planck.Grid, got {type(grid).__name__}")
    sources = [s is not None for s in (landscape, potential, drift)]
    if sum(sources) != 1:
        raise ValueError("give exactly one of `landscape`, `potential` or `drift` "
                         f"(got landscape={landscape is not None}, potential={potential is not None}, "
                         f"drift={drift is not None})")
    if landscape is not None:
        if getattr(landscape, "dim", None) != grid.dim:
            raise ValueError(f"`landscape` has dim={getattr(landscape, 'dim', None)} but the grid has "
                             f"d={grid.dim}")
        potential = landscape.value
    spec = parse_boundary(boundary, grid.dim)
    pts = grid.points()
    need_face_points = drift is not None or callable(D)
    faces, walls = _face_lists(grid, spec, pts, need_face_points)
    i, j, h, ax, fpts = faces
    wc, wh, wax, wsign, wpts = walls
    centres = pts.reshape(-1, grid.dim)

    D_const = None if callable(D) else check_positive("D", D)
    D_field = None
    if D_const is None:
        D_c = _eval_scalar_field("D", D, centres, (grid.size,))
        D_f = _eval_scalar_field("D", D, fpts, (fpts.shape[0],))
        D_w = _eval_scalar_field("D", D, wpts, (wpts.shape[0],))
        for vals, where in ((D_c, centres), (D_f, fpts), (D_w, wpts)):
            bad = ~(np.isfinite(vals) & (vals > 0))
            if np.any(bad):
                k = int(np.argmax(bad))
                raise ValueError(f"`D` must be finite and > 0 everywhere, got D(θ) = {vals[k]!r} at "
                                 f"θ = {where[k].tolist()}")
        D_field = D_c.reshape(grid.shape)

    U = None
    if potential is not None:
        if callable(potential):
            U = _eval_scalar_field("potential", potential, centres, (grid.size,))
        else:
            U = np.asarray(potential, dtype=float)
            if U.shape not in (grid.shape, (grid.size,)):
                raise ValueError(f"`potential` array must have the grid's shape {grid.shape}, got {U.shape}")
            U = U.reshape(-1)
        if not np.all(np.isfinite(U)):
            k = int(np.argmax(~np.isfinite(U)))
            raise ValueError(f"`potential` must be finite on the grid, got {U[k]!r} at "
                             f"θ = {centres[k].tolist()}")
        if callable(potential):
            _check_periodic_potential(grid, spec, pts, potential, U)
        dU = U[j] - U[i]
        # U at absorbing walls: exact when callable, else extrapolated from the two last cells
        if wc.size:
            if callable(potential):
                Uw = _eval_scalar_field("potential", potential, wpts, (wpts.shape[0],))
            else:
                stride = np.array([int(np.prod(grid.shape[k + 1:])) for k in range(grid.dim)])
                inner = wc - (wsign * stride[wax]).astype(np.int64)
                Uw = U[wc] + 0.5 * (U[wc] - U[inner])
            dUw = Uw - U[wc]
        else:
            dUw = np.zeros(0)

    scheme = check_choice("scheme", scheme, ("sg", "sqra"))
    if U is not None and D_const is not None:
        op = FokkerPlanckOperator(grid, spec, D_const, U, faces, walls, {"dU": dU}, {"dU": dUw}, True,
                                  scheme=scheme)
    else:
        if scheme != "sg":
            raise ValueError(f"`scheme`={scheme!r} needs a gradient drift (landscape or potential) and a "
                             "constant D; the general drift and D(θ) use the exponentially fitted flux")
        if U is not None:  # gradient drift with D(θ): the drift at a face from the cell values
            f_face = -dU / h
            fout = -dUw / (0.5 * wh)
        else:
            fd_pts = np.asarray(drift(fpts), dtype=float) if fpts.size else np.zeros((0, grid.dim))
            fw_pts = np.asarray(drift(wpts), dtype=float) if wpts.size else np.zeros((0, grid.dim))
            if fd_pts.shape != fpts.shape or fw_pts.shape != wpts.shape:
                raise ValueError(f"`drift` must map points (..., d) to (..., d), got shape {fd_pts.shape} "
                                 f"for input {fpts.shape}")
            for vals, name in ((fd_pts, "faces"), (fw_pts, "walls")):
                if not np.all(np.isfinite(vals)):
                    raise ValueError(f"`drift` must be finite on the grid, got a non-finite value "
                                     f"at the {name}")
            f_face = fd_pts[np.arange(i.size), ax]
            fout = wsign * fw_pts[np.arange(wc.size), wax]
        if D_const is not None:
            Di = Dj = Df = np.full(i.size, D_const)
            Dwi = Dw = np.full(wc.size, D_const)
        else:
            Dflat = D_field.reshape(-1)
            Di, Dj, Df = Dflat[i], Dflat[j], D_f
            Dwi, Dw = Dflat[wc], D_w
        op = FokkerPlanckOperator(grid, spec, D_const, U, faces, walls,
                                  {"f": f_face, "Di": Di, "Dj": Dj, "Df": Df},
                                  {"fout": fout, "Di": Dwi, "Dw": Dw}, False, D_field=D_field)
    if peclet_warn is not None:
        peclet_warn = check_real("peclet_warn", peclet_warn)
        pe = op.peclet
        if pe > peclet_warn:
            scale = pe / peclet_warn
            suggest = grid.spacing / scale
            n_suggest = [int(np.ceil(n * scale)) for n in grid.shape]
            d_txt = op.D if op.D is not None else "D(θ)"
            warnings.warn(f"{grid!r} is too coarse for the drift at D={d_txt}: "
                          f"largest cell Péclet number h·|f|/D = {pe:.3g} > {peclet_warn:g}; use spacing "
                          f"h <= {np.round(suggest, 6).tolist()} (shape >= {tuple(n_suggest)})",
                          CoarseGridWarning, stacklevel=2)
    return op
