"""Detector geometry from bilby: arrival-time delays and antenna patterns.

The detector vertices and arm orientations are bilby's published interferometer definitions
(LIGO-T980044 for the LIGO sites), not hand-typed tensors.  Conventions follow LAL/bilby
(Anderson et al. 2001, arXiv:gr-qc/0008066): angles in radians, ``ra``/``dec`` equatorial,
``psi`` the polarization angle, times GPS seconds, and the delay is defined by
``t_detector = t_geocenter + delay``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

from gwtools.io.strain import validate_detector

__all__ = ["antenna_pattern", "detector_start_times", "time_delay_from_geocenter"]


@functools.cache
def _interferometer(detector: str):
    """bilby interferometer for ``detector`` (cached: building one reads PSD files)."""
    validate_detector(detector)
    # bilby is imported here, not at module import, because it takes about a second.
    from bilby.gw.detector import get_empty_interferometer

    return get_empty_interferometer(detector)


def _check_sky(ra: float, dec: float, gps_time: float) -> None:
    if not all(math.isfinite(float(x)) for x in (ra, dec, gps_time)):
        raise ValueError(f"ra, dec and gps_time must be finite, got {ra}, {dec}, {gps_time}")
    if abs(float(dec)) > math.pi / 2:
        raise ValueError(f"dec must be in [-pi/2, pi/2] radians, got {dec}")


def time_delay_from_geocenter(detector: str, ra: float, dec: float, gps_time: float) -> float:
    """Arrival time at ``detector`` minus arrival time at the geocentre (s).

    Parameters
    ----------
    detector : str
        Interferometer name (``"H1"``, ``"L1"``, ``"V1"``, ...).
    ra, dec : float
        Right ascension and declination of the source (rad).
    gps_time : float
        GPS time (s) fixing the Earth's orientation (Greenwich mean sidereal time).

    Returns
    -------
    float
        Delay (s) with ``t_detector = t_geocenter + delay``; at most ~21 ms in magnitude on Earth.
    """
    _check_sky(ra, dec, gps_time)
    return float(_interferometer(detector).time_delay_from_geocenter(ra, dec, gps_time))


def antenna_pattern(
    detector: str, ra: float, dec: float, psi: float, gps_time: float
) -> tuple[float, float]:
    """Antenna pattern functions ``(F_plus, F_cross)`` of a detector (dimensionless).

    Parameters
    ----------
    detector : str
        Interferometer name.
    ra, dec : float
        Right ascension and declination of the source (rad).
    psi : float
        Polarization angle (rad).
    gps_time : float
        GPS time (s).

    Returns
    -------
    tuple of float
        ``(F_plus, F_cross)``; the detector strain is ``F_plus h_plus + F_cross h_cross``.
    """
    _check_sky(ra, dec, gps_time)
    if not math.isfinite(float(psi)):
        raise ValueError(f"psi must be finite, got {psi}")
    ifo = _interferometer(detector)
    return (
        float(ifo.antenna_response(ra, dec, gps_time, psi, "plus")),
        float(ifo.antenna_response(ra, dec, gps_time, psi, "cross")),
    )


def detector_start_times(
    t_geocenter: float, ra: float, dec: float, detectors: Iterable[str]
) -> dict[str, float]:
    """GPS time in each detector at which a signal at geocentre time ``t_geocenter`` arrives.

    The Earth's orientation is taken at ``t_geocenter``; it turns by ~1e-6 rad during the
    21 ms light travel time, which changes the delays by far less than a nanosecond.

    Parameters
    ----------
    t_geocenter : float
        GPS time at the geocentre (s), e.g. the ringdown start time.
    ra, dec : float
        Right ascension and declination of the source (rad).
    detectors : iterable of str
        Interferometer names.

    Returns
    -------
    dict
        ``{detector: t_geocenter + delay}`` in the order given.
    """
    names = list(detectors)
    if not names:
        raise ValueError("detector_start_times needs at least one detector")
    if len(set(names)) != len(names):
        raise ValueError(f"detectors are repeated: {names}")
    return {
        name: t_geocenter + time_delay_from_geocenter(name, ra, dec, t_geocenter) for name in names
    }
