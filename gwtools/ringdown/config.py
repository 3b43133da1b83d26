"""Run configuration of a ringdown analysis: TOML in, validated frozen dataclasses out.

A configuration file has the sections ``[data]``, ``[event]``, ``[analysis]``, ``[noise]``,
``[model]``, ``[prior]``, ``[sampler]`` and ``[output]`` (all keys are listed on the dataclasses
below, with units).  Unknown sections or keys and impossible values raise :class:`ValueError`
naming the key, e.g. ``"[prior] final_spin: upper bound 1.2 > 0.99"``.  Relative paths are
resolved against the directory of the configuration file.  A scan configuration
(:func:`load_scan_config`) is a run configuration plus a ``[scan]`` section.

Times
-----
``[event] time`` is the GPS time of the signal peak *as seen in* ``[event] reference_detector``
(``"H1"``, ``"L1"``, ... or ``"geocenter"``); the pipeline converts it to geocentric time with the
light-travel delay for ``ra``/``dec``.  The analysis starts at ``time`` plus exactly one of
``start_offset_ms`` (milliseconds), ``start_offset_m`` (units of G M / c^3 of
``reference_mass``) or at the absolute ``start_time`` (GPS, also in the reference detector);
with none of them it starts at the peak.  ``start_window_ms = [lo, hi]`` (ms, lo <= 0 <= hi)
samples the start time uniformly within that window around this start, in the reference
detector's frame; the detectors' start times follow from the fixed sky position, so each moves
by the same shift.

Checks against the files
------------------------
:func:`parse_config` reads no file except, with ``[data] directory``, that directory's listing
and manifest.  :func:`gwtools.ringdown.input_checks.check_inputs` checks a configuration
against the files it names.

Examples
--------
>>> config = load_config("pipelines/gw150914.toml")          # doctest: +SKIP
>>> config = override(config, {"sampler": {"nlive": 100}})   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gwtools.ringdown.constants import (
    CHI_MAX,
    MTSUN_S,
    POLARIZATION_MODELS,
    PSI_PERIOD,
    QUADRATURE_PRIORS,
    WELCH_AVERAGES,
)
from gwtools.ringdown.modes import COMPACT_LABEL, tabulated_modes
from gwtools.ringdown.sampling import ENGINES, SamplerSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "AnalysisConfig",
    "DataConfig",
    "EventConfig",
    "ModelConfig",
    "NoiseConfig",
    "OutputConfig",
    "PriorConfig",
    "RingdownConfig",
    "SCAN_STARTS",
    "ScanConfig",
    "config_error",
    "config_to_dict",
    "load_config",
    "load_scan_config",
    "override",
    "parse_config",
    "start_offset_seconds",
    "start_window_seconds",
]

#: Largest light-travel delay between a detector and the geocentre, s (Earth radius / c).
_MAX_DELAY = 0.0213

_NOISE_METHODS = ("welch", "acf_file", "psd_file")
_BAD_DATA_ACTIONS = ("refuse", "warn")

@dataclass(frozen=True)
class DataConfig:
    """Strain input.

    Strain comes either from ``files`` (one per detector) or from a ``directory`` of GWOSC
    files such as ``gwtools fetch`` writes: there the file of each detector that covers the
    analysis segment and the off-source window is looked up when the configuration is read,
    and checked against the directory's sha256 manifest.

    Attributes
    ----------
    detectors : tuple of str
        Detector names in analysis order, e.g. ``("H1", "L1")``.
    files : dict of str to Path
        Strain file per detector (GWOSC HDF5 or text), absolute paths; with ``directory``,
        the files found there.
    imr_samples : Path or None
        HDF5 file with IMR remnant samples (datasets ``final_mass`` in detector-frame solar
        masses and ``final_spin``), drawn for comparison in the plots.
    on_bad_data : {"refuse", "warn"}
        What to do with strain whose metadata disagree with the data, or with flat stretches,
        repeated blocks or NaN gaps near the windows the analysis uses: refuse the run, or
        log a warning and go on.  NaN inside a window is refused either way.
    imr_remnant : Path or None
        JSON file of a published IMR remnant (median and 90% bounds of the detector-frame
        ``final_mass`` and of ``final_spin``; :func:`gwtools.ringdown.pipeline.read_imr_remnant`),
        drawn for comparison in the plots.
    event : str or None
        GWOSC event name of the data in ``directory``; it names the ``gwtools fetch`` command
        suggested when files are missing (without it, the command uses ``[event] time``).
    directory : Path or None
        Folder of GWOSC strain files, instead of ``files``.
    """

    detectors: tuple[str, ...]
    files: Mapping[str, Path]
    imr_samples: Path | None = None
    on_bad_data: str = "refuse"
    imr_remnant: Path | None = None
    event: str | None = None
    directory: Path | None = None


@dataclass(frozen=True)
class EventConfig:
    """The event: peak time and the fixed sky position and polarization.

    Attributes
    ----------
    name : str
        Event name, used for labels.
    time : float
        GPS time of the signal peak in ``reference_detector``, s.
    reference_detector : str
        Detector in which ``time`` is given, or ``"geocenter"``.
    ra, dec : float
        Right ascension and declination, rad.
    psi : float
        Polarization angle, rad.
    """

    name: str
    time: float
    reference_detector: str
    ra: float
    dec: float
    psi: float


@dataclass(frozen=True)
class AnalysisConfig:
    """Analysis segment.

    Attributes
    ----------
    start_time : float or None
        Absolute GPS start in the reference detector, s.
    start_offset_ms : float or None
        Start relative to the peak, ms.
    start_offset_m : float or None
        Start relative to the peak in units of G ``reference_mass`` / c^3.
    reference_mass : float or None
        Detector-frame mass for ``start_offset_m``, solar masses.
    duration : float
        Segment length, s.
    sample_rate : float
        Analysis sample rate after decimation, Hz.
    f_low : float
        High-pass corner, Hz (0 disables it).
    f_high : float or None
        Low-pass corner, Hz; ``None`` keeps everything below the Nyquist frequency.
    start_window_ms : tuple of float or None
        Sample the start time uniformly in ``[lo, hi]`` ms relative to the start above
        (lo <= 0 <= hi); ``None`` fixes it.
    """

    start_time: float | None = None
    start_offset_ms: float | None = None
    start_offset_m: float | None = None
    reference_mass: float | None = None
    duration: float = 0.2
    sample_rate: float = 2048.0
    f_low: float = 20.0
    f_high: float | None = None
    start_window_ms: tuple[float, float] | None = None


@dataclass(frozen=True)
class NoiseConfig:
    """Noise autocovariance estimation (:func:`gwtools.ringdown.pipeline.estimate_noise`).

    Attributes
    ----------
    method : {"welch", "acf_file", "psd_file"}
        Estimate the PSD from off-source data with Welch's method, read the ACF from files, or
        read PSDs from files (and condition them as the data are).
    offsource : tuple of (float, float)
        Off-source windows ``(begin, end)`` relative to the peak, s (e.g. one before and one
        after the event); none may overlap the analysis segment or another window.  Welch
        pools the segments of all of them; with file methods they only label the stretches of
        the noise diagnostics.  A single ``[begin, end]`` in the file is one window.
    welch_segment : float
        Length of each Welch segment, s (at least twice the analysis duration).
    average : {"mean", "median"}
        Average of the Welch segment periodograms (the median is divided by its bias for
        chi^2_2 periodograms, :func:`gwtools.ringdown.noise.median_bias`).
    acf_files : dict of str to Path
        ACF file per detector (two columns: lag in s, value), for ``method = "acf_file"``.
    psd_files : dict of str to Path
        PSD file per detector for ``method = "psd_file"``: a text table (frequency, then one or
        more PSD columns) or a PyCBC HDF5 file with ``psds/<detector>``
        (:func:`gwtools.ringdown.noise.read_psd`); several detectors may name one file.
    psd_columns : dict of str to (str or int)
        Per detector, the PSD column of a table with several (its header name, or its index
        with the frequency as column 0) or the HDF5 dataset name; by default the header is
        searched for the detector's name.
    asd : bool
        The PSD files hold amplitude spectral densities (Hz^-1/2), squared when read.
    """

    method: str = "welch"
    offsource: tuple[tuple[float, float], ...] = ((-14.0, -1.0),)
    welch_segment: float = 4.0
    average: str = "mean"
    acf_files: Mapping[str, Path] = dataclasses.field(default_factory=dict)
    psd_files: Mapping[str, Path] = dataclasses.field(default_factory=dict)
    psd_columns: Mapping[str, str | int] = dataclasses.field(default_factory=dict)
    asd: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """Ringdown template.

    Attributes
    ----------
    modes : tuple of str
        Kerr modes as ``"lmn"`` strings, e.g. ``("220", "221")``.
    polarization : {"kerr", "free"}
        Amplitude model: two quadratures per mode tied by the spheroidal harmonics of the
        inclination, or independent plus/cross amplitudes (four quadratures per mode).
    """

    modes: tuple[str, ...] = ("220",)
    polarization: str = "kerr"


@dataclass(frozen=True)
class PriorConfig:
    """Priors.

    Attributes
    ----------
    final_mass : tuple of float
        Uniform range of the detector-frame remnant mass, solar masses.
    final_spin : tuple of float
        Uniform range of the dimensionless remnant spin, within ``[0, 0.99]``.
    amplitude_max : float
        Largest mode amplitude (strain) of the flat-in-amplitude prior and the quadrature disc.
    cos_inclination : float or tuple of float
        Fixed cosine of the inclination, or a uniform range to sample (flat in cos iota).
    psi : tuple of float or None
        Range of the polarization angle to sample uniformly, rad, at most pi long (the antenna
        patterns repeat after pi); a range of exactly pi is sampled as periodic.  ``None``
        fixes it to ``[event] psi``.
    quadrature : {"flat", "gaussian"}
        Prior on the mode quadratures used inside the sampler; the physical (flat in amplitude)
        prior is always reached afterwards by importance reweighting.
    quadrature_scale : float or None
        Standard deviation of the Gaussian quadrature prior (strain), required for ``"gaussian"``.
    """

    final_mass: tuple[float, float] = (20.0, 200.0)
    final_spin: tuple[float, float] = (0.0, CHI_MAX)
    amplitude_max: float = 5e-20
    cos_inclination: float | tuple[float, float] = -1.0
    quadrature: str = "flat"
    quadrature_scale: float | None = None
    psi: tuple[float, float] | None = None


@dataclass(frozen=True)
class OutputConfig:
    """Where results go.

    Attributes
    ----------
    directory : Path
        Output directory (absolute).
    label : str
        File-name stem of the results.
    """

    directory: Path
    label: str


@dataclass(frozen=True)
class RingdownConfig:
    """A complete, validated ringdown run configuration."""

    data: DataConfig
    event: EventConfig
    analysis: AnalysisConfig
    noise: NoiseConfig
    model: ModelConfig
    prior: PriorConfig
    sampler: SamplerSettings
    output: OutputConfig


#: ``[scan]`` keys of the start times and the ``[analysis]`` key each one sets in a scan point.
SCAN_STARTS = {"start_offsets_ms": "start_offset_ms", "start_offsets_m": "start_offset_m",
               "start_times": "start_time"}


@dataclass(frozen=True)
class ScanConfig:
    """A start-time scan: one base run configuration and the grid to run it on.

    Attributes
    ----------
    run : RingdownConfig
        Base configuration; its start time, modes, output and seed are replaced per point.
    start_key : {"start_offset_ms", "start_offset_m", "start_time"}
        The ``[analysis]`` start option the scan varies: offsets from the peak in ms or in
        G ``[analysis] reference_mass`` / c^3, or absolute GPS times in ``[event]
        reference_detector``.
    starts : tuple of float
        The start times, in the units of ``start_key``.
    mode_sets : tuple of tuple of str
        Mode sets compared at every start time; the first is the reference of the Bayes factors.
    retries : int
        How often a batch that failed unexpectedly (not on bad input, which is reported at
        once) is retried before its points are reported as failed.
    batch_size : int or None
        Most start times sampled together in one compiled batch (one Dask task); ``None``: all
        start times of a mode set in one batch.
    """

    run: RingdownConfig
    start_key: str
    starts: tuple[float, ...]
    mode_sets: tuple[tuple[str, ...], ...] = (("220",), ("220", "221"))
    retries: int = 1
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.start_key not in SCAN_STARTS.values():
            raise ValueError(f"start_key {self.start_key!r} is not one of {', '.join(SCAN_STARTS.values())}")


# --------------------------------------------------------------------------------------------
# Small validators: each names the offending key in the message.


def config_error(section: str, key: str, message: str) -> ValueError:
    """The error of a bad configuration value: ``"[section] key: message"``."""
    return ValueError(f"[{section}] {key}: {message}")


def _number(section: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise config_error(section, key, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise config_error(section, key, f"must be finite, got {value!r}")
    return float(value)


def _positive(section: str, key: str, value: Any) -> float:
    number = _number(section, key, value)
    if number <= 0:
        raise config_error(section, key, f"must be > 0, got {number!r}")
    return number


def _integer(section: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise config_error(section, key, f"expected an integer, got {value!r}")
    if value < minimum:
        raise config_error(section, key, f"must be >= {minimum}, got {value}")
    return int(value)


def _string(section: str, key: str, value: Any, choices: tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise config_error(section, key, f"expected a non-empty string, got {value!r}")
    if choices is not None and value not in choices:
        raise config_error(section, key, f"{value!r} is not one of {', '.join(choices)}")
    return value


def _interval(
    section: str, key: str, value: Any, lower: float | None = None, upper: float | None = None
) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise config_error(section, key, f"expected [lower, upper], got {value!r}")
    lo, hi = (_number(section, key, v) for v in value)
    if lo >= hi:
        raise config_error(section, key, f"lower bound {lo} >= upper bound {hi}")
    if lower is not None and lo < lower:
        raise config_error(section, key, f"lower bound {lo} < {lower}")
    if upper is not None and hi > upper:
        raise config_error(section, key, f"upper bound {hi} > {upper}")
    return lo, hi


def _path(section: str, key: str, value: Any, base_dir: Path) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise config_error(section, key, f"expected a file path, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def _detector_paths(section: str, key: str, value: Any, base_dir: Path) -> dict[str, Path]:
    if not isinstance(value, Mapping):
        raise config_error(section, key, f"expected a table {{H1 = \"file\", ...}}, got {value!r}")
    return {
        _string(section, f"{key}.{det}", det): _path(section, f"{key}.{det}", path, base_dir)
        for det, path in value.items()
    }


def _table(raw: Mapping[str, Any], section: str, allowed: set[str], required: bool) -> dict:
    """Return ``raw[section]`` as a dict, rejecting unknown keys."""
    if section not in raw:
        if required:
            raise ValueError(f"[{section}]: section is missing from the configuration")
        return {}
    table = raw[section]
    if not isinstance(table, Mapping):
        raise ValueError(f"[{section}]: expected a table, got {table!r}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise config_error(section, unknown[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")
    return dict(table)


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


# --------------------------------------------------------------------------------------------
# Sections.


def _parse_data(raw: Mapping[str, Any], base_dir: Path) -> DataConfig:
    table = _table(raw, "data", _field_names(DataConfig), required=True)
    if ("files" in table) == ("directory" in table):
        raise config_error(
            "data", "files", "give either files (one strain file per detector) or directory (a "
            "folder of GWOSC files from `gwtools fetch`), not both" if "files" in table else
            "missing: give one strain file per detector, or a directory of GWOSC files from "
            "`gwtools fetch`",
        )
    files = _detector_paths("data", "files", table.get("files", {}), base_dir)
    if "directory" in table and "detectors" not in table:
        raise config_error("data", "detectors", "required with directory, e.g. [\"H1\", \"L1\", \"V1\"]")
    detectors = table.get("detectors", list(files))
    if not isinstance(detectors, (list, tuple)) or not detectors:
        raise config_error("data", "detectors", f"expected a non-empty list, got {detectors!r}")
    detectors = tuple(_string("data", "detectors", d) for d in detectors)
    if len(set(detectors)) != len(detectors):
        raise config_error("data", "detectors", f"repeated detector in {list(detectors)}")
    missing = [d for d in detectors if d not in files]
    if missing and "files" in table:
        raise config_error("data", "files", f"no strain file for detector(s) {', '.join(missing)}")
    if "event" in table and "directory" not in table:
        raise config_error("data", "event", "names the event of a [data] directory; give directory too")
    optional = {
        key: _path("data", key, table[key], base_dir)
        for key in ("imr_samples", "imr_remnant", "directory")
        if key in table
    }
    return DataConfig(
        detectors=detectors,
        files={d: files[d] for d in detectors if d in files},
        event=_string("data", "event", table["event"]) if "event" in table else None,
        on_bad_data=_string(
            "data", "on_bad_data", table.get("on_bad_data", "refuse"), _BAD_DATA_ACTIONS
        ),
        **optional,
    )


def _data_span(config: RingdownConfig) -> tuple[float, float]:
    """GPS span of strain every detector needs: segment(s) and off-source window, with delays."""
    begin, end = (start_offset_seconds(config) + shift for shift in start_window_seconds(config))
    end += config.analysis.duration
    if config.noise.method == "welch":
        begin = min(begin, *(a for a, _ in config.noise.offsource))
        end = max(end, *(b for _, b in config.noise.offsource))
    # the reference detector and any other see the peak at most 2 Earth-crossing delays apart
    return config.event.time + begin - 2 * _MAX_DELAY, config.event.time + end + 2 * _MAX_DELAY


def _files_from_directory(config: RingdownConfig) -> RingdownConfig:
    """The configuration with ``[data] files`` looked up in ``[data] directory``."""
    from gwtools.io.fetch import find_strain_files

    data = config.data
    start, end = _data_span(config)
    try:
        files = find_strain_files(
            data.directory, data.detectors, start, end, event=data.event,
            event_time=config.event.time, min_sample_rate=config.analysis.sample_rate,
        )
    except FileNotFoundError as err:
        raise FileNotFoundError(f"[data] directory: {err}") from None
    except ValueError as err:
        raise config_error("data", "directory", str(err)) from None
    return dataclasses.replace(config, data=dataclasses.replace(data, files=files))


def _parse_event(raw: Mapping[str, Any], detectors: tuple[str, ...]) -> EventConfig:
    table = _table(raw, "event", _field_names(EventConfig), required=True)
    for key in ("time", "ra", "dec", "psi"):
        if key not in table:
            raise config_error("event", key, "missing")
    ra = _number("event", "ra", table["ra"])
    if not 0.0 <= ra <= 2 * math.pi:
        raise config_error("event", "ra", f"{ra} is outside [0, 2 pi] rad")
    dec = _number("event", "dec", table["dec"])
    if abs(dec) > math.pi / 2:
        raise config_error("event", "dec", f"{dec} is outside [-pi/2, pi/2] rad")
    time = _positive("event", "time", table["time"])
    reference = _string(
        "event", "reference_detector", table.get("reference_detector", "geocenter")
    )
    if reference != "geocenter" and reference not in detectors:
        raise config_error(
            "event",
            "reference_detector",
            f"{reference!r} is neither 'geocenter' nor one of the analysed detectors "
            f"{list(detectors)}",
        )
    return EventConfig(
        name=_string("event", "name", table.get("name", "event")),
        time=time,
        reference_detector=reference,
        ra=ra,
        dec=dec,
        psi=_number("event", "psi", table["psi"]),
    )


def _parse_analysis(raw: Mapping[str, Any]) -> AnalysisConfig:
    table = _table(raw, "analysis", _field_names(AnalysisConfig), required=False)
    starts = [k for k in ("start_time", "start_offset_ms", "start_offset_m") if k in table]
    if len(starts) > 1:
        raise config_error("analysis", starts[1], f"give only one of {', '.join(starts)}")
    values: dict[str, Any] = {}
    for key in ("start_time", "start_offset_ms", "start_offset_m"):
        if key in table:
            values[key] = _number("analysis", key, table[key])
    if "start_time" in values and values["start_time"] <= 0:
        raise config_error("analysis", "start_time", "must be a GPS time > 0")
    if "reference_mass" in table:
        values["reference_mass"] = _positive("analysis", "reference_mass", table["reference_mass"])
    if "start_offset_m" in values and "reference_mass" not in values:
        raise config_error("analysis", "reference_mass", "required with start_offset_m (solar masses)")
    for key in ("duration", "sample_rate"):
        if key in table:
            values[key] = _positive("analysis", key, table[key])
    if "f_low" in table:
        values["f_low"] = _number("analysis", "f_low", table["f_low"])
        if values["f_low"] < 0:
            raise config_error("analysis", "f_low", f"must be >= 0, got {values['f_low']}")
    if "f_high" in table:
        values["f_high"] = _positive("analysis", "f_high", table["f_high"])
    if "start_window_ms" in table:
        window = _interval("analysis", "start_window_ms", table["start_window_ms"])
        if not window[0] <= 0.0 <= window[1]:
            raise config_error(
                "analysis", "start_window_ms",
                f"{list(window)} ms does not contain the configured start (0): give the window "
                "relative to the start, e.g. move start_offset_ms into it and use [-1.0, 1.0]",
            )
        values["start_window_ms"] = window
    analysis = AnalysisConfig(**values)
    nyquist = analysis.sample_rate / 2
    if analysis.f_low >= nyquist:
        raise config_error("analysis", "f_low", f"{analysis.f_low} Hz >= Nyquist frequency {nyquist} Hz")
    if analysis.f_high is not None:
        if analysis.f_high > nyquist:
            raise config_error(
                "analysis", "f_high", f"{analysis.f_high} Hz > Nyquist frequency {nyquist} Hz"
            )
        if analysis.f_high <= analysis.f_low:
            raise config_error("analysis", "f_high", f"{analysis.f_high} Hz <= f_low {analysis.f_low} Hz")
    if analysis.duration * analysis.sample_rate < 4:
        raise config_error("analysis", "duration", "segment holds fewer than 4 samples")
    return analysis


def _offsource_windows(value: Any) -> tuple[tuple[float, float], ...]:
    """``[begin, end]`` or a list of them -> sorted, non-overlapping windows."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
        windows = [_interval("noise", "offsource", v) for v in value]
    else:
        windows = [_interval("noise", "offsource", value)]
    windows.sort()
    for (a0, b0), (a1, b1) in itertools.pairwise(windows):
        if a1 < b0:
            raise config_error(
                "noise", "offsource",
                f"windows {[a0, b0]} and {[a1, b1]} overlap: merge them into one, or separate them",
            )
    return tuple(windows)


