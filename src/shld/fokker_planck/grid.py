"""Uniform cell-centred grids on rectangular boxes in 1, 2 or 3 dimensions.

A grid with ``shape = (n_0, …, n_{d−1})`` on ``bounds = [[lo_0, hi_0], …]`` has cells of
width ``h_k = (hi_k − lo_k)/n_k`` and centres ``x_{k,i} = lo_k + (i + ½)·h_k``. A density
on the grid is an array of shape ``shape`` holding cell averages of ρ (probability per unit
volume), so the total mass is ``Σ ρ · Π h_k``. Cells are flattened in C order
(``np.ravel_multi_index``), which is the ordering of every sparse operator in
:mod:`shld.fokker_planck`.
"""

from __future__ import annotations

import numpy as np

from shld._validation import check_finite_array, check_int

_MAX_DIM = 3


class Grid:
    """A uniform cell-centred grid.

    Parameters
    ----------
    bounds : array (d, 2)
        ``(lo, hi)`` per axis, ``lo < hi``.
    shape : int or sequence of d ints
        Number of cells per axis (an int is used for every axis), each ≥ 3.
    """

    def __init__(self, bounds, shape):
        b = check_finite_array("bounds", bounds)
        if b.ndim == 1 and b.shape == (2,):
            b = b[None, :]
        if b.ndim != 2 or b.shape[1] != 2 or not 1 <= b.shape[0] <= _MAX_DIM:
            raise ValueError(f"`bounds` must have shape (d, 2) with 1 <= d <= {_MAX_DIM}, "
                             f"got shape {b.shape}")
        if np.any(b[:, 1] <= b[:, 0]):
            raise ValueError(f"`bounds` must have lo < hi on every axis, got {b.tolist()}")
        d = b.shape[0]
        if np.ndim(shape) == 0:
            shape = (shape,) * d
        shape = tuple(check_int("shape", n, minimum=3) for n in shape)
        if len(shape) != d:
            raise ValueError(f"`shape` must have one entry per axis (d={d}), got {shape}")
        self.bounds = b.copy()
        self.shape = shape
        self.dim = d
        self.spacing = (b[:, 1] - b[:, 0]) / np.asarray(shape, dtype=float)
        self._size = int(np.prod(shape))
        self._anchor = None     # (cell index k, its centre p) per axis: set by centred_on, so that p is exact

    # -- constructors ------------------------------------------------------------
    @classmethod
    def from_landscape(cls, landscape, shape, bounds=None) -> Grid:
        """A grid on ``bounds`` (default: ``landscape.bounds``) with ``shape`` cells."""
        bounds = landscape.bounds if bounds is None else bounds
        grid = cls(bounds, shape)
        if grid.dim != landscape.dim:
            raise ValueError(f"`bounds` has d={grid.dim} axes but the landscape has dim={landscape.dim}")
        return grid

    @classmethod
    def centred_on(cls, point, bounds, shape) -> Grid:
        """A grid with the spacing of ``Grid(bounds, shape)``, shifted by less than one cell so
        that ``point`` is a cell centre. A target set given by cell centres then starts exactly
        at ``point`` (absorbing there), instead of up to one cell away (an O(h) error)."""
        base = cls(bounds, shape)
        p = check_finite_array("point", point).reshape(-1)
        if p.shape != (base.dim,):
            raise ValueError(f"`point` must have shape ({base.dim},), got {p.shape}")
        h = base.spacing
        k = np.round((p - base.bounds[:, 0]) / h - 0.5)
        lo = p - (k + 0.5) * h
        grid = cls(np.stack([lo, lo + h * np.asarray(base.shape)], axis=1), base.shape)
        # centres are built from the anchor, p + (i − k)·h: lo + (k + ½)·h can round to a few ulp below p,
        # and a target "θ ≥ p" would then miss that cell (an O(h) error in a first passage)
        grid._anchor = (k.astype(np.int64), p.copy())
        return grid

    # -- geometry ----------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of cells."""
        return self._size

    @property
    def cell_volume(self) -> float:
        return float(np.prod(self.spacing))

    @property
    def axes(self) -> list[np.ndarray]:
        """Cell centres along each axis."""
        if self._anchor is not None:
            k, p = self._anchor
            return [p[i] + (np.arange(n) - k[i]) * h for i, (n, h) in enumerate(zip(self.shape, self.spacing))]
        return [lo + (np.arange(n) + 0.5) * h for (lo, _), n, h in zip(self.bounds, self.shape, self.spacing)]

    @property
    def edges(self) -> list[np.ndarray]:
        """Cell faces along each axis (n + 1 values)."""
        return [np.linspace(lo, hi, n + 1) for (lo, hi), n in zip(self.bounds, self.shape)]

    def points(self) -> np.ndarray:
        """Cell centres as an array ``shape + (d,)``."""
        mesh = np.meshgrid(*self.axes, indexing="ij")
        return np.stack(mesh, axis=-1)

    def flat_points(self) -> np.ndarray:
        """Cell centres ``(size, d)`` in the flattening order of the operators."""
        return self.points().reshape(-1, self.dim)

    # -- densities ---------------------------------------------------------------
    def integrate(self, values) -> float:
        """Midpoint rule ``Σ values · cell_volume`` over the whole grid."""
        return float(np.sum(values) * self.cell_volume)

    def check_density(self, rho, name: str = "rho", *, normalise: bool = False) -> np.ndarray:
        """Validate a density on this grid: shape ``shape`` (or flat ``(size,)``), finite,
        non-negative, positive mass. Returns a float64 array of shape ``shape``
        (scaled to unit mass when ``normalise``)."""
        arr = check_finite_array(name, rho)
        if arr.shape == (self.size,):
            arr = arr.reshape(self.shape)
        if arr.shape != self.shape:
            raise ValueError(f"`{name}` must have the grid's shape {self.shape} (or ({self.size},)), "
                             f"got shape {arr.shape}")
        if np.any(arr < 0):
            bad = np.unravel_index(int(np.argmin(arr)), arr.shape)
            raise ValueError(f"`{name}` must be non-negative, found {arr[bad]:.3g} at cell "
                             f"{tuple(map(int, bad))}")
        mass = self.integrate(arr)
        if not mass > 0:
            raise ValueError(f"`{name}` must have positive mass, got mass {mass!r}")
        return arr / mass if normalise else arr.astype(np.float64, copy=True)

    def gaussian(self, mean, cov) -> np.ndarray:
        """A normalised Gaussian density at the cell centres (renormalised on the grid); ``cov`` symmetric
        positive definite (a scalar in d > 1 means cov·I)."""
        mean = check_finite_array("mean", mean).reshape(-1)
        cov = np.atleast_2d(check_finite_array("cov", cov))
        if cov.shape == (1, 1) and self.dim > 1:
            cov = cov[0, 0] * np.eye(self.dim)
        if mean.shape != (self.dim,) or cov.shape != (self.dim, self.dim):
            raise ValueError(f"`mean`/`cov` must have shapes ({self.dim},)/({self.dim}, {self.dim}), "
                             f"got {mean.shape}/{cov.shape}")
        if not np.allclose(cov, cov.T, rtol=1e-12, atol=0.0):
            raise ValueError(f"`cov` must be symmetric, got {cov.tolist()}")
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError(f"`cov` must be positive definite (eigenvalues {np.linalg.eigvalsh(cov).tolist()})"
                             ) from None
        diff = self.points() - mean
        z = np.linalg.solve(chol, diff.reshape(-1, self.dim).T)           # L⁻¹(x − m): q = ‖z‖²
        q = np.sum(z * z, axis=0).reshape(diff.shape[:-1])
        rho = np.exp(-0.5 * q)
        return rho / self.integrate(rho)

    def __repr__(self) -> str:
        box = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in self.bounds)
        return f"Grid(shape={self.shape}, bounds={box}, h={np.round(self.spacing, 6).tolist()})"
