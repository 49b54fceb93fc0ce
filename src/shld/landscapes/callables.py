"""Wrap user callables ``loss_fn(θ)`` / ``grad_fn(θ)`` as a :class:`Landscape`.

If the callables broadcast over a leading batch axis (checked once on a probe batch
against row-by-row calls), the ensemble engine calls them once per step for all walkers.
Otherwise they are called once per walker in a Python loop; ``vectorised`` is then False
and a one-time warning says so, because that loop dominates the run time.

Torch functions: ``FunctionLandscape(loss_fn, grad_fn, dim, backend="torch")`` takes callables on torch
tensors (θ of shape (N, d) → (N,) and (N, d)); ``grad_fn=None`` then means autograd of ``loss_fn``.
Such a landscape runs on the engine's torch backend (CPU or GPU) without leaving the device, and its
numpy methods (``value``/``grad``, used by plots and theory) go through ``torch.from_numpy``.
"""

from __future__ import annotations

import warnings

import numpy as np

from shld._validation import check_choice, check_int
from shld.landscapes.base import ArrayKernels, Landscape


class FunctionLandscape(Landscape):
    """A landscape from ``loss_fn`` (θ ↦ L) and ``grad_fn`` (θ ↦ ∇L), with optional
    ``hessian_fn``. ``vectorised=None`` probes; True/False forces the mode. ``backend`` says what the
    callables take: ``"numpy"`` arrays (default) or ``"torch"`` tensors (batched; ``grad_fn=None``
    means autograd)."""

    name = "function"

    def __init__(self, loss_fn, grad_fn, dim: int, hessian_fn=None, vectorised: bool | None = None,
                 probe_scale: float = 0.5, backend: str = "numpy"):
        self.backend = check_choice("backend", backend, ["numpy", "torch"])
        if not callable(loss_fn):
            raise TypeError(f"`loss_fn` must be callable, got {loss_fn!r}")
        if not callable(grad_fn) and not (grad_fn is None and backend == "torch"):
            raise TypeError(f"`grad_fn` must be callable (or None with backend='torch': autograd), "
                            f"got {grad_fn!r}")
        self.loss_fn, self.grad_fn, self.hessian_fn = loss_fn, grad_fn, hessian_fn
        self.dim = check_int("dim", dim, minimum=1)
        if backend == "torch":
            import torch

            self._torch = torch
            if vectorised is False:
                raise ValueError("`vectorised`=False is not supported with backend='torch': torch "
                                 "callables must take a batch θ of shape (N, d)")
            self.vectorised = True
        else:
            self.vectorised = self._probe(probe_scale) if vectorised is None else bool(vectorised)
        self._warned = False

    # -- torch callables -----------------------------------------------------------
    def backends(self):
        return ("numpy", "torch") if self.backend == "torch" else ("numpy",)

    def _torch_grad(self, theta):
        if self.grad_fn is not None:
            return self.grad_fn(theta)
        torch = self._torch
        with torch.enable_grad():
            x = theta.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.loss_fn(x).sum(), x)
        return g

    def kernels(self, backend):
        if backend.name != "torch" or self.backend != "torch":
            return super().kernels(backend)
        torch = self._torch
        shape_ok = set()

        def grad_into(theta, out):
            g = self._torch_grad(theta)
            if theta.shape not in shape_ok:
                if tuple(g.shape) != tuple(theta.shape):
                    raise ValueError(f"`grad_fn` must return shape {tuple(theta.shape)}, got {tuple(g.shape)}")
                shape_ok.add(theta.shape)
            return out.copy_(g)

        def value(theta):
            with torch.no_grad():
                v = self.loss_fn(theta)
            if tuple(v.shape) != tuple(theta.shape[:-1]):
                raise ValueError(f"`loss_fn` must return a scalar per θ, got shape {tuple(v.shape)} "
                                 f"for θ of shape {tuple(theta.shape)}")
            return v

        return ArrayKernels(grad_into, value)

    def _via_torch(self, fn, theta):
        torch = self._torch
        t = torch.from_numpy(np.ascontiguousarray(theta))
        out = fn(t)
        return out.detach().cpu().numpy().astype(theta.dtype, copy=False)

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
        if self.backend == "torch":
            return self._via_torch(self.loss_fn, theta)
        v = self._apply(self.loss_fn, theta, ())
        if v.shape != theta.shape[:-1]:
            raise ValueError(f"`loss_fn` must return a scalar per θ, got shape {v.shape} "
                             f"for θ of shape {theta.shape}")
        return v

    def _grad(self, theta):
        if self.backend == "torch":
            return self._via_torch(self._torch_grad, theta)
        g = self._apply(self.grad_fn, theta, (self.dim,))
        if g.shape != theta.shape:
            raise ValueError(f"`grad_fn` must return shape {theta.shape}, got {g.shape}")
        return g

    def _hessian(self, theta):
        if self.hessian_fn is None:
            raise NotImplementedError("no `hessian_fn` was given")
        if self.backend == "torch":
            return self._via_torch(self.hessian_fn, theta)
        h = self._apply(self.hessian_fn, theta, (self.dim, self.dim))
        if h.shape != theta.shape + (self.dim,):
            raise ValueError(f"`hessian_fn` must return shape {theta.shape + (self.dim,)}, got {h.shape}")
        return h
