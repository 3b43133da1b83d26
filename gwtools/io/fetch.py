"""Strain for any event or GPS time from GWOSC, located with ``gwosc`` and downloaded resumably.

:func:`fetch_strain` resolves an event name to its GPS time (``gwosc.datasets.event_gps``),
finds the strain files of each detector (``gwosc.locate``: the event release's 32 s or 4096 s
files, or for a GPS time the files covering the requested span) and downloads them into a
directory that serves as the cache: a file already there and intact is not downloaded again.

Integrity.  The GWOSC API publishes no checksum for its strain files (neither its strain-file
answers nor the ``gwosc`` client carry one), so every download is checked by content: it must
open as GWOSC HDF5 holding the expected detector, GPS start, duration and sample rate.  Its
sha256 is then recorded in ``gwosc_manifest.json`` beside the files, and later fetches and
configurations that read the directory (:func:`find_strain_files`) verify the files against it.

Atomic and resumable.  A file is downloaded in chunks to ``.<name>.part`` and renamed to
``<name>`` only once it is complete and checked (``os.replace``, atomic on POSIX), so no
truncated file ever carries a final name.  An interrupted download leaves its ``.part`` file;
the next fetch continues it with an HTTP range request, or starts it again where the server
ignores ranges.

Data: Gravitational Wave Open Science Center, https://gwosc.org (CC BY 4.0); R. Abbott et al.,
"Open data from the first and second observing runs of Advanced LIGO and Advanced Virgo",
SoftwareX 13 (2021) 100658.  Client: D. Macleod et al., ``gwosc`` (MIT).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import requests

from gwtools.io.atomic import atomic_path
from gwtools.io.checksums import file_sha256
from gwtools.io.strain import read_strain_info, validate_detector

__all__ = [
    "MANIFEST_NAME",
    "FetchResult",
    "StrainFile",
    "fetch_command",
    "fetch_strain",
    "find_strain_files",
    "locate_strain",
    "read_manifest",
    "resolve_target",
]

logger = logging.getLogger(__name__)

#: Name of the manifest written beside the downloaded files.
MANIFEST_NAME = "gwosc_manifest.json"

_MANIFEST_FORMAT = 1

#: Durations (s) of the strain files GWOSC releases around each event.
EVENT_FILE_DURATIONS = (32, 4096)

#: Sample rates (Hz) of GWOSC strain files.
SAMPLE_RATES = (4096, 16384)

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60

# GWOSC file names: <observatory>-<detector>_<release>-<GPS start>-<duration>.hdf5
_FILE_NAME = re.compile(
    r"^[A-Z]+-(?P<detector>[A-Z]\d)_[A-Za-z0-9_]+-(?P<start>\d+)-(?P<duration>\d+)\.(?:hdf5|h5)$"
)


@dataclass(frozen=True)
class StrainFile:
    """One GWOSC strain file: where it is and what it must hold.

    Attributes
    ----------
    detector : str
        Interferometer, e.g. ``"V1"``.
    gps_start : int
        GPS time of the first sample, s.
    duration : int
        Length, s.
    sample_rate : int
        Samples per second, Hz.
    url : str
        Download address.
    """

    detector: str
    gps_start: int
    duration: int
    sample_rate: int
    url: str

    @property
    def name(self) -> str:
        """File name (the last part of the URL path)."""
        return PurePosixPath(urlsplit(self.url).path).name

    @property
    def gps_end(self) -> int:
        """GPS time just after the last sample, s."""
        return self.gps_start + self.duration

    @classmethod
    def from_url(cls, url: str, sample_rate: int) -> StrainFile:
        """Read detector, GPS start and duration from a GWOSC file name."""
        parsed = parse_file_name(PurePosixPath(urlsplit(url).path).name)
        if parsed is None:
            raise ValueError(f"{url} is not named like a GWOSC HDF5 strain file")
        detector, start, duration = parsed
        return cls(detector, start, duration, int(sample_rate), url)


def parse_file_name(name: str) -> tuple[str, int, int] | None:
    """(detector, GPS start, duration) of a GWOSC HDF5 file name, or None if it is not one."""
    match = _FILE_NAME.match(name)
    if match is None:
        return None
    return match["detector"], int(match["start"]), int(match["duration"])


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch_strain` found and did.

    Attributes
    ----------
    event : str or None
        Event name, or None for a GPS target.
    gps : float
        GPS time of the event (GWOSC's catalog time) or the requested GPS time, s.
    files : dict of str to tuple of Path
        Strain files per detector, in time order.
    downloaded : tuple of Path
        Files downloaded by this call; the others were already present and verified.
    """

    event: str | None
    gps: float
    files: Mapping[str, tuple[Path, ...]]
    downloaded: tuple[Path, ...]


