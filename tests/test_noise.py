"""Noise model against closed forms (white noise, AR(1)), random draws and the GW150914 data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
from helpers import whitening_matrix
from scipy import signal

from gwtools.io.strain import from_array, read_strain
from gwtools.ringdown.conditioning import condition, decimate
from gwtools.ringdown.noise import (
    acf_from_psd,
    cholesky_factor,
    estimate_acf,
    read_acf,
    read_psd,
    toeplitz_covariance,
    welch_psd,
)

T0 = 1126259446.0
# GW150914 on-source window left out of every noise estimate (geocentre merger ~ .42).
ON_SOURCE = (1126259460.0, 1126259465.0)
SHIPPED = "GW150914/{0}-{1}_GWOSC_4KHZ_R1-1126259447-32.hdf5"
PYRING_ACF_2048 = "GW150914/ACF_H1_1126257415_4096_4.0_2048.0.txt.gz"


def _ar1_acf(phi, sigma_e, n_lags):
    """Autocovariance of x_n = phi x_{n-1} + e_n, Var(e) = sigma_e^2."""
    return sigma_e**2 * phi ** np.arange(n_lags) / (1 - phi**2)


def _ar1_psd(freqs, phi, sigma_e, fs):
    """One-sided PSD (per Hz) of the same AR(1) process sampled at fs."""
    return 2 / fs * sigma_e**2 / (1 - 2 * phi * np.cos(2 * np.pi * freqs / fs) + phi**2)


def test_acf_of_flat_psd_is_a_delta():
    fs, sigma = 512.0, 3.0
    freqs = np.linspace(0, fs / 2, 257)
    acf = acf_from_psd(freqs, np.full(freqs.size, 2 * sigma**2 / fs), fs, 20)
    np.testing.assert_allclose(acf, np.r_[sigma**2, np.zeros(19)], atol=1e-12 * sigma**2)


def test_acf_of_white_noise_draw():
    fs, sigma = 1024.0, 2.0
    rng = np.random.default_rng(11)
    ts = from_array(sigma * rng.normal(size=64 * 1024), T0, fs, "H1")
    acf = estimate_acf(ts, 16, segment_duration=1.0)
    # 65536 samples: the variance is known to ~0.6%; lags to ~0.5% of sigma^2.
    assert acf[0] == pytest.approx(sigma**2, rel=0.03)
    assert np.max(np.abs(acf[1:])) < 0.03 * sigma**2


def test_acf_from_analytic_ar1_psd():
    fs, phi, sigma_e = 1000.0, 0.9, 1.5
    expected = _ar1_acf(phi, sigma_e, 60)
    # On the FFT grid itself the inversion is exact up to aliasing ~ phi^N.
    grid = np.fft.rfftfreq(4096, d=1 / fs)
    acf = acf_from_psd(grid, _ar1_psd(grid, phi, sigma_e, fs), fs, 60)
    np.testing.assert_allclose(acf, expected, rtol=1e-10)
    # On an unrelated grid the linear interpolation costs little.
    coarse = np.linspace(0, fs / 2, 3001)
    acf = acf_from_psd(coarse, _ar1_psd(coarse, phi, sigma_e, fs), fs, 60)
    np.testing.assert_allclose(acf, expected, rtol=2e-3)


def test_estimated_acf_of_ar1_draw():
    fs, phi = 1024.0, 0.8
    rng = np.random.default_rng(5)
    noise = signal.lfilter([1.0], [1.0, -phi], rng.normal(size=128 * 1024))
    ts = from_array(noise[2048:], T0, fs, "L1")
    acf = estimate_acf(ts, 20, segment_duration=2.0)
    np.testing.assert_allclose(acf, _ar1_acf(phi, 1.0, 20), atol=0.05 * _ar1_acf(phi, 1.0, 1)[0])


def test_welch_psd_level_and_exclusion():
    fs = 256.0
    rng = np.random.default_rng(3)
    data = rng.normal(size=int(40 * fs))
    t = np.arange(data.size) / fs
    burst = (t > 18) & (t < 22)
    data[burst] += 100 * np.sin(2 * np.pi * 30 * t[burst])
    ts = from_array(data, T0, fs, "V1")
    freqs, psd = welch_psd(ts, 2.0, exclude=(T0 + 17.5, T0 + 22.5))
    assert freqs[-1] == fs / 2 and freqs[1] == 0.5
    # Unit white noise: one-sided PSD 2 / fs, and its integral is the variance.
    assert np.median(psd) == pytest.approx(2 / fs, rel=0.05)
    assert scipy.integrate.trapezoid(psd, freqs) == pytest.approx(1.0, rel=0.03)
    _, polluted = welch_psd(ts, 2.0)
    assert polluted[freqs == 30.0][0] > 100 * psd[freqs == 30.0][0]
    with pytest.raises(ValueError, match="holds one 30"):
        welch_psd(ts, 30.0, exclude=(T0 + 15, T0 + 20))
    with pytest.raises(ValueError, match="gps_a < gps_b"):
        welch_psd(ts, 2.0, exclude=(T0 + 20, T0 + 15))


@pytest.mark.parametrize("scale", [1.0, 1e-42])
def test_toeplitz_whitening_of_coloured_draws(scale):
    n, draws = 200, 2000
    acf = scale * _ar1_acf(0.95, 1.0, n)
    cov = scipy.linalg.toeplitz(acf)
    noise = scipy.stats.multivariate_normal(np.zeros(n), cov).rvs(draws, random_state=7)
    whitening = whitening_matrix(acf, "H1")
    white = noise @ whitening.T
    # Pooled variance of 400000 unit normals is 1 within ~0.2%.
    assert np.mean(white**2) == pytest.approx(1.0, abs=0.01)
    corr = np.corrcoef(white, rowvar=False)[np.triu_indices(n, 1)]
    assert np.max(np.abs(corr)) < 5.5 / np.sqrt(draws)
    np.testing.assert_allclose(whitening @ cov @ whitening.T, np.eye(n), atol=1e-8)
    np.testing.assert_array_equal(toeplitz_covariance(acf), cov)
    factor = cholesky_factor(cov)
    np.testing.assert_allclose(factor @ factor.T, cov, rtol=1e-10, atol=1e-12 * scale)
    assert np.allclose(factor, np.tril(factor))


@pytest.mark.parametrize("detector", ["H1", "L1"])
def test_gw150914_noise_estimate_whitens_off_source_data(project_data, detector):
    strain = read_strain(project_data / SHIPPED.format(detector[0], detector))
    data = condition(strain, sample_rate=2048.0, f_low=20.0)
    n = round(0.2 * 2048)
    acf = estimate_acf(data, n, segment_duration=4.0, exclude=ON_SOURCE)
    whitening = whitening_matrix(acf, detector)
    # Whitened off-source segments (away from filter edges) have unit variance on average.
    starts = np.arange(2 * 2048, 12 * 2048, n)
    segments = np.stack([data.data[s : s + n] for s in starts])
    assert np.mean((segments @ whitening.T) ** 2) == pytest.approx(1.0, abs=0.15)


def test_gw150914_psd_agrees_with_pyring_estimate(project_data):
    """Our Welch PSD vs the PSD behind pyRing's H1 ACF (4096 s of earlier data, own pipeline)."""
    strain = read_strain(project_data / SHIPPED.format("H", "H1"))
    freqs, psd = welch_psd(condition(strain, 2048.0, f_low=20.0), 4.0, exclude=ON_SOURCE)
    acf = read_acf(project_data / PYRING_ACF_2048)
    period = np.concatenate([acf, acf[-2:0:-1]])
    pyring_psd = 2 / 2048 * np.fft.rfft(period).real
    pyring_freqs = np.fft.rfftfreq(period.size, d=1 / 2048)
    band = (freqs > 60) & (freqs < 500)
    ratio = np.median(psd[band]) / np.median(pyring_psd[(pyring_freqs > 60) & (pyring_freqs < 500)])
    assert ratio == pytest.approx(1.0, rel=0.3)
    # The pyRing ACF itself gives a usable 0.2 s covariance at 2048 Hz.
    assert whitening_matrix(acf[:410], "H1").shape == (410, 410)


