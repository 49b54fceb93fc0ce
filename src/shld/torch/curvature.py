"""Curvature: Hessian-vector products and the top Hessian eigenvalue by warm-started Lanczos.

Conventions: ``H = ∇²L_B`` is the Hessian of the loss *as returned by* ``loss_fn`` on the given
batch (mean loss unless stated), with respect to the trainable parameters flattened in
``model.parameters()`` order. ``λ_max`` is the largest algebraic eigenvalue of ``H``.

Derived quantities (see :func:`curvature_quantities`):

* batch sharpness ``gᵀHg / ‖g‖²`` with ``g = g_B`` (the batch gradient; a plug-in estimate —
  ``E[g_Bᵀ H g_B] = GᵀHG + tr(HΣ)/B``);
* edge-of-stability ratio ``η λ_max / 2`` (gradient descent on a quadratic is stable for < 1);
* McCandlish et al. (2018) optimal step ``ε_opt = ε_max / (1 + B_simple/B)``,
  ``ε_max = ‖G‖²/(GᵀHG)`` (estimated with the batch gradient), capped by ``2/λ_max``;
* the seed's ``α_opt = 2 D / λ_max`` with ``D = D_seed`` (labelled ``alpha_opt_seed``; the seed's
  formula, reported beside the others, not endorsed).
"""

from __future__ import annotations

import math

import torch

from shld._validation import check_int, check_positive

from .backends import call_loss


def _flat(ts, params):
    return torch.cat([(t if t is not None else torch.zeros_like(p)).reshape(-1) for t, p in zip(ts, params)])


def _unflat(v, params):
    out, i = [], 0
    for p in params:
        n = p.numel()
        out.append(v[i:i + n].view_as(p))
        i += n
    return out


class HVP:
    """Hessian-vector products of ``loss_fn(model, batch)`` at the current parameters.

    ``method="double_backward"`` builds the gradient graph once (``create_graph=True``) and
    differentiates ``gᵀv`` for each ``v``; ``method="func"`` uses ``torch.func.jvp`` of
    ``torch.func.grad`` (forward-over-reverse) and rebuilds nothing between products.
    Calling the object with a flat vector of size ``d`` returns ``H v`` (flat). ``self.grad`` is the
    flat batch gradient ``g_B``. ``.grad`` of the parameters is never touched.
    """

    def __init__(self, model, loss_fn, batch, params=None, method: str = "double_backward"):
        if method not in ("double_backward", "func"):
            raise ValueError(f"`method` must be one of ['double_backward', 'func'], got {method!r}")
        self.params = [p for p in model.parameters() if p.requires_grad] if params is None else list(params)
        if not self.params:
            raise ValueError("`model` has no parameters with requires_grad=True")
        self.method = method
        self.n_products = 0
        if method == "double_backward":
            loss = call_loss(loss_fn, model, batch)
            grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
            self._grads = grads
            self._live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
            self.grad = _flat([g.detach() if g is not None else None for g in grads], self.params)
            self.loss = loss.detach()
        else:
            from torch.func import functional_call, grad, jvp

            names = [n for n, p in model.named_parameters() if p.requires_grad]
            if len(names) != len(self.params):
                raise ValueError("`method='func'` needs params=None (all trainable parameters)")
            buffers = dict(model.named_buffers())

            class _Call:
                def __init__(self, ps):
                    self.ps = ps

                def __call__(self, *a, **kw):
                    return functional_call(model, (dict(zip(names, self.ps)), buffers), a, kw)

                def __getattr__(self, item):
                    return getattr(model, item)

            def f(ps):
                loss = loss_fn(_Call(ps), batch)
                return loss["loss"] if isinstance(loss, dict) else loss

            self._f, self._gradf, self._jvp = f, grad(f), jvp
            p0 = tuple(p.detach() for p in self.params)
            self._p0 = p0
            self.grad = _flat(self._gradf(p0), self.params).detach()
            self.loss = f(p0).detach()

    @property
    def dim(self) -> int:
        return sum(p.numel() for p in self.params)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.n_products += 1
        vs = _unflat(v, self.params)
        if self.method == "double_backward":
            if not self._live:
                return torch.zeros_like(v)
            outs = [self._grads[i] for i in self._live]
            hv = torch.autograd.grad(outs, self.params, [vs[i] for i in self._live], retain_graph=True,
                                     allow_unused=True)
            return _flat(hv, self.params).detach()
        _, hv = self._jvp(self._gradf, (self._p0,), (tuple(vs),))
        return _flat(hv, self.params).detach()


