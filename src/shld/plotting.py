"""Figures for Langevin runs (matplotlib, Agg-safe): C(t) with the regime bands, loss curves,
ensemble histograms against the Gibbs density, trajectories on a landscape's contours.

Each function takes arrays (not simulation objects), draws on a new figure, saves it to ``path``
when given and returns the figure, so reports can rebuild every figure from a run folder's files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shld.observables.consolidation import REGIME_CUTS

_REGIME_COLOURS = {"deterministic": "#d9ecff", "transitional": "#e8f5e0", "critical": "#fff1cc",
                   "diffusive": "#fde0e0"}


def pyplot():
    """``matplotlib.pyplot``, switched to Agg unless an interactive/inline backend is already chosen."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        try:
            matplotlib.use("Agg")
        except Exception:  # pragma: no cover - a GUI backend already in use
            pass
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, *, tight: bool = True, dpi: int = 110):
    """Lay out ``fig`` and write it to ``path`` (parents created) when given; returns the figure.
    The file is written atomically (:func:`shld.runs.atomic_write`): a kill never leaves half a PNG."""
    from shld.runs import atomic_write

    if tight:
        fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = path.suffix[1:].lower() or "png"
        atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, dpi=dpi, bbox_inches="tight"), binary=True)
    return fig


def plot_consolidation(t, C, *, path=None, label="C(t)", xlabel="t", events=None, extra=None):
    """C(t) on a log axis with the regime bands of :data:`REGIME_CUTS` and the critical line C = 1."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    C = np.asarray(C, float)
    finite = C[np.isfinite(C) & (C > 0)]
    lo = min(0.05, finite.min() / 2) if finite.size else 0.05
    hi = max(50.0, finite.max() * 2) if finite.size else 50.0
    upper = hi
    for cut, name in REGIME_CUTS:
        low = max(cut, lo)
        ax.axhspan(low, upper, color=_REGIME_COLOURS[name], zorder=0, lw=0)
        ax.text(0.995, np.sqrt(low * upper), name, transform=ax.get_yaxis_transform(), ha="right",
                va="center", fontsize=7, color="0.4")
        upper = low
    ax.plot(t, C, lw=1.2, label=label, color="C0")
    for i, (name, (tt, cc)) in enumerate((extra or {}).items()):
        ax.plot(tt, cc, lw=1.0, label=name, color=f"C{i + 1}")
    ax.axhline(1.0, color="r", ls="--", lw=1, label="critical C = 1")
    for te in events or []:
        ax.axvline(te, color="k", ls=":", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("C = ‖∇L‖² / (D·d)")
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)


def plot_curves(t, curves: dict, *, path=None, xlabel="t", ylabel="loss", logy=False, bands=None):
    """Several named curves on one axis; ``bands`` maps a name to (lower, upper) arrays."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, y in curves.items():
        tt, yy = y if isinstance(y, tuple) else (t, y)
        ax.plot(tt, yy, lw=1.2, label=name)
        if bands and name in bands:
            lo, hi = bands[name]
            ax.fill_between(tt, lo, hi, alpha=0.2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_histogram_vs_density(samples, x, density, *, path=None, xlabel="θ", title=None, bins=60):
    """Normalised histogram of ``samples`` against a density on grid ``x``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(samples, bins=bins, range=(x[0], x[-1]), density=True, alpha=0.5, label="ensemble")
    ax.plot(x, density, "k-", lw=1.5, label="Gibbs ∝ exp(−L/D)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_trajectories_2d(landscape, paths, *, path=None, n_levels=30, title=None):
    """Walker paths (n_records, n_paths, 2) over the contours of a 2-D landscape."""
    plt = pyplot()
    b = landscape.bounds
    gx, gy = np.meshgrid(np.linspace(*b[0], 200), np.linspace(*b[1], 200))
    z = landscape.value(np.stack([gx, gy], axis=-1))
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    levels = np.quantile(z, np.linspace(0.0, 0.9, n_levels))
    ax.contour(gx, gy, z, levels=np.unique(levels), cmap="viridis", linewidths=0.6)
    for k in range(paths.shape[1]):
        ax.plot(paths[:, k, 0], paths[:, k, 1], lw=0.8, alpha=0.9)
        ax.plot(paths[0, k, 0], paths[0, k, 1], "ko", ms=3)
    for c in landscape.critical_points:
        ax.plot(*c.location[:2], "r*" if c.kind == "minimum" else "kx", ms=8)
    ax.set_xlabel("θ₀")
    ax.set_ylabel("θ₁")
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_paths_1d(t, paths, *, path=None, barrier_x=None, ylabel="θ₀"):
    """A few walker paths θ(t) (n_records, n_paths) in 1-D."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(t, paths, lw=0.7)
    if barrier_x is not None:
        ax.axhline(barrier_x, color="k", ls=":", lw=0.8)
    ax.set_xlabel("t")
    ax.set_ylabel(ylabel)
    return save_figure(fig, path)


def close(fig) -> None:
    pyplot().close(fig)