def test_read_acf_layouts_and_decimation(tmp_path):
    fs, phi = 1024.0, 0.7
    one_sided = _ar1_acf(phi, 1.0, 512)
    lags = np.arange(512) / fs
    path = tmp_path / "acf.txt"
    np.savetxt(path, np.column_stack([lags, one_sided]))
    np.testing.assert_allclose(read_acf(path), one_sided, rtol=1e-12)
    assert read_acf(path, n_lags=10).size == 10
    # A circular table (full inverse FFT) yields its first half only.
    grid = np.fft.rfftfreq(1024, d=1 / fs)
    circular = np.fft.irfft(_ar1_psd(grid, phi, 1.0, fs), n=1024) * fs / 2
    circular_path = tmp_path / "circular.txt"
    np.savetxt(circular_path, np.column_stack([np.arange(1024) / fs, circular]))
    got = read_acf(circular_path)
    assert got.size == 513
    np.testing.assert_allclose(got[:50], _ar1_acf(phi, 1.0, 50), rtol=1e-9)
    # Half the rate: the sample ACF of a long AR(1) draw decimated in the time domain; 2^22
    # samples know it to ~1e-3 of the variance, and the PSD cut at 256 Hz (an ideal filter)
    # misses it by 9e-3
    draw = signal.lfilter([1.0], [1.0, -phi], np.random.default_rng(17).normal(size=2**23))[1000:]
    decimated = decimate(from_array(draw, T0, fs, "H1"), 512.0).data
    sample = np.array([np.mean(decimated[: decimated.size - k] * decimated[k:]) for k in range(8)])
    half = read_acf(path, sample_rate=512.0, n_lags=8)
    np.testing.assert_allclose(half, sample, atol=3e-3 * half[0])
    with pytest.raises(ValueError, match="not a whole multiple"):
        read_acf(path, sample_rate=400.0)
    with pytest.raises(ValueError, match="holds nothing about 2048"):
        read_acf(path, sample_rate=2048.0)
    with pytest.raises(ValueError, match="fewer than the 600"):
        read_acf(path, n_lags=600)


