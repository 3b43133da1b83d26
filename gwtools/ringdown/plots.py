"""Plots and the one-page summary of a ringdown run, and the plot of a start-time scan.

Each ``plot_*`` figure function takes samples or waveforms as arrays (so it can be used on a
result read back from disk, see :mod:`gwtools.ringdown.results`), writes one PNG and returns
its path; :func:`plot_result` draws every figure of a run and its summary page, and
:func:`plot_scan` the table of a scan (:mod:`gwtools.ringdown.scan`).  Amplitudes are drawn in
units of 1e-21 strain.

Importing this module leaves the matplotlib backend alone (a notebook keeps its inline
backend); the ``gwtools`` command line selects the file-only Agg backend itself
(:func:`gwtools.cli.use_file_backend`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import corner
import matplotlib.pyplot as plt
import numpy as np

from gwtools.io.atomic import atomic_path
from gwtools.ringdown.constants import START_SHIFT
from gwtools.ringdown.results import credible_interval

__all__ = [
    "CORNER_LABELS",
    "WHITENED_PLOT_DAMPING_TIMES",
    "plot_result",
    "summary_facts",
    "whitened_plot_span",
    "plot_scan",
    "plot_corner",
    "plot_remnant_corner",
    "plot_amplitudes",
    "plot_whitened_data",
    "plot_qnm_posteriors",
    "plot_noise_diagnostics",
    "write_summary",
    "save_figure",
]

_RINGDOWN_COLOR = "tab:blue"
_IMR_COLOR = "tab:orange"
_PUBLISHED_COLOR = "tab:red"
_LEVELS = (0.5, 0.9)

#: Axis labels of the sampled parameters in the corner plot of a run.
CORNER_LABELS = {
    "final_mass": r"$M_f\ [M_\odot]$",
    "final_spin": r"$\chi_f$",
    "inclination": r"$\iota$ [rad]",
    "polarization": r"$\psi$ [rad]",
    START_SHIFT: r"$\delta t_0$ [ms]",
}

#: Damping times of the longest-lived mode shown by the whitened-data plot: after ten the
#: ringdown has decayed by e^-10 and only noise is left to see.
WHITENED_PLOT_DAMPING_TIMES = 10.0


def _bulk_range(samples: np.ndarray, margin: float = 0.05) -> tuple[float, float]:
    """The central 99% of the samples, widened by ``margin`` of its width on each side."""
    lo, hi = np.percentile(samples, [0.5, 99.5])
    return lo - margin * (hi - lo), hi + margin * (hi - lo)


def save_figure(
    fig: plt.Figure, path: str | os.PathLike, run_id: str | None = None, *, trim: bool = True
) -> Path:
    """Write ``fig`` as a PNG atomically and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : path-like
        PNG to write.
    run_id : str, optional
        Identifier of the run that made the figure, printed in its lower right corner and
        stored in the PNG metadata, so a figure can be matched with its results file.
    trim : bool, optional
        Crop the PNG to the drawn content (an extra layout pass).  Figures with fixed margins
        pass False.
    """
    path = Path(path)
    metadata = {}
    if run_id:
        fig.text(0.995, 0.002, f"run {run_id}", ha="right", va="bottom", fontsize=6, color="0.5")
        metadata["Comment"] = f"gwtools run {run_id}"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight" if trim else None, metadata=metadata)
    plt.close(fig)
    return path


def _check_samples(name: str, *arrays: np.ndarray) -> None:
    for array in arrays:
        if array.ndim != 1 or array.size < 2:
            raise ValueError(f"{name}: need 1-D arrays of at least 2 samples, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name}: samples contain NaN or inf")


def plot_remnant_corner(
    final_mass,
    final_spin,
    path: str | os.PathLike,
    *,
    imr: tuple[np.ndarray, np.ndarray] | None = None,
    imr_published: Mapping[str, tuple[float, float, float]] | None = None,
    label: str = "ringdown",
    run_id: str | None = None,
) -> Path:
    """Corner plot of the remnant mass and spin, with IMR samples or published values overlaid.

    Parameters
    ----------
    final_mass, final_spin : array_like, shape (n,)
        Ringdown posterior samples; detector-frame solar masses and dimensionless spin.
    path : path-like
        PNG to write.
    imr : (array_like, array_like), optional
        IMR remnant (mass, spin) samples, same units, drawn in another colour.
    imr_published : mapping, optional
        Published IMR remnant: ``final_mass`` and ``final_spin`` as (median, lower, upper) of
        the 90% interval, same units; drawn as a cross with error bars and as bands.
    label : str
        Legend label of the ringdown samples.
    run_id : str, optional
        Run identifier printed on the figure (see :func:`save_figure`).

    Returns
    -------
    Path
    """
    ringdown = np.column_stack([np.asarray(final_mass, float), np.asarray(final_spin, float)])
    _check_samples("ringdown remnant", ringdown[:, 0], ringdown[:, 1])
    sets = [ringdown]
    if imr is not None:
        imr_samples = np.column_stack([np.asarray(imr[0], float), np.asarray(imr[1], float)])
        _check_samples("IMR remnant", imr_samples[:, 0], imr_samples[:, 1])
        sets.append(imr_samples)
    stacked = np.concatenate(sets)
    ranges = [_bulk_range(stacked[:, i]) for i in range(2)]
    published = None
    if imr_published is not None:
        published = [imr_published[name] for name in ("final_mass", "final_spin")]
        ranges = [(min(lo, p[1]), max(hi, p[2])) for (lo, hi), p in zip(ranges, published)]
    labels = [r"$M_f\ [M_\odot]$", r"$\chi_f$"]
    fig = corner.corner(
        ringdown, labels=labels, range=ranges, color=_RINGDOWN_COLOR, levels=_LEVELS,
        plot_datapoints=False, plot_density=False, fill_contours=False, smooth=1.0, bins=40,
        hist_kwargs={"density": True},
    )
    handles = [plt.Line2D([], [], color=_RINGDOWN_COLOR, label=label)]
    if imr is not None:
        corner.corner(
            sets[1], fig=fig, range=ranges, color=_IMR_COLOR, levels=_LEVELS,
            plot_datapoints=False, plot_density=False, fill_contours=False, smooth=1.0, bins=40,
            hist_kwargs={"density": True},
        )
        handles.append(plt.Line2D([], [], color=_IMR_COLOR, label="IMR"))
    if published is not None:
        (m_med, m_lo, m_hi), (s_med, s_lo, s_hi) = published
        hist_mass, joint, hist_spin = fig.axes[0], fig.axes[2], fig.axes[3]
        for axis, (med, lo, hi) in ((hist_mass, published[0]), (hist_spin, published[1])):
            axis.axvspan(lo, hi, color=_PUBLISHED_COLOR, alpha=0.2, lw=0)
            axis.axvline(med, color=_PUBLISHED_COLOR)
        joint.errorbar(
            [m_med], [s_med], xerr=[[m_med - m_lo], [m_hi - m_med]],
            yerr=[[s_med - s_lo], [s_hi - s_med]], color=_PUBLISHED_COLOR, marker="s", capsize=3,
        )
        handles.append(plt.Line2D([], [], color=_PUBLISHED_COLOR, marker="s",
                                  label="IMR, published (median, 90%)"))
    fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.95, 0.9), frameon=False)
    fig.suptitle("Remnant mass and spin (contours: 50%, 90%)", y=1.04)
    return save_figure(fig, path, run_id)


def plot_corner(
    samples: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    *,
    labels: Mapping[str, str] | None = None,
    title: str = "Sampled parameters (contours: 50%, 90%)",
    run_id: str | None = None,
) -> Path:
    """Corner plot of several posterior columns, e.g. every sampled parameter of a run.

    Parameters
    ----------
    samples : mapping of str to array_like
        Column name to samples, each of shape (n,), in the order drawn (at least two columns).
    path : path-like
        PNG to write.
    labels : mapping of str to str, optional
        Axis label (with units) per column; default the column name.
    title : str
        Figure title.
    run_id : str, optional
        Run identifier printed on the figure (see :func:`save_figure`).
    """
    if len(samples) < 2:
        raise ValueError(f"a corner plot needs at least two columns, got {list(samples)}")
    columns = [np.asarray(v, float) for v in samples.values()]
    _check_samples("corner", *columns)
    stacked = np.column_stack(columns)
    fig = corner.corner(
        stacked, labels=[(labels or {}).get(name, name) for name in samples],
        range=[_bulk_range(column) for column in columns], color=_RINGDOWN_COLOR, levels=_LEVELS,
        plot_datapoints=False, plot_density=False, fill_contours=False, smooth=1.0, bins=40,
        hist_kwargs={"density": True},
    )
    fig.suptitle(title, y=1.02)
    return save_figure(fig, path, run_id)


def plot_amplitudes(
    amplitudes: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    *,
    amplitude_max: float | None = None,
    run_id: str | None = None,
) -> Path:
    """Histograms of the mode amplitudes.

    Parameters
    ----------
    amplitudes : mapping of str to array_like
        Mode label (e.g. ``"220"``) to amplitude samples in units of 1e-21 strain.
    path : path-like
        PNG to write.
    amplitude_max : float, optional
        Upper edge of the amplitude prior (same units), marked on the axes.
    run_id : str, optional
        Run identifier printed on the figure (see :func:`save_figure`).
    """
    if not amplitudes:
        raise ValueError("no amplitudes to plot")
    fig, axes = plt.subplots(1, len(amplitudes), figsize=(4 * len(amplitudes), 3.2), squeeze=False)
    for ax, (label, samples) in zip(axes[0], amplitudes.items()):
        samples = np.asarray(samples, float)
        _check_samples(f"amplitude {label}", samples)
        ax.hist(samples, bins=50, density=True, histtype="stepfilled", alpha=0.6, color=_RINGDOWN_COLOR)
        median, lo, hi = np.percentile(samples, [50, 5, 95])
        for value, style in ((median, "-"), (lo, "--"), (hi, "--")):
            ax.axvline(value, color="k", ls=style, lw=0.8)
        if amplitude_max is not None and amplitude_max <= 1.2 * samples.max():
            ax.axvline(amplitude_max, color="tab:red", lw=0.8, label="prior edge")
            ax.legend(frameon=False)
        elif amplitude_max is not None:
            # a distant prior edge would squeeze the histogram: state it instead
            ax.text(0.97, 0.95, f"prior edge at {amplitude_max:g}", transform=ax.transAxes,
                    ha="right", va="top", fontsize="small")
        ax.set_xlabel(rf"$A_{{{label}}}\ [10^{{-21}}]$")
        ax.set_title(f"{label}: {median:.2f} (+{hi - median:.2f} / -{median - lo:.2f})")
        ax.set_yticks([])
    return save_figure(fig, path, run_id)


def plot_whitened_data(
    waveforms: Mapping[str, Mapping[str, np.ndarray]],
    path: str | os.PathLike,
    *,
    t_max: float | None = None,
    run_id: str | None = None,
) -> Path:
    """Whitened data and whitened posterior-median ringdown per detector.

    Parameters
    ----------
    waveforms : mapping
        Detector name to a mapping with ``time`` (s since the analysis start), ``whitened_data``
        and ``whitened_median`` (each shape (n,)) and optionally ``whitened_lower`` /
        ``whitened_upper`` (90% band of the reconstructed ringdown).
    path : path-like
        PNG to write.
    t_max : float, optional
        Show the times from the analysis start to ``t_max`` (s since the analysis start; the
        ringdown has died away long before the end of a typical segment, see
        :func:`whitened_plot_span`).
    run_id : str, optional
        Run identifier printed on the figure (see :func:`save_figure`).
    """
    if not waveforms:
        raise ValueError("no detectors to plot")
    fig, axes = plt.subplots(len(waveforms), 1, figsize=(8, 2.6 * len(waveforms)), sharex=True,
                             squeeze=False)
    for ax, (detector, arrays) in zip(axes[:, 0], waveforms.items()):
        missing = {"time", "whitened_data", "whitened_median"} - set(arrays)
        if missing:
            raise ValueError(f"{detector}: waveform arrays {sorted(missing)} are missing")
        t_ms = 1e3 * np.asarray(arrays["time"])
        ax.plot(t_ms, arrays["whitened_data"], color="0.5", lw=0.8, label="whitened data")
        if "whitened_lower" in arrays and "whitened_upper" in arrays:
            ax.fill_between(t_ms, arrays["whitened_lower"], arrays["whitened_upper"],
                            color=_RINGDOWN_COLOR, alpha=0.3, lw=0, label="90% ringdown")
        ax.plot(t_ms, arrays["whitened_median"], color=_RINGDOWN_COLOR, lw=1.5,
                label="median ringdown")
        ax.set_ylabel(f"{detector} whitened")
        ax.legend(loc="upper right", frameon=False, fontsize="small")
    if t_max is not None:
        # from the analysis start: autoscaling to the whole segment would pad it on the left
        axes[-1, 0].set_xlim(0.0, 1e3 * t_max)
    axes[-1, 0].set_xlabel("time since analysis start [ms]")
    return save_figure(fig, path, run_id)


def plot_qnm_posteriors(
    measured: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike,
    *,
    kerr: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    kerr_label: str = "Kerr prediction (IMR)",
    run_id: str | None = None,
) -> Path:
    """Frequency/damping-time posteriors of each mode against a Kerr prediction.

    Parameters
    ----------
    measured : mapping of str to (array_like, array_like)
        Mode label to (frequency in Hz, damping time in s) posterior samples of the ringdown.
    path : path-like
        PNG to write.
    kerr : mapping, optional
        Mode label to (frequency, damping time) samples predicted for a Kerr remnant, e.g. from
        IMR remnant mass and spin samples.
    kerr_label : str
        Legend label of the prediction.
    run_id : str, optional
        Run identifier printed on the figure (see :func:`save_figure`).
    """
    if not measured:
        raise ValueError("no modes to plot")
    fig, axes = plt.subplots(1, len(measured), figsize=(4.2 * len(measured), 3.8), squeeze=False)
    for ax, (label, (freq, tau)) in zip(axes[0], measured.items()):
        freq, tau_ms = np.asarray(freq, float), 1e3 * np.asarray(tau, float)
        _check_samples(f"mode {label}", freq, tau_ms)
        sets = [(freq, tau_ms, _RINGDOWN_COLOR, "ringdown")]
        if kerr is not None and label in kerr:
            k_freq, k_tau = (np.asarray(v, float) for v in kerr[label])
            sets.append((k_freq, 1e3 * k_tau, _IMR_COLOR, kerr_label))
        # frame the bulk of both sets: the far tails would squeeze the contours
        ranges = [_bulk_range(np.concatenate([s[i] for s in sets])) for i in (0, 1)]
        handles = []
        for x, y, color, name in sets:
            corner.hist2d(x, y, ax=ax, color=color, levels=_LEVELS, range=ranges,
                          plot_datapoints=False, plot_density=False, smooth=1.0, bins=40)
            handles.append(plt.Line2D([], [], color=color, label=name))
        ax.set_xlim(ranges[0])
        ax.set_ylim(ranges[1])
        ax.set_xlabel(rf"$f_{{{label}}}$ [Hz]")
        ax.set_ylabel(rf"$\tau_{{{label}}}$ [ms]")
        ax.legend(handles=handles, frameon=False, fontsize="small", loc="best")
    fig.suptitle("QNM frequency and damping time (contours: 50%, 90%)")
    fig.tight_layout()
    return save_figure(fig, path, run_id)


def plot_noise_diagnostics(
    detector: str,
    arrays: Mapping[str, np.ndarray],
    scalars: Mapping[str, float],
    path: str | os.PathLike,
    *,
    method: str = "",
    peak: float | None = None,
    loud_pvalue: float = 1e-4,
    run_id: str | None = None,
) -> Path:
    """Noise diagnostics of one detector: its PSD, and off-source data whitened with it.

    Four panels: the amplitude spectral density used (with the 5-95% scatter of the Welch
    segments, or the PSD file before conditioning); the whitened variance of each off-source
    stretch against time (stretches used by the estimate marked, loud ones in red); the
    histogram of all whitened values against N(0, 1); their autocorrelation at small lags
    against its 95% band for white noise.

    Parameters
    ----------
    detector : str
    arrays : mapping of str to array_like
        The detector's entry of :func:`gwtools.ringdown.pipeline.noise_arrays`.
    scalars : mapping of str to float
        Its numbers (:meth:`gwtools.ringdown.noise_diagnostics.WhitenessReport.scalars`).
    path : path-like
        PNG to write.
    method : str, optional
        How the noise was estimated (figure title).
    peak : float, optional
        GPS of the signal peak: times are drawn relative to it.
    loud_pvalue : float, optional
        Stretches with ``stretch_loud_pvalue`` below this are drawn as loud.
    run_id : str, optional
        Run identifier printed on the figure (see :func:`save_figure`).
    """
    missing = {"frequency", "psd", "stretch_gps", "stretch_variance", "histogram_edges",
               "histogram_counts", "autocorrelation"} - set(arrays)
    if missing:
        raise ValueError(f"{detector}: noise arrays {sorted(missing)} are missing")
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    ax = axes[0, 0]
    freqs = np.asarray(arrays["frequency"], float)
    band = freqs > 0
    if "psd_lower" in arrays and "psd_upper" in arrays:
        ax.fill_between(freqs[band], np.sqrt(arrays["psd_lower"][band]), np.sqrt(arrays["psd_upper"][band]),
                        color=_RINGDOWN_COLOR, alpha=0.25, lw=0, label="Welch segments, 5-95%")
    if "file_frequency" in arrays and "file_psd" in arrays:
        file_freqs = np.asarray(arrays["file_frequency"], float)
        shown = (file_freqs > 0) & (file_freqs <= freqs[-1] * 1.05)
        ax.loglog(file_freqs[shown], np.sqrt(arrays["file_psd"][shown]), color=_IMR_COLOR, lw=0.8,
                  label="PSD file")
    ax.loglog(freqs[band], np.sqrt(np.clip(arrays["psd"][band], 0, None)), color="k", lw=0.8,
              label="used (conditioned data)")
    ax.set_xlim(10, freqs[-1])
    # frame the PSD used above the high-pass corner: single Welch segments scatter by decades
    shown = np.sqrt(np.clip(arrays["psd"][freqs > 15], 0, None))
    if shown.size and shown.max() > 0:
        ax.set_ylim(0.3 * shown[shown > 0].min(), 3 * shown.max())
    ax.set_xlabel("frequency [Hz]")
    ax.set_ylabel(r"ASD [Hz$^{-1/2}$]")
    ax.legend(frameon=False, fontsize="small")

    ax = axes[0, 1]
    gps = np.asarray(arrays["stretch_gps"], float)
    times = gps - (peak if peak is not None else 0.0)
    variance = np.asarray(arrays["stretch_variance"], float)
    used = np.asarray(arrays.get("stretch_in_estimate", np.zeros_like(gps)), float) > 0
    loud = np.asarray(arrays.get("stretch_loud_pvalue", np.ones_like(gps)), float) < loud_pvalue
    ax.plot(times[~used], variance[~used], "o", ms=3, color="0.5", label="not in the estimate")
    ax.plot(times[used], variance[used], "o", ms=3, color=_RINGDOWN_COLOR, label="in the estimate")
    ax.plot(times[loud], variance[loud], "o", ms=5, mfc="none", color="tab:red", label=f"loud (p < {loud_pvalue:g})")
    ax.axhline(1.0, color="k", lw=0.8)
    if variance.size and np.nanmax(variance) > 10 * max(np.nanmin(variance), 1e-300):
        ax.set_yscale("log")  # loud stretches can sit decades above unit variance
    ax.set_xlabel("time from the peak [s]" if peak is not None else "GPS time [s]")
    ax.set_ylabel("whitened variance per stretch")
    ax.legend(frameon=False, fontsize="small")

    ax = axes[1, 0]
    edges = np.asarray(arrays["histogram_edges"], float)
    counts = np.asarray(arrays["histogram_counts"], float)
    widths = np.diff(edges)
    total = counts.sum()
    ax.stairs(counts / (total * widths), edges, color=_RINGDOWN_COLOR, label="whitened off-source")
    grid = np.linspace(edges[0], edges[-1], 400)
    ax.plot(grid, np.exp(-grid**2 / 2) / np.sqrt(2 * np.pi), color="k", lw=0.8, label="N(0, 1)")
    ax.set_yscale("log")
    ax.set_ylim(0.3 / max(total, 1), 1)
    ax.set_xlabel("whitened value")
    ax.legend(frameon=False, fontsize="small", loc="upper right")
    if scalars:
        ax.text(0.02, 0.97, f"KS p = {scalars.get('ks_pvalue', np.nan):.2g}\n"
                f"variance {scalars.get('whitened_variance', np.nan):.3f}\n"
                f"max |w| = {scalars.get('max_abs_whitened', np.nan):.1f}",
                transform=ax.transAxes, va="top", fontsize="small")

    ax = axes[1, 1]
    autocorrelation = np.asarray(arrays["autocorrelation"], float)
    lags = np.arange(1, autocorrelation.size + 1)
    ax.axhline(0.0, color="k", lw=0.8)
    if total > 0:
        ax.axhspan(-1.96 / np.sqrt(total), 1.96 / np.sqrt(total), color="0.85", lw=0,
                   label="95% for white noise")
    ax.plot(lags, autocorrelation, "o-", ms=3, color=_RINGDOWN_COLOR)
    ax.set_xlabel("lag [samples]")
    ax.set_ylabel("autocorrelation of whitened data")
    ax.legend(frameon=False, fontsize="small")
    fig.suptitle(f"{detector} noise: {method}" if method else f"{detector} noise", fontsize="medium")
    # fixed margins: tight_layout would measure every tick label of the four panels again
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.08, top=0.93, wspace=0.22, hspace=0.25)
    return save_figure(fig, path, run_id, trim=False)


def _format_interval(samples) -> str:
    median, lo, hi = np.percentile(np.asarray(samples, float), [50, 5, 95])
    return f"{median:.4g} (+{hi - median:.2g} / -{median - lo:.2g})"


def write_summary(
    path: str | os.PathLike,
    *,
    title: str,
    posterior: Mapping[str, np.ndarray],
    log_evidence: Mapping[str, tuple[float, float]],
    facts: Sequence[tuple[str, str]] = (),
    images: Sequence[str | os.PathLike] = (),
) -> Path:
    """Write a one-page markdown summary: facts, evidences, 90% intervals and the plots.

    Parameters
    ----------
    path : path-like
        Markdown file to write; images are linked relative to its directory.
    title : str
        Page title.
    posterior : mapping of str to array_like
        Posterior columns; each gets a median and 90% interval row.
    log_evidence : mapping of str to (float, float)
        ln Z and error per amplitude prior.
    facts : sequence of (str, str)
        Extra name/value rows (start time, modes, run time, ...).
    images : sequence of path-like
        PNGs to embed.
    """
    path = Path(path)
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in facts]
    lines += ["", "## Evidence", "", "| amplitude prior | ln Z |", "|---|---|"]
    lines += [f"| {prior} | {ln_z:.3f} ± {err:.3f} |" for prior, (ln_z, err) in log_evidence.items()]
    lines += ["", "## Posterior (median and 90% credible interval)", "", "| parameter | value |",
              "|---|---|"]
    lines += [f"| {name} | {_format_interval(values)} |" for name, values in posterior.items()]
    lines += [""]
    for image in images:
        relative = os.path.relpath(Path(image).resolve(), path.resolve().parent)
        lines += [f"![{Path(image).stem}]({relative})", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return path


def whitened_plot_span(
    posterior: Mapping[str, np.ndarray],
    modes: Sequence[str],
    duration: float,
    damping_times: float = WHITENED_PLOT_DAMPING_TIMES,
) -> float:
    """Time span of the whitened-data plot, s since the analysis start.

    ``damping_times`` posterior-median damping times of the longest-lived mode after the
    posterior-median start (the configured start, or later by a sampled start shift), bounded
    by the segment ``duration`` (s).  ``posterior`` holds ``damping_time_<mode>`` (s) for each
    of ``modes``, and optionally the start shift (s).
    """
    missing = [f"damping_time_{m}" for m in modes if f"damping_time_{m}" not in posterior]
    if not modes or missing:
        raise ValueError(f"the whitened-data plot span needs the damping times of the modes; missing {missing}")
    longest = max(float(np.median(posterior[f"damping_time_{m}"])) for m in modes)
    start = max(float(np.median(posterior[START_SHIFT])), 0.0) if START_SHIFT in posterior else 0.0
    return min(start + damping_times * longest, float(duration))


def _noise_description(noise_config: Mapping, scalars: Mapping[str, float]) -> str:
    """One line on how a detector's noise was estimated (for the summary and the figure)."""
    method = noise_config["method"]
    if method == "welch":
        windows = ", ".join(f"[{a:g}, {b:g}]" for a, b in noise_config["offsource"])
        return (f"Welch {noise_config['average']} of {int(scalars['welch_segments'])} segments of "
                f"{noise_config['welch_segment']:g} s from {windows} s (PSD scatter "
                f"{100 * scalars['psd_relative_std']:.0f}%)")
    return f"{method} ({'ASD' if noise_config.get('asd') else method.removesuffix('_file').upper()} file)"