def lanczos(matvec, v0: torch.Tensor, max_iter: int = 8, tol: float = 1e-4):
    """Largest eigenvalue of a symmetric operator by Lanczos with full re-orthogonalisation.

    Starts from ``v0`` (warm start: pass the previous call's Ritz vector). Stops after
    ``max_iter`` products, or when the error estimate ``r²/gap`` (``r = β_k |s_k|`` the residual
    norm of the top Ritz pair, ``gap`` the distance to the next Ritz value) is below
    ``tol · |θ|``; ``r`` itself is a rigorous bound on ``|θ − λ|`` for some eigenvalue λ.

    Returns ``(theta, ritz_vector, info)`` with ``info = {"n_products", "residual", "error_estimate"}``.
    """
    max_iter = check_int("max_iter", max_iter, minimum=1)
    tol = check_positive("tol", tol)
    n = v0.numel()
    q = v0 / v0.norm()
    Q = torch.empty((min(max_iter, n), n), dtype=v0.dtype, device=v0.device)
    alphas, betas = [], []
    theta, s, resid, err = math.nan, None, math.inf, math.inf
    k = 0
    for j in range(min(max_iter, n)):
        Q[j] = q
        w = matvec(q)
        k = j + 1
        a = torch.dot(q, w)
        alphas.append(a.item())
        # full re-orthogonalisation (twice is enough)
        for _ in range(2):
            w = w - Q[:k].T @ (Q[:k] @ w)
        b = w.norm().item()
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if k > 1:
            off = torch.tensor(betas, dtype=torch.float64)
            T += torch.diag(off, 1) + torch.diag(off, -1)
        evals, evecs = torch.linalg.eigh(T)
        theta = evals[-1].item()
        s = evecs[:, -1]
        resid = abs(b * s[-1].item())
        gap = (evals[-1] - evals[-2]).item() if k > 1 else 0.0
        err = min(resid, resid * resid / gap) if gap > 0 else resid
        if b <= 1e-12 * max(abs(theta), 1.0) or err <= tol * abs(theta):
            break
        betas.append(b)
        q = w / b
    ritz = (Q[:k].T @ s.to(Q.dtype)).contiguous()
    return theta, ritz / ritz.norm(), {"n_products": k, "residual": resid, "error_estimate": err}


def lambda_max(model, loss_fn, batch, *, v0=None, max_iter: int = 8, tol: float = 1e-4,
               generator: torch.Generator | None = None, method: str = "double_backward"):
    """λ_max of the Hessian of ``loss_fn(model, batch)``; returns ``(lam, ritz_vector, info)``.

    A cold start draws ``v0`` from ``generator``; the global RNG is left as it was (the forward runs
    under ``torch.random.fork_rng``). Model mode and ``.grad`` are not touched.
    """
    with torch.random.fork_rng(devices=[]):  # dropout in loss_fn must not move the global RNG
        hvp = HVP(model, loss_fn, batch, method=method)
        if v0 is None:
            v0 = torch.randn(hvp.dim, generator=generator, dtype=hvp.grad.dtype).to(hvp.grad.device)
        lam, vec, info = lanczos(hvp, v0, max_iter=max_iter, tol=tol)
    return lam, vec, info


def curvature_quantities(lam_max: float, gHg: float, grad_sq_norm: float, lr: float | None,
                         B_simple: float, batch_size: int, D_seed: float) -> dict:
    """The derived step sizes and ratios (formulas in the module docstring); NaN where undefined."""
    nan = math.nan
    out = {"lambda_max": lam_max, "batch_sharpness": nan, "gHg": gHg, "eos_ratio": nan,
           "stability_limit": nan, "eps_max": nan, "eps_opt": nan, "eps_opt_capped": nan,
           "alpha_opt_seed": nan}
    if math.isfinite(gHg) and grad_sq_norm > 0:
        out["batch_sharpness"] = gHg / grad_sq_norm
        if gHg > 0:
            out["eps_max"] = grad_sq_norm / gHg
            if math.isfinite(B_simple):
                out["eps_opt"] = out["eps_max"] / (1.0 + B_simple / batch_size)
    if math.isfinite(lam_max) and lam_max > 0:
        try:
            from shld.theory import alpha_opt_seed, stability_limit  # type: ignore[attr-defined]
            out["stability_limit"] = float(stability_limit(lam_max))
            out["alpha_opt_seed"] = float(alpha_opt_seed(D_seed, lam_max)) if D_seed > 0 else nan
        except (ImportError, ValueError, TypeError):
            out["stability_limit"] = 2.0 / lam_max  # gradient descent on a quadratic: stable for η < 2/λ
            out["alpha_opt_seed"] = 2.0 * D_seed / lam_max  # the seed's α_opt ≈ 2D/λ_max
        if lr is not None:
            out["eos_ratio"] = lr * lam_max / 2.0
        if math.isfinite(out["eps_opt"]):
            out["eps_opt_capped"] = min(out["eps_opt"], out["stability_limit"])
    return out