def test_read_psd(tmp_path):
    freqs = np.linspace(0, 512, 100)
    asd = np.linspace(1, 2, 100)
    path = tmp_path / "asd.txt"
    np.savetxt(path, np.column_stack([freqs, asd]))
    np.testing.assert_allclose(read_psd(path, asd=True)[1], asd**2)
    np.testing.assert_allclose(read_psd(path)[0], freqs)
    np.savetxt(path, np.column_stack([freqs[::-1], asd]))
    with pytest.raises(ValueError, match="increasing"):
        read_psd(path)


def test_bad_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_acf(tmp_path / "none.txt")
    three = tmp_path / "three.txt"
    np.savetxt(three, np.ones((4, 3)))
    with pytest.raises(ValueError, match="two columns"):
        read_acf(three)
    with pytest.raises(ValueError, match="has 2 PSD columns .no header.: choose it"):
        read_psd(three)
    uneven = tmp_path / "uneven.txt"
    np.savetxt(uneven, np.column_stack([[0, 1, 3, 4], [4.0, 1, 0.5, 0.1]]))
    with pytest.raises(ValueError, match="uniformly spaced"):
        read_acf(uneven)
    with pytest.raises(ValueError, match="below the Nyquist"):
        acf_from_psd([0, 100], [1, 1], 1024, 4)
    with pytest.raises(ValueError, match="non-negative"):
        acf_from_psd([0, 512], [1, -1], 1024, 4)
    ts = from_array(np.random.default_rng(0).normal(size=4096), T0, 1024.0, "H1")
    with pytest.raises(ValueError, match="too short"):
        estimate_acf(ts, 1024, segment_duration=1.0)


def test_indefinite_and_ill_conditioned_covariances_raise():
    # Eigenvalues 1 and 1 +- 0.9 sqrt(2): one is negative.
    with pytest.raises(ValueError, match="L1 noise covariance .*not positive definite.*f_low"):
        whitening_matrix([1.0, 0.9, 0.0], "L1")
    # Eigenvalues 2 - 1e-13 and 1e-13: condition number 2e13.
    message = r"H1 noise covariance .*condition number (1\.99\d|2\.00\d)e\+13"
    with pytest.raises(ValueError, match=message):
        cholesky_factor(toeplitz_covariance([1.0, 1.0 - 1e-13]), "H1")
    assert cholesky_factor(toeplitz_covariance([1.0, 0.5]), max_condition=10).shape == (2, 2)
    with pytest.raises(ValueError, match="not symmetric"):
        cholesky_factor([[1.0, 0.5], [0.2, 1.0]])
    with pytest.raises(ValueError, match="variance"):
        toeplitz_covariance([0.0, 0.1])
