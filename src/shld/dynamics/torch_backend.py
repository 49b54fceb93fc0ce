"""Optional PyTorch backend of the overdamped engine (float32 by default, CPU or GPU).

Same dynamics and time convention as :func:`shld.dynamics.simulate` (Euler–Maruyama,
θ ← θ − ∇L·dt + √(2D·dt)·ξ, t = step·dt, stationary law ∝ exp(−L/D)), for landscapes that provide
torch kernels (:class:`~shld.landscapes.DoubleWell`, :class:`~shld.landscapes.Quadratic` and its
random variant). The update is two fused in-place passes (``add_`` with ``alpha``) after the gradient,
and the normals come from ``torch.randn`` with an explicit ``torch.Generator`` seeded from ``seed``.
Its random stream differs from the numpy backend's, so results agree in distribution, not in bits;
the same seed gives the same bits on the same machine and thread count.

Kept deliberately small: constant or scheduled D, records of E[L] and the ensemble C every
``record_every`` steps, first passage into ``target`` (a callable on torch tensors), per-walker
non-finite status. Use the numpy engine for BAOAB, preconditioning, the adaptive controller and resume.
"""

from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass, field

import numpy as np

from shld._validation import check_choice, check_finite_array, check_int, check_positive
from shld.dynamics.schedules import as_schedule
from shld.landscapes import DoubleWell, Quadratic


@dataclass
class TorchSimulationResult:
    times: np.ndarray
    records: dict[str, np.ndarray]
    final_theta: np.ndarray
    first_passage_time: np.ndarray
    hit: np.ndarray
    status: np.ndarray
    wall_time: float
    messages: list[str] = field(default_factory=list)


def _kernels(L, torch, dtype, device):
    """(grad_into(theta, out), value(theta)) as torch functions for the supported landscapes."""
    if isinstance(L, DoubleWell):
        c = 4.0 * L.barrier / L.a ** 4
        a2, tilt, k, dim = L.a * L.a, L.tilt, L.k_perp, L.dim

        def grad_into(theta, out):
            x, o = theta[:, 0], out[:, 0]
            torch.mul(x, x, out=o)
            o.sub_(a2).mul_(x).mul_(c)
            if tilt:
                o.add_(tilt)
            if dim > 1:
                torch.mul(theta[:, 1:], k, out=out[:, 1:])
            return out

        def value(theta):
            x = theta[:, 0]
            v = L.barrier * ((x / L.a) ** 2 - 1.0) ** 2 + tilt * x
            return v + 0.5 * k * (theta[:, 1:] ** 2).sum(1) if dim > 1 else v

        return grad_into, value
    if isinstance(L, Quadratic):
        A = torch.as_tensor(L.matrix, dtype=dtype, device=device)
        center = torch.as_tensor(L.center, dtype=dtype, device=device)
        diag = None if L._diag is None else torch.as_tensor(L._diag, dtype=dtype, device=device)

        def grad_into(theta, out):
            if diag is not None:
                return torch.mul(theta - center, diag, out=out)
            return torch.matmul(theta - center, A, out=out)

        def value(theta):
            x = theta - center
            return 0.5 * (x * grad_into(theta, torch.empty_like(theta))).sum(1) + L.offset

        return grad_into, value
    raise NotImplementedError(f"the torch backend supports DoubleWell and Quadratic landscapes, got "
                              f"{type(L).__name__}; use shld.dynamics.simulate (numpy) for it")


def simulate_torch(landscape, theta0, D=0.1, dt: float = 1e-3, n_steps: int = 1000, *,
                   n_walkers: int | None = None, seed: int = 0, dtype: str = "float32", device: str = "cpu",
                   record_every: int | None = None, target=None, check_every: int = 100,
                   progress: bool = False) -> TorchSimulationResult:
    """Euler–Maruyama for an ensemble on torch tensors; see the module docstring."""
    import torch

    check_choice("dtype", dtype, ["float32", "float64"])
    tdtype = getattr(torch, dtype)
    dt = check_positive("dt", dt)
    n_steps = check_int("n_steps", n_steps, minimum=0)
    check_every = check_int("check_every", check_every, minimum=1)
    schedule = as_schedule(D)
    d = landscape.dim
    th = check_finite_array("theta0", theta0)
    if th.ndim == 1:
        if th.shape[0] != d:
            raise ValueError(f"`theta0` must have shape (d,) or (N, d) with d={d}, got {th.shape}")
        th = np.tile(th, (check_int("n_walkers", n_walkers or 1, minimum=1), 1))
    elif th.ndim != 2 or th.shape[1] != d:
        raise ValueError(f"`theta0` must have shape (d,) or (N, d) with d={d}, got {th.shape}")
    grad_into, value = _kernels(landscape, torch, tdtype, device)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(np.random.SeedSequence(seed).generate_state(1, dtype=np.uint64)[0] >> 1))
    theta = torch.tensor(th, dtype=tdtype, device=device)
    n = theta.shape[0]
    noise = torch.empty_like(theta)
    grad = torch.empty_like(theta)
    k = record_every or max(1, n_steps // 100)
    hit = torch.zeros(n, dtype=torch.bool, device=device)
    fpt = torch.full((n,), math.inf, dtype=torch.float64, device=device)
    status = torch.zeros(n, dtype=torch.int8, device=device)
    if target is not None:
        inside = target(theta)
        hit |= inside
        fpt[inside] = 0.0
    times, loss_mean, C_ens, Ds = [], [], [], []
    messages = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, desc="langevin[torch]", unit="step", mininterval=0.5, leave=False)

    def record(step, D_t):
        alive = status == 0
        g, th_ = (grad, theta) if bool(alive.all()) else (grad[alive], theta[alive])
        g2 = (g * g).sum(1)
        times.append(step * dt)
        loss_mean.append(float(value(th_).mean()))
        C_ens.append(float(g2.mean()) / (D_t * d) if D_t > 0 else math.inf)
        Ds.append(D_t)

    t0 = _time.perf_counter()
    grad_into(theta, grad)
    for s in range(n_steps):
        D_t = float(schedule(s * dt))
        if s % k == 0:
            record(s, D_t)
        torch.randn(theta.shape, generator=gen, dtype=tdtype, device=device, out=noise)
        theta.add_(grad, alpha=-dt)
        theta.add_(noise, alpha=math.sqrt(2.0 * D_t * dt))
        if target is not None:
            newly = target(theta) & ~hit
            if bool(newly.any()):
                hit |= newly
                fpt[newly] = (s + 1) * dt
        if (s + 1) % check_every == 0 or s + 1 == n_steps:
            bad = (status == 0) & ~torch.isfinite(theta).all(1)
            if bool(bad.any()):
                idx = torch.nonzero(bad).flatten().tolist()
                status[bad] = 1
                messages.append(f"{len(idx)} walker(s) went non-finite by step {s + 1}; first {idx[:10]}")
        grad_into(theta, grad)
        if bar is not None and (s + 1) % 500 == 0:
            bar.update(500)
    record(n_steps, float(schedule(n_steps * dt)))
    if bar is not None:
        bar.close()
    return TorchSimulationResult(
        times=np.asarray(times), records={"loss_mean": np.asarray(loss_mean), "C_ensemble": np.asarray(C_ens),
                                          "D": np.asarray(Ds)},
        final_theta=theta.cpu().numpy(), first_passage_time=fpt.cpu().numpy(), hit=hit.cpu().numpy(),
        status=status.cpu().numpy(), wall_time=_time.perf_counter() - t0, messages=messages)
