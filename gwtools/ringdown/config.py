"""Run configuration of a ringdown analysis: TOML in, validated frozen dataclasses out.

A configuration file has the sections ``[data]``, ``[event]``, ``[analysis]``, ``[noise]``,
``[model]``, ``[prior]``, ``[sampler]`` and ``[output]`` (all keys are listed on the dataclasses
below, with units; ``[sampler]`` is :class:`~gwtools.ringdown.sampling.SamplerSettings`).
Unknown sections or keys and impossible values raise :class:`ValueError` naming the key, e.g.
``"[prior] final_spin: upper bound 1.2 > 0.99"``.  Relative paths are resolved against the
directory of the configuration file.  A scan configuration (:func:`load_scan_config`) is a run
configuration plus a ``[scan]`` section.

Each field of the section dataclasses says once how its key is read: its default, and the kind
and limits of its value; ``[sampler]`` keys are read by the type of their
:class:`~gwtools.ringdown.sampling.SamplerSettings` field, whose defaults and checks are the only
ones.  What involves several keys is checked by the section's parser.  Reading a configuration
loads no JAX.

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
import functools
import math
import os
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gwtools.ringdown.config_values import (
    Key,
    config_error,
    read_cos_inclination,
    read_detector_paths,
    read_detectors,
    read_file_stem,
    read_flag,
    read_integer,
    read_interval,
    read_modes,
    read_number,
    read_offsource_windows,
    read_path,
    read_polarization_range,
    read_psd_columns,
    read_start_window,
    read_text,
    section_table,
    setting,
)
from gwtools.ringdown.constants import (
    CHI_MAX,
    MTSUN_S,
    POLARIZATION_MODELS,
    QUADRATURE_PRIORS,
    WELCH_AVERAGES,
)
from gwtools.ringdown.sampling import SamplerSettings

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

#: ``[analysis]`` keys that place the start; at most one is given.
_START_KEYS = ("start_time", "start_offset_ms", "start_offset_m")


# --------------------------------------------------------------------------------------------
# Sections.


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Strain input.

    Strain comes either from ``files`` (one per detector) or from a ``directory`` of GWOSC
    files such as ``gwtools fetch`` writes: there the file of each detector that covers the
    analysis segment and the off-source window is looked up when the configuration is read,
    and checked against the directory's sha256 manifest.

    Attributes
    ----------
    detectors : tuple of str
        Detector names in analysis order, e.g. ``("H1", "L1")``; by default those of ``files``.
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

    detectors: tuple[str, ...] = setting(read_detectors)
    files: Mapping[str, Path] = setting(read_detector_paths)
    imr_samples: Path | None = setting(read_path, default=None)
    on_bad_data: str = setting(read_text, default="refuse", choices=("refuse", "warn"))
    imr_remnant: Path | None = setting(read_path, default=None)
    event: str | None = setting(read_text, default=None)
    directory: Path | None = setting(read_path, default=None)


@dataclass(frozen=True, kw_only=True)
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

    name: str = setting(read_text, default="event")
    time: float = setting(read_number, above=0.0, unit="s")
    reference_detector: str = setting(read_text, default="geocenter")
    ra: float = setting(read_number, lower=0.0, upper=2 * math.pi, shown="[0, 2 pi]", unit="rad")
    dec: float = setting(
        read_number, lower=-math.pi / 2, upper=math.pi / 2, shown="[-pi/2, pi/2]", unit="rad"
    )
    psi: float = setting(read_number)


@dataclass(frozen=True, kw_only=True)
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

    start_time: float | None = setting(read_number, default=None, above=0.0, unit="s (GPS)")
    start_offset_ms: float | None = setting(read_number, default=None)
    start_offset_m: float | None = setting(read_number, default=None)
    reference_mass: float | None = setting(read_number, default=None, above=0.0, unit="solar masses")
    duration: float = setting(read_number, default=0.2, above=0.0, unit="s")
    sample_rate: float = setting(read_number, default=2048.0, above=0.0, unit="Hz")
    f_low: float = setting(read_number, default=20.0, lower=0.0, unit="Hz")
    f_high: float | None = setting(read_number, default=None, above=0.0, unit="Hz")
    start_window_ms: tuple[float, float] | None = setting(read_start_window, default=None)


@dataclass(frozen=True, kw_only=True)
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

    method: str = setting(read_text, default="welch", choices=("welch", "acf_file", "psd_file"))
    offsource: tuple[tuple[float, float], ...] = setting(read_offsource_windows, default=((-14.0, -1.0),))
    welch_segment: float = setting(read_number, default=4.0, above=0.0, unit="s")
    average: str = setting(read_text, default="mean", choices=WELCH_AVERAGES)
    acf_files: Mapping[str, Path] = setting(read_detector_paths, factory=dict)
    psd_files: Mapping[str, Path] = setting(read_detector_paths, factory=dict)
    psd_columns: Mapping[str, str | int] = setting(read_psd_columns, factory=dict)
    asd: bool = setting(read_flag, default=False)


@dataclass(frozen=True, kw_only=True)
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

    modes: tuple[str, ...] = setting(read_modes, default=("220",))
    polarization: str = setting(read_text, default="kerr", choices=POLARIZATION_MODELS)


@dataclass(frozen=True, kw_only=True)
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

    final_mass: tuple[float, float] = setting(
        read_interval, default=(20.0, 200.0), above=0.0, unit="solar masses"
    )
    final_spin: tuple[float, float] = setting(read_interval, default=(0.0, CHI_MAX), lower=0.0, upper=CHI_MAX)
    amplitude_max: float = setting(read_number, default=5e-20, above=0.0)
    cos_inclination: float | tuple[float, float] = setting(read_cos_inclination, default=-1.0)
    quadrature: str = setting(read_text, default="flat", choices=QUADRATURE_PRIORS)
    quadrature_scale: float | None = setting(read_number, default=None, above=0.0)
    psi: tuple[float, float] | None = setting(read_polarization_range, default=None)


@dataclass(frozen=True, kw_only=True)
class OutputConfig:
    """Where results go.

    Attributes
    ----------
    directory : Path
        Output directory (absolute); by default ``results`` next to the configuration file.
    label : str
        File-name stem of the results; by default the event name and the modes, e.g.
        ``GW150914_220+221``.
    """

    directory: Path = setting(read_path)
    label: str = setting(read_file_stem)


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


_SECTIONS = {"data": DataConfig, "event": EventConfig, "analysis": AnalysisConfig, "noise": NoiseConfig,
             "model": ModelConfig, "prior": PriorConfig, "sampler": SamplerSettings, "output": OutputConfig}

#: Reader of a ``[sampler]`` key by the type of its SamplerSettings field (without ``None``).
_READ_BY_TYPE = {bool: read_flag, int: read_integer, float: read_number, str: read_text}


def _reader(cls: type, field: dataclasses.Field) -> Callable[[Key, Any], Any]:
    """How the key of ``field`` is read: as its :func:`setting` says, or else (the
    :class:`SamplerSettings` fields, checked by that class) by the field's type."""
    if "read" in field.metadata:
        return field.metadata["read"]
    hint = typing.get_type_hints(cls)[field.name]
    kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)] or [hint]
    return _READ_BY_TYPE[kinds[0]]