def resolve_target(target: str, *, session: requests.Session | None = None) -> tuple[str | None, float]:
    """An event name or a GPS time, as (event name or None, GPS s).

    Raises
    ------
    ValueError
        A GPS time that is not positive, or an event GWOSC does not know.
    """
    try:
        gps = float(target)
    except ValueError:
        from gwosc.datasets import event_gps

        try:
            return target, float(event_gps(target, session=session))
        except requests.HTTPError as err:
            if err.response is not None and err.response.status_code == 404:
                raise ValueError(
                    f"GWOSC knows no event {target!r}: give an event name such as GW150914 or a "
                    "GPS time"
                ) from None
            raise
    if not (math.isfinite(gps) and gps > 0):
        raise ValueError(f"GPS time must be a positive number of seconds, got {target!r}")
    return None, gps


def _covering(files: Sequence[StrainFile], start: float, end: float) -> tuple[StrainFile, ...]:
    """The files of the shortest duration that together cover [start, end), in time order."""
    for duration in sorted({f.duration for f in files}):
        chosen = sorted(
            (f for f in files if f.duration == duration and f.gps_start < end and f.gps_end > start),
            key=lambda f: f.gps_start,
        )
        covered = start
        for f in chosen:
            if f.gps_start > covered:
                break
            covered = max(covered, f.gps_end)
        if chosen and chosen[0].gps_start <= start and covered >= end:
            return tuple(chosen)
    return ()


def locate_strain(
    detector: str,
    gps: float,
    *,
    event: str | None = None,
    duration: int = 32,
    sample_rate: int = 4096,
    session: requests.Session | None = None,
) -> tuple[StrainFile, ...]:
    """The GWOSC HDF5 files of one detector to download.

    For an event and a duration GWOSC releases per event (32 or 4096 s), the event's own file
    that contains its GPS time; otherwise the files of the shortest kind that cover
    ``[gps - duration / 2, gps + duration / 2)``.

    Raises
    ------
    ValueError
        GWOSC holds no such data.
    """
    from gwosc import locate

    if event is not None and duration in EVENT_FILE_DURATIONS:
        urls = locate.get_event_urls(
            event, detector=detector, duration=duration, sample_rate=sample_rate, session=session
        )
        start = math.floor(gps)
        end = start + 1
    else:
        start, end = math.floor(gps - duration / 2), math.ceil(gps + duration / 2)
        urls = locate.get_urls(detector, start, end, sample_rate=sample_rate, session=session)
    candidates = [
        StrainFile.from_url(url, sample_rate)
        for url in urls
        if parse_file_name(PurePosixPath(urlsplit(url).path).name) is not None
    ]
    chosen = _covering([f for f in candidates if f.detector == detector], start, end)
    if not chosen:
        raise ValueError(
            f"GWOSC lists no {detector} HDF5 strain file at {sample_rate} Hz covering GPS "
            f"[{start}, {end}); GWOSC offers: {', '.join(urls) or 'nothing'}"
        )
    return chosen


def check_strain_file(path: str | os.PathLike, expected: StrainFile) -> None:
    """Raise ValueError unless ``path`` is GWOSC HDF5 with the expected detector, span and rate."""
    header = read_strain_info(path)
    problems = list(header.problems)
    if header.detector != expected.detector:
        problems.append(f"detector {header.detector}, not {expected.detector}")
    if header.t0 != expected.gps_start:
        problems.append(f"GPS start {header.t0}, not {expected.gps_start}")
    if header.sample_rate != expected.sample_rate:
        problems.append(f"sample rate {header.sample_rate} Hz, not {expected.sample_rate} Hz")
    if header.n_samples != expected.duration * expected.sample_rate:
        problems.append(f"{header.duration} s of data, not {expected.duration} s")
    if problems:
        raise ValueError(f"{path} is not the GWOSC file {expected.url}: {'; '.join(problems)}")