def _whiteness_description(scalars: Mapping[str, float]) -> str:
    return (f"{int(scalars['stretches'])} whitened off-source stretches: variance "
            f"{scalars['whitened_variance']:.3f}, KS p {scalars['ks_pvalue']:.2g} "
            f"(outside the estimate {scalars['ks_pvalue_outside']:.2g}), max |w| "
            f"{scalars['max_abs_whitened']:.1f}, {int(scalars['loud_stretches'])} loud, lag-1 "
            f"autocorrelation {scalars['lag1_autocorrelation']:+.3f}")


def _detector_scalars(diagnostics: Mapping[str, float], detector: str) -> dict[str, float]:
    """The ``noise_<detector>_<name>`` diagnostics of one detector, keyed by ``<name>``."""
    prefix = f"noise_{detector}_"
    return {k.removeprefix(prefix): v for k, v in diagnostics.items() if k.startswith(prefix)}


def summary_facts(
    result,
    *,
    imr: tuple[np.ndarray, np.ndarray] | None = None,
    imr_published: Mapping[str, tuple[float, float, float]] | None = None,
) -> list[tuple[str, str]]:
    """The name/value rows of a run's summary page (:func:`write_summary` ``facts``).

    Parameters
    ----------
    result : gwtools.ringdown.results.RingdownResult
        The run, as returned by the pipeline or read back from its results file.
    imr, imr_published
        IMR remnant samples and published values, as :func:`plot_remnant_corner` takes them;
        their medians and 90% intervals are listed.
    """
    config, diag = result.config, result.diagnostics
    resolved = config["resolved"]
    facts = [
        ("run id", result.run_id or "(none)"),
        ("event", config["event"]["name"]),
        ("modes", ", ".join(config["model"]["modes"]) + f" ({config['model']['polarization']} polarization)"),
        ("start (geocentre GPS)", f"{resolved['start_geocenter_gps']:.4f}"),
        ("start after peak", f"{1e3 * resolved['start_offset_s']:.2f} ms"),
        ("sampled parameters", ", ".join(result.search_parameters)),
        ("segment", f"{config['analysis']['duration']} s at {config['analysis']['sample_rate']:.0f} Hz"),
        ("live points / dlogz", f"{config['sampler']['nlive']} / {config['sampler']['dlogz']}"),
        ("ln B (ringdown vs noise, physical prior)",
         f"{result.log_evidence['physical'][0] - diag['log_noise_evidence']:.2f}"),
        ("likelihood calls", f"{int(diag['ncall'])}"),
        ("sampling time", f"{diag['sampling_walltime']:.1f} s"),
        ("importance ESS", f"{diag['importance_ess']:.0f} of {int(diag['importance_draws'])}"),
    ]
    for detector in result.noise:
        scalars = _detector_scalars(diag, detector)
        line = f"{_noise_description(config['noise'], scalars)}; {_whiteness_description(scalars)}"
        facts.append((f"noise {detector}", line))
    window = config["analysis"].get("start_window_ms")
    if window is not None:
        facts.insert(5, ("start window (sampled, uniform)", f"[{window[0]:g}, {window[1]:g}] ms around it"))
    if imr is not None:
        for name, values in (("final_mass", imr[0]), ("final_spin", imr[1])):
            median, lo, hi = credible_interval(values)
            facts.append((f"IMR {name}", f"{median:.4g} (90%: {lo:.4g} to {hi:.4g})"))
    if imr_published is not None:
        for name, (median, lo, hi) in imr_published.items():
            facts.append((f"IMR {name} (published)", f"{median:.4g} (90%: {lo:.4g} to {hi:.4g})"))
    return facts


