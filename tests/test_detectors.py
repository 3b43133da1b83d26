"""Detector geometry against a hand computation from astropy and the published site coordinates."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import EarthLocation
from astropy.time import Time

from gwtools.ringdown.detectors import (
    antenna_pattern,
    detector_start_times,
    time_delay_from_geocenter,
)

SPEED_OF_LIGHT = 299_792_458.0  # m/s, exact

# Published vertex coordinates and arm orientations (LIGO-T980044-10, as in bilby's files):
# latitude and longitude (deg), elevation (m), arm azimuths (deg North of East), arm tilts (rad).
SITES = {
    "H1": dict(
        lat=46 + 27 / 60 + 18.528 / 3600,
        lon=-(119 + 24 / 60 + 27.5657 / 3600),
        height=142.554,
        x_azimuth=125.9994,
        y_azimuth=215.9994,
        x_tilt=-6.195e-4,
        y_tilt=1.25e-5,
    ),
    "L1": dict(
        lat=30 + 33 / 60 + 46.4196 / 3600,
        lon=-(90 + 46 / 60 + 27.2654 / 3600),
        height=-6.574,
        x_azimuth=197.7165,
        y_azimuth=287.7165,
        x_tilt=-3.121e-4,
        y_tilt=-6.107e-4,
    ),
}

# GW150914: geocentre merger time and a sky position in the high-probability ring.
GPS = 1126259462.4232266
RA, DEC = 1.1579, -1.1911


def _gmst(gps_time: float) -> float:
    return Time(gps_time, format="gps").sidereal_time("mean", "greenwich").to_value(u.rad)


def _source_direction(ra: float, dec: float, gps_time: float) -> np.ndarray:
    """Unit vector from the geocentre towards the source, Earth-fixed frame."""
    hour_angle = ra - _gmst(gps_time)
    return np.array(
        [np.cos(dec) * np.cos(hour_angle), np.cos(dec) * np.sin(hour_angle), np.sin(dec)]
    )


def _vertex(site: dict) -> np.ndarray:
    loc = EarthLocation.from_geodetic(
        site["lon"] * u.deg, site["lat"] * u.deg, site["height"] * u.m
    )
    return np.array([loc.x.to_value(u.m), loc.y.to_value(u.m), loc.z.to_value(u.m)])


def _arm(site: dict, azimuth: float, tilt: float) -> np.ndarray:
    lat, lon, az = np.radians(site["lat"]), np.radians(site["lon"]), np.radians(azimuth)
    east = np.array([-np.sin(lon), np.cos(lon), 0.0])
    north = np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    up = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    return np.cos(tilt) * (np.cos(az) * east + np.sin(az) * north) + np.sin(tilt) * up


def _hand_antenna(site: dict, ra: float, dec: float, psi: float, gps_time: float):
    """F+, Fx = D : e+, D : ex with the polarization basis of Anderson et al. (2001)."""
    x = _arm(site, site["x_azimuth"], site["x_tilt"])
    y = _arm(site, site["y_azimuth"], site["y_tilt"])
    tensor = 0.5 * (np.outer(x, x) - np.outer(y, y))
    theta, phi = np.pi / 2 - dec, ra - _gmst(gps_time)
    big_x = np.array([
        np.sin(phi) * np.cos(psi) - np.sin(psi) * np.cos(phi) * np.cos(theta),
        -np.cos(phi) * np.cos(psi) - np.sin(psi) * np.sin(phi) * np.cos(theta),
        np.sin(psi) * np.sin(theta),
    ])
    big_y = np.array([
        -np.sin(phi) * np.sin(psi) - np.cos(psi) * np.cos(phi) * np.cos(theta),
        np.cos(phi) * np.sin(psi) - np.cos(psi) * np.sin(phi) * np.cos(theta),
        np.sin(theta) * np.cos(psi),
    ])
    e_plus = np.outer(big_x, big_x) - np.outer(big_y, big_y)
    e_cross = np.outer(big_x, big_y) + np.outer(big_y, big_x)
    return np.sum(tensor * e_plus), np.sum(tensor * e_cross)


@pytest.mark.parametrize("detector", ["H1", "L1"])
@pytest.mark.parametrize(
    ("ra", "dec", "gps_time"), [(RA, DEC, GPS), (4.0, 0.7, 1187008882.4), (0.2, -0.1, 1e9)]
)
def test_delay_matches_hand_computation(detector, ra, dec, gps_time):
    expected = -_source_direction(ra, dec, gps_time) @ _vertex(SITES[detector]) / SPEED_OF_LIGHT
    delay = time_delay_from_geocenter(detector, ra, dec, gps_time)
    assert delay == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("detector", ["H1", "L1"])
@pytest.mark.parametrize("psi", [0.0, 0.3, 2.0])
def test_antenna_pattern_matches_hand_computation(detector, psi):
    f_plus, f_cross = antenna_pattern(detector, RA, DEC, psi, GPS)
    hand_plus, hand_cross = _hand_antenna(SITES[detector], RA, DEC, psi, GPS)
    assert f_plus == pytest.approx(hand_plus, abs=1e-4)
    assert f_cross == pytest.approx(hand_cross, abs=1e-4)


def test_antenna_pattern_closed_forms():
    # Overhead source: |F|^2 = 1 for orthogonal arms in the local horizontal plane (tilts ~1e-4).
    site = SITES["H1"]
    gmst = _gmst(GPS)
    ra_zenith, dec_zenith = np.radians(site["lon"]) + gmst, np.radians(site["lat"])
    # Zenith in geocentric (not geodetic) latitude differs by ~0.19 deg, so allow 1e-3.
    f_plus, f_cross = antenna_pattern("H1", ra_zenith, dec_zenith, 0.4, GPS)
    assert f_plus**2 + f_cross**2 == pytest.approx(1.0, abs=1e-3)
    # A quarter turn of psi flips the sign of both patterns; psi -> psi + pi leaves them alone.
    base = np.array(antenna_pattern("L1", RA, DEC, 0.3, GPS))
    quarter = antenna_pattern("L1", RA, DEC, 0.3 + np.pi / 2, GPS)
    np.testing.assert_allclose(quarter, -base, atol=1e-12)
    np.testing.assert_allclose(antenna_pattern("L1", RA, DEC, 0.3 + np.pi, GPS), base, atol=1e-12)


def test_gw150914_arrives_at_livingston_first():
    starts = detector_start_times(GPS, RA, DEC, ["H1", "L1"])
    assert list(starts) == ["H1", "L1"]
    # Published: L1 saw GW150914 about 7 ms before H1 (Abbott et al. 2016, PRL 116, 061102).
    assert 6.0e-3 < starts["H1"] - starts["L1"] < 7.5e-3
    # Absolute GPS times in float64 resolve 2.4e-7 s, hence the tolerance.
    delay = time_delay_from_geocenter("H1", RA, DEC, GPS)
    assert starts["H1"] - GPS == pytest.approx(delay, abs=5e-7)
    baseline = np.linalg.norm(_vertex(SITES["H1"]) - _vertex(SITES["L1"])) / SPEED_OF_LIGHT
    assert abs(starts["H1"] - starts["L1"]) <= baseline


def test_bad_input():
    with pytest.raises(ValueError, match="unknown detector 'G2'"):
        time_delay_from_geocenter("G2", RA, DEC, GPS)
    with pytest.raises(ValueError, match="dec"):
        antenna_pattern("H1", RA, 2.0, 0.0, GPS)
    with pytest.raises(ValueError, match="finite"):
        time_delay_from_geocenter("H1", np.nan, DEC, GPS)
    with pytest.raises(ValueError, match="repeated"):
        detector_start_times(GPS, RA, DEC, ["H1", "H1"])
    with pytest.raises(ValueError, match="at least one"):
        detector_start_times(GPS, RA, DEC, [])