def _total_size(response: requests.Response, offset: int) -> int | None:
    """Size of the whole file from Content-Range (206) or Content-Length (200), if given."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return offset + int(length) if length is not None and length.isdigit() else None


def _range_start(response: requests.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match[1]) if match else None


def _download_part(url: str, part: Path, session: requests.Session) -> None:
    """Download ``url`` into ``part``, continuing the bytes already there where the server can."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with session.get(url, headers=headers, stream=True, timeout=_TIMEOUT_S) as response:
        if offset and response.status_code == 416:
            # The server cannot serve from that offset: the partial file is not a prefix of
            # what it has now, so start again.
            logger.info("cannot resume %s at byte %d: downloading it from the start", url, offset)
            part.unlink()
            return _download_part(url, part, session)
        response.raise_for_status()
        resumed = offset > 0 and response.status_code == 206 and _range_start(response) == offset
        if offset and not resumed:
            logger.info("the server does not resume %s: downloading it from the start", url)
        start = offset if resumed else 0
        total = _total_size(response, start)
        with open(part, "ab" if resumed else "wb") as out:
            out.writelines(response.iter_content(_CHUNK_BYTES))
    size = part.stat().st_size
    if total is not None and size != total:
        raise ValueError(
            f"download of {url} stopped at {size} of {total} bytes: run the same command again "
            "to resume it"
        )


