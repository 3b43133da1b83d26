"""Detector strain time series and readers for GWOSC files (HDF5 and text) and plain arrays.

The GWOSC HDF5 layout holds the strain in ``strain/Strain`` with attributes ``Xstart`` (GPS s of
the first sample) and ``Xspacing`` (s per sample), and the detector name in ``meta/Detector``.
GWOSC text files start with ``#`` header lines naming the detector, the sample rate and the GPS
start; pyRing's copies keep the same three-line header.  GWOSC marks data gaps with NaN, so every
series is checked for non-finite samples when it is built.

The metadata are cross-checked where a file repeats them (HDF5: ``Npoints``, ``meta/GPSstart``
and ``meta/Duration`` against the sample count, ``Xstart`` and ``Xspacing``; text: the header's
duration): :func:`read_strain_info` and :func:`read_raw_strain` report disagreements in
:attr:`StrainInfo.problems` and leave the decision to the caller, the readers that return a
:class:`TimeSeries` refuse them.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from gwtools.io.atomic import atomic_path

__all__ = [
    "StrainInfo",
    "TimeSeries",
    "from_array",
    "known_detectors",
    "read_gwosc_hdf5",
    "read_raw_strain",
    "read_strain",
    "read_strain_info",
    "read_text",
    "validate_detector",
    "write_gwosc_hdf5",
]

logger = logging.getLogger(__name__)

# Sample indices are found by rounding (t - t0) * sample_rate; a start time within this fraction
# of a sample after a sample time selects that sample (float round-off, not a real offset).
_INDEX_TOLERANCE = 1e-9


@functools.cache
def known_detectors() -> tuple[str, ...]:
    """Names of the interferometers that bilby knows (``H1``, ``L1``, ``V1``, ``K1``, ...).

    Read from bilby's bundled ``*.interferometer`` files without importing bilby, which is slow.

    Returns
    -------
    tuple of str
        Sorted detector names.
    """
    spec = importlib.util.find_spec("bilby")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("bilby is required to validate detector names; pip install bilby")
    folder = Path(spec.submodule_search_locations[0]) / "gw" / "detector" / "detectors"
    return tuple(sorted(p.stem for p in folder.glob("*.interferometer")))


def validate_detector(detector: str) -> str:
    """Return ``detector`` if bilby knows it, else raise ValueError listing the known names."""
    known = known_detectors()
    if detector not in known:
        raise ValueError(f"unknown detector {detector!r}: expected one of {', '.join(known)}")
    return detector


@dataclass(frozen=True, eq=False)
class TimeSeries:
    """Uniformly sampled strain from one detector.

    Parameters
    ----------
    data : numpy.ndarray, shape (n,)
        Dimensionless strain, stored as a read-only float64 copy.  Must be finite.
    t0 : float
        GPS time of the first sample (s).
    sample_rate : float
        Samples per second (Hz).
    detector : str
        Interferometer name known to bilby (``"H1"``, ``"L1"``, ``"V1"``, ...).

    Notes
    -----
    Equality is identity: compare ``data`` with numpy when the values matter.
    """

    data: np.ndarray
    t0: float
    sample_rate: float
    detector: str

    def __post_init__(self) -> None:
        data = np.array(self.data, dtype=np.float64)
        if data.ndim != 1 or data.size == 0:
            raise ValueError(f"strain must be a non-empty 1-D array, got shape {data.shape}")
        t0 = float(self.t0)
        sample_rate = float(self.sample_rate)
        if not np.isfinite(t0):
            raise ValueError(f"t0 must be a finite GPS time, got {self.t0!r}")
        if not (np.isfinite(sample_rate) and sample_rate > 0):
            raise ValueError(
                f"sample_rate must be a positive number of Hz, got {self.sample_rate!r}"
            )
        validate_detector(self.detector)
        bad = np.flatnonzero(~np.isfinite(data))
        if bad.size:
            first = int(bad[0])
            raise ValueError(
                f"{self.detector} strain has {bad.size} non-finite samples, the first at "
                f"GPS {t0 + first / sample_rate:.6f} (index {first}); GWOSC marks data gaps with "
                "NaN: choose a span without gaps"
            )
        data.setflags(write=False)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "t0", t0)
        object.__setattr__(self, "sample_rate", sample_rate)

    def __len__(self) -> int:
        return self.data.size

    @property
    def delta_t(self) -> float:
        """Sample spacing (s)."""
        return 1.0 / self.sample_rate

    @property
    def duration(self) -> float:
        """Length covered by the samples, ``n / sample_rate`` (s)."""
        return self.data.size / self.sample_rate

    @property
    def end_time(self) -> float:
        """GPS time just after the last sample, ``t0 + duration`` (s)."""
        return self.t0 + self.duration

    @property
    def times(self) -> np.ndarray:
        """GPS times of the samples (s), shape (n,)."""
        return self.t0 + np.arange(self.data.size) / self.sample_rate

    def index_at_or_after(self, gps_time: float) -> int:
        """Index of the first sample at or after ``gps_time`` (may equal ``len(self)``)."""
        # t - t0 is exact in float64 for nearby GPS times (Sterbenz), so only the product rounds.
        position = (gps_time - self.t0) * self.sample_rate
        return max(int(np.ceil(position - _INDEX_TOLERANCE)), 0)

    def slice(self, t_start: float, t_end: float) -> TimeSeries:
        """Samples with GPS time in ``[t_start, t_end)``.

        Parameters
        ----------
        t_start, t_end : float
            GPS span (s); must lie within ``[t0, end_time]`` and contain a sample.

        Returns
        -------
        TimeSeries
            New series whose ``t0`` is the time of its first sample.
        """
        if not t_start < t_end:
            raise ValueError(f"slice needs t_start < t_end, got {t_start} and {t_end}")
        if t_start < self.t0 or t_end > self.end_time:
            raise ValueError(
                f"slice [{t_start}, {t_end}) is outside the {self.detector} data "
                f"[{self.t0}, {self.end_time})"
            )
        first = self.index_at_or_after(t_start)
        stop = self.index_at_or_after(t_end)
        if stop <= first:
            raise ValueError(f"slice [{t_start}, {t_end}) contains no sample")
        t_first = self.t0 + first / self.sample_rate
        return TimeSeries(self.data[first:stop], t_first, self.sample_rate, self.detector)


def from_array(data, t0: float, sample_rate: float, detector: str) -> TimeSeries:
    """Build a :class:`TimeSeries` from an array (copied, float64, read-only).

    Parameters
    ----------
    data : array_like, shape (n,)
        Dimensionless strain.
    t0 : float
        GPS time of the first sample (s).
    sample_rate : float
        Sample rate (Hz).
    detector : str
        Interferometer name known to bilby.
    """
    return TimeSeries(np.asarray(data), t0, sample_rate, detector)


def _require_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"strain file {path} does not exist")
    return path


def _decode(value) -> str:
    value = value[()] if isinstance(value, h5py.Dataset) else value
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def _describe_hdf5(f: h5py.File, limit: int = 12) -> str:
    names: list[str] = []
    f.visit(names.append)
    shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
    return shown or "nothing"


@dataclass(frozen=True)
class StrainInfo:
    """What a strain file says about its samples.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    detector : str
        Interferometer name.
    t0 : float
        GPS time of the first sample (s), ``Xstart`` or the header's start.
    sample_rate : float
        Samples per second (Hz), ``1 / Xspacing`` or the header's rate.
    n_samples : int
        Number of samples stored.
    problems : tuple of str
        Where the file's metadata disagree with each other or with the sample count, one
        sentence each; empty for a consistent file.
    """

    path: Path
    detector: str
    t0: float
    sample_rate: float
    n_samples: int
    problems: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_detector(self.detector)

    @property
    def duration(self) -> float:
        """Length covered by the samples, ``n_samples / sample_rate`` (s)."""
        return self.n_samples / self.sample_rate

    @property
    def end_time(self) -> float:
        """GPS time just after the last sample (s)."""
        return self.t0 + self.duration

    def span(self) -> str:
        """``"GPS [t0, end) (32 s in <file name>)"``, for messages."""
        return f"GPS [{self.t0:.3f}, {self.end_time:.3f}) ({self.duration:g} s in {self.path.name})"


def _disagreement(info: StrainInfo) -> ValueError:
    return ValueError(
        f"{info.path}: the metadata disagree with the data: {'; '.join(info.problems)}; the file "
        "is damaged or was edited"
    )


def _whole_rate(spacing: float) -> float:
    sample_rate = 1.0 / spacing
    # Xspacing is stored as a float; GWOSC rates are whole numbers of Hz.
    if abs(sample_rate - round(sample_rate)) < 1e-9 * sample_rate:
        sample_rate = float(round(sample_rate))
    return sample_rate


def _hdf5_info(f: h5py.File, path: Path, detector: str | None) -> StrainInfo:
    """Layout and metadata checks of an open GWOSC HDF5 file, without reading the samples."""
    if "strain/Strain" not in f:
        raise ValueError(
            f"{path} has no 'strain/Strain' dataset, so it is not a GWOSC strain file; "
            f"it holds: {_describe_hdf5(f)}"
        )
    dset = f["strain/Strain"]
    missing = [key for key in ("Xstart", "Xspacing") if key not in dset.attrs]
    if missing:
        raise ValueError(f"{path}: strain/Strain lacks the attribute(s) {', '.join(missing)}")
    t0 = float(dset.attrs["Xstart"])
    spacing = float(dset.attrs["Xspacing"])
    if not spacing > 0:
        raise ValueError(f"{path}: Xspacing must be positive, found {spacing}")
    if dset.ndim != 1:
        raise ValueError(f"{path}: strain/Strain has shape {dset.shape}, expected one column")
    file_detector = _decode(f["meta/Detector"]) if "meta/Detector" in f else None
    if detector is None and file_detector is None:
        raise ValueError(f"{path} has no meta/Detector: pass detector= explicitly")
    if detector is not None and file_detector is not None and detector != file_detector:
        raise ValueError(
            f"{path} holds {file_detector} data, but detector={detector!r} was asked for"
        )
    n = int(dset.shape[0])
    problems = []
    if "Npoints" in dset.attrs and int(dset.attrs["Npoints"]) != n:
        problems.append(f"strain/Strain holds {n} samples but its Npoints says {int(dset.attrs['Npoints'])}")
    # half a sample of slack: the values are stored as floats
    if "meta/GPSstart" in f and abs(float(f["meta/GPSstart"][()]) - t0) > spacing / 2:
        problems.append(f"Xstart is GPS {t0:.6f} but meta/GPSstart is {float(f['meta/GPSstart'][()]):.6f}")
    if "meta/Duration" in f and abs(float(f["meta/Duration"][()]) - n * spacing) > spacing / 2:
        problems.append(
            f"{n} samples at Xspacing {spacing:.6g} s ({1 / spacing:g} Hz) span {n * spacing:g} s, "
            f"but meta/Duration says {float(f['meta/Duration'][()]):g} s"
        )
    return StrainInfo(path, detector or file_detector, t0, _whole_rate(spacing), n, tuple(problems))


def _open_hdf5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ValueError(
            f"{path} is not a readable HDF5 file (corrupt or truncated?): {err}"
        ) from err


def _read_hdf5(path: Path, detector: str | None) -> tuple[StrainInfo, np.ndarray]:
    with _open_hdf5(path) as f:
        info = _hdf5_info(f, path, detector)
        try:
            data = f["strain/Strain"][()]
        except OSError as err:
            raise ValueError(f"{path}: strain/Strain cannot be read (corrupt?): {err}") from err
    logger.debug("read %s: %d samples at %g Hz from GPS %s", path, data.size, info.sample_rate, info.t0)
    return info, data


def read_gwosc_hdf5(path: str | os.PathLike, detector: str | None = None) -> TimeSeries:
    """Read a GWOSC-layout HDF5 strain file.

    Parameters
    ----------
    path : path-like
        File with dataset ``strain/Strain`` carrying ``Xstart`` and ``Xspacing`` attributes.
    detector : str, optional
        Interferometer name; defaults to ``meta/Detector``.  If both are present they must agree.

    Returns
    -------
    TimeSeries

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Not HDF5, not GWOSC layout (the message lists what the file holds), detector unknown or
        inconsistent, metadata that disagree with each other or the sample count, or the
        strain holds NaN (a data gap; :func:`read_raw_strain` reads such files).
    """
    info, data = _read_hdf5(_require_file(path), detector)
    if info.problems:
        raise _disagreement(info)
    return TimeSeries(data, info.t0, info.sample_rate, info.detector)


_HEADER_RATE = re.compile(r"(\d+(?:\.\d*)?)\s+samples\s+per\s+second", re.IGNORECASE)
_HEADER_START = re.compile(r"starting\s+GPS\s+(\d+(?:\.\d*)?)", re.IGNORECASE)
_HEADER_FOR = re.compile(r"\bfor\s+(\w+)")
_HEADER_DURATION = re.compile(r"\bduration\s+(\d+(?:\.\d*)?)", re.IGNORECASE)


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _agree(name: str, given, from_header, path: Path):
    if given is None:
        return from_header
    if from_header is not None and abs(float(given) - float(from_header)) > 1e-9:
        raise ValueError(f"{path}: {name}={given} contradicts the file header ({from_header})")
    return given


def _read_text(
    path: Path, detector: str | None, t0: float | None, sample_rate: float | None
) -> tuple[StrainInfo, np.ndarray]:
    header: list[str] = []
    try:
        with _open_text(path) as stream:
            for line in stream:
                if not line.startswith("#"):
                    break
                header.append(line)
        data = np.loadtxt(path, comments="#", dtype=np.float64, ndmin=1)
    except (ValueError, UnicodeDecodeError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a text file of numbers (corrupt?): {err}") from err
    if data.ndim != 1:
        raise ValueError(f"{path} has {data.shape[1]} columns; a strain text file has exactly one")
    text = " ".join(header)
    found = {
        "sample_rate": _HEADER_RATE.search(text),
        "t0": _HEADER_START.search(text),
    }
    found = {key: (match.group(1) if match else None) for key, match in found.items()}
    # GWOSC headers read "strain for <event>_R1 for H1": take the first known detector name.
    found["detector"] = next(
        (word for word in _HEADER_FOR.findall(text) if word in known_detectors()), None
    )
    sample_rate = _agree("sample_rate", sample_rate, found["sample_rate"], path)
    t0 = _agree("t0", t0, found["t0"], path)
    if detector is None:
        detector = found["detector"]
    elif found["detector"] is not None and found["detector"] != detector:
        raise ValueError(f"{path} header says {found['detector']}, but detector={detector!r}")
    missing = [
        name for name, value in (("detector", detector), ("t0", t0), ("sample_rate", sample_rate))
        if value is None
    ]
    if missing:
        raise ValueError(
            f"{path}: the header does not give {', '.join(missing)}; pass them explicitly"
        )
    sample_rate = float(sample_rate)
    problems = []
    duration = _HEADER_DURATION.search(text)
    if duration and abs(float(duration.group(1)) - data.size / sample_rate) > 0.5 / sample_rate:
        problems.append(
            f"the header says duration {float(duration.group(1)):g} s, but {data.size} samples at "
            f"{sample_rate:g} Hz span {data.size / sample_rate:g} s"
        )
    return StrainInfo(path, detector, float(t0), sample_rate, data.size, tuple(problems)), data


def read_text(
    path: str | os.PathLike,
    detector: str | None,
    t0: float | None = None,
    sample_rate: float | None = None,
) -> TimeSeries:
    """Read strain from a one-column text file (plain, GWOSC or pyRing header; ``.gz`` allowed).

    Parameters
    ----------
    path : path-like
        Text file, one sample per line; ``#`` lines form the header.
    detector : str or None
        Interferometer name; ``None`` takes it from a GWOSC header (``... for H1 ...``).
    t0 : float, optional
        GPS time of the first sample (s); required when the header does not give it.
    sample_rate : float, optional
        Sample rate (Hz); required when the header does not give it.

    Returns
    -------
    TimeSeries

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Unparsable numbers, more than one column, missing or contradictory metadata (a header
        duration that the sample count contradicts included), NaN samples.
    """
    info, data = _read_text(_require_file(path), detector, t0, sample_rate)
    if info.problems:
        raise _disagreement(info)
    return TimeSeries(data, info.t0, info.sample_rate, info.detector)


def _require_hdf5_or_text(path: str | os.PathLike) -> tuple[Path, bool]:
    """The existing path and whether it is HDF5 (an HDF5 name without the signature is refused)."""
    path = _require_file(path)
    if h5py.is_hdf5(path):
        return path, True
    if path.suffix.lower() in {".hdf5", ".h5", ".hdf"}:
        raise ValueError(
            f"{path} has an HDF5 extension but no HDF5 signature (corrupt or truncated?)"
        )
    return path, False


def read_strain_info(path: str | os.PathLike, detector: str | None = None) -> StrainInfo:
    """What a GWOSC HDF5 or text strain file says about its samples, with its metadata checks.

    HDF5 samples are not read (a quick look before an analysis); text files are read whole.

    Parameters
    ----------
    path : path-like
        HDF5 or text strain file.
    detector : str, optional
        Interferometer name; needed only when the file does not name it.

    Returns
    -------
    StrainInfo
        Its ``problems`` list metadata that disagree (the file is not refused for them).
    """
    path, is_hdf5 = _require_hdf5_or_text(path)
    if is_hdf5:
        with _open_hdf5(path) as f:
            return _hdf5_info(f, path, detector)
    return _read_text(path, detector, None, None)[0]


def read_raw_strain(
    path: str | os.PathLike, detector: str | None = None
) -> tuple[StrainInfo, np.ndarray]:
    """The samples of a strain file as stored, NaN gaps included, and what the file says of them.

    For callers that judge gaps and metadata themselves (the ringdown pipeline keeps the
    gap-free stretch around its windows); :func:`read_strain` refuses both.

    Parameters
    ----------
    path : path-like
        HDF5 or text strain file.
    detector : str, optional
        Interferometer name; needed only when the file does not name it.

    Returns
    -------
    info : StrainInfo
    samples : numpy.ndarray, shape (info.n_samples,)
        float64, read-only.
    """
    path, is_hdf5 = _require_hdf5_or_text(path)
    info, data = _read_hdf5(path, detector) if is_hdf5 else _read_text(path, detector, None, None)
    data = np.array(data, dtype=np.float64)
    data.setflags(write=False)
    return info, data


def read_strain(path: str | os.PathLike, detector: str | None = None) -> TimeSeries:
    """Read strain from a GWOSC HDF5 or text file, chosen by content (HDF5 signature).

    Parameters
    ----------
    path : path-like
        HDF5 (``.hdf5``, ``.h5``) or text (``.txt``, ``.txt.gz``) strain file.
    detector : str, optional
        Interferometer name; needed only when the file does not name it.

    Returns
    -------
    TimeSeries
    """
    path, is_hdf5 = _require_hdf5_or_text(path)
    if is_hdf5:
        return read_gwosc_hdf5(path, detector)
    return read_text(path, detector)


def write_gwosc_hdf5(ts: TimeSeries, path: str | os.PathLike, description: str = "") -> Path:
    """Write a series in GWOSC HDF5 layout (gzip + shuffle), atomically and reproducibly.

    Modification times are left out so the same series always gives the same bytes.

    Parameters
    ----------
    ts : TimeSeries
        Series to write.
    path : path-like
        Destination file.
    description : str, optional
        Stored as ``meta/Description`` (provenance).

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = Path(path)
    # GWOSC stores whole-second starts as integers; keep that so readers of either kind agree.
    xstart = int(ts.t0) if float(ts.t0).is_integer() else ts.t0
    duration = int(ts.duration) if float(ts.duration).is_integer() else ts.duration
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        strain = f.create_dataset(
            "strain/Strain",
            data=ts.data,
            compression="gzip",
            compression_opts=9,
            shuffle=True,
            track_times=False,
        )
        strain.attrs["Xstart"] = xstart
        strain.attrs["Xspacing"] = ts.delta_t
        strain.attrs["Xunits"] = "second"
        strain.attrs["Yunits"] = ""
        strain.attrs["Npoints"] = len(ts)
        for name, value in (
            ("GPSstart", xstart),
            ("Duration", duration),
            ("Detector", np.bytes_(ts.detector)),
            ("Description", np.bytes_(description)),
        ):
            f.create_dataset(f"meta/{name}", data=value, track_times=False)
    return path