def plot_result(
    result,
    directory: str | os.PathLike,
    *,
    amplitude_max: float | None = None,
    imr: tuple[np.ndarray, np.ndarray] | None = None,
    imr_published: Mapping[str, tuple[float, float, float]] | None = None,
    kerr: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    loud_pvalue: float = 1e-4,
    executor: Executor | None = None,
) -> tuple[list[Path], Path]:
    """Every figure of a ringdown run and its one-page summary, into ``directory``.

    ``<label>_remnant.png``, ``_amplitudes.png``, ``_whitened.png`` (over
    :func:`whitened_plot_span`), ``_corner.png`` (with more than two sampled parameters),
    ``_qnm.png``, ``_noise_<detector>.png`` per detector, and ``<label>_summary.md``
    (:func:`summary_facts`, :func:`write_summary`).

    Parameters
    ----------
    result : gwtools.ringdown.results.RingdownResult
        The run, as returned by the pipeline or read back from its results file.
    directory : path-like
        Where the files go.
    amplitude_max : float, optional
        Upper edge of the amplitude prior, 1e-21 strain.
    imr, imr_published
        IMR remnant samples and published values (:func:`plot_remnant_corner`).
    kerr : mapping, optional
        Mode label to (frequency in Hz, damping time in s) samples predicted for a Kerr remnant
        (:func:`plot_qnm_posteriors`).
    loud_pvalue : float
        Off-source stretches with a p-value below it are drawn as loud.
    executor : concurrent.futures.Executor, optional
        Draws every other figure while this process draws the rest (a second process:
        :func:`~gwtools.ringdown.results.output_worker`); without it all are drawn here.

    Returns
    -------
    (list of Path, Path)
        The PNGs and the summary page.
    """
    directory = Path(directory)
    label, post, run_id = result.label, result.posterior, result.run_id or None
    modes = result.config["model"]["modes"]
    span = whitened_plot_span(post, modes, result.config["analysis"]["duration"])
    figures = [
        (plot_remnant_corner, (post["final_mass"], post["final_spin"], directory / f"{label}_remnant.png"),
         dict(imr=imr, imr_published=imr_published, label=f"ringdown {'+'.join(modes)}", run_id=run_id)),
        (plot_amplitudes,
         ({k.removeprefix("amplitude_"): v for k, v in post.items() if k.startswith("amplitude_")},
          directory / f"{label}_amplitudes.png"), dict(amplitude_max=amplitude_max, run_id=run_id)),
        (plot_whitened_data, (result.waveforms, directory / f"{label}_whitened.png"),
         dict(t_max=span, run_id=run_id)),
    ]
    if len(result.search_parameters) > 2:
        columns = {name: post[name] * (1e3 if name == START_SHIFT else 1.0)
                   for name in result.search_parameters}
        figures.append((plot_corner, (columns, directory / f"{label}_corner.png"),
                        dict(labels=CORNER_LABELS, run_id=run_id)))
    measured = {m: (post[f"frequency_{m}"], post[f"damping_time_{m}"]) for m in modes}
    figures.append((plot_qnm_posteriors, (measured, directory / f"{label}_qnm.png"), dict(kerr=kerr, run_id=run_id)))
    noise_config = result.config["noise"]
    for detector, arrays in result.noise.items():
        scalars = _detector_scalars(result.diagnostics, detector)
        path = directory / f"{label}_noise_{detector}.png"
        figures.append((plot_noise_diagnostics, (detector, arrays, scalars, path),
                        dict(method=_noise_description(noise_config, scalars),
                             peak=result.config["resolved"]["peak_geocenter_gps"], loud_pvalue=loud_pvalue,
                             run_id=run_id)))
    elsewhere = {i: executor.submit(fn, *args, **kwargs)
                 for i, (fn, args, kwargs) in enumerate(figures) if executor and i % 2}
    here = {i: fn(*args, **kwargs) for i, (fn, args, kwargs) in enumerate(figures) if i not in elsewhere}
    paths = [elsewhere[i].result() if i in elsewhere else here[i] for i in range(len(figures))]
    summary = write_summary(
        directory / f"{label}_summary.md",
        title=f"Ringdown of {result.config['event']['name']}: {label}",
        posterior=post,
        log_evidence=result.log_evidence,
        facts=summary_facts(result, imr=imr, imr_published=imr_published),
        images=paths,
    )
    return paths, summary