def _read_section(raw: Mapping[str, Any], section: str, base_dir: Path, *, required: bool = False,
                  derived: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keys given in ``[section]``, each read as its field says.

    A field without a default must be given, unless it is one of ``derived``, which the
    section's parser fills in from other keys.
    """
    cls = _SECTIONS[section]
    fields = dataclasses.fields(cls)
    table = section_table(raw, section, [f.name for f in fields], required)
    values = {}
    for field in fields:
        key = Key(section, field.name, base_dir)
        if field.name in table:
            values[field.name] = _reader(cls, field)(key, table[field.name])
        elif (field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
              and field.name not in derived):
            raise key.error("missing")
    return values


def _parse_data(raw: Mapping[str, Any], base_dir: Path) -> DataConfig:
    values = _read_section(raw, "data", base_dir, required=True, derived=("detectors", "files"))
    if ("files" in values) == ("directory" in values):
        raise config_error(
            "data", "files", "give either files (one strain file per detector) or directory (a "
            "folder of GWOSC files from `gwtools fetch`), not both" if "files" in values else
            "missing: give one strain file per detector, or a directory of GWOSC files from "
            "`gwtools fetch`",
        )
    if "directory" in values and "detectors" not in values:
        raise config_error("data", "detectors", "required with directory, e.g. [\"H1\", \"L1\", \"V1\"]")
    if "event" in values and "directory" not in values:
        raise config_error("data", "event", "names the event of a [data] directory; give directory too")
    files = values.get("files", {})
    detectors = values.setdefault("detectors", tuple(files))
    missing = [d for d in detectors if d not in files]
    if missing and "directory" not in values:
        raise config_error("data", "files", f"no strain file for detector(s) {', '.join(missing)}")
    values["files"] = {d: files[d] for d in detectors if d in files}
    return DataConfig(**values)


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
    event = EventConfig(**_read_section(raw, "event", Path("."), required=True))
    if event.reference_detector != "geocenter" and event.reference_detector not in detectors:
        raise config_error(
            "event", "reference_detector",
            f"{event.reference_detector!r} is neither 'geocenter' nor one of the analysed detectors "
            f"{list(detectors)}",
        )
    return event


def _parse_analysis(raw: Mapping[str, Any]) -> AnalysisConfig:
    values = _read_section(raw, "analysis", Path("."))
    starts = [k for k in _START_KEYS if k in values]
    if len(starts) > 1:
        raise config_error("analysis", starts[1], f"give only one of {', '.join(starts)}")
    if "start_offset_m" in values and "reference_mass" not in values:
        raise config_error("analysis", "reference_mass", "required with start_offset_m (solar masses)")
    analysis = AnalysisConfig(**values)
    nyquist = analysis.sample_rate / 2
    if analysis.f_low >= nyquist:
        raise config_error("analysis", "f_low", f"{analysis.f_low} Hz >= Nyquist frequency {nyquist} Hz")
    if analysis.f_high is not None:
        if analysis.f_high > nyquist:
            raise config_error("analysis", "f_high", f"{analysis.f_high} Hz > Nyquist frequency {nyquist} Hz")
        if analysis.f_high <= analysis.f_low:
            raise config_error("analysis", "f_high", f"{analysis.f_high} Hz <= f_low {analysis.f_low} Hz")
    if analysis.duration * analysis.sample_rate < 4:
        raise config_error("analysis", "duration", "segment holds fewer than 4 samples")
    return analysis


def _parse_noise(raw: Mapping[str, Any], base_dir: Path, detectors: tuple[str, ...]) -> NoiseConfig:
    noise = NoiseConfig(**_read_section(raw, "noise", base_dir))
    files = {"acf_file": ("acf_files", noise.acf_files), "psd_file": ("psd_files", noise.psd_files)}
    if noise.method in files:
        key, given = files[noise.method]
        missing = [d for d in detectors if d not in given]
        if missing:
            kind = "ACF" if key == "acf_files" else "PSD"
            raise config_error("noise", key, f"no {kind} file for detector(s) {', '.join(missing)}")
    unknown = sorted(set(noise.psd_columns) - set(detectors))
    if unknown:
        raise config_error(
            "noise", "psd_columns", f"names detector(s) {', '.join(unknown)}, which are not analysed"
        )
    if noise.method == "welch":
        for begin, end in noise.offsource:
            if noise.welch_segment > end - begin:
                raise config_error(
                    "noise", "welch_segment",
                    f"{noise.welch_segment} s is longer than the off-source window {[begin, end]}: "
                    "widen the window, drop it or use shorter segments",
                )
    return noise


def _parse_prior(raw: Mapping[str, Any]) -> PriorConfig:
    prior = PriorConfig(**_read_section(raw, "prior", Path(".")))
    if prior.quadrature == "gaussian" and prior.quadrature_scale is None:
        raise config_error("prior", "quadrature_scale", "required with quadrature = \"gaussian\"")
    return prior


def _parse_sampler(raw: Mapping[str, Any]) -> SamplerSettings:
    """``[sampler]`` straight into :class:`~gwtools.ringdown.sampling.SamplerSettings`."""
    values = _read_section(raw, "sampler", Path("."))
    try:
        return SamplerSettings(**values)
    except ValueError as err:
        raise ValueError(f"[sampler] {err}") from None


def _parse_output(raw: Mapping[str, Any], base_dir: Path, default_label: str) -> OutputConfig:
    values = _read_section(raw, "output", base_dir, derived=("directory", "label"))
    if "directory" not in values:
        values["directory"] = read_path(Key("output", "directory", base_dir), "results")
    if "label" not in values:
        values["label"] = read_file_stem(Key("output", "label"), default_label)
    return OutputConfig(**values)


def _default_label(name: str, modes: tuple[str, ...]) -> str:
    return f"{name}_{'+'.join(modes)}"


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
        raise ValueError(f"[{unknown[0]}]: unknown section (allowed: {', '.join(_SECTIONS)})")
    base = Path(base_dir).resolve()
    data = _parse_data(raw, base)
    event = _parse_event(raw, data.detectors)
    model = ModelConfig(**_read_section(raw, "model", base))
    config = RingdownConfig(
        data=data,
        event=event,
        analysis=_parse_analysis(raw),
        noise=_parse_noise(raw, base, data.detectors),
        model=model,
        prior=_parse_prior(raw),
        sampler=_parse_sampler(raw),
        output=_parse_output(raw, base, _default_label(event.name, model.modes)),
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


def _scan_starts(table: Mapping[str, Any], run: RingdownConfig) -> tuple[str, tuple[float, ...]]:
    """The ``[scan]`` start list: its key and its distinct start times."""
    keys = [k for k in SCAN_STARTS if k in table]
    if len(keys) != 1:
        raise config_error("scan", "start_offsets_ms", f"give exactly one of {', '.join(SCAN_STARTS)}")
    key = Key("scan", keys[0])
    starts = table[key.name]
    if not isinstance(starts, (list, tuple)) or not starts:
        raise key.error(f"expected a non-empty list of numbers, got {starts!r}")
    starts = tuple(read_number(key, v) for v in starts)
    if key.name == "start_offsets_m" and run.analysis.reference_mass is None:
        raise config_error("analysis", "reference_mass", "required with [scan] start_offsets_m")
    if key.name == "start_times" and min(starts) <= 0:
        raise key.error(f"GPS times must be > 0, got {min(starts)}")
    if len(set(starts)) != len(starts):
        raise key.error(f"repeated start time(s) {sorted({v for v in starts if starts.count(v) > 1})}")
    return key.name, starts


def _mode_sets(key: Key, value: Any) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise key.error("expected at least two mode lists to compare")
    mode_sets = tuple(read_modes(key, modes) for modes in value)
    if len({frozenset(modes) for modes in mode_sets}) != len(mode_sets):
        raise key.error(f"repeated mode set in {[list(m) for m in mode_sets]}")
    return mode_sets


def load_scan_config(
    path: str | os.PathLike, updates: Mapping[str, Mapping[str, Any]] | None = None
) -> ScanConfig:
    """Read a scan configuration: a run configuration plus a ``[scan]`` section.

    ``[scan]`` keys: exactly one of ``start_offsets_ms`` (list, ms after the peak),
    ``start_offsets_m`` (list, in G ``[analysis] reference_mass`` / c^3) and ``start_times``
    (list, GPS s in ``[event] reference_detector``); ``mode_sets`` (list of mode lists; the
    first is the reference of the Bayes factors), ``retries`` (int) and ``batch_size`` (int,
    most start times per compiled batch).  Defaults are those of :class:`ScanConfig`.

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
    readers = {"mode_sets": _mode_sets, "retries": functools.partial(read_integer, minimum=0),
               "batch_size": functools.partial(read_integer, minimum=1)}
    allowed = {*SCAN_STARTS, *readers}
    table = section_table(raw, "scan", allowed, required=True)
    scan_updates = section_table(updates, "scan", allowed, required=False)
    if set(scan_updates) & set(SCAN_STARTS):
        for key in SCAN_STARTS:
            table.pop(key, None)
    table.update(scan_updates)
    run = parse_config({k: v for k, v in raw.items() if k != "scan"}, base_dir=path.parent)
    run_updates = {section: values for section, values in updates.items() if section != "scan"}
    if run_updates:
        run = override(run, run_updates)
    start_list, starts = _scan_starts(table, run)
    given = {key: read(Key("scan", key), table[key]) for key, read in readers.items() if key in table}
    return ScanConfig(run=run, start_key=SCAN_STARTS[start_list], starts=starts, **given)


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
        if section == "analysis" and set(_START_KEYS) & set(values):
            for key in _START_KEYS:
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
