"""Checks of a run configuration against the files it names, and the GPS windows it uses.

:func:`~gwtools.ringdown.config.parse_config` validates a configuration by itself;
:func:`check_inputs` then checks it against its files, reading only their metadata: the output
directory, the strain files' GPS spans, sample rates and metadata, the PSD and other input
files.  ``run_pipeline`` and ``run_scan`` (for every point) call it before anything runs.
:func:`analysis_windows` gives the GPS spans of each detector's data an analysis uses (the
on-source segment and the off-source noise windows), from the peak time moved to the geocentre
(:func:`peak_geocenter`).  Errors name the configuration key, as the configuration's own do.
"""

from __future__ import annotations

import logging

from gwtools.ringdown.config import RingdownConfig, start_offset_seconds, start_window_seconds
from gwtools.ringdown.config_values import config_error

__all__ = [
    "OFF_SOURCE",
    "ON_SOURCE",
    "analysis_windows",
    "check_inputs",
    "peak_geocenter",
    "read_config_psd",
]

logger = logging.getLogger(__name__)

#: Names of the GPS windows of the data an analysis uses (:func:`analysis_windows`).
ON_SOURCE = "on-source segment"
OFF_SOURCE = "off-source noise window"


def peak_geocenter(config: RingdownConfig) -> float:
    """GPS time of the signal peak at the geocentre, s (``[event] time`` moved from its
    reference detector with the light-travel delay of the sky position)."""
    from gwtools.ringdown import detectors

    event = config.event
    if event.reference_detector == "geocenter":
        return event.time
    delay = detectors.time_delay_from_geocenter(
        event.reference_detector, event.ra, event.dec, event.time
    )
    return event.time - delay


def analysis_windows(config: RingdownConfig) -> dict[str, dict[str, tuple[float, float]]]:
    """The GPS spans of each detector's data that the analysis uses, s.

    Returns
    -------
    dict of str to dict of str to (float, float)
        Per detector: ``"on-source segment"``, ``[start + lo, start + hi + duration)`` at that
        detector's start time (lo = hi = 0 without a start window), and for Welch noise
        estimates ``"off-source noise window"``, ``[peak + begin, peak + end)`` with the
        geocentric peak; with several off-source windows, ``"off-source noise window 1"``,
        ``... 2`` and so on.
    """
    from gwtools.ringdown import detectors

    peak = peak_geocenter(config)
    start = peak + start_offset_seconds(config)
    starts = detectors.detector_start_times(
        start, config.event.ra, config.event.dec, config.data.detectors
    )
    lo, hi = start_window_seconds(config)
    windows = {}
    for detector in config.data.detectors:
        first = starts[detector]
        windows[detector] = {ON_SOURCE: (first + lo, first + hi + config.analysis.duration)}
        if config.noise.method == "welch":
            for name, (begin, end) in zip(_offsource_names(config), config.noise.offsource):
                windows[detector][name] = (peak + begin, peak + end)
    return windows


def _offsource_names(config: RingdownConfig) -> list[str]:
    count = len(config.noise.offsource)
    return [OFF_SOURCE] if count == 1 else [f"{OFF_SOURCE} {i + 1}" for i in range(count)]


def _start_key(config: RingdownConfig) -> str:
    analysis = config.analysis
    keys = ("start_window_ms", "start_time", "start_offset_m")
    given = [k for k in keys if getattr(analysis, k) is not None]
    return given[0] if given else "start_offset_ms"


