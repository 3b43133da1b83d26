"""Helpers shared by the tests: test noise models, reference computations, simulated data and
the TOML of small runs.

Tests import it as ``helpers`` (pytest puts this folder on the import path, see
``tests/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.linalg

from gwtools.ringdown.noise import cholesky_factor, read_acf, toeplitz_covariance
from gwtools.ringdown.validation import ringdown_injection

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: pyRing's H1 autocovariance of GW150914 (4096 s of earlier data, 2048 Hz), shipped in data/.
GW150914_H1_ACF = PROJECT_ROOT / "data" / "GW150914" / "ACF_H1_1126257415_4096_4.0_2048.0.txt.gz"
#: GW150914's sky position (rad), polarization (rad) and geocentre peak (GPS s).
GW150914_RA, GW150914_DEC, GW150914_PSI, GW150914_GPS = 1.95, -1.27, 0.82, 1126259462.4083


def damped_cosine_acf(n, sample_rate, sigma, tau, f0):
    """ACF of a damped-oscillator-like process at lags 0 .. n-1: positive definite for any n.

    ``sigma`` is the standard deviation (strain), ``tau`` the damping time (s) and ``f0`` the
    oscillation frequency (Hz).
    """
    lag = np.arange(n) / sample_rate
    return sigma**2 * np.exp(-lag / tau) * (np.cos(2 * np.pi * f0 * lag)
                                            + np.sin(2 * np.pi * f0 * lag) / (2 * np.pi * f0 * tau))


def whitening_matrix(acf, detector: str = "") -> np.ndarray:
    """Reference whitening ``W = L^-1`` (n, n) of the Toeplitz covariance ``L L^T`` of ``acf``,
    by a dense triangular solve; the package whitens with
    :class:`~gwtools.ringdown.noise.ToeplitzNoise`.  Raises as
    :func:`~gwtools.ringdown.noise.cholesky_factor` for a bad covariance."""
    factor = cholesky_factor(toeplitz_covariance(acf), detector)
    return scipy.linalg.solve_triangular(factor, np.eye(factor.shape[0]), lower=True)


def gw150914_like(modes, sample_rate=2048.0, duration=0.2, seed=150914):
    """(model, data, injection, snr): the injection of ``benchmarks/firefly_vs_full.py``
    (:func:`gwtools.ringdown.validation.ringdown_injection`: Mf = 68 Msun, chi = 0.69, face-off
    for l = m = 2 modes) at GW150914's sky position in H1 and L1, in noise drawn from
    :data:`GW150914_H1_ACF` in both."""
    acf = read_acf(GW150914_H1_ACF, sample_rate, round(duration * sample_rate))
    return ringdown_injection(modes, acf, ra=GW150914_RA, dec=GW150914_DEC, gps=GW150914_GPS,
                              polarization=GW150914_PSI, sample_rate=sample_rate, seed=seed)


_GW150914_DATA_AND_EVENT = """
[data]
files = {{ H1 = "{data}/H-H1_GWOSC_4KHZ_R1-1126259447-32.hdf5", L1 = "{data}/L-L1_GWOSC_4KHZ_R1-1126259447-32.hdf5" }}
{imr}
[event]
name = "GW150914"
time = 1126259462.423
reference_detector = "H1"
ra = 1.95
dec = -1.27
psi = 0.82
"""

#: A tiny run on the shipped GW150914 data (``data`` and ``out`` to format): 220 + 221 from the
#: peak, 0.05 s at 1024 Hz, with the IMR remnant samples.
TINY_RUN_TOML = _GW150914_DATA_AND_EVENT.replace(
    "{imr}", 'imr_samples = "{data}/imr_remnant_samples.h5"') + """[analysis]
start_offset_ms = 0.0
duration = 0.05
sample_rate = 1024.0
[model]
modes = ["220", "221"]
[prior]
final_mass = [35.0, 140.0]
amplitude_max = 2e-20
[sampler]
nlive = 400
dlogz = 1.0
seed = 7
[output]
directory = "{out}"
"""

#: A small start-time scan on the shipped GW150914 data (``data``, ``out``, ``sampler`` (extra
#: [sampler] lines) and ``starts`` (the [scan] start times) to format).
SMALL_SCAN_TOML = _GW150914_DATA_AND_EVENT.replace("{imr}\n", "") + """[analysis]
duration = 0.04
sample_rate = 1024.0
[prior]
final_mass = [35.0, 140.0]
amplitude_max = 2e-20
[sampler]
nlive = 25
dlogz = 2.0
{sampler}
[output]
directory = "{out}"
[scan]
{starts}
retries = 1
"""
