"""Wrap user callables ``loss_fn(θ)`` / ``grad_fn(θ)`` as a :class:`Landscape`.

If the callables broadcast over a leading batch axis (checked once on a probe batch
against row-by-row calls), the ensemble engine calls them once per step for all walkers.
Otherwise they are called once per walker in a Python loop; ``vectorised`` is then False
and a one-time warning says so, because that loop dominates the run time.
"""

from __future__ import annotations

import warnings

import numpy as np

from shld._validation import check_int
from shld.landscapes.base import Landscape


class FunctionLandscape(Landscape):
    """A landscape from ``loss_fn`` (θ ↦ L) and ``grad_fn`` (θ ↦ ∇L), with optional
    ``hessian_fn``. ``vectorised=None`` probes; True/False forces the mode."""

    name = "function"

    def __init__(self, loss_fn, grad_fn, dim: int, hessian_fn=None, vectorised: bool | None = None,
                 probe_scale: float = 0.5):
        if not callable(loss_fn):
            raise TypeError(f"`loss_fn` must be callable, got {loss_fn!r}")
        if not callable(grad_fn):
            raise TypeError(f"`grad_fn` must be callable, got {grad_fn!r}")
        self.loss_fn, self.grad_fn, self.hessian_fn = loss_fn, grad_fn, hessian_fn
        self.dim = check_int("dim", dim, minimum=1)
        self.vectorised = self._probe(probe_scale) if vectorised is None else bool(vectorised)
        self._warned = False

    def _probe(self, scale: float) -> bool:
        probe = scale * np.linspace(-1.0, 1.0, 3 * self.dim).reshape(3, self.dim) + 0.1
        try:
            with np.errstate(all="ignore"):
                vb = np.asarray(self.loss_fn(probe), dtype=float)
                gb = np.asarray(self.grad_fn(probe), dtype=float)
        except Exception:
            return False
        if vb.shape != (3,) or gb.shape != (3, self.dim):
            return False
        with np.errstate(all="ignore"):
            v1 = np.array([float(self.loss_fn(p)) for p in probe])
            g1 = np.stack([np.asarray(self.grad_fn(p), dtype=float) for p in probe])
        return bool(np.allclose(vb, v1, equal_nan=True) and np.allclose(gb, g1, equal_nan=True))

    def _note_loop(self):
        if not self._warned:
            warnings.warn(
                "loss_fn/grad_fn do not broadcast over a batch axis; calling them once per "
                "walker (slow for large ensembles). Make them accept theta of shape (N, d) "
                "to vectorise.", stacklevel=3)
            self._warned = True

    def _apply(self, fn, theta, tail):
        if self.vectorised or theta.ndim == 1:
            return np.asarray(fn(theta), dtype=theta.dtype)
        flat = theta.reshape(-1, self.dim)
        if flat.shape[0] > 1:
            self._note_loop()
        out = np.stack([np.asarray(fn(row), dtype=theta.dtype) for row in flat])
        if out.shape[1:] != tail:
            return out   # wrong per-point shape: the callers below name the function and the shapes
        return out.reshape(theta.shape[:-1] + tail)

    def _value(self, theta):
        v = self._apply(self.loss_fn, theta, ())
        if v.shape != theta.shape[:-1]:
            raise ValueError(f"`loss_fn` must return a scalar per θ, got shape {v.shape} "
                             f"for θ of shape {theta.shape}")
        return v

    def _grad(self, theta):
        g = self._apply(self.grad_fn, theta, (self.dim,))
        if g.shape != theta.shape:
            raise ValueError(f"`grad_fn` must return shape {theta.shape}, got {g.shape}")
        return g

    def _hessian(self, theta):
        if self.hessian_fn is None:
            raise NotImplementedError("no `hessian_fn` was given")
        h = self._apply(self.hessian_fn, theta, (self.dim, self.dim))
        if h.shape != theta.shape + (self.dim,):
            raise ValueError(f"`hessian_fn` must return shape {theta.shape + (self.dim,)}, got {h.shape}")
        return h
