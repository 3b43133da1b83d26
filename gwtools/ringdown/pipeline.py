"""The ringdown pipeline: from a configuration to a results file, plots and a summary.

Stages (each a function, so benchmarks and notebooks can time or inspect them one by one):

1. :func:`load_strain` reads each detector's strain, checks its quality against the windows the
   analysis uses (:func:`usable_strain`) and conditions it (high-/low-pass, decimation).
2. :func:`estimate_noise` estimates the noise PSD and autocovariance (Welch off-source, PSD or
   ACF files; :func:`estimate_acfs` gives just the ACFs), and after step 3 :func:`check_noise`
   tests it on whitened off-source data (:mod:`gwtools.ringdown.noise_diagnostics`).
3. :func:`prepare_analysis` resolves the start times (reference detector -> geocentre -> each
   detector), cuts the segments and precomputes the likelihood data (noise predictors).
4. :func:`sample_posterior` runs nested sampling of the FIREFLY marginal likelihood
   (arXiv:2502.01093) over the remnant mass and spin (and inclination if sampled).
5. :func:`build_result` reconstructs amplitudes and phases, converts the evidence to the physical
   (flat-in-amplitude) prior by importance reweighting, and collects provenance.
6. :func:`make_plots` draws the figures and the one-page summary.

:func:`run_pipeline` runs them all and writes ``<label>.h5`` (see
:mod:`gwtools.ringdown.results`), ``<label>_bilby.hdf5``, the PNGs and ``<label>_summary.md``
into ``[output] directory``, as one result set published with its manifest
``<label>.manifest.json`` (:mod:`gwtools.io.outputs`), while holding the directory's lock.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py

import gwtools.ringdown.precision  # noqa: F401  (float64 before JAX makes any array)

# isort: split
import jax
import jax.numpy as jnp
import numpy as np
from threadpoolctl import threadpool_limits

from gwtools.io import data_quality
from gwtools.io.checksums import file_sha256
from gwtools.io.outputs import MANIFEST_SUFFIX, lock_directory, new_run_id, staged_result_set
from gwtools.io.strain import TimeSeries, read_raw_strain
from gwtools.ringdown import conditioning, detectors, noise, noise_diagnostics
from gwtools.ringdown.config import RingdownConfig, config_to_dict, start_offset_seconds, start_window_seconds
from gwtools.ringdown.constants import PSI_PERIOD
from gwtools.ringdown.direct import build_direct_analysis_data
from gwtools.ringdown.firefly import (
    FireflyLikelihood,
    QuadraturePrior,
    amplitudes_and_phases,
    reweight_to_physical_prior,
)
from gwtools.ringdown.input_checks import analysis_windows, check_inputs, peak_geocenter, read_config_psd
from gwtools.ringdown.likelihood import (
    START_SHIFT,
    AnalysisData,
    build_analysis_data,
    log_noise_evidence,
    rotate_antenna,
    window_steps,
)
from gwtools.ringdown.model import AMPLITUDE_UNIT, RingdownModel, design_matrix
from gwtools.ringdown.noise_diagnostics import WhitenessReport, whiteness_report
from gwtools.ringdown.priors import ParameterSpace, PriorRange
from gwtools.ringdown.qnm import frequency_damping_time
from gwtools.ringdown.results import (
    RingdownResult,
    output_worker,
    save_bilby_result,
    software_versions,
    write_result,
)
from gwtools.ringdown.sampling import NestedSamplingResult, run_nested

__all__ = [
    "PipelineOutputs",
    "PreparedAnalysis",
    "build_likelihood",
    "build_result",
    "check_noise",
    "checkpoint_path",
    "cut_segments",
    "estimate_acfs",
    "estimate_noise",
    "load_strain",
    "make_plots",
    "noise_arrays",
    "noise_scalars",
    "parameter_space",
    "prepare_analysis",
    "read_imr_remnant",
    "read_imr_samples",
    "run_pipeline",
    "sample_posterior",
    "usable_strain",
]

logger = logging.getLogger(__name__)

#: Posterior samples drawn per sampler sample when reconstructing amplitudes: more reduce the
#: noise of the physical-prior importance weights (their ESS is reported).
DRAWS_PER_SAMPLE = 4

#: Posterior draws used for the median/90% band of the whitened ringdown in the data plot.
WAVEFORM_DRAWS = 300


@dataclass(frozen=True)
class PreparedAnalysis:
    """Everything fixed before sampling.

    Attributes
    ----------
    peak_geocenter, start_geocenter : float
        GPS of the peak and of the analysis start at the geocentre, s.
    start_times : dict of str to float
        GPS of the analysis start in each detector, s.
    segments : dict of str to TimeSeries
        Conditioned analysis segments.
    acfs : ndarray, shape (n_det, n)
        Noise autocovariance at lags 0 .. n-1, strain^2.
    antenna : ndarray, shape (n_det, 2)
        (F_plus, F_cross) at polarization angle 0.
    data : AnalysisData
        Whitened likelihood data.
    """

    peak_geocenter: float
    start_geocenter: float
    start_times: Mapping[str, float]
    segments: Mapping[str, TimeSeries]
    acfs: np.ndarray
    antenna: np.ndarray
    data: AnalysisData


@dataclass(frozen=True)
class PipelineOutputs:
    """Paths written by :func:`run_pipeline` and the result itself (``result.run_id`` is the
    run id of the published set, whose manifest is ``manifest_path``)."""

    result: RingdownResult
    result_path: Path
    bilby_path: Path
    plots: tuple[Path, ...] = ()
    summary_path: Path | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    manifest_path: Path | None = None


def usable_strain(config: RingdownConfig) -> dict[str, TimeSeries]:
    """Each detector's raw strain, checked and cut to the stretch the analysis filters.

    The defects of the samples (:mod:`gwtools.io.data_quality`: NaN gaps, flat stretches,
    exactly repeated blocks) are judged against the windows the analysis uses
    (:func:`~gwtools.ringdown.input_checks.analysis_windows`: the on-source segment and the off-source
    noise window), each widened by the reach of the filters' transients
    (:func:`~gwtools.ringdown.conditioning.filter_padding`).  A defect that reaches a window
    refuses the run, or with ``[data] on_bad_data = "warn"`` is logged as a warning; one away
    from every window is logged and ignored.  The analysis keeps the longest gap-free stretch
    of the file that holds all its windows, starting on a sample of the decimated grid (so the
    analysis samples are those of the whole file); NaN inside a window, or a gap between two
    windows, is always refused.  The metadata are checked by
    :func:`~gwtools.ringdown.input_checks.check_inputs`.

    Returns
    -------
    dict of str to TimeSeries
        Raw (unfiltered) strain per detector, in analysis order.
    """
    analysis = config.analysis
    padding = conditioning.filter_padding(
        analysis.sample_rate, analysis.f_low if analysis.f_low > 0 else None, analysis.f_high
    )
    windows = analysis_windows(config)
    strain = {}
    for detector in config.data.detectors:
        info, samples = read_raw_strain(config.data.files[detector], detector)
        judgement = data_quality.judge_windows(info, samples, windows[detector], padding)
        for message in judgement.ignored:
            logger.info("%s: away from the windows the analysis uses, ignored", message)
        if judgement.fatal:
            raise ValueError(f"{judgement.fatal[0]}: choose another start time or off-source window")
        if judgement.problems and config.data.on_bad_data == "refuse":
            raise ValueError(
                f"{'; '.join(judgement.problems)}: the data are damaged there; choose another "
                'window, or set [data] on_bad_data = "warn" to analyse them anyway'
            )
        for message in judgement.problems:
            logger.warning("%s (on_bad_data = warn: going on)", message)
        # start on the decimated grid of the whole file
        factor = int(round(info.sample_rate / analysis.sample_rate))
        first = -(-judgement.first // factor) * factor
        strain[detector] = TimeSeries(
            samples[first : judgement.stop], info.t0 + first / info.sample_rate, info.sample_rate,
            detector,
        )
    return strain


def load_strain(config: RingdownConfig) -> dict[str, TimeSeries]:
    """Read, check (:func:`usable_strain`) and condition the strain of every detector.

    The whole usable stretch is filtered, so filter edges fall far from the analysis segment.
    """
    strain = {}
    analysis = config.analysis
    for detector, raw in usable_strain(config).items():
        strain[detector] = conditioning.condition(
            raw,
            sample_rate=analysis.sample_rate,
            f_low=analysis.f_low if analysis.f_low > 0 else None,
            f_high=analysis.f_high,
        )
    conditioning.check_compatible(strain)
    return strain


def _offsource_data(config: RingdownConfig, ts: TimeSeries) -> list[TimeSeries]:
    """The conditioned data of each ``[noise] offsource`` window of one detector."""
    peak = peak_geocenter(config)
    stretches = []
    for begin, end in config.noise.offsource:
        try:
            stretches.append(ts.slice(peak + begin, peak + end))
        except ValueError as err:
            raise ValueError(
                f"[noise] offsource: window {[begin, end]} s around the peak does not fit in the "
                f"{ts.detector} data ({err})"
            ) from None
    return stretches


def _welch_noise(config: RingdownConfig, ts: TimeSeries, n: int) -> noise.NoiseEstimate:
    noise_config = config.noise
    try:
        noise.check_resolution(noise_config.welch_segment, ts.sample_rate, n)
    except ValueError as err:
        raise ValueError(f"[noise] welch_segment: {err}") from None
    stretches = _offsource_data(config, ts)
    welch = noise.welch_estimate(stretches, noise_config.welch_segment, average=noise_config.average)
    if welch.relative_std > noise.MAX_PSD_SCATTER:
        # Talbot & Thrane 2020 (arXiv:2006.05292): a PSD estimated from few averages biases the
        # likelihood; published analyses average over 512-4096 s
        needed = welch.n_segments * (welch.relative_std / noise.MAX_PSD_SCATTER) ** 2
        logger.warning(
            "%s: the noise PSD is the %s of only %d Welch segments of %g s (%g s of off-source data), "
            "so each frequency bin scatters by %.0f%% (1 sigma); the %g s analysis segment needs "
            "segments of at least %g s for its ACF. About %.0f segments (%.0f s of data at %g s) "
            "bring the scatter to %.0f%%: use more off-source data (windows before and after the "
            "event), or shorter segments",
            ts.detector, welch.average, welch.n_segments, welch.segment_duration,
            sum(s.duration for s in stretches), 100 * welch.relative_std, config.analysis.duration,
            2 * config.analysis.duration, needed, (needed + 1) / 2 * welch.segment_duration,
            welch.segment_duration, 100 * noise.MAX_PSD_SCATTER,
        )
    acf = noise.acf_from_psd(welch.frequency, welch.psd, ts.sample_rate, n)
    return noise.NoiseEstimate(acf=acf, frequency=welch.frequency, psd=welch.psd, method="welch",
                               welch=welch)


def _psd_file_noise(config: RingdownConfig, ts: TimeSeries, n: int) -> noise.NoiseEstimate:
    from gwtools.io.strain import read_strain_info

    detector, analysis = ts.detector, config.analysis
    file_freqs, file_psd = read_config_psd(config, detector)
    input_rate = read_strain_info(config.data.files[detector], detector).sample_rate
    if analysis.f_low < file_freqs[0]:
        logger.warning(
            "%s: the PSD file starts at %g Hz, above [analysis] f_low = %g Hz: below %g Hz its first "
            "value is held (then suppressed by the high-pass filter)",
            detector, file_freqs[0], analysis.f_low, file_freqs[0],
        )
    try:
        freqs, psd = conditioning.conditioned_psd(
            file_freqs, file_psd, input_rate, ts.sample_rate,
            f_low=analysis.f_low if analysis.f_low > 0 else None, f_high=analysis.f_high,
        )
    except ValueError as err:
        raise ValueError(f"[noise] psd_files.{detector}: {err}") from None
    acf = noise.acf_from_psd(freqs, psd, ts.sample_rate, n)
    return noise.NoiseEstimate(acf=acf, frequency=freqs, psd=psd, method="psd_file",
                               file_frequency=file_freqs, file_psd=file_psd)


def _acf_file_noise(config: RingdownConfig, ts: TimeSeries, n: int) -> noise.NoiseEstimate:
    path = config.noise.acf_files[ts.detector]
    usable = noise.read_acf(path, ts.sample_rate)
    freqs, psd = noise.psd_from_acf(usable, ts.sample_rate)
    return noise.NoiseEstimate(acf=noise.read_acf(path, ts.sample_rate, n), frequency=freqs, psd=psd,
                               method="acf_file")


def estimate_noise(
    config: RingdownConfig, strain: Mapping[str, TimeSeries]
) -> dict[str, noise.NoiseEstimate]:
    """The noise model of each detector, as ``[noise] method`` says.

    * ``"welch"``: the PSD of the conditioned off-source windows (Welch, mean or median
      pooled over all their segments); a warning says when the windows hold too few segments
      for a PSD scatter below :data:`gwtools.ringdown.noise.MAX_PSD_SCATTER`;
    * ``"psd_file"``: the PSD read from the file (:func:`~gwtools.ringdown.noise.read_psd`),
      put through the response of the data conditioning
      (:func:`~gwtools.ringdown.conditioning.conditioned_psd`: high-pass, anti-aliasing and
      folding to the analysis rate);
    * ``"acf_file"``: the ACF read from the file, as it is (its PSD for the plots is its
      cosine transform).

    Then the ACF at lags ``0 .. n - 1`` is the cosine transform of the PSD
    (:func:`~gwtools.ringdown.noise.acf_from_psd`).

    Returns
    -------
    dict of str to NoiseEstimate
        In analysis order.
    """
    n = round(config.analysis.duration * config.analysis.sample_rate)
    build = {"welch": _welch_noise, "psd_file": _psd_file_noise, "acf_file": _acf_file_noise}
    return {d: build[config.noise.method](config, strain[d], n) for d in config.data.detectors}


def estimate_acfs(config: RingdownConfig, strain: Mapping[str, TimeSeries]) -> np.ndarray:
    """Noise autocovariance of each detector at lags 0 .. n-1 of the analysis segment.

    Returns
    -------
    ndarray, shape (n_det, n)
        strain^2, for ``n = round(duration * sample_rate)`` (:func:`estimate_noise`).
    """
    return np.stack([estimate.acf for estimate in estimate_noise(config, strain).values()])


def check_noise(
    config: RingdownConfig,
    strain: Mapping[str, TimeSeries],
    prepared: PreparedAnalysis,
) -> dict[str, WhitenessReport]:
    """Whiteness tests of each detector's off-source data under its noise model
    (:func:`gwtools.ringdown.noise_diagnostics.whiteness_report`)."""
    analysis = config.analysis
    padding = conditioning.filter_padding(
        analysis.sample_rate, analysis.f_low if analysis.f_low > 0 else None, analysis.f_high
    )
    peak = prepared.peak_geocenter
    estimate_windows = (
        [(peak + a, peak + b) for a, b in config.noise.offsource] if config.noise.method == "welch" else []
    )
    reports = {}
    for i, detector in enumerate(config.data.detectors):
        model = noise.ToeplitzNoise.from_acf(prepared.acfs[i], detector)
        start = prepared.start_times[detector]
        reports[detector] = whiteness_report(
            strain[detector], model, (start, start + analysis.duration), estimate_windows, padding
        )
        scalars = reports[detector].scalars()
        logger.info(
            "%s noise check: %d whitened stretches, variance %.3f, KS p %.2g, max |w| %.1f, "
            "%d loud stretches", detector, scalars["stretches"], scalars["whitened_variance"],
            scalars["ks_pvalue"], scalars["max_abs_whitened"], scalars["loud_stretches"],
        )
        for gps in reports[detector].loud_starts:
            logger.warning(
                "%s: the whitened stretch at GPS %.2f (%+.2f s from the peak) is loud (p < %g): "
                "a glitch or non-stationary noise%s", detector, gps, gps - peak,
                noise_diagnostics.LOUD_PVALUE,
                " inside the data of the noise estimate" if any(a <= gps < b for a, b in estimate_windows)
                else "",
            )
    return reports


def noise_arrays(
    estimates: Mapping[str, noise.NoiseEstimate], reports: Mapping[str, WhitenessReport]
) -> dict[str, dict[str, np.ndarray]]:
    """Per detector, the arrays of the noise model and its checks, for the results file."""
    arrays = {}
    for detector, estimate in estimates.items():
        report = reports[detector]
        entry = {"frequency": estimate.frequency, "psd": estimate.psd, "acf": estimate.acf}
        if estimate.welch is not None:
            entry.update(psd_lower=estimate.welch.lower, psd_upper=estimate.welch.upper)
        if estimate.file_psd is not None:
            entry.update(file_frequency=estimate.file_frequency, file_psd=estimate.file_psd)
        entry.update(
            stretch_gps=report.starts, stretch_variance=report.variances,
            stretch_max_abs=report.max_abs, stretch_in_estimate=report.in_estimate.astype(float),
            stretch_loud_pvalue=report.loud_pvalues, histogram_edges=report.histogram_edges,
            histogram_counts=report.histogram_counts.astype(float),
            autocorrelation=report.autocorrelation,
        )
        arrays[detector] = entry
    return arrays


def noise_scalars(
    estimates: Mapping[str, noise.NoiseEstimate], reports: Mapping[str, WhitenessReport]
) -> dict[str, float]:
    """``noise_<detector>_<name>`` numbers of the noise model and its checks (diagnostics)."""
    scalars = {}
    for detector, estimate in estimates.items():
        values = dict(reports[detector].scalars())
        if estimate.welch is not None:
            values.update(welch_segments=estimate.welch.n_segments,
                          psd_relative_std=estimate.welch.relative_std)
        scalars.update({f"noise_{detector}_{k}": v for k, v in values.items()})
    return scalars


def cut_segments(
    strain: Mapping[str, TimeSeries],
    start_times: Mapping[str, float],
    duration: float,
    start_window: tuple[float, float] | None = None,
) -> tuple[dict[str, TimeSeries], np.ndarray, np.ndarray]:
    """Cut each detector's analysis segment, and for a start window the strain all its candidates span.

    Parameters
    ----------
    strain : mapping of str to TimeSeries
        Conditioned strain per detector, in analysis order.
    start_times : mapping of str to float
        GPS of the (configured) analysis start in each detector, s.
    duration : float
        Segment length, s.
    start_window : (float, float) or None
        Start shifts (lo, hi) relative to the start times, s, lo <= 0 <= hi.

    Returns
    -------
    (segments, times, data)
        The segments at the start times, their times since the start (n_det, n), and the data
        :func:`~gwtools.ringdown.likelihood.build_analysis_data` takes: the segments' strain
        (n_det, n), or with a window each detector's strain from its earliest candidate's first
        sample on (n_det, n + n_starts - 1).

    Raises
    ------
    ValueError
        A segment, or a candidate segment of the window, is not inside the data.
    """
    segments, times, first = {}, [], []
    for detector, t_start in start_times.items():
        ts = strain[detector]
        segments[detector], since_start = conditioning.extract_segment(ts, t_start, duration)
        times.append(since_start)
        first.append(round((segments[detector].t0 - ts.t0) * ts.sample_rate))
    times = np.stack(times)
    if start_window is None:
        return segments, times, np.stack([segment.data for segment in segments.values()])
    # the same steps as build_analysis_data finds from these times
    first_step, n_starts = window_steps(times[:, 0], times[0, 1] - times[0, 0], start_window)
    stretches = []
    for (detector, segment), begin, step in zip(segments.items(), first, first_step):
        ts, begin = strain[detector], begin + step
        end = begin + len(segment) + n_starts - 1
        if begin < 0 or end > len(ts):
            lo, hi = (1e3 * x for x in start_window)
            raise ValueError(
                f"the start window [{lo:g}, {hi:g}] ms reaches beyond the {detector} data "
                f"[{ts.t0}, {ts.end_time}): narrow the window or read more data around the event"
            )
        stretches.append(ts.data[begin:end])
    return segments, times, np.stack(stretches)


def prepare_analysis(
    config: RingdownConfig, strain: Mapping[str, TimeSeries], acfs: np.ndarray
) -> PreparedAnalysis:
    """Resolve the start times, cut the segments (of every start in the window) and whiten them.

    The antenna patterns are taken at the configured start: a start window of milliseconds
    turns the Earth by about 1e-7 rad, far below any effect on them.
    """
    event = config.event
    peak = peak_geocenter(config)
    start = peak + start_offset_seconds(config)
    start_times = detectors.detector_start_times(start, event.ra, event.dec, config.data.detectors)
    window = start_window_seconds(config) if config.analysis.start_window_ms is not None else None
    segments, times, data = cut_segments(strain, start_times, config.analysis.duration, window)
    antenna = np.array(
        [detectors.antenna_pattern(d, event.ra, event.dec, 0.0, start) for d in config.data.detectors]
    )
    data = build_analysis_data(times, data, acfs, antenna, config.data.detectors, start_window=window)
    return PreparedAnalysis(
        peak_geocenter=peak,
        start_geocenter=start,
        start_times=start_times,
        segments=segments,
        acfs=acfs,
        antenna=antenna,
        data=data,
    )


def parameter_space(config: RingdownConfig) -> tuple[ParameterSpace, dict[str, float]]:
    """Sampled parameters with their priors, and the fixed nonlinear parameters.

    Always sampled: ``final_mass`` and ``final_spin`` (uniform).  For the ``"kerr"`` amplitude
    model the inclination is fixed to ``arccos([prior] cos_inclination)``, or sampled flat in
    its cosine when that is a range (a sine prior on the angle).  The polarization angle is
    fixed to ``[event] psi``, or sampled uniformly on ``[prior] psi``; the antenna patterns have
    period pi in psi, so a range of one period wraps around (periodic).  With
    ``[analysis] start_window_ms`` the start shift ``start_shift`` (s) is sampled uniformly in
    the window.

    With the amplitudes marginalized psi is measured only modulo pi/2 (psi + pi/2 flips the
    sign of the template, which the mode phases absorb), and not at all for a face-on or
    face-off source, whose circular polarization turns with psi into a phase.

    Returns
    -------
    (ParameterSpace, dict of str to float)
    """
    prior = config.prior
    priors = [
        PriorRange("final_mass", *prior.final_mass),
        PriorRange("final_spin", *prior.final_spin),
    ]
    fixed = {}
    if config.model.polarization == "kerr":
        if isinstance(prior.cos_inclination, tuple):
            lo, hi = prior.cos_inclination
            # flat in cos(inclination) <=> sine prior on the angle
            priors.append(PriorRange("inclination", math.acos(hi), math.acos(lo), kind="sine"))
        else:
            fixed["inclination"] = math.acos(prior.cos_inclination)
    if prior.psi is None:
        fixed["polarization"] = config.event.psi
    else:
        lo, hi = prior.psi
        priors.append(PriorRange("polarization", lo, hi, periodic=math.isclose(hi - lo, PSI_PERIOD)))
    if config.analysis.start_window_ms is not None:
        priors.append(PriorRange(START_SHIFT, *start_window_seconds(config)))
    return ParameterSpace(tuple(priors)), fixed


def build_likelihood(
    config: RingdownConfig, prepared: PreparedAnalysis
) -> tuple[FireflyLikelihood, ParameterSpace]:
    """The FIREFLY marginal likelihood and the sampled space of this configuration."""
    space, fixed = parameter_space(config)
    scale = config.prior.quadrature_scale
    quadrature_prior = QuadraturePrior(
        kind=config.prior.quadrature,
        amplitude_max=config.prior.amplitude_max / AMPLITUDE_UNIT,
        scale=None if scale is None else scale / AMPLITUDE_UNIT,
    )
    model = RingdownModel(modes=config.model.modes, polarization=config.model.polarization)
    likelihood = FireflyLikelihood(
        model, prepared.data, parameters=space.names, fixed=fixed, prior=quadrature_prior
    )
    return likelihood, space


def sample_posterior(
    config: RingdownConfig,
    likelihood: FireflyLikelihood,
    space: ParameterSpace,
    *,
    resume: bool = False,
    progress: bool = True,
) -> NestedSamplingResult:
    """Run nested sampling with the ``[sampler]`` settings; checkpoints go to
    ``<output>/<label>_checkpoint.npz`` (blackjax) or ``.pkl`` (dynesty)."""
    config.output.directory.mkdir(parents=True, exist_ok=True)
    return run_nested(
        likelihood, space, config.sampler, checkpoint_path=checkpoint_path(config), resume=resume,
        progress=progress,
    )


def checkpoint_path(config: RingdownConfig) -> Path:
    """Where the sampler of ``config`` keeps its checkpoint."""
    suffix = "pkl" if config.sampler.engine == "dynesty" else "npz"
    return config.output.directory / f"{config.output.label}_checkpoint.{suffix}"


@functools.partial(jax.jit, static_argnums=0)
def _whitened_templates(model: RingdownModel, data, nonlinear, quadratures):
    """Whitened ringdowns (n_draws, n_det, n) of (final_mass, final_spin, inclination,
    polarization, start_shift) rows and their quadratures; a shifted start makes the template
    zero before it.  The data are an argument, so one compilation serves every analysis of a
    model (the start times of a scan)."""

    def whitened_template(row, b):
        antenna = rotate_antenna(data.antenna, row[3])
        since_start = data.times - row[4]
        basis = design_matrix(model, row[0], row[1], since_start, antenna, row[2])
        strain = jnp.einsum("q,dqn->dn", b, jnp.where(since_start[:, None, :] >= 0.0, basis, 0.0))
        return jnp.einsum("dmn,dn->dm", data.whitening, strain)

    return jax.vmap(whitened_template)(nonlinear, quadratures)


def _whitened_waveforms(
    likelihood: FireflyLikelihood,
    prepared: PreparedAnalysis,
    nonlinear: np.ndarray,
    quadratures: np.ndarray,
) -> dict[str, dict[str, np.ndarray]]:
    """Whitened data and the median and 90% band of the whitened ringdown, per detector.

    ``nonlinear`` holds (final_mass, final_spin, inclination, polarization, start_shift) rows
    and ``quadratures`` the matching B (units of AMPLITUDE_UNIT).  The data are those of the
    configured start; a draw whose start is shifted has its template start there, zero before.
    """
    data = build_direct_analysis_data(
        prepared.data.times, np.stack([prepared.segments[d].data for d in prepared.data.detectors]),
        prepared.acfs, prepared.antenna, prepared.data.detectors)
    templates = np.asarray(_whitened_templates(likelihood.model, data, nonlinear, quadratures))
    lower, median, upper = np.percentile(templates, [5, 50, 95], axis=0)
    return {
        detector: {
            "time": np.asarray(data.times[i]),
            "whitened_data": np.asarray(data.whitened_data[i]),
            "whitened_median": median[i],
            "whitened_lower": lower[i],
            "whitened_upper": upper[i],
        }
        for i, detector in enumerate(data.detectors)
    }


def build_result(
    config: RingdownConfig,
    prepared: PreparedAnalysis,
    likelihood: FireflyLikelihood,
    space: ParameterSpace,
    sampling: NestedSamplingResult,
    *,
    diagnostics: Mapping[str, float] = (),
    run_id: str = "",
    noise_model: Mapping[str, Mapping[str, np.ndarray]] = (),
) -> RingdownResult:
    """Reconstruct amplitudes and phases under the physical prior and assemble the result.

    The posterior holds, per physical-prior sample: the sampled parameters (angles in rad, the
    start shift in s), with a sampled start also ``start_offset_ms`` (the start after the peak,
    ms), then per mode ``amplitude_<mode>`` (units of 1e-21 strain), ``phase_<mode>`` (rad),
    and for each Kerr mode ``frequency_<mode>`` (Hz) and ``damping_time_<mode>`` (s).  The
    noise evidence (diagnostic ``log_noise_evidence``) is
    :func:`~gwtools.ringdown.likelihood.log_noise_evidence`: averaged over the start window
    when the start is sampled.  ``run_id`` identifies the run in the result and its plots;
    ``noise_model`` holds the arrays of :func:`noise_arrays`.
    """
    model = likelihood.model
    recon = reweight_to_physical_prior(
        likelihood,
        sampling.samples,
        sampling.log_evidence,
        sampling.log_evidence_err,
        seed=config.sampler.seed,
        draws_per_sample=DRAWS_PER_SAMPLE,
    )
    if recon.physical_indices.size == 0:
        raise ValueError(
            "every reconstructed amplitude lies outside the prior: raise [prior] amplitude_max"
        )
    idx = recon.physical_indices
    theta = recon.theta[idx]
    quadratures = recon.quadratures[idx]
    amplitudes, phases = amplitudes_and_phases(quadratures)
    posterior: dict[str, np.ndarray] = {name: theta[:, i] for i, name in enumerate(space.names)}
    units = {"final_mass": "solar mass (detector frame)", "inclination": "rad", "polarization": "rad",
             START_SHIFT: "s (after the configured start)", "start_offset_ms": "ms (after the peak)"}
    if START_SHIFT in posterior:
        posterior["start_offset_ms"] = 1e3 * (start_offset_seconds(config) + posterior[START_SHIFT])
    for j, label in enumerate(model.amplitude_labels):
        posterior[f"amplitude_{label}"] = np.asarray(amplitudes[:, j])
        posterior[f"phase_{label}"] = np.asarray(phases[:, j])
        units[f"amplitude_{label}"] = "1e-21 strain"
        units[f"phase_{label}"] = "rad"
    freq, tau = frequency_damping_time(model.modes, posterior["final_mass"], posterior["final_spin"])
    for j, mode in enumerate(model.modes):
        posterior[f"frequency_{mode}"] = np.asarray(freq[:, j])
        posterior[f"damping_time_{mode}"] = np.asarray(tau[:, j])
        units[f"frequency_{mode}"] = "Hz"
        units[f"damping_time_{mode}"] = "s"

    draws = theta[:WAVEFORM_DRAWS]
    nonlinear = np.array([[float(v) for v in (*likelihood.nonlinear(row), likelihood.start_shift(row))]
                          for row in draws])
    waveforms = _whitened_waveforms(likelihood, prepared, nonlinear, quadratures[:WAVEFORM_DRAWS])

    resolved = config_to_dict(config)
    resolved["resolved"] = {
        "peak_geocenter_gps": prepared.peak_geocenter,
        "start_geocenter_gps": prepared.start_geocenter,
        "start_offset_s": start_offset_seconds(config),
        "start_times_gps": dict(prepared.start_times),
        "n_samples": prepared.data.n_samples,
        "sampled_parameters": list(space.names),
        "fixed_parameters": dict(likelihood.fixed),
    }
    checksums = {str(path): file_sha256(path) for path in config.data.files.values()}
    noise_files = {"acf_file": config.noise.acf_files, "psd_file": config.noise.psd_files}
    checksums.update({str(p): file_sha256(p) for p in noise_files.get(config.noise.method, {}).values()})
    return RingdownResult(
        label=config.output.label,
        posterior=posterior,
        search_parameters=space.names,
        search_ranges={p.name: (p.lower, p.upper) for p in space.priors},
        prior_kinds={p.name: p.kind for p in space.priors},
        periodic_parameters=tuple(p.name for p in space.priors if p.periodic),
        log_evidence={
            config.prior.quadrature: (sampling.log_evidence, sampling.log_evidence_err),
            "physical": (recon.log_evidence_physical, recon.log_evidence_physical_err),
        },
        config=resolved,
        units={k: v for k, v in units.items() if k in posterior},
        diagnostics={
            "ncall": sampling.ncall,
            "niter": sampling.niter,
            "ncall_resumed": sampling.resumed_ncall,
            "sampling_walltime": sampling.walltime,
            "log_noise_evidence": log_noise_evidence(prepared.data),
            "importance_ess": recon.ess,
            "importance_draws": int(recon.log_weights.size),
            "importance_efficiency": recon.ess / recon.log_weights.size,
            "posterior_samples_sampler": int(sampling.samples.shape[0]),
            **dict(diagnostics),
        },
        versions=software_versions(),
        checksums=checksums,
        waveforms=waveforms,
        run_id=run_id,
        noise=dict(noise_model),
    )


def read_imr_samples(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """IMR remnant (final_mass, final_spin) samples from an HDF5 file with those datasets."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IMR samples file {path} does not exist ([data] imr_samples)")
    with h5py.File(path, "r") as f:
        missing = [k for k in ("final_mass", "final_spin") if k not in f]
        if missing:
            raise ValueError(f"{path}: datasets {missing} are missing ([data] imr_samples)")
        return f["final_mass"][()], f["final_spin"][()]


