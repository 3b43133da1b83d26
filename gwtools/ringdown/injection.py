"""Simulated ringdown data: known signals in Gaussian noise of a given autocovariance.

Used for injection studies (does the analysis recover what was put in?), P-P tests and the
FIREFLY-versus-full-parameter comparisons.  The noise is drawn exactly from the Toeplitz
covariance of the ACF (via its Cholesky factor), so the likelihood's noise model is true by
construction and any bias comes from the analysis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gwtools.ringdown import detectors as detector_geometry
from gwtools.ringdown.likelihood import AnalysisData, build_analysis_data, projections, rotate_antenna
from gwtools.ringdown.model import AMPLITUDE_UNIT, RingdownModel, design_matrix
from gwtools.ringdown.noise import cholesky_factor, toeplitz_covariance

__all__ = ["Injection", "detector_grid", "inject", "optimal_snr", "quadratures_from_amplitudes"]


@dataclass(frozen=True)
class Injection:
    """A ringdown signal to inject.

    Attributes
    ----------
    final_mass, final_spin
        Detector-frame remnant mass (Msun) and dimensionless spin.
    amplitudes, phases
        One per label of ``model.amplitude_labels`` (AMPLITUDE_UNIT = 1e-21, rad).
    inclination, polarization
        rad.
    """

    final_mass: float
    final_spin: float
    amplitudes: tuple[float, ...]
    phases: tuple[float, ...]
    inclination: float = 0.0
    polarization: float = 0.0


def detector_grid(detectors, ra: float, dec: float, gps: float, sample_rate: float,
                  n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample times and antenna patterns of a network seeing a source at (ra, dec).

    The analysis starts at ``gps`` at the geocentre, so in each detector at ``gps`` plus its
    light travel time from the geocentre.  Every detector samples on the one grid through
    ``gps`` (as real detectors share GPS-aligned sampling), so a detector's first sample falls
    up to one sample after its own start: the sub-sample offsets of real data.

    Parameters
    ----------
    detectors : sequence of str
        Detector names, e.g. ``("H1", "L1")``.
    ra, dec : float
        Sky position, rad.
    gps : float
        Start time at the geocentre, GPS s.
    sample_rate : float
        Hz.
    n : int
        Samples per segment.

    Returns
    -------
    (times, antenna)
        ``times`` (n_det, n): s since each detector's start; ``antenna`` (n_det, 2):
        (F_plus, F_cross) at polarization angle 0.
    """
    delays = [detector_geometry.time_delay_from_geocenter(d, ra, dec, gps) for d in detectors]
    offsets = [(-delay * sample_rate) % 1.0 / sample_rate for delay in delays]
    times = np.stack([offset + np.arange(n) / sample_rate for offset in offsets])
    antenna = np.array([detector_geometry.antenna_pattern(d, ra, dec, 0.0, gps) for d in detectors])
    return times, antenna


def quadratures_from_amplitudes(amplitudes, phases) -> np.ndarray:
    """B = (A cos phi, A sin phi) per pair, flattened to shape (2K,)."""
    amplitudes, phases = np.asarray(amplitudes, dtype=float), np.asarray(phases, dtype=float)
    if amplitudes.shape != phases.shape:
        raise ValueError(f"{amplitudes.size} amplitudes but {phases.size} phases")
    return np.stack([amplitudes * np.cos(phases), amplitudes * np.sin(phases)], axis=-1).ravel()


def _check_amplitudes(model: RingdownModel, injection: Injection) -> None:
    if len(injection.amplitudes) != len(model.amplitude_labels):
        raise ValueError(
            f"the model has amplitudes {model.amplitude_labels}; the injection gives "
            f"{len(injection.amplitudes)} values"
        )


def _signal(model: RingdownModel, times, antenna, injection: Injection) -> np.ndarray:
    _check_amplitudes(model, injection)
    rotated = rotate_antenna(np.asarray(antenna, dtype=float), injection.polarization)
    basis = np.asarray(design_matrix(model, injection.final_mass, injection.final_spin, times, rotated,
                                     injection.inclination))
    b = quadratures_from_amplitudes(injection.amplitudes, injection.phases)
    return np.einsum("q,dqn->dn", b, basis) * AMPLITUDE_UNIT


def inject(model: RingdownModel, injection: Injection, times, acfs, antenna, *, seed: int | None,
           detectors=()) -> AnalysisData:
    """Analysis data of ``injection`` in coloured Gaussian noise (or none, ``seed=None``).

    Parameters
    ----------
    model
        Mode content of the injected signal.
    injection
        Signal parameters.
    times
        (n_det, n) s since the analysis start in each detector.
    acfs
        (n_det, n) noise autocovariance, strain^2.
    antenna
        (n_det, 2) antenna patterns at polarization angle 0.
    seed
        Seed of the noise draw; ``None`` gives a zero-noise injection.
    """
    times = np.atleast_2d(np.asarray(times, dtype=float))
    acfs = np.atleast_2d(np.asarray(acfs, dtype=float))
    data = _signal(model, times, antenna, injection)
    if seed is not None:
        rng = np.random.default_rng(seed)
        for i, acf in enumerate(acfs):
            data[i] += cholesky_factor(toeplitz_covariance(acf)) @ rng.standard_normal(acf.size)
    return build_analysis_data(times, data, acfs, antenna, detectors)


def optimal_snr(model: RingdownModel, injection: Injection, data: AnalysisData) -> float:
    """Network optimal SNR sqrt(sum_i <h_i, h_i>) = sqrt(B^T M B) of the injection in ``data``'s noise."""
    _check_amplitudes(model, injection)
    _, normal = projections(model, data, injection.final_mass, injection.final_spin, injection.inclination,
                            injection.polarization)
    b = quadratures_from_amplitudes(injection.amplitudes, injection.phases)
    return float(np.sqrt(b @ np.asarray(normal) @ b))