def read_manifest(directory: str | os.PathLike) -> dict[str, dict]:
    """File name -> manifest entry (url, sha256, detector, gps_start, duration, sample_rate).

    Returns an empty mapping where the directory has no manifest.
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}): delete it and fetch again") from None
    if manifest.get("format_version") != _MANIFEST_FORMAT:
        raise ValueError(
            f"{path} has manifest format {manifest.get('format_version')!r}; this gwtools reads "
            f"format {_MANIFEST_FORMAT}: delete it and fetch again"
        )
    return dict(manifest["files"])


def _write_manifest(directory: Path, files: Mapping[str, dict]) -> None:
    with atomic_path(directory / MANIFEST_NAME) as tmp:
        tmp.write_text(
            json.dumps({"format_version": _MANIFEST_FORMAT, "files": dict(files)}, indent=1,
                       sort_keys=True) + "\n"
        )


def _entry(strain: StrainFile, path: Path, target: str) -> dict:
    return {**asdict(strain), "sha256": file_sha256(path), "size": path.stat().st_size,
            "fetched_for": target}


def _get_file(
    strain: StrainFile, directory: Path, manifest: dict[str, dict], target: str,
    session: requests.Session,
) -> bool:
    """Make ``directory / strain.name`` present and verified; True if it was downloaded."""
    path = directory / strain.name
    entry = manifest.get(strain.name)
    if path.is_file():
        if entry is None:
            check_strain_file(path, strain)  # put there by hand: adopt it if it is the right file
            manifest[strain.name] = _entry(strain, path, target)
            return False
        if entry["sha256"] == file_sha256(path):
            return False
        logger.warning("%s differs from its checksum in %s: downloading it again", path, MANIFEST_NAME)
        path.unlink()
    part = directory / f".{strain.name}.part"
    logger.info("downloading %s", strain.url)
    _download_part(strain.url, part, session)
    try:
        check_strain_file(part, strain)
    except ValueError:
        part.unlink()
        raise
    os.replace(part, path)
    manifest[strain.name] = _entry(strain, path, target)
    return True


def fetch_strain(
    target: str,
    detectors: Sequence[str],
    *,
    out: str | os.PathLike,
    duration: int = 32,
    sample_rate: int = 4096,
    session: requests.Session | None = None,
) -> FetchResult:
    """Download GWOSC strain around an event or a GPS time into ``out``.

    Parameters
    ----------
    target : str
        Event name (``"GW170814"``) or GPS time (``"1186741861.53"``), s.
    detectors : sequence of str
        Interferometers, e.g. ``("H1", "L1", "V1")``.
    out : path-like
        Directory of the files and their manifest; files already there and intact are kept.
    duration : int
        Seconds of data: for an event, 32 or 4096 select its released files; any other value,
        or a GPS target, takes the files covering ``duration`` seconds centred on the time.
    sample_rate : int
        4096 or 16384 Hz.
    session : requests.Session, optional
        HTTP session for every request (API and downloads); a new one by default.

    Returns
    -------
    FetchResult

    Raises
    ------
    ValueError
        Bad arguments, unknown event, no such data, or a download that is not the expected file.
    requests.RequestException
        Network failures; a partial download is kept and resumed by the next call.
    """
    detectors = tuple(validate_detector(d) for d in detectors)
    if not detectors:
        raise ValueError("give at least one detector, e.g. H1,L1")
    if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
        raise ValueError(f"duration must be a positive whole number of seconds, got {duration!r}")
    if sample_rate not in SAMPLE_RATES:
        raise ValueError(f"GWOSC sample rates are {SAMPLE_RATES} Hz, got {sample_rate!r}")
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    own_session = session is None
    session = requests.Session() if own_session else session
    try:
        event, gps = resolve_target(str(target), session=session)
        manifest = read_manifest(directory)
        files: dict[str, tuple[Path, ...]] = {}
        downloaded: list[Path] = []
        for detector in detectors:
            located = locate_strain(detector, gps, event=event, duration=duration,
                                    sample_rate=sample_rate, session=session)
            for strain in located:
                if _get_file(strain, directory, manifest, str(target), session):
                    downloaded.append(directory / strain.name)
                # after every file, so an interrupted fetch keeps what it verified
                _write_manifest(directory, manifest)
            files[detector] = tuple(directory / strain.name for strain in located)
    finally:
        if own_session:
            session.close()
    return FetchResult(event=event, gps=gps, files=files, downloaded=tuple(downloaded))


def fetch_command(target: str, detectors: Sequence[str], duration: int, out: str | os.PathLike) -> str:
    """The ``gwtools fetch`` command line that downloads these data."""
    return (
        f"gwtools fetch {target} --detectors {','.join(detectors)} --duration {duration} "
        f"--out {out}"
    )


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def _verified_sha256(path: Path) -> str:
    stat = path.stat()
    return _cached_sha256(str(path), stat.st_size, stat.st_mtime_ns)


def find_strain_files(
    directory: str | os.PathLike,
    detectors: Sequence[str],
    start: float,
    end: float,
    *,
    event: str | None = None,
    event_time: float | None = None,
    min_sample_rate: float = 0.0,
) -> dict[str, Path]:
    """The strain file of each detector in ``directory`` that covers GPS ``[start, end)``.

    Files are recognised by their GWOSC names and headers.  Where several cover the span the
    shortest is taken (then the lowest sample rate of at least ``min_sample_rate``).  Files
    listed in the directory's manifest must match their recorded sha256.

    Parameters
    ----------
    directory : path-like
        Folder written by :func:`fetch_strain` (or holding GWOSC files put there by hand).
    detectors : sequence of str
        Interferometers.
    start, end : float
        GPS span the analysis needs, s.
    event : str, optional
        Event name, for the ``gwtools fetch`` command suggested when files are missing.
    event_time : float, optional
        GPS time used in that command where no event name is given, s.
    min_sample_rate : float
        Lowest acceptable sample rate, Hz.

    Raises
    ------
    FileNotFoundError
        The directory is missing or lacks a covering file for some detector; the message gives
        the ``gwtools fetch`` command that downloads them.
    ValueError
        A file differs from its manifest checksum or its header contradicts its name.
    """
    directory = Path(directory)
    centre = event_time if event_time is not None else 0.5 * (start + end)
    if event is not None:
        # an event's 32 s files span about [t - 15.4 s, t + 16.6 s]
        target, duration = event, 32 if centre - 15 <= start and end <= centre + 15 else 4096
    else:
        target, duration = f"{centre:.2f}", 2 * math.ceil(max(centre - start, end - centre)) + 2

    def hint(names: Sequence[str]) -> str:
        return f"download them with: {fetch_command(target, names, duration, directory)}"

    if not directory.is_dir():
        raise FileNotFoundError(f"strain directory {directory} does not exist; {hint(detectors)}")
    manifest = read_manifest(directory)
    found: dict[str, Path] = {}
    for detector in detectors:
        candidates = []
        for path in sorted(directory.iterdir()):
            parsed = parse_file_name(path.name)
            if parsed is None or parsed[0] != detector:
                continue
            _, gps_start, length = parsed
            if gps_start <= start and gps_start + length >= end:
                header = read_strain_info(path)
                if header.detector != detector or header.t0 != gps_start:
                    raise ValueError(
                        f"{path}: its header (detector {header.detector}, GPS start {header.t0}) "
                        "contradicts its name: delete it and fetch again"
                    )
                if header.sample_rate >= min_sample_rate:
                    candidates.append((length, header.sample_rate, path.name, path))
        if not candidates:
            continue
        path = min(candidates)[-1]
        entry = manifest.get(path.name)
        if entry is not None and entry["sha256"] != _verified_sha256(path):
            raise ValueError(
                f"{path} differs from its sha256 in {directory / MANIFEST_NAME} (modified or "
                f"corrupt): delete it and {hint([detector])}"
            )
        found[detector] = path
    missing = [d for d in detectors if d not in found]
    if missing:
        raise FileNotFoundError(
            f"{directory} holds no {', '.join(missing)} strain file covering GPS "
            f"[{start:.2f}, {end:.2f}); {hint(missing)}"
        )
    return found