def read_imr_remnant(path: str | Path) -> dict[str, tuple[float, float, float]]:
    """Published IMR remnant values: (median, lower, upper) of ``final_mass`` and ``final_spin``.

    The JSON file holds, for each of the two, an object with ``median``, ``lower`` and
    ``upper`` (bounds of the credible interval given by its ``credible_level``, 0.9); the mass
    in detector-frame solar masses.  Any other keys (provenance) are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IMR remnant file {path} does not exist ([data] imr_remnant)")
    try:
        table = json.loads(path.read_text())
        values = {
            name: tuple(float(table[name][key]) for key in ("median", "lower", "upper"))
            for name in ("final_mass", "final_spin")
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{path}: expected JSON with final_mass and final_spin, each with median, lower and "
            f"upper ([data] imr_remnant): {err!r}"
        ) from None
    for name, (median, lower, upper) in values.items():
        if not lower <= median <= upper:
            raise ValueError(f"{path}: {name} needs lower <= median <= upper, got {lower}, {median}, {upper}")
    return values


def make_plots(
    result: RingdownResult,
    directory: str | Path,
    imr_path: str | Path | None = None,
    imr_remnant_path: str | Path | None = None,
    executor=None,
) -> tuple[list[Path], Path]:
    """Draw the figures and the summary page of ``result``; return (PNG paths, summary path).

    ``imr_path`` names IMR remnant samples (:func:`read_imr_samples`), ``imr_remnant_path``
    published IMR values (:func:`read_imr_remnant`); both are drawn in the remnant plot, and the
    QNMs the IMR samples predict for a Kerr remnant are drawn against the measured ones.  The
    drawing is :func:`gwtools.ringdown.plots.plot_result`'s (``executor``: a second process that
    draws half the figures, :func:`gwtools.ringdown.results.output_worker`).
    """
    from gwtools.ringdown import plots

    imr = read_imr_samples(imr_path) if imr_path is not None else None
    published = read_imr_remnant(imr_remnant_path) if imr_remnant_path is not None else None
    kerr = None
    if imr is not None:
        modes = result.config["model"]["modes"]
        freq, tau = frequency_damping_time(modes, imr[0], imr[1])
        kerr = {m: (np.asarray(freq[:, j]), np.asarray(tau[:, j])) for j, m in enumerate(modes)}
    return plots.plot_result(
        result, directory, amplitude_max=result.config["prior"]["amplitude_max"] / AMPLITUDE_UNIT,
        imr=imr, imr_published=published, kerr=kerr, loud_pvalue=noise_diagnostics.LOUD_PVALUE,
        executor=executor,
    )


def use_compilation_cache() -> Path | None:
    """Keep JAX's compiled functions on disk so repeated runs (scans, re-runs) skip compiling.

    The compiled sampler takes several seconds to compile, and the many small functions of the
    noise set-up and reconstruction add seconds more, so every compilation is kept, however
    short.  The cache lives in ``$GWTOOLS_CACHE`` (default ``~/.cache/gwtools/jax``); set
    ``GWTOOLS_CACHE=`` (empty) to switch it off.  Returns the directory in use, or None.
    """
    default = Path.home() / ".cache" / "gwtools" / "jax"
    directory = os.environ.get("GWTOOLS_CACHE", str(default))
    if not directory:
        return None
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return Path(directory)


def single_threaded_blas():
    """Context in which numpy's BLAS/LAPACK run on one thread.

    The noise set-up and reconstruction factor and solve matrices of a few hundred to a few
    thousand samples, where a second BLAS thread gains little; but BLAS threads that spin
    beside XLA's thread pool, or beside other processes on a busy machine, slow these calls by
    a factor of up to a hundred (0.5 s instead of 5 ms for the eigenvalues of a 410-sample
    covariance, seen on 2 cores).  Analyses run inside this context; JAX is not affected.
    """
    return threadpool_limits(limits=1, user_api="blas")


def run_pipeline(
    config: RingdownConfig, *, resume: bool = False, progress: bool = True, plots: bool = True
) -> PipelineOutputs:
    """Run the whole analysis of ``config`` and write its outputs.

    The configuration is checked against its input files first
    (:func:`~gwtools.ringdown.input_checks.check_inputs`).  The output directory is locked for the
    whole run (a second run into it refuses, naming
    this one; a lock left by a killed run is taken over), and the outputs are published as one
    result set with a manifest, so a kill at any instant never leaves a mix of two runs'
    files that looks complete (:mod:`gwtools.io.outputs`).

    Parameters
    ----------
    config : RingdownConfig
    resume : bool
        Continue from the sampler checkpoint of an interrupted run.
    progress : bool
        Show the sampler's progress line (live points, ln Z, dlogz).
    plots : bool
        Draw figures and the summary page.

    Returns
    -------
    PipelineOutputs
    """
    check_inputs(config)
    use_compilation_cache()
    timings: dict[str, float] = {}

    def timed(stage, fn, *args, **kwargs):
        begin = time.perf_counter()
        value = fn(*args, **kwargs)
        timings[stage] = time.perf_counter() - begin
        logger.info("%s: %.2f s", stage, timings[stage])
        return value

    directory, label = config.output.directory, config.output.label
    run_id = new_run_id()
    with contextlib.ExitStack() as context:
        context.enter_context(single_threaded_blas())
        context.enter_context(lock_directory(directory, run_id))
        # started now, so that its imports overlap the sampling
        worker = context.enter_context(output_worker()) if plots else None
        logger.info("run %s writing to %s", run_id, directory)
        strain = timed("data", load_strain, config)
        estimates = timed("noise", estimate_noise, config, strain)
        acfs = np.stack([estimate.acf for estimate in estimates.values()])
        prepared = timed("prepare", prepare_analysis, config, strain, acfs)
        reports = timed("noise_checks", check_noise, config, strain, prepared)
        likelihood, space = build_likelihood(config, prepared)
        sampling = timed("sampling", sample_posterior, config, likelihood, space, resume=resume,
                         progress=progress)
        result = timed("reconstruction", build_result, config, prepared, likelihood, space,
                       sampling, diagnostics={**{f"time_{k}": v for k, v in timings.items()},
                                              **noise_scalars(estimates, reports)},
                       run_id=run_id, noise_model=noise_arrays(estimates, reports))
        with staged_result_set(directory, label, run_id) as stage:
            try:
                save_bilby = functools.partial(save_bilby_result, result, stage / f"{label}_bilby.hdf5")
                bilby_saved = worker.submit(save_bilby) if worker else None
                plot_paths, summary = [], None
                if plots:
                    plot_paths, summary = timed("plots", make_plots, result, stage,
                                                config.data.imr_samples,
                                                config.data.imr_remnant, worker)
                write_result(result, stage / f"{label}.h5")
                if bilby_saved is None:
                    save_bilby()
                else:
                    bilby_saved.result()
            finally:
                # the worker writes into the stage: it must be done before the stage is removed
                # (after a failure here) or published
                if worker is not None:
                    worker.shutdown(wait=True, cancel_futures=True)
    result_path = directory / f"{label}.h5"
    logger.info("wrote %s (run %s)", result_path, run_id)
    return PipelineOutputs(
        result=result,
        result_path=result_path,
        bilby_path=directory / f"{label}_bilby.hdf5",
        plots=tuple(directory / p.name for p in plot_paths),
        summary_path=None if summary is None else directory / summary.name,
        timings=timings,
        manifest_path=directory / f"{label}{MANIFEST_SUFFIX}",
    )