def _check_strain_file(config: RingdownConfig, detector: str, windows) -> None:
    """Metadata, rate and GPS-span checks of one detector's strain file."""
    from gwtools.io.strain import read_strain_info

    key = f"files.{detector}"
    path = config.data.files[detector]
    if not path.is_file():
        raise FileNotFoundError(f"[data] {key}: strain file {path} does not exist")
    info = read_strain_info(path, detector)
    if info.problems:
        message = (
            f"{path}: the metadata disagree with the data: {'; '.join(info.problems)}"
        )
        if config.data.on_bad_data == "refuse":
            raise config_error("data", key, message + '; set [data] on_bad_data = "warn" to analyse '
                        "it with its start time and sample spacing as they are")
        logger.warning("[data] %s: %s (on_bad_data = warn: going on)", key, message)
    analysis = config.analysis
    if info.sample_rate < analysis.sample_rate:
        raise config_error(
            "analysis", "sample_rate",
            f"{analysis.sample_rate:g} Hz is above the {detector} data's rate of "
            f"{info.sample_rate:g} Hz ({path.name}): choose at most {info.sample_rate:g} Hz",
        )
    ratio = info.sample_rate / analysis.sample_rate
    if abs(ratio - round(ratio)) > 1e-9 * ratio:
        raise config_error(
            "analysis", "sample_rate",
            f"{analysis.sample_rate:g} Hz does not divide the {detector} data's rate of "
            f"{info.sample_rate:g} Hz ({path.name}): choose e.g. {info.sample_rate / 2:g} or "
            f"{info.sample_rate / 4:g} Hz",
        )
    if analysis.duration > info.duration:
        raise config_error(
            "analysis", "duration",
            f"{analysis.duration:g} s is longer than the {detector} data, {info.span()}",
        )
    begin, end = windows[ON_SOURCE]
    if begin < info.t0 or end > info.end_time:
        raise config_error(
            "analysis", _start_key(config),
            f"the {detector} segment GPS [{begin:.4f}, {end:.4f}) is not inside the {detector} "
            f"data, {info.span()}: choose a start time{' and window' if analysis.start_window_ms else ''} "
            "within the data",
        )
    for name, relative in zip(_offsource_names(config), config.noise.offsource):
        if name not in windows:
            continue
        begin, end = windows[name]
        if begin < info.t0 or end > info.end_time:
            raise config_error(
                "noise", "offsource",
                f"window {list(relative)} s around the peak, GPS "
                f"[{begin:.4f}, {end:.4f}), does not fit in the {detector} data, {info.span()}",
            )


def read_config_psd(config: RingdownConfig, detector: str):
    """(freqs, psd) of ``detector``'s ``[noise] psd_files`` entry, errors naming the key."""
    from gwtools.ringdown.noise import read_psd

    key = f"psd_files.{detector}"
    try:
        return read_psd(
            config.noise.psd_files[detector], config.noise.asd, detector=detector,
            column=config.noise.psd_columns.get(detector),
        )
    except FileNotFoundError as err:
        raise FileNotFoundError(f"[noise] {key}: {err}") from None
    except ValueError as err:
        raise config_error("noise", key, str(err)) from None


def _check_psd_file(config: RingdownConfig, detector: str) -> None:
    freqs, _ = read_config_psd(config, detector)
    nyquist = config.analysis.sample_rate / 2
    if freqs[-1] < nyquist * (1 - 1e-9):
        raise config_error(
            "noise", f"psd_files.{detector}",
            f"the PSD in {config.noise.psd_files[detector].name} stops at {freqs[-1]:g} Hz, below the "
            f"Nyquist frequency {nyquist:g} Hz of [analysis] sample_rate: lower the sample rate "
            "or provide a PSD up to the Nyquist frequency",
        )


def check_inputs(config: RingdownConfig) -> None:
    """Check a configuration against the files it names, before anything runs.

    Reads only metadata: nothing is created, no strain sample is read from HDF5 files.

    * ``[output] directory`` can be created and written (it is not a file, nor under one);
    * ``[data] imr_samples`` and ``[noise] acf_files`` exist;
    * ``[noise] psd_files`` (with ``method = "psd_file"``) are read: each holds a valid PSD
      for its detector (:func:`gwtools.ringdown.noise.read_psd`; the column or dataset of
      ``[noise] psd_columns``) reaching the Nyquist frequency of ``[analysis] sample_rate``;
    * each strain file exists and its metadata agree with each other and with its sample count
      (otherwise refused, or with ``[data] on_bad_data = "warn"`` logged);
    * its rate is at least ``[analysis] sample_rate`` and a whole multiple of it;
    * ``[analysis] duration`` fits in it, and the analysis segment and every off-source window
      (:func:`analysis_windows`) lie within its GPS span.

    Raises
    ------
    ValueError, FileNotFoundError
        One line naming the configuration key.
    """
    from gwtools.io.outputs import check_output_directory

    try:
        check_output_directory(config.output.directory)
    except ValueError as err:
        raise config_error("output", "directory", str(err)) from None
    inputs = [("data", "imr_samples", config.data.imr_samples)]
    if config.noise.method == "acf_file":
        inputs += [("noise", f"acf_files.{d}", p) for d, p in config.noise.acf_files.items()]
    for section, key, path in inputs:
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"[{section}] {key}: {path} does not exist")
    if config.noise.method == "psd_file":
        for detector in config.data.detectors:
            _check_psd_file(config, detector)
    windows = analysis_windows(config)
    for detector in config.data.detectors:
        _check_strain_file(config, detector, windows[detector])
