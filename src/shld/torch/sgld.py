"""Stochastic-gradient Langevin dynamics (Welling & Teh 2011) and its preconditioned form (pSGLD,
Li et al. 2016) as a ``torch.optim.Optimizer``.

Update rule (per parameter, per step, ``ξ ~ N(0, I)`` drawn from ``generator``)::

    g  ← ∇L(θ) + λ θ                                  (λ = weight_decay)
    if precondition:                                  (pSGLD, RMSprop-style)
        v ← α v + (1 − α) g²;   P ← 1 / (√v + ε)
    else:
        P ← 1
    θ  ← θ − η P g + √(2 η T P) ξ

With time ``t = step·η`` this is the Euler–Maruyama scheme for ``dθ = −P∇L dt + √(2TP) dW``,
whose stationary law (for constant P) is ``∝ exp(−(L(θ) + λ‖θ‖²/2) / T)``: **T is a temperature in
the units of the loss** (SHLD's D). To sample a Bayesian posterior ``p(θ|data) ∝ exp(−U)`` use
``L = U`` (the *sum* of per-sample negative log-likelihoods plus the negative log-prior, or
``N ×`` the mean mini-batch loss) and ``T = 1``. pSGLD omits the Γ(θ) drift correction of
Li et al. (as they do in practice), so with a varying ``v`` it is only approximately invariant.
``T = 0`` is plain (preconditioned) gradient descent exactly. The discretisation bias for a
quadratic of curvature ``a`` inflates the variance by ``1/(1 − ηa/2)``.

Hyperparameters live in ``param_groups`` (``lr``, ``temperature``, ``weight_decay``,
``precondition``, ``alpha``, ``eps``), so any ``torch.optim.lr_scheduler`` works. Randomness comes
only from ``generator`` (a ``torch.Generator``; its state is part of ``state_dict``).
"""

from __future__ import annotations

import torch

from shld._validation import check_positive


def _noise(p, gen):
    return torch.randn(p.shape, generator=gen, dtype=p.dtype, device=gen.device).to(p.device)


class SGLD(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, temperature: float = 1.0, weight_decay: float = 0.0,
                 precondition: bool = False, alpha: float = 0.99, eps: float = 1e-5,
                 generator: torch.Generator | None = None, seed: int | None = None):
        check_positive("lr", lr)
        check_positive("temperature", temperature, allow_zero=True)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        check_positive("eps", eps)
        if not 0.0 <= float(alpha) < 1.0:
            raise ValueError(f"`alpha` must be in [0, 1), got {alpha!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"`generator` must be a torch.Generator, got {type(generator).__name__}")
        defaults = dict(lr=lr, temperature=temperature, weight_decay=weight_decay,
                        precondition=bool(precondition), alpha=alpha, eps=eps)
        super().__init__(params, defaults)
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        self.generator = generator

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        gen = self.generator
        for group in self.param_groups:
            lr, T, wd = group["lr"], group["temperature"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if wd != 0:
                    g = g.add(p, alpha=wd)
                if group["precondition"]:
                    st = self.state[p]
                    if "v" not in st:
                        st["v"] = torch.zeros_like(p)
                    v = st["v"]
                    v.mul_(group["alpha"]).addcmul_(g, g, value=1 - group["alpha"])
                    P = 1.0 / (v.sqrt() + group["eps"])
                    p.addcmul_(P, g, value=-lr)
                    if T > 0:
                        xi = _noise(p, gen)
                        p.add_(xi * (2.0 * lr * T * P).sqrt())
                else:
                    p.add_(g, alpha=-lr)
                    if T > 0:
                        xi = _noise(p, gen)
                        p.add_(xi, alpha=(2.0 * lr * T) ** 0.5)
        return loss

    def state_dict(self):
        sd = super().state_dict()
        sd["generator_state"] = self.generator.get_state()
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        gs = state_dict.pop("generator_state", None)
        super().load_state_dict(state_dict)
        if gs is not None:
            self.generator.set_state(gs)
