r"""Estimating the diffusion coefficient D, and the SGD ↔ Langevin dictionary.

Conventions: dθ = −∇L dt + √(2D) dW, D a temperature in loss units, t dynamics time. An SGD
step θ ← θ − η·g_B with a mini-batch gradient g_B of a *mean* loss is an Euler–Maruyama step
with dt = η when the per-step noise variance η²·Var[g_B] equals 2D·dt, i.e. D = η·Var[g_B]/2
with Var[g_B] = σ²/B (σ² the per-sample gradient variance, B the batch size, sampling with
replacement). With a *sum* loss every gradient, and so σ², is B² times larger: say which.

* :func:`estimate_D_gradient_variance` — the seed's method 1, D ≈ Var[g]/2 (its "D" drops the
  learning rate: it is the Langevin D only when η = 1; pass ``lr`` for D = η·Var[g]/2).
* :func:`estimate_D_msd` — method 2 done right: D from the slope of the mean-squared
  displacement, MSD(τ) = 2·D·τ per coordinate for free diffusion.
* :func:`estimate_D_variance_seed` — the seed's method 2, var(θ)/T, kept to show why it is not
  a diffusion estimate: in a confining potential var θ saturates at D/λ, so var/T → 0 as T grows;
  for free diffusion over a window of duration T the variance of the positions about their
  time-average is D·T/3 (not 2D·T), so var/T → D/3 — wrong by a factor even then.
* :func:`d_eff_seed` / :func:`d_sde` — the seed's D_eff = α²σ²/B (a per-step variance) and the
  Langevin temperature η·trΣ/(2·B·d) (with dt = η).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shld._validation import check_finite_array, check_int, check_positive

__all__ = [
    "DiffusionEstimate", "estimate_D_gradient_variance", "estimate_D_msd", "estimate_D_variance_seed",
    "d_eff_seed", "d_sde", "NoiseIsotropy", "noise_isotropy",
]


def estimate_D_gradient_variance(grads, ddof=1, lr=None):
    """The seed's method 1: D = mean_i Var[g_i] / 2 from gradient samples ``grads`` (n_samples, d).

    Var[g_i] is the sample variance (``ddof``) over the rows of coordinate i — the variance of
    whatever the rows are (per-sample gradients → σ², mini-batch gradients → σ²/B), averaged over
    the d coordinates, i.e. tr Cov[g]/(2d). With ``lr`` = η given, returns the Langevin D of SGD
    in the time t = step·η: D = η·tr Cov[g]/(2d) (then the rows must be mini-batch gradients).
    """
    g = check_finite_array("grads", grads)
    if g.ndim == 1:
        g = g[:, None]
    if g.ndim != 2:
        raise ValueError(f"`grads` must have shape (n_samples, d), got {g.shape}")
    ddof = check_int("ddof", ddof, minimum=0)
    if g.shape[0] <= ddof:
        raise ValueError(f"`grads` needs more than ddof={ddof} rows, got {g.shape[0]}")
    var = float(np.mean(np.var(g, axis=0, ddof=ddof)))
    scale = 1.0 if lr is None else check_positive("lr", lr)
    return scale * var / 2.0


@dataclass(frozen=True)
class DiffusionEstimate:
    """D with its standard error, and the MSD curve it came from (per coordinate)."""

    D: float
    stderr: float
    lags: np.ndarray      # lag times τ_k
    msd: np.ndarray       # mean over walkers, coordinates and time origins of (Δθ)² at each lag
    n_blocks: int         # independent units behind the stderr (walkers, or time blocks)
    method: str


def _paths(times, positions):
    x = check_finite_array("positions", positions)
    if x.ndim == 1:
        x = x[:, None, None]
    elif x.ndim == 2:
        x = x[:, None, :]
    elif x.ndim != 3:
        raise ValueError(f"`positions` must have shape (T,), (T, d) or (T, N, d), got {x.shape}")
    t = check_finite_array("times", times, ndim=1)
    if t.shape[0] != x.shape[0]:
        raise ValueError(f"`times` has {t.shape[0]} entries but `positions` has {x.shape[0]} records")
    if t.shape[0] < 3:
        raise ValueError(f"`times` needs at least 3 records, got {t.shape[0]}")
    dt = np.diff(t)
    if np.any(dt <= 0) or not np.allclose(dt, dt[0], rtol=1e-9, atol=0):
        raise ValueError("`times` must be strictly increasing and equally spaced")
    return float(dt[0]), x


def estimate_D_msd(times, positions, max_lag=1, n_blocks=10):
    """D from the slope of the mean-squared displacement, with a standard error.

    ``positions``: one path (T,) or (T, d), or an ensemble (T, N, d), recorded at equally
    spaced ``times``. MSD(τ_k) averages (θ(t+τ_k) − θ(t))² over time origins, walkers and
    coordinates, for lags k = 1..``max_lag``; D is the least-squares slope through the origin of
    MSD(τ) = 2·D·τ (per coordinate). For free diffusion this is exact at every lag; in a potential
    the drift bends the MSD (OU: MSD = 2(D/λ)(1 − e^{−λτ}) = 2Dτ(1 − λτ/2 + …)), so only the
    short-lag slope estimates D, with relative bias ≈ λτ/2 — hence the default ``max_lag=1``
    (which is also the most efficient choice for free diffusion, where increments are independent).

    Standard error: with N ≥ 2 walkers, the spread of per-walker slopes /√N (walkers are
    independent); with one walker, ``n_blocks`` consecutive time blocks (batch means; blocks must
    be much longer than the relaxation time 1/λ).
    """
    dt, x = _paths(times, positions)
    T, N, d = x.shape
    max_lag = check_int("max_lag", max_lag, minimum=1)
    if max_lag >= T:
        raise ValueError(f"`max_lag`={max_lag} must be < the number of records {T}")
    lags = np.arange(1, max_lag + 1)
    tau = lags * dt

    def slopes(seg):  # seg (T', n, d) -> per-unit slope (n,), and msd per lag (K, n)
        msd = np.stack([np.mean((seg[k:] - seg[:-k]) ** 2, axis=(0, 2)) for k in lags])
        return (tau @ msd) / (2.0 * tau @ tau), msd

    if N >= 2:
        per, msd = slopes(x)
        units, method = N, "msd-slope, walkers"
    else:
        n_blocks = check_int("n_blocks", n_blocks, minimum=2)
        L = T // n_blocks
        if L <= max_lag + 1:
            raise ValueError(f"`n_blocks`={n_blocks} leaves blocks of {L} records, too short for "
                             f"max_lag={max_lag}")
        blocks = x[: L * n_blocks, 0, :].reshape(n_blocks, L, d).transpose(1, 0, 2)
        per, msd = slopes(blocks)
        units, method = n_blocks, "msd-slope, time blocks"
    D = float(np.mean(per))
    se = float(np.std(per, ddof=1) / np.sqrt(units))
    return DiffusionEstimate(D=D, stderr=se, lags=tau, msd=np.mean(msd, axis=1), n_blocks=units,
                             method=method)


def estimate_D_variance_seed(thetas):
    """THE SEED'S method 2: D ≈ var(θ)/T over a path ``thetas`` (T, d) of T records.

    Not a diffusion estimate (see module): for a confined process var θ → D/λ so this → 0 as T
    grows; for free diffusion it → D·Δt/3 (Δt the record spacing). Kept for side-by-side reports.
    """
    x = check_finite_array("thetas", thetas)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"`thetas` must have shape (T, d) with T >= 2, got {x.shape}")
    return float(np.mean(np.var(x, axis=0)) / x.shape[0])


def d_eff_seed(lr, grad_variance, batch_size):
    """THE SEED'S D_eff = α²·σ²/B: the per-step variance of the SGD update θ ← θ − α·g_B.

    ``grad_variance`` σ² is the per-sample gradient variance (per coordinate, mean loss), B the
    batch size. Units: θ² per *step*. It is not the Langevin D: matching α²σ²/B = 2D·dt with
    dt = α gives D = α·σ²/(2B) (:func:`d_sde`).
    """
    a = check_positive("lr", lr)
    s2 = np.asarray(grad_variance, dtype=float)
    if np.any(~(s2 >= 0)) or np.any(np.isinf(s2)):
        raise ValueError(f"`grad_variance` must be finite and >= 0, got {grad_variance!r}")
    B = check_int("batch_size", batch_size, minimum=1)
    out = a * a * s2 / B
    return float(out) if out.ndim == 0 else out


def d_sde(lr, trace_sigma, batch_size, dim):
    """The Langevin temperature of SGD: D = η·trΣ/(2·B·d), with dynamics time t = step·η.

    Σ is the per-sample gradient covariance of the mean loss, trΣ/d its mean per-coordinate
    variance, B the batch size (with replacement), d = ``dim``. Then one SGD step is one
    Euler–Maruyama step of dθ = −∇L dt + √(2D) dW with dt = η (isotropic-noise approximation).
    """
    eta = check_positive("lr", lr)
    tr = check_positive("trace_sigma", trace_sigma, allow_zero=True)
    B = check_int("batch_size", batch_size, minimum=1)
    d = check_int("dim", dim, minimum=1)
    return eta * tr / (2.0 * B * d)


@dataclass(frozen=True)
class NoiseIsotropy:
    """How far a gradient-noise covariance Σ is from the scalar-D form Σ = (tr Σ/d)·I that a
    Fokker–Planck equation with one D assumes. ``participation_ratio`` r = (tr Σ)²/tr Σ² is d for
    isotropic noise and 1 for noise along one direction; ``top_share`` = λ₁(Σ)/tr Σ (1/d when
    isotropic). ``trace`` is tr Σ (squared gradient units), ``dim`` d."""

    trace: float
    top_eigenvalue: float
    participation_ratio: float
    top_share: float
    dim: int
    n_samples: int


def noise_isotropy(grads) -> NoiseIsotropy:
    """Spectrum summary of the sample covariance (ddof = 1) of per-sample gradients ``grads`` (n, d), from
    the smaller of the d × d covariance and the n × n Gram matrix of the centred rows (their nonzero
    eigenvalues agree): O(min(n, d)²·max(n, d)), so a network's d never makes a d × d matrix."""
    g = check_finite_array("grads", grads, ndim=2)
    n, d = g.shape
    check_int("grads.shape[0]", n, minimum=2)
    c = g - g.mean(axis=0)
    small = c.T @ c if d <= n else c @ c.T
    ev = np.clip(np.linalg.eigvalsh(small / (n - 1)), 0.0, None)
    tr, tr2 = float(ev.sum()), float(np.sum(ev * ev))
    if not tr > 0:
        raise ValueError("`grads` has no spread (every row equal): the noise covariance is zero")
    return NoiseIsotropy(trace=tr, top_eigenvalue=float(ev[-1]), participation_ratio=tr * tr / tr2,
                         top_share=float(ev[-1]) / tr, dim=int(d), n_samples=int(n))
