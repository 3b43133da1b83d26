"""The JAX likelihood against an independent numpy/scipy implementation.

More combinations of modes, detectors, rates and noise are in ``test_levinson.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import damped_cosine_acf

from gwtools.ringdown.likelihood import (
    build_analysis_data,
    log_likelihood,
    rotate_antenna,
)
from gwtools.ringdown.model import AMPLITUDE_UNIT, RingdownModel
from gwtools.ringdown.modes import parse_modes
from gwtools.ringdown.noise import ToeplitzNoise
from gwtools.ringdown.qnm import frequency_damping_time
from gwtools.ringdown.reference import reference_log_likelihood, reference_template

FS = 2048.0
N = 160


@pytest.fixture(scope="module")
def two_detector_setup():
    rng = np.random.default_rng(42)
    acfs = np.stack([damped_cosine_acf(N, FS, 1.2e-21, 3e-3, 150.0),
                     damped_cosine_acf(N, FS, 0.9e-21, 2e-3, 90.0)])
    times = np.stack([np.arange(N) / FS + 0.3 / FS, np.arange(N) / FS + 0.7 / FS])
    data = np.stack([np.linalg.cholesky(np.array([[a[abs(i - j)] for j in range(N)] for i in range(N)]))
                     @ rng.standard_normal(N) for a in acfs])
    antenna = np.array([[0.55, -0.31], [-0.42, 0.37]])
    return times, data, acfs, antenna


@pytest.mark.parametrize("polarization", ["kerr", "free"])
def test_likelihood_matches_explicit_covariance_solve(two_detector_setup, polarization):
    times, data, acfs, antenna = two_detector_setup
    model = RingdownModel(parse_modes(["220", "221"]), polarization=polarization)
    analysis = build_analysis_data(times, data, acfs, antenna, ("H1", "L1"))
    rng = np.random.default_rng(7)
    for _ in range(5):
        mass, spin = rng.uniform(50, 90), rng.uniform(0.1, 0.95)
        incl, psi = rng.uniform(0, np.pi), rng.uniform(0, np.pi)
        n_pairs = len(model.amplitude_labels)
        amps, phases = rng.uniform(0.5, 5, n_pairs), rng.uniform(0, 2 * np.pi, n_pairs)
        b = np.stack([amps * np.cos(phases), amps * np.sin(phases)], axis=-1).ravel()
        value = float(log_likelihood(model, analysis, b, mass, spin, incl, psi))

        freqs, taus = (np.asarray(x) for x in frequency_damping_time(model.modes, mass, spin))
        rotated = np.asarray(rotate_antenna(jnp.asarray(antenna), psi))
        if polarization == "kerr":
            a_ref, p_ref = amps * AMPLITUDE_UNIT, phases
        else:
            a_ref, p_ref = (amps * AMPLITUDE_UNIT).reshape(-1, 2), phases.reshape(-1, 2)
        expected = sum(
            reference_log_likelihood(
                data[i], acfs[i],
                reference_template(times[i], freqs, taus, a_ref, p_ref, rotated[i], polarization=polarization,
                                   ms=[m.m for m in model.modes], inclination=incl))
            for i in range(2))
        assert value == pytest.approx(expected, rel=1e-10, abs=0)


def test_rotate_antenna_matches_bilby():
    import bilby

    ifo = bilby.gw.detector.get_empty_interferometer("L1")
    ra, dec, gps = 1.95, -1.27, 1126259462.4
    base = np.array([[ifo.antenna_response(ra, dec, gps, 0.0, "plus"),
                      ifo.antenna_response(ra, dec, gps, 0.0, "cross")]])
    for psi in (0.3, 1.1, 2.9):
        rotated = np.asarray(rotate_antenna(jnp.asarray(base), psi))[0]
        assert rotated[0] == pytest.approx(ifo.antenna_response(ra, dec, gps, psi, "plus"), abs=1e-12)
        assert rotated[1] == pytest.approx(ifo.antenna_response(ra, dec, gps, psi, "cross"), abs=1e-12)


def test_whitened_noise_has_unit_variance():
    """Whitening with the noise model's Cholesky factor turns coloured noise into white noise."""
    rng = np.random.default_rng(3)
    acf = damped_cosine_acf(N, FS, 1e-21, 4e-3, 120.0)
    cov = np.array([[acf[abs(i - j)] for j in range(N)] for i in range(N)])
    draws = rng.multivariate_normal(np.zeros(N), cov, size=400)
    white = ToeplitzNoise.from_acf(acf / AMPLITUDE_UNIT**2, "H1").whiten(draws / AMPLITUDE_UNIT)
    assert np.var(white) == pytest.approx(1.0, abs=0.02)
    sample_cov = white.T @ white / len(white)
    off_diagonal = sample_cov[~np.eye(N, dtype=bool)]
    assert np.max(np.abs(off_diagonal)) < 5 / np.sqrt(len(white))


def test_batched_likelihood_is_vmap_and_jit_consistent(two_detector_setup):
    times, data, acfs, antenna = two_detector_setup
    model = RingdownModel(parse_modes(["220"]))
    analysis = build_analysis_data(times, data, acfs, antenna)
    masses = jnp.linspace(55, 80, 7)
    b = jnp.array([1.0, -2.0])
    batched = jax.jit(jax.vmap(lambda m: log_likelihood(model, analysis, b, m, 0.7, 0.4, 0.2)))(masses)
    single = [float(log_likelihood(model, analysis, b, m, 0.7, 0.4, 0.2)) for m in masses]
    np.testing.assert_allclose(np.asarray(batched), single, rtol=1e-12)


def test_bad_analysis_input_is_rejected(two_detector_setup):
    times, data, acfs, antenna = two_detector_setup
    bad = data.copy()
    bad[1, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        build_analysis_data(times, bad, acfs, antenna)
    with pytest.raises(ValueError, match="shape"):
        build_analysis_data(times[:, :-1], data, acfs, antenna)
    indefinite = acfs.copy()
    indefinite[0, 1:] = 2 * indefinite[0, 0]
    with pytest.raises(ValueError, match="positive definite"):
        build_analysis_data(times, data, indefinite, antenna, ("H1", "L1"))


def test_design_matrix_on_arbitrary_times_matches_reference_template():
    """The general (non-uniform-grid) template path, used for plots, against the numpy template."""
    from gwtools.ringdown.model import design_matrix

    model = RingdownModel(parse_modes(["220", "221"]))
    times = np.sort(np.random.default_rng(2).uniform(-0.002, 0.05, (2, 300)), axis=1)
    antenna = np.array([[0.4, -0.2], [0.1, 0.7]])
    amps, phases = np.array([2.0, 3.0]), np.array([0.3, 5.0])
    b = np.stack([amps * np.cos(phases), amps * np.sin(phases)], axis=-1).ravel()
    basis = np.asarray(design_matrix(model, 70.0, 0.6, times, antenna, 1.0))
    freqs, taus = (np.asarray(x) for x in frequency_damping_time(model.modes, 70.0, 0.6))
    for i in range(2):
        expected = reference_template(times[i], freqs, taus, amps, phases, antenna[i], ms=[2, 2], inclination=1.0)
        np.testing.assert_allclose(b @ basis[i], expected, rtol=0, atol=1e-12 * np.abs(expected).max())
