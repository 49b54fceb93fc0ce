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

import contextlib
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


def _math_attention():
    """``scaled_dot_product_attention`` through its composite "math" kernel: the fused CPU/CUDA
    kernels (flash, memory-efficient) have neither a double backward nor forward-mode AD, so a
    Hessian through them fails; the math kernel is plain differentiable ops (same values)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - older torch
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


class HVP:
    """Hessian-vector products of ``loss_fn(model, batch)`` at the current parameters.

    ``method="double_backward"`` builds the gradient graph once (``create_graph=True``) and
    differentiates ``gᵀv`` for each ``v``; ``method="func"`` uses ``torch.func.jvp`` of
    ``torch.func.grad`` (forward-over-reverse) and rebuilds nothing between products; each of its
    forward passes restarts the RNG from its state at construction, so that dropout in train mode
    draws one mask for all products (as the single forward of ``double_backward`` does).
    Calling the object with a flat vector of size ``d`` returns ``H v`` (flat). ``self.grad`` is the
    flat batch gradient ``g_B``. ``.grad`` of the parameters is never touched. Attention through
    ``F.scaled_dot_product_attention`` runs on its math kernel (the fused kernels have no second
    derivative).
    """

    def __init__(self, model, loss_fn, batch, params=None, method: str = "double_backward"):
        with _math_attention():
            self._init(model, loss_fn, batch, params, method)

    def _init(self, model, loss_fn, batch, params, method):
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

            # every evaluation of f (one per product) restarts the RNG where it stood now: dropout draws
            # the same mask each time, so the products are those of one matrix (the double-backward
            # path's single forward has one mask too)
            devices = sorted({p.device.index or 0 for p in self.params if p.device.type == "cuda"})
            cpu_state = torch.get_rng_state()
            cuda_states = [torch.cuda.get_rng_state(d) for d in devices]

            def f(ps):
                with torch.random.fork_rng(devices=devices):
                    torch.set_rng_state(cpu_state)
                    for d, st in zip(devices, cuda_states):
                        torch.cuda.set_rng_state(st, d)
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
        with _math_attention():
            return self._product(v)

    def _product(self, v: torch.Tensor) -> torch.Tensor:
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


def lanczos(matvec, v0: torch.Tensor, max_iter: int = 8, tol: float = 1e-4, *, accuracy: float | None = None,
            max_products: int | None = None, cluster_rtol: float = 0.1, max_block: int = 4):
    """Largest eigenvalue of a symmetric operator by Lanczos with full re-orthogonalisation.

    ``v0`` is one start vector ``(n,)`` or a block ``(m, n)`` of them (a warm start: the previous
    call's ``info["warm_start"]``). The search space is the block, then grown one vector per
    product by the top Ritz pair's residual ``A x − θ x`` (orthogonalised twice against the basis):
    from one start vector this is exactly Lanczos (the residual spans the next Krylov direction), and
    the Rayleigh–Ritz values on the basis are the Lanczos Ritz values. Ritz values never exceed λ_max.

    Stopping, after ``k`` products (``k ≥ m``): ``r = ‖A x − θ x‖`` (exact, no extra product) is a
    rigorous bound on ``|θ − λ|`` for *some* eigenvalue λ; with ``gap`` the distance from ``θ`` to the
    next Ritz value, ``err = min(r, r²/gap)`` estimates ``λ_max − θ`` (Kato–Temple with the Ritz gap).
    Stop when ``err ≤ tol·|θ|``; or at ``k = max_iter`` when ``accuracy`` is None or ``err ≤
    accuracy·|θ|``; otherwise — a small gap (nearly degenerate top eigenvalues) or a slow start —
    go on up to ``max_products`` (default ``4·max_iter``) products until ``err ≤ accuracy·|θ|``.

    Nearly degenerate top eigenvalues are a problem for a *single* warm start: when the operator
    changes, the eigenvectors of a cluster rotate and the previous top vector can be close to the new
    *second* one, with too little weight on the new top one for any residual test to notice. So
    ``info["warm_start"]`` holds the Ritz vectors of the whole top cluster — Ritz values within
    ``cluster_rtol·|θ|`` of θ, at most ``max_block`` — one vector when the top is well separated (no
    extra product next time), a block otherwise (one product per extra vector next time).

    Memory: ``2k`` vectors of size ``n`` after ``k`` products (the basis and its products; the
    products give the exact residual and the Rayleigh–Ritz matrix of a block start).

    A non-finite product stops at once: ``theta`` is NaN and ``warm_start`` is ``v0``.

    Returns ``(theta, ritz_vector, info)``; ``info``: ``n_products``, ``residual`` (r),
    ``error_estimate`` (err), ``gap`` (θ₁ − θ₂ of the Ritz values; NaN for k = 1), ``ritz_values``
    (the top ``max_block`` Ritz values, descending), ``warm_start`` (``(m', n)``), ``converged``
    (``err ≤ tol·|θ|``, or ``≤ accuracy·|θ|`` when given).
    """
    max_iter = check_int("max_iter", max_iter, minimum=1)
    tol = check_positive("tol", tol)
    if accuracy is not None:
        accuracy = check_positive("accuracy", accuracy)
    cap = max_iter if accuracy is None else max(
        max_iter, 4 * max_iter if max_products is None else check_int("max_products", max_products, minimum=1))
    if v0.dim() not in (1, 2) or v0.shape[-1] == 0:
        raise ValueError(f"`v0` must be a vector (n,) or a block (m, n), got shape {tuple(v0.shape)}")
    n = v0.shape[-1]
    block = v0.reshape(-1, n)
    # orthonormal start block (a column dropped when it is (nearly) in the span of the others)
    qb, rb = torch.linalg.qr(block.T)
    keep = rb.diagonal().abs() > 1e-8 * rb.diagonal().abs().max()
    if not bool(keep.any()):
        raise ValueError("`v0` must not be zero")
    pending = list(qb.T[keep])
    cap = min(max(cap, len(pending)), n)
    # basis Q and products W = A Q, grown on demand (a warm call that stops at max_iter holds
    # 2·max_iter vectors, not 2·cap)
    size = min(cap, max(max_iter, len(pending) + 1))
    Q = torch.empty((size, n), dtype=v0.dtype, device=v0.device)
    W = torch.empty_like(Q)
    T = torch.zeros((cap, cap), dtype=torch.float64)
    theta, resid, err, gap = math.nan, math.inf, math.inf, math.nan
    evals = evecs = None
    k = 0
    q = pending.pop(0)
    while True:
        if k == Q.shape[0]:
            size = min(cap, 2 * k)
            Q = torch.cat([Q, Q.new_empty((size - k, n))])
            W = torch.cat([W, W.new_empty((size - k, n))])
        Q[k] = q
        W[k] = matvec(q)
        if not bool(torch.isfinite(W[k]).all()):  # a NaN/inf product: no eigenvalue to report
            info = {"n_products": k + 1, "residual": math.nan, "error_estimate": math.nan, "gap": math.nan,
                    "ritz_values": [], "warm_start": v0.reshape(-1, n), "converged": False}
            return math.nan, q, info
        k += 1
        c = ((Q[:k] @ W[k - 1]).double() + (W[:k] @ Q[k - 1]).double()) / 2  # symmetrised
        T[:k, k - 1] = c
        T[k - 1, :k] = c
        if pending:
            q = pending.pop(0)
            continue
        evals, evecs = torch.linalg.eigh(T[:k, :k])
        theta = evals[-1].item()
        y = evecs[:, -1].to(Q.dtype)
        x = y @ Q[:k]
        rvec = y @ W[:k] - theta * x
        resid = rvec.norm().item()
        gap = (evals[-1] - evals[-2]).item() if k > 1 else math.nan
        err = min(resid, resid * resid / gap) if gap > 0 else resid
        scale = max(abs(theta), 1e-30)
        if resid <= 1e-12 * max(abs(theta), 1.0) or err <= tol * scale or k >= cap:
            break
        if k >= max_iter and (accuracy is None or err <= accuracy * scale):
            break
        w = rvec
        for _ in range(2):  # full re-orthogonalisation (twice is enough)
            w = w - Q[:k].T @ (Q[:k] @ w)
        b = w.norm().item()
        if b <= 1e-10 * resid:  # the residual lies in the basis: nothing new to add
            break
        q = w / b
    ritz = x / x.norm()
    order = torch.arange(k - 1, max(k - 1 - max_block, -1), -1)
    top = evals[order]
    m = int((top >= theta - cluster_rtol * abs(theta)).sum())
    warm = (evecs[:, order[:m]].T.to(Q.dtype) @ Q[:k])
    warm = warm / warm.norm(dim=1, keepdim=True)
    conv_tol = tol if accuracy is None else max(tol, accuracy)
    info = {"n_products": k, "residual": resid, "error_estimate": err, "gap": gap,
            "ritz_values": [float(t) for t in top], "warm_start": warm,
            "converged": bool(err <= conv_tol * max(abs(theta), 1e-30))}
    return theta, ritz, info


def lambda_max(model, loss_fn, batch, *, v0=None, max_iter: int = 8, tol: float = 1e-4,
               generator: torch.Generator | None = None, method: str = "double_backward",
               accuracy: float | None = None, max_products: int | None = None):
    """λ_max of the Hessian of ``loss_fn(model, batch)``; returns ``(lam, ritz_vector, info)``.

    ``v0`` (a vector or a block, e.g. the previous ``info["warm_start"]``), ``accuracy`` and
    ``max_products`` as in :func:`lanczos`. A cold start draws ``v0`` from ``generator``; the global
    RNG is left as it was (the forward runs under ``torch.random.fork_rng``). Model mode and
    ``.grad`` are not touched.
    """
    with torch.random.fork_rng(devices=[]):  # dropout in loss_fn must not move the global RNG
        hvp = HVP(model, loss_fn, batch, method=method)
        if v0 is None:
            v0 = torch.randn(hvp.dim, generator=generator, dtype=hvp.grad.dtype).to(hvp.grad.device)
        lam, vec, info = lanczos(hvp, v0, max_iter=max_iter, tol=tol, accuracy=accuracy,
                                 max_products=max_products)
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