def _parse_noise(
    raw: Mapping[str, Any], base_dir: Path, detectors: tuple[str, ...]
) -> NoiseConfig:
    table = _table(raw, "noise", _field_names(NoiseConfig), required=False)
    values: dict[str, Any] = {}
    if "method" in table:
        values["method"] = _string("noise", "method", table["method"], _NOISE_METHODS)
    if "offsource" in table:
        values["offsource"] = _offsource_windows(table["offsource"])
    if "welch_segment" in table:
        values["welch_segment"] = _positive("noise", "welch_segment", table["welch_segment"])
    if "average" in table:
        values["average"] = _string("noise", "average", table["average"], WELCH_AVERAGES)
    for key in ("acf_files", "psd_files"):
        if key in table:
            values[key] = _detector_paths("noise", key, table[key], base_dir)
    if "psd_columns" in table:
        columns = table["psd_columns"]
        if not isinstance(columns, Mapping) or not all(
            (isinstance(c, str) and c) or (isinstance(c, int) and not isinstance(c, bool) and c >= 1)
            for c in columns.values()
        ):
            raise config_error(
                "noise", "psd_columns",
                f"expected a table {{H1 = \"H1\", L1 = 2}} of header names or column indices >= 1 "
                f"(column 0 is the frequency), got {columns!r}",
            )
        values["psd_columns"] = dict(columns)
    if "asd" in table:
        if not isinstance(table["asd"], bool):
            raise config_error("noise", "asd", f"expected true or false, got {table['asd']!r}")
        values["asd"] = table["asd"]
    noise = NoiseConfig(**values)
    files = {"acf_file": ("acf_files", noise.acf_files), "psd_file": ("psd_files", noise.psd_files)}
    if noise.method in files:
        key, given = files[noise.method]
        missing = [d for d in detectors if d not in given]
        if missing:
            kind = "ACF" if key == "acf_files" else "PSD"
            raise config_error("noise", key, f"no {kind} file for detector(s) {', '.join(missing)}")
    unknown = sorted(set(noise.psd_columns) - set(detectors))
    if unknown:
        raise config_error("noise", "psd_columns", f"names detector(s) {', '.join(unknown)}, which are not analysed")
    if noise.method == "welch":
        for begin, end in noise.offsource:
            if noise.welch_segment > end - begin:
                raise config_error(
                    "noise",
                    "welch_segment",
                    f"{noise.welch_segment} s is longer than the off-source window {[begin, end]}: "
                    "widen the window, drop it or use shorter segments",
                )
    return noise


