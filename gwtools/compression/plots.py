"""Diagnostic figures for compressed posteriors: corner overlay and P-P calibration plot.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot state, no backend
switch), returned to the caller, and written atomically when a path is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gwtools.io.atomic import atomic_path

__all__ = ["corner_comparison", "pp_plot"]


def _save(fig: Figure, path: str | os.PathLike | None) -> None:
    if path is None:
        return
    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix, bbox_inches="tight")


def corner_comparison(
    original: np.ndarray,
    regenerated: np.ndarray,
    names: Sequence[str],
    path: str | os.PathLike | None = None,
    *,
    labels: Sequence[str] = ("original", "regenerated"),
    bins: int = 30,
) -> Figure:
    """Corner plot of original (black) and regenerated (red) samples on the same axes.

    Parameters
    ----------
    original, regenerated : ndarray, shape (n, d) and (m, d)
    names : sequence of str
        Axis labels (d).
    path : str or path-like, optional
        Where to write the figure (format from the suffix).
    labels : (str, str)
        Legend entries for the two sample sets.
    bins : int
        Histogram bins per axis.
    """
    import corner

    original, regenerated = np.asarray(original, dtype=float), np.asarray(regenerated, dtype=float)
    d = len(names)
    if original.ndim != 2 or original.shape[1] != d or regenerated.ndim != 2 or regenerated.shape[1] != d:
        raise ValueError(f"both sample arrays must have shape (n, {d}); got {original.shape} and {regenerated.shape}")
    lo = np.minimum(original.min(axis=0), regenerated.min(axis=0))
    hi = np.maximum(original.max(axis=0), regenerated.max(axis=0))
    ranges = [(a, b) if b > a else (a - 0.5, b + 0.5) for a, b in zip(lo, hi)]
    fig = Figure(figsize=(2.0 * d, 2.0 * d))
    style = dict(bins=bins, range=ranges, labels=list(names), plot_datapoints=False, plot_density=False,
                 levels=(0.5, 0.9), smooth=1.0, hist_kwargs={"density": True})
    corner.corner(original, fig=fig, color="k", **style)
    style["hist_kwargs"] = {"density": True, "color": "tab:red"}
    corner.corner(regenerated, fig=fig, color="tab:red", **style)
    fig.legend(handles=[Line2D([], [], color="k", label=labels[0]), Line2D([], [], color="tab:red", label=labels[1])],
               loc="upper right", frameon=False)
    _save(fig, path)
    return fig


def pp_plot(pp: dict, names: Sequence[str], path: str | os.PathLike | None = None) -> Figure:
    """P-P plot from :func:`gwtools.compression.metrics.pp_calibration` output.

    Each parameter's curve (fraction of held-out samples below each model quantile level)
    should follow the diagonal; the grey band is the 95% range of the empirical CDF of that
    many uniform draws (binomial), and the legend gives each Kolmogorov-Smirnov p-value.
    """
    from scipy import stats

    levels, fractions = np.asarray(pp["levels"]), np.asarray(pp["fractions"])
    if fractions.shape != (len(names), len(levels)):
        raise ValueError(f"pp['fractions'] has shape {fractions.shape}, expected ({len(names)}, {len(levels)})")
    n = int(pp.get("n_heldout", 0))
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    if n > 0:
        lower = stats.binom.ppf(0.025, n, levels) / n
        upper = stats.binom.ppf(0.975, n, levels) / n
        ax.fill_between(levels, lower, upper, color="0.85", label="95% band")
    for name, frac, p_value in zip(names, fractions, pp["ks_pvalue"]):
        ax.plot(levels, frac, label=f"{name} (KS p={p_value:.2f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("model quantile level")
    ax.set_ylabel("fraction of held-out samples below")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small", frameon=False)
    _save(fig, path)
    return fig