def plot_scan(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    imr: tuple[np.ndarray, np.ndarray] | None = None,
    run_id: str | None = None,
) -> Path:
    """ln B and the remnant mass and spin (median, 90%) against start time, per mode set.

    Parameters
    ----------
    rows : sequence of mapping
        Scan table rows (:func:`gwtools.ringdown.scan.tabulate_scan`).
    path : path-like
        PNG to write.
    imr : (array_like, array_like), optional
        IMR remnant (mass, spin) samples, drawn as 90% bands.
    run_id : str, optional
        Identifier of the scan, printed on the figure.
    """
    ok = [row for row in rows if row["status"] == "ok"]
    mode_sets = list(dict.fromkeys(row["modes"] for row in rows))
    fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    compared = [row for row in ok if row["ln_b"] != ""]
    for modes in mode_sets[1:]:
        sel = [row for row in compared if row["modes"] == modes]
        axes[0].errorbar(
            [r["start_offset_ms"] for r in sel], [r["ln_b"] for r in sel],
            yerr=[r["ln_b_err"] for r in sel], marker="o", capsize=2,
            label=f"{modes} vs {mode_sets[0]}",
        )
    axes[0].axhline(0.0, color="k", lw=0.8)
    axes[0].set_ylabel(r"$\ln B$ (physical prior)")
    axes[0].legend(frameon=False)
    for j, (ax, name, label) in enumerate(((axes[1], "final_mass", r"$M_f\ [M_\odot]$"),
                                           (axes[2], "final_spin", r"$\chi_f$"))):
        if imr is not None:
            _, lower, upper = credible_interval(imr[j])
            ax.axhspan(lower, upper, color="0.85", label="IMR 90%")
        for k, modes in enumerate(mode_sets):
            sel = [row for row in ok if row["modes"] == modes]
            t = np.array([r["start_offset_ms"] for r in sel]) + 0.08 * (k - (len(mode_sets) - 1) / 2)
            median = np.array([r[f"{name}_median"] for r in sel], dtype=float)
            lower = np.array([r[f"{name}_lower"] for r in sel], dtype=float)
            upper = np.array([r[f"{name}_upper"] for r in sel], dtype=float)
            ax.errorbar(t, median, yerr=[median - lower, upper - median], marker="o", ls="",
                        capsize=2, label=modes)
        ax.set_ylabel(label)
        ax.legend(frameon=False)
    failed = [row for row in rows if row["status"] != "ok"]
    for row in failed:
        for ax in axes:
            ax.axvline(row["start_offset_ms"], color="tab:red", lw=0.8, ls=":")
    axes[-1].set_xlabel("start time after the peak [ms]")
    axes[0].set_title(r"Start-time scan ($\ln B$: $\pm 1\sigma$; $M_f$, $\chi_f$: 90% intervals;"
                      " red dotted: failed runs)", fontsize="medium")
    return save_figure(fig, path, run_id)