def _parse_modes(section: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise config_error(section, key, f"expected a non-empty list like [\"220\", \"221\"], got {value!r}")
    modes = tuple(_string(section, key, m) for m in value)
    for mode in modes:
        match = COMPACT_LABEL.match(mode)
        if match is None:
            raise config_error(section, key, f"{mode!r} is not a mode 'lmn' (e.g. '220', '221', '330')")
        ell, m, _ = (int(index) for index in match.groups())
        if abs(m) > ell:
            raise config_error(section, key, f"{mode!r} has |m| > l")
        available = [str(q) for q in tabulated_modes()]
        if mode not in available:
            raise config_error(
                section, key, f"{mode!r} is not in the QNM table (available: {', '.join(available)})"
            )
    if len(set(modes)) != len(modes):
        raise config_error(section, key, f"repeated mode in {list(modes)}")
    return modes


def _parse_model(raw: Mapping[str, Any]) -> ModelConfig:
    table = _table(raw, "model", _field_names(ModelConfig), required=False)
    values: dict[str, Any] = {}
    if "modes" in table:
        values["modes"] = _parse_modes("model", "modes", table["modes"])
    if "polarization" in table:
        values["polarization"] = _string(
            "model", "polarization", table["polarization"], POLARIZATION_MODELS
        )
    return ModelConfig(**values)


def _parse_prior(raw: Mapping[str, Any]) -> PriorConfig:
    table = _table(raw, "prior", _field_names(PriorConfig), required=False)
    values: dict[str, Any] = {}
    if "final_mass" in table:
        values["final_mass"] = _interval("prior", "final_mass", table["final_mass"], lower=0.0)
        if values["final_mass"][0] <= 0:
            raise config_error("prior", "final_mass", "lower bound must be > 0 solar masses")
    if "final_spin" in table:
        values["final_spin"] = _interval(
            "prior", "final_spin", table["final_spin"], lower=0.0, upper=CHI_MAX
        )
    if "amplitude_max" in table:
        values["amplitude_max"] = _positive("prior", "amplitude_max", table["amplitude_max"])
    if "cos_inclination" in table:
        value = table["cos_inclination"]
        if isinstance(value, (list, tuple)):
            values["cos_inclination"] = _interval(
                "prior", "cos_inclination", value, lower=-1.0, upper=1.0
            )
        else:
            number = _number("prior", "cos_inclination", value)
            if abs(number) > 1:
                raise config_error("prior", "cos_inclination", f"{number} is outside [-1, 1]")
            values["cos_inclination"] = number
    if "quadrature" in table:
        values["quadrature"] = _string(
            "prior", "quadrature", table["quadrature"], QUADRATURE_PRIORS
        )
    if "quadrature_scale" in table:
        values["quadrature_scale"] = _positive(
            "prior", "quadrature_scale", table["quadrature_scale"]
        )
    if "psi" in table:
        values["psi"] = _polarization_range(table["psi"])
    prior = PriorConfig(**values)
    if prior.quadrature == "gaussian" and prior.quadrature_scale is None:
        raise config_error("prior", "quadrature_scale", "required with quadrature = \"gaussian\"")
    return prior


#: A psi range this close to the period (rad) is the whole period (e.g. [0, 3.1416]).
_PSI_PERIOD_TOLERANCE = 1e-4


def _polarization_range(value: Any) -> tuple[float, float]:
    """``[prior] psi``: a range of at most one period; one of (about) a period is exactly one."""
    lo, hi = _interval("prior", "psi", value)
    if hi - lo > PSI_PERIOD + _PSI_PERIOD_TOLERANCE:
        raise config_error(
            "prior", "psi",
            f"[{lo}, {hi}] is {hi - lo:.4g} rad long, more than the period pi of the antenna "
            "patterns (psi and psi + pi are the same polarization): give at most pi, e.g. "
            f"[0.0, {math.pi!r}]",
        )
    if hi - lo >= PSI_PERIOD - _PSI_PERIOD_TOLERANCE:
        hi = lo + PSI_PERIOD
    return lo, hi


def _parse_sampler(raw: Mapping[str, Any]) -> SamplerSettings:
    """``[sampler]`` straight into :class:`~gwtools.ringdown.sampling.SamplerSettings`."""
    table = _table(raw, "sampler", _field_names(SamplerSettings), required=False)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in ("engine", "sample", "bound"):
            values[key] = _string("sampler", key, value, ENGINES if key == "engine" else None)
        elif key in ("dlogz", "checkpoint_every"):
            values[key] = _number("sampler", key, value)
        else:
            minimum = {"nlive": 10, "seed": 0}.get(key, 1)
            values[key] = _integer("sampler", key, value, minimum=minimum)
    try:
        return SamplerSettings(**values)
    except ValueError as err:
        raise ValueError(f"[sampler] {err}") from None


def _parse_output(raw: Mapping[str, Any], base_dir: Path, default_label: str) -> OutputConfig:
    table = _table(raw, "output", _field_names(OutputConfig), required=False)
    label = _string("output", "label", table.get("label", default_label))
    if "/" in label or label in (".", ".."):
        raise config_error("output", "label", f"{label!r} must be a plain file-name stem")
    return OutputConfig(
        directory=_path("output", "directory", table.get("directory", "results"), base_dir),
        label=label,
    )


def _default_label(name: str, modes: tuple[str, ...]) -> str:
    return f"{name}_{'+'.join(modes)}"


_SECTIONS = ("data", "event", "analysis", "noise", "model", "prior", "sampler", "output")


def parse_config(raw: Mapping[str, Any], *, base_dir: str | os.PathLike = ".") -> RingdownConfig:
    """Validate a configuration mapping (as read from TOML).

    Parameters
    ----------
    raw : mapping
        Sections as nested mappings.
    base_dir : path-like
        Directory against which relative paths are resolved.

    Returns
    -------
    RingdownConfig

    Raises
    ------
    ValueError
        On an unknown section or key, or an impossible value; the message names the key.
    """
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ValueError(
            f"[{unknown[0]}]: unknown section (allowed: {', '.join(_SECTIONS)})"
        )
    base = Path(base_dir).resolve()
    data = _parse_data(raw, base)
    event = _parse_event(raw, data.detectors)
    model = _parse_model(raw)
    default_label = _default_label(event.name, model.modes)
    config = RingdownConfig(
        data=data,
        event=event,
        analysis=_parse_analysis(raw),
        noise=_parse_noise(raw, base, data.detectors),
        model=model,
        prior=_parse_prior(raw),
        sampler=_parse_sampler(raw),
        output=_parse_output(raw, base, default_label),
    )
    if config.data.directory is not None:
        config = _files_from_directory(config)
    if config.noise.method == "welch":
        # the noise estimate must not see the signal; allow for the inter-detector delays
        first, last = (start_offset_seconds(config) + shift for shift in start_window_seconds(config))
        for begin, end in config.noise.offsource:
            if begin < last + config.analysis.duration + _MAX_DELAY and end > first - _MAX_DELAY:
                raise config_error(
                    "noise",
                    "offsource",
                    f"window {[begin, end]} s overlaps the analysis segment "
                    f"[{first:.4f}, {last + config.analysis.duration:.4f}] s after the peak "
                    f"(with the {1e3 * _MAX_DELAY:.1f} ms light-travel margin between detectors)",
                )
    if config.prior.psi is not None and config.model.polarization == "free":
        raise config_error(
            "prior", "psi",
            "the 'free' polarization model absorbs psi into its independent plus and cross "
            "amplitudes, so psi cannot be measured: remove [prior] psi or use polarization = 'kerr'",
        )
    return config


def _read_toml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"configuration file {path} does not exist")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from err


