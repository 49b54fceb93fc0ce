"""Figures for Fokker–Planck results (matplotlib, Agg backend; each function returns the figure
and writes it to ``path`` when given).

* :func:`plot_density_evolution` — 1-D: density lines coloured by time (optional reference,
  e.g. the Gibbs law, dashed; optional Langevin histograms as steps); 2-D: heat maps at the
  recorded times with the landscape's contours.
* :func:`plot_spectrum` — the slowest relaxation rates on a log axis.
* :func:`plot_rate_vs_inverse_D` — Arrhenius plot: rates (log) against 1/D, one line per method,
  error bars where a standard error is given.
"""

from __future__ import annotations

import numpy as np


def _plt():
    from shld.plotting import pyplot

    return pyplot()


def _finish(fig, path):
    from shld.plotting import save_figure

    return save_figure(fig, path, tight=False)


def plot_density_evolution(grid, times, densities, *, reference=None, landscape=None, histograms=None,
                           max_panels: int = 6, title: str = "", path=None):
    """Density snapshots. ``histograms`` (1-D: list of (edges, density) per time; 2-D: arrays of
    the grid's shape) overlays an ensemble's histograms."""
    plt = _plt()
    times = np.asarray(times)
    dens = np.asarray(densities)
    if grid.dim == 1:
        fig, ax = plt.subplots(figsize=(7, 4))
        x = grid.axes[0]
        cmap = plt.get_cmap("viridis")
        for k, (t, rho) in enumerate(zip(times, dens)):
            c = cmap(k / max(len(times) - 1, 1))
            ax.plot(x, rho, color=c, lw=1.5, label=f"FP t={t:.3g}")
            if histograms is not None:
                edges, h = histograms[k]
                ax.stairs(h, edges, color=c, lw=0.8, ls=":")
        if reference is not None:
            ax.plot(x, np.asarray(reference).reshape(-1), "k--", lw=1, label="Gibbs ∝ exp(−L/D)")
        ax.set_xlabel("θ")
        ax.set_ylabel("ρ(θ, t)")
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(title or "density evolution (lines: Fokker–Planck; dotted: Langevin histogram)")
        fig.tight_layout()
        return _finish(fig, path)
    if grid.dim != 2:
        raise ValueError(f"`grid` must be 1-D or 2-D for plotting, got d={grid.dim}")
    idx = np.unique(np.linspace(0, len(times) - 1, min(max_panels, len(times))).round().astype(int))
    rows = 2 if histograms is not None else 1
    fig, axes = plt.subplots(rows, len(idx), figsize=(3.2 * len(idx), 3.0 * rows), squeeze=False)
    X, Y = np.meshgrid(*grid.axes, indexing="ij")
    U = landscape.value(grid.points()) if landscape is not None else None
    ext = [grid.bounds[0, 0], grid.bounds[0, 1], grid.bounds[1, 0], grid.bounds[1, 1]]
    for col, k in enumerate(idx):
        vmax = float(dens[k].max())
        panels = [(axes[0, col], dens[k], f"FP t={times[k]:.3g}")]
        if histograms is not None:
            panels.append((axes[1, col], np.asarray(histograms[k]), f"Langevin t={times[k]:.3g}"))
        for ax, img, label in panels:
            ax.imshow(img.T, origin="lower", extent=ext, aspect="auto", cmap="magma", vmin=0, vmax=vmax)
            if U is not None:
                lv = np.quantile(U, np.linspace(0.02, 0.6, 8))
                ax.contour(X, Y, U, levels=np.unique(lv), colors="w", linewidths=0.5, alpha=0.7)
            ax.set_title(label, fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(title or "density evolution", fontsize=9)
    fig.tight_layout()
    return _finish(fig, path)


def plot_spectrum(rates, *, title: str = "", path=None):
    """The slowest relaxation rates λ_k (eigenvalues of −A) on a log axis."""
    plt = _plt()
    r = np.asarray(rates, dtype=float)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    k = np.arange(r.size)
    pos = r > 0
    ax.semilogy(k[pos], r[pos], "o")
    for kk, rr in zip(k[pos], r[pos]):
        ax.annotate(f"{rr:.3g}", (kk, rr), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("k")
    ax.set_ylabel("relaxation rate λ_k (1/time)")
    ax.set_title(title or "Fokker–Planck spectrum (λ₀ = 0 omitted)")
    fig.tight_layout()
    return _finish(fig, path)


def plot_rate_vs_inverse_D(inv_D, series: dict, *, errors: dict | None = None, title: str = "", path=None):
    """Arrhenius plot. ``series`` maps a label to rates (same length as ``inv_D``); ``errors``
    maps a label to standard errors of those rates."""
    plt = _plt()
    inv_D = np.asarray(inv_D, dtype=float)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    markers = "os^vD<>px*"
    for n, (label, vals) in enumerate(series.items()):
        v = np.asarray(vals, dtype=float)
        err = None if errors is None else errors.get(label)
        if err is not None:
            ax.errorbar(inv_D, v, yerr=np.asarray(err, dtype=float), fmt=markers[n % 10], ms=5, capsize=3,
                        label=label)
        else:
            ax.plot(inv_D, v, marker=markers[n % 10], ms=4, lw=1, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("1/D")
    ax.set_ylabel("escape rate Γ (1/time)")
    ax.legend(fontsize=7)
    ax.set_title(title or "escape rate vs 1/D")
    fig.tight_layout()
    return _finish(fig, path)