def load_config(path: str | os.PathLike) -> RingdownConfig:
    """Read and validate a run configuration; relative paths are taken from its directory."""
    path = Path(path)
    return parse_config(_read_toml(path), base_dir=path.parent)


def load_scan_config(
    path: str | os.PathLike, updates: Mapping[str, Mapping[str, Any]] | None = None
) -> ScanConfig:
    """Read a scan configuration: a run configuration plus a ``[scan]`` section.

    ``[scan]`` keys: exactly one of ``start_offsets_ms`` (list, ms after the peak),
    ``start_offsets_m`` (list, in G ``[analysis] reference_mass`` / c^3) and ``start_times``
    (list, GPS s in ``[event] reference_detector``); ``mode_sets`` (list of mode lists; the
    first is the reference of the Bayes factors), ``retries`` (int) and ``batch_size`` (int,
    most start times per compiled batch).

    Parameters
    ----------
    path : path-like
        TOML file.
    updates : mapping, optional
        Section -> key -> value overrides (``--set``): those of ``scan`` replace keys of
        ``[scan]`` (giving one start list removes the others), the others go through
        :func:`override` of the base run.
    """
    path = Path(path)
    raw = _read_toml(path)
    updates = updates or {}
    allowed = {*SCAN_STARTS, "mode_sets", "retries", "batch_size"}
    table = _table(raw, "scan", allowed, required=True)
    scan_updates = _table(updates, "scan", allowed, required=False)
    if set(scan_updates) & set(SCAN_STARTS):
        for key in SCAN_STARTS:
            table.pop(key, None)
    table.update(scan_updates)
    run = parse_config({k: v for k, v in raw.items() if k != "scan"}, base_dir=path.parent)
    run_updates = {section: values for section, values in updates.items() if section != "scan"}
    if run_updates:
        run = override(run, run_updates)
    keys = [k for k in SCAN_STARTS if k in table]
    if len(keys) != 1:
        raise config_error("scan", "start_offsets_ms", f"give exactly one of {', '.join(SCAN_STARTS)}")
    starts = table[keys[0]]
    if not isinstance(starts, (list, tuple)) or not starts:
        raise config_error("scan", keys[0], f"expected a non-empty list of numbers, got {starts!r}")
    starts = tuple(_number("scan", keys[0], v) for v in starts)
    if keys[0] == "start_offsets_m" and run.analysis.reference_mass is None:
        raise config_error("analysis", "reference_mass", "required with [scan] start_offsets_m")
    if keys[0] == "start_times" and min(starts) <= 0:
        raise config_error("scan", "start_times", f"GPS times must be > 0, got {min(starts)}")
    if len(set(starts)) != len(starts):
        repeated = sorted({v for v in starts if starts.count(v) > 1})
        raise config_error("scan", keys[0], f"repeated start time(s) {repeated}")
    mode_sets = table.get("mode_sets", [["220"], ["220", "221"]])
    if not isinstance(mode_sets, (list, tuple)) or len(mode_sets) < 2:
        raise config_error("scan", "mode_sets", "expected at least two mode lists to compare")
    mode_sets = tuple(_parse_modes("scan", "mode_sets", modes) for modes in mode_sets)
    distinct = {frozenset(modes) for modes in mode_sets}
    if len(distinct) != len(mode_sets):
        raise config_error("scan", "mode_sets", f"repeated mode set in {[list(m) for m in mode_sets]}")
    batch_size = table.get("batch_size")
    return ScanConfig(
        run=run,
        start_key=SCAN_STARTS[keys[0]],
        starts=starts,
        mode_sets=mode_sets,
        retries=_integer("scan", "retries", table.get("retries", 1), minimum=0),
        batch_size=None if batch_size is None else _integer("scan", "batch_size", batch_size, minimum=1),
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def config_to_dict(config: RingdownConfig) -> dict[str, dict[str, Any]]:
    """The configuration as plain JSON-serializable data (absolute paths, no ``None`` values).

    With a ``[data] directory`` the files are left out (they are looked up there again; a
    results file records each one with its sha256 among its checksums).

    ``parse_config(config_to_dict(config))`` gives back an equal configuration.
    """
    raw = {
        section: {
            f.name: _plain(getattr(getattr(config, section), f.name))
            for f in dataclasses.fields(getattr(config, section))
            if getattr(getattr(config, section), f.name) is not None
        }
        for section in _SECTIONS
    }
    if config.data.directory is not None:
        # the files are looked up again, so an override of the windows can pick other files
        del raw["data"]["files"]
    return raw


def override(config: RingdownConfig, updates: Mapping[str, Mapping[str, Any]]) -> RingdownConfig:
    """A new configuration with ``updates`` (section -> key -> value) applied and re-validated.

    Setting one start option (``start_time``, ``start_offset_ms``, ``start_offset_m``) removes
    the others, so a start time can be overridden whatever the base gave.  A default output
    label (event and modes) follows changed modes or event name.
    """
    raw = config_to_dict(config)
    if config.output.label == _default_label(config.event.name, config.model.modes):
        del raw["output"]["label"]
    for section, values in updates.items():
        if section not in raw:
            raise ValueError(f"[{section}]: unknown section (allowed: {', '.join(_SECTIONS)})")
        if section == "analysis" and {"start_time", "start_offset_ms", "start_offset_m"} & set(
            values
        ):
            for key in ("start_time", "start_offset_ms", "start_offset_m"):
                raw["analysis"].pop(key, None)
        raw[section].update(values)
    return parse_config(raw)


def start_offset_seconds(config: RingdownConfig) -> float:
    """Start of the analysis relative to the peak, s (same in every frame: a pure offset)."""
    analysis = config.analysis
    if analysis.start_time is not None:
        return analysis.start_time - config.event.time
    if analysis.start_offset_m is not None:
        return analysis.start_offset_m * analysis.reference_mass * MTSUN_S
    if analysis.start_offset_ms is not None:
        return 1e-3 * analysis.start_offset_ms
    return 0.0


def start_window_seconds(config: RingdownConfig) -> tuple[float, float]:
    """``[analysis] start_window_ms`` in seconds, (0, 0) for a fixed start."""
    window = config.analysis.start_window_ms
    return (0.0, 0.0) if window is None else (1e-3 * window[0], 1e-3 * window[1])
