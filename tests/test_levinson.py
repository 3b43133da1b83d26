"""The O(n K) Levinson likelihood against explicit Toeplitz solves of independently built templates.

References: dense covariances solved by Cholesky and refined with residuals in extended precision
(``np.longdouble``), or in 40-digit arithmetic (mpmath) where they are ill-conditioned (a float64
solve alone is only good to ~cond eps); templates as numpy damped sinusoids on the sample times
(no uniform-grid powers, no polynomials) and, for l = 2 modes, :mod:`gwtools.ringdown.reference`.
"""

from __future__ import annotations

import logging
import pickle

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from helpers import damped_cosine_acf

from gwtools.io.strain import read_strain
from gwtools.ringdown import noise as noise_module
from gwtools.ringdown.baseline import FullLikelihood
from gwtools.ringdown.conditioning import condition
from gwtools.ringdown.direct import build_direct_analysis_data, log_likelihood_direct, projections_direct
from gwtools.ringdown.firefly import FireflyLikelihood
from gwtools.ringdown.injection import Injection, inject, optimal_snr
from gwtools.ringdown.likelihood import (
    build_analysis_data,
    log_likelihood,
    mode_noise_products,
    projections,
    rotate_antenna,
)
from gwtools.ringdown.model import AMPLITUDE_UNIT, RingdownModel, design_matrix, mixing_matrix
from gwtools.ringdown.noise import ToeplitzNoise, acf_from_psd, estimate_acf, levinson_durbin, read_acf
from gwtools.ringdown.qnm import frequency_damping_time
from gwtools.ringdown.reference import reference_log_likelihood, reference_template

PYRING_ACF = {2048: "GW150914/ACF_H1_1126257415_4096_4.0_2048.0.txt.gz",
              4096: "GW150914/ACF_H1_1126257415_4096_4.0_4096.0.txt.gz"}
STRAIN = "GW150914/{0}-{1}_GWOSC_4KHZ_R1-1126259447-32.hdf5"
ON_SOURCE = (1126259460.0, 1126259465.0)
ALL_MODES = ["220", "221", "330", "440", "210", "320"]
ANTENNA = np.array([[0.55, -0.31], [-0.42, 0.37], [0.12, 0.81]])
STARTS = np.array([0.0, 6.9e-3, 2.3e-3])  # s after the analysis start, per detector



def _evaluate(data, quadratures, nonlinear, model):
    return projections(model, data, *nonlinear), log_likelihood(model, data, quadratures, *nonlinear)


_jit_evaluate = jax.jit(_evaluate, static_argnums=3)


def evaluate(model, data, quadratures, *nonlinear):
    """(S, M) and ln L at one point, numpy; one compilation per model and data shape."""
    (s, m), log_l = _jit_evaluate(data, quadratures, tuple(nonlinear), model)
    return np.asarray(s), np.asarray(m), float(log_l)


def refined_solve(cov, rhs):
    """cov^-1 rhs by Cholesky and three steps of refinement with long-double residuals (columns of rhs)."""
    factor = scipy.linalg.cho_factor(cov)
    x = scipy.linalg.cho_solve(factor, rhs)
    cov_long = cov.astype(np.longdouble)
    for _ in range(3):
        residual = (rhs.astype(np.longdouble) - cov_long @ x.astype(np.longdouble)).astype(float)
        x = x + scipy.linalg.cho_solve(factor, residual)
    return x


class MpmathSolver:
    """cov^-1 rhs in 40-digit arithmetic, rounded to float64; inverses cached per covariance."""

    def __init__(self):
        self._inverses = {}

    def __call__(self, cov, rhs):
        key = cov.tobytes()
        with mpmath.workdps(40):
            if key not in self._inverses:
                self._inverses[key] = mpmath.inverse(mpmath.matrix(cov.tolist()))
            return np.array((self._inverses[key] * mpmath.matrix(rhs.tolist())).tolist(), dtype=float)


def band_limited_acf(sample_rate, n, floor):
    """ACF of a band-limited PSD (20 Hz .. 0.4 fs, seismic wall below 50 Hz) with a floor outside."""
    freqs = np.linspace(0, sample_rate / 2, 8193)
    psd = np.where((freqs > 20) & (freqs < 0.4 * sample_rate), 1.0, floor) * (1 + (50 / np.maximum(freqs, 1)) ** 4)
    return acf_from_psd(freqs, psd * 1e-46, sample_rate, n)


@pytest.fixture(scope="module")
def welch_acfs(project_data):
    """Welch ACFs of the conditioned GW150914 strain (H1, L1) at 1024, 2048 and 4096 Hz, 410 lags."""
    acfs = {}
    for rate in (1024.0, 2048.0, 4096.0):
        for det in ("H1", "L1"):
            strain = condition(read_strain(project_data / STRAIN.format(det[0], det)), rate, f_low=20.0)
            acfs[rate, det] = estimate_acf(strain, 410, segment_duration=4.0, exclude=ON_SOURCE)
    return acfs


def case_acfs(kind, rate, n, n_det, project_data, welch_acfs):
    """(n_det, n) ACFs in strain^2 of one of the test families."""
    if kind == "welch":
        acfs = [welch_acfs[float(rate), det][:n] for det in ("H1", "L1")]
        acfs.append(1.7 * acfs[0])
    elif kind == "pyring":
        base = read_acf(project_data / PYRING_ACF[max(rate, 2048)], sample_rate=rate, n_lags=n)
        acfs = [base, 0.6 * base, 2.2 * base]
    elif kind == "synthetic":
        acfs = [damped_cosine_acf(n, rate, 1.2e-21, 3e-3, 150.0), damped_cosine_acf(n, rate, 0.9e-21, 2e-3, 90.0),
                damped_cosine_acf(n, rate, 2.0e-21, 1e-3, 300.0)]
    else:  # ill-conditioned
        acfs = [band_limited_acf(rate, n, 1e-9), band_limited_acf(rate, n, 3e-10), band_limited_acf(rate, n, 1e-8)]
    return np.stack(acfs[:n_det])


def reference_basis(model, mass, spin, times, antenna, inclination, polarization):
    """(n_det, n_quadratures, n) basis waveforms: numpy damped sinusoids through the mixing matrix."""
    freqs, taus = (np.asarray(x) for x in frequency_damping_time(model.modes, mass, spin))
    t = times[:, None, :]
    envelope, phase = np.exp(-t / taus[:, None]), 2 * np.pi * freqs[:, None] * t
    waveforms = np.stack([envelope * np.cos(phase), envelope * np.sin(phase)], axis=2)
    waveforms = waveforms.reshape(len(times), -1, t.shape[-1])
    mixing = np.asarray(mixing_matrix(model, rotate_antenna(jnp.asarray(antenna), polarization), inclination))
    return np.einsum("dqk,dkn->dqn", mixing, waveforms)


def reference_products(model, times, data, acfs, antenna, params, solve):
    """S, M and ln L at one point from dense covariances, the design matrix and ``solve``."""
    mass, spin, incl, psi, b = params
    basis = reference_basis(model, mass, spin, times, antenna, incl, psi)
    s, m, log_l = 0.0, 0.0, 0.0
    for i in range(len(times)):
        cov = scipy.linalg.toeplitz(acfs[i] / AMPLITUDE_UNIT**2)
        scaled = data[i] / AMPLITUDE_UNIT
        solved = solve(cov, np.column_stack([scaled, basis[i].T]))
        s = s + basis[i] @ solved[:, 0]
        m = m + basis[i] @ solved[:, 1:]
        residual = scaled - b @ basis[i]
        chi2 = residual @ solve(cov, residual[:, None])[:, 0]
        log_det = np.linalg.slogdet(cov)[1] + 2 * len(scaled) * np.log(AMPLITUDE_UNIT)
        log_l += -0.5 * chi2 - 0.5 * log_det - 0.5 * len(scaled) * np.log(2 * np.pi)
    return s, m, log_l


def reference_py_log_likelihood(model, times, data, acfs, antenna, params):
    """ln L from :mod:`gwtools.ringdown.reference`: template from amplitudes and phases, scipy solve."""
    mass, spin, incl, psi, b = params
    amps, phases = np.hypot(b[0::2], b[1::2]), np.arctan2(b[1::2], b[0::2])
    freqs, taus = (np.asarray(x) for x in frequency_damping_time(model.modes, mass, spin))
    rotated = np.asarray(rotate_antenna(jnp.asarray(antenna), psi))
    return sum(
        reference_log_likelihood(data[i], acfs[i], reference_template(
            times[i], freqs, taus, amps * AMPLITUDE_UNIT, phases, rotated[i], ms=[m.m for m in model.modes],
            inclination=incl))
        for i in range(len(times)))


def assert_products_close(s, m, s_ref, m_ref, rtol):
    """|dM_ab| <= rtol sqrt(M_aa M_bb) and |dS_a| <= rtol max(|S_a|, sqrt(M_aa)) (Cauchy-Schwarz scales)."""
    scale = np.sqrt(np.diag(m_ref))
    relative = np.abs(m - m_ref) / np.outer(scale, scale)
    assert np.all(relative <= rtol), np.max(relative)
    assert np.all(np.abs(s - s_ref) <= rtol * np.maximum(np.abs(s_ref), scale)), np.max(np.abs(s - s_ref) / scale)


CASES = [
    # polarization, modes, detectors, sample rate (Hz), ACF family, samples
    ("kerr", ALL_MODES[:1], 1, 1024, "pyring", 96),
    ("free", ALL_MODES[:2], 2, 2048, "welch", 128),
    ("kerr", ["220", "221", "210"], 2, 2048, "pyring", 410),  # the main job's shape
    ("kerr", ALL_MODES[:4], 3, 4096, "welch", 150),
    ("free", ALL_MODES[:5], 2, 8192, "synthetic", 256),
    ("kerr", ALL_MODES, 2, 2048, "ill", 64),
]
@pytest.mark.parametrize("polarization, modes, n_det, rate, kind, n", CASES)
def test_projections_and_likelihood_match_explicit_solve(project_data, welch_acfs, polarization, modes, n_det,
                                                         rate, kind, n):
    rng = np.random.default_rng(n * n_det + len(modes))
    model = RingdownModel(tuple(modes), polarization=polarization)
    acfs = case_acfs(kind, rate, n, n_det, project_data, welch_acfs)
    times = np.arange(n)[None, :] / rate + STARTS[:n_det, None]
    antenna = ANTENNA[:n_det]
    signal = 3 * AMPLITUDE_UNIT * np.exp(-times / 0.01) * np.cos(2 * np.pi * 180 * times)
    data = signal + np.stack([np.linalg.cholesky(scipy.linalg.toeplitz(a)) @ rng.standard_normal(n) for a in acfs])
    analysis = build_analysis_data(times, data, acfs, antenna, ("H1", "L1", "V1")[:n_det])
    condition_number = max(np.ptp(np.log10(np.linalg.eigvalsh(scipy.linalg.toeplitz(a)))) for a in acfs)
    # The dense float64 solve is itself only accurate to ~cond eps: refine it, or go to 40 digits.
    solve = MpmathSolver() if kind == "ill" else refined_solve
    assert (condition_number > np.log10(5e9)) == (kind == "ill")

    for _ in range(2):
        params = (rng.uniform(50, 200), rng.uniform(0, 0.99), rng.uniform(0, np.pi), rng.uniform(0, np.pi),
                  rng.normal(0, 2, model.n_quadratures))
        s_ref, m_ref, log_l_ref = reference_products(model, times, data, acfs, antenna, params, solve)
        s, m, log_l = evaluate(model, analysis, params[4], *params[:4])
        assert_products_close(s, m, s_ref, m_ref, 1e-10)
        assert log_l == pytest.approx(log_l_ref, rel=1e-10, abs=0)
        if polarization == "kerr" and all(mode.l == 2 for mode in model.modes):
            assert log_l == pytest.approx(reference_py_log_likelihood(model, times, data, acfs, antenna, params),
                                          rel=1e-10, abs=0)
        # The signal-dependent part alone, relative to its own size.
        b = params[4]
        signal_part = s_ref @ b - 0.5 * b @ m_ref @ b
        assert log_l - float(analysis.log_l0) == pytest.approx(signal_part, rel=1e-10, abs=1e-10)


def exponential_products_reference(acf, times, data, rates):
    """x_k^T T^-1 d, x_k^T T^-1 x_l and x_k^T T^-1 conj(x_l) for x_k = exp(a_k t), dense refined solves."""
    cov = scipy.linalg.toeplitz(acf)
    x = np.exp(np.outer(rates, times))  # (K, n)
    solved = refined_solve(cov, np.column_stack([data, x.real.T, x.imag.T]))
    k = len(rates)
    inv_x = solved[:, 1:k + 1] + 1j * solved[:, k + 1:]
    return x @ solved[:, 0], x @ inv_x, x @ np.conj(inv_x)


@pytest.mark.parametrize("rate, n", [(8192, 256), (2048, 64)])
def test_exponentials_near_the_unit_circle(project_data, rate, n):
    """Products of exponentials with 1 - z w from 1e-7 to 2, against dense refined solves.

    The difference in the numerator leaves a relative error of about 1e-16 / |1 - z w|.  For Kerr
    modes |1 - z w| >= 2 dt / tau, 3e-3 at 8192 Hz for the longest-lived modes of the table
    (tau ~ 0.08 s), so no guarded branch is needed: 1e-10 holds down to |1 - z w| ~ 1e-5
    (tau = 30 s here, f = 0), and beyond it the error follows the bound.
    """
    if rate > 2048:
        acf = damped_cosine_acf(n, rate, 1.0, 3e-3, 150.0)
    else:
        acf = read_acf(project_data / PYRING_ACF[2048], n_lags=n) / AMPLITUDE_UNIT**2
    times = 1.3e-3 + np.arange(n) / rate
    data = np.random.default_rng(1).standard_normal(n)
    analysis = build_analysis_data(times[None], data[None] * AMPLITUDE_UNIT, acf[None] * AMPLITUDE_UNIT**2,
                                   [[1.0, 0.0]])
    # Kerr-like modes (0.084 s: 220 of a 500 Msun remnant at chi = 0.99), f_k + f_l = 0 and fs,
    # and two far longer than any QNM.
    taus = np.array([0.084, 0.003, 0.3, 30.0, 0.2, 3000.0, 3000.0])
    freqs = np.array([114.6, 900.0, 60.0, 0.0, rate / 2, 250.0, 0.0])
    rates = -1 / taus + 2j * np.pi * freqs
    overlap, direct, mixed = (np.asarray(x)[0] for x in mode_noise_products(analysis, jnp.asarray(rates)))
    overlap_ref, direct_ref, mixed_ref = exponential_products_reference(acf, times, data, rates)
    norms = np.sqrt(np.real(np.diag(mixed_ref)))  # |x_k| in the T^-1 metric
    scale = np.outer(norms, norms)
    distance = {"direct": np.abs(-np.expm1(np.add.outer(rates, rates) / rate)),
                "mixed": np.abs(-np.expm1(np.add.outer(rates, np.conj(rates)) / rate))}
    for name, value, expected in (("direct", direct, direct_ref), ("mixed", mixed, mixed_ref)):
        error = np.abs(value - expected) / scale
        near = distance[name] < 1e-5
        assert np.any(near) and np.any(distance[name] > 1)
        assert np.all(error[~near] < 1e-10), (name, np.max(error[~near]))
        assert np.all(error < 1e-10 + 1e-15 / distance[name]), name
    data_norm = np.sqrt(data @ np.linalg.solve(scipy.linalg.toeplitz(acf), data))
    np.testing.assert_array_less(np.abs(overlap - overlap_ref), 1e-10 * norms * data_norm)


def test_heavy_fast_spinning_remnant_at_8192_hz():
    """All six modes of a 500 Msun remnant at chi = 0.99 (tau up to 0.084 s, 1 - |z|^2 = 3e-3 per
    sample), three detectors at 8192 Hz."""
    rate, n = 8192, 820
    acfs = case_acfs("synthetic", rate, n, 3, None, None)
    times = np.arange(n)[None] / rate + STARTS[:, None]
    rng = np.random.default_rng(4)
    data = np.stack([np.linalg.cholesky(scipy.linalg.toeplitz(a)) @ rng.standard_normal(n) for a in acfs])
    model = RingdownModel(tuple(ALL_MODES))
    analysis = build_analysis_data(times, data, acfs, ANTENNA)
    for params in ((500.0, 0.99, 0.7, 0.3, rng.normal(0, 2, model.n_quadratures)),
                   (80.0, 0.99, 2.0, 1.3, rng.normal(0, 2, model.n_quadratures))):
        s_ref, m_ref, log_l_ref = reference_products(model, times, data, acfs, ANTENNA, params, refined_solve)
        s, m, log_l = evaluate(model, analysis, params[4], *params[:4])
        assert_products_close(s, m, s_ref, m_ref, 1e-10)
        assert log_l == pytest.approx(log_l_ref, rel=1e-10)


def ar1_acf(phi, n):
    return phi ** np.arange(n) / (1 - phi**2)


def test_levinson_durbin_of_an_ar1_process():
    """AR(1), x_j = phi x_(j-1) + e_j, Var e = 1: the predictor is (1, -phi, 0, ...) at every order >= 1,
    the prediction errors are 1/(1 - phi^2), 1, 1, ... (so ln det T = -ln(1 - phi^2))."""
    phi, n = 0.93, 300
    predictor, errors = levinson_durbin(ar1_acf(phi, n))
    np.testing.assert_allclose(predictor, np.r_[1.0, -phi, np.zeros(n - 2)], rtol=0, atol=1e-13)
    np.testing.assert_allclose(errors, np.r_[1 / (1 - phi**2), np.ones(n - 1)], rtol=1e-12)
    with pytest.raises(ValueError, match="order 1 .*not numerically positive definite"):
        levinson_durbin([1.0, 1.2, 0.3])


def test_toeplitz_noise_methods_match_dense_linear_algebra():
    rng = np.random.default_rng(2)
    acf = damped_cosine_acf(200, 2048, 1.0, 4e-3, 120.0)
    noise = ToeplitzNoise.from_acf(acf, "H1")
    cov = scipy.linalg.toeplitz(acf)
    x, y = rng.standard_normal((2, 3, 200))
    np.testing.assert_allclose(noise.solve(x), np.linalg.solve(cov, x.T).T, rtol=1e-9)
    np.testing.assert_allclose(noise.inner_product(x, y), np.einsum("ij,ij->i", x, np.linalg.solve(cov, y.T).T),
                               rtol=1e-9)
    whitening = noise.whitening_matrix()
    np.testing.assert_allclose(whitening @ cov @ whitening.T, np.eye(200), atol=1e-9)
    np.testing.assert_allclose(noise.whiten(x), x @ whitening.T, rtol=1e-10, atol=1e-10)
    assert noise.log_det == pytest.approx(np.linalg.slogdet(cov)[1], rel=1e-12)
    expected = scipy.stats.multivariate_normal(np.zeros(200), cov).logpdf(x[0])
    assert noise.log_likelihood(x[0]) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(cov @ noise.predictor, np.r_[noise.prediction_error, np.zeros(199)], atol=1e-13)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 200\)"):
        noise.solve(np.ones(199))


def test_ill_conditioned_predictor_is_refined_to_float64_accuracy(caplog):
    """cond ~ 1e10: Levinson and Cholesky agree within n cond eps (no fallback), but each is off by
    ~1e-7; the stored predictor matches a 40-digit solve to 1e-12."""
    acf = band_limited_acf(2048, 64, 1e-10) / 1e-46
    cov = scipy.linalg.toeplitz(acf)
    assert np.linalg.cond(cov) > 1e9
    exact = MpmathSolver()(cov, np.eye(64)[:, :1])[:, 0]
    exact_predictor = exact / exact[0]
    with caplog.at_level(logging.WARNING, logger="gwtools.ringdown.noise"):
        noise = ToeplitzNoise.from_acf(acf, "H1")
    assert not caplog.records
    levinson, errors = levinson_durbin(acf)
    scale = np.max(np.abs(exact_predictor))
    assert np.max(np.abs(levinson - exact_predictor)) > 1e-9 * scale  # what float64 alone gives
    assert np.max(np.abs(noise.predictor - exact_predictor)) < 1e-12 * scale
    assert noise.prediction_error == pytest.approx(1 / exact[0], rel=1e-12)
    assert noise.log_det == pytest.approx(np.sum(np.log(errors)), abs=1e-8)


def test_levinson_disagreeing_with_cholesky_falls_back_with_a_warning(monkeypatch, caplog):
    acf = damped_cosine_acf(100, 2048, 1.0, 4e-3, 120.0)
    exact = ToeplitzNoise.from_acf(acf, "L1")

    def perturbed(values):
        predictor, errors = levinson_durbin(values)
        return predictor + 1e-6, errors

    monkeypatch.setattr(noise_module, "levinson_durbin", perturbed)
    with caplog.at_level(logging.WARNING, logger="gwtools.ringdown.noise"):
        fallback = ToeplitzNoise.from_acf(acf, "L1")
    assert "L1 noise covariance" in caplog.text and "using the Cholesky solution" in caplog.text
    np.testing.assert_allclose(fallback.predictor, exact.predictor, rtol=0, atol=1e-14)
    assert fallback.log_det == pytest.approx(exact.log_det, rel=1e-12)

    def broken(values):
        raise ValueError("the Levinson-Durbin prediction error of order 7 is -1e-3")

    monkeypatch.setattr(noise_module, "levinson_durbin", broken)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gwtools.ringdown.noise"):
        fallback = ToeplitzNoise.from_acf(acf, "L1")
    assert "order 7" in caplog.text
    np.testing.assert_allclose(fallback.predictor, exact.predictor, rtol=0, atol=1e-14)


def test_bad_covariances_name_the_detector():
    with pytest.raises(ValueError, match="V1 noise covariance .*not positive definite"):
        ToeplitzNoise.from_acf([1.0, 0.9, 0.0], "V1")
    with pytest.raises(ValueError, match=r"H1 noise covariance .*condition number .*> 1\.0e\+12"):
        ToeplitzNoise.from_acf([1.0, 1.0 - 1e-13], "H1")


def small_setup(acf_scale=1.0, seed=9):
    rate, n = 2048, 160
    acfs = acf_scale * np.stack([damped_cosine_acf(n, rate, 1.2e-21, 3e-3, 150.0),
                                 damped_cosine_acf(n, rate, 0.9e-21, 2e-3, 90.0)])
    times = np.arange(n)[None] / rate + STARTS[:2, None]
    rng = np.random.default_rng(seed)
    data = np.stack([np.linalg.cholesky(scipy.linalg.toeplitz(a)) @ rng.standard_normal(n) for a in acfs])
    return times, data, acfs, ANTENNA[:2], ("H1", "L1")


@pytest.fixture(scope="module")
def small_analysis():
    setup = small_setup()
    return build_analysis_data(*setup), build_direct_analysis_data(*setup)


def test_batched_likelihoods_agree_with_the_direct_path(small_analysis):
    analysis, direct = small_analysis
    model = RingdownModel(("220", "221"))
    rng = np.random.default_rng(5)
    theta = np.column_stack([rng.uniform(50, 90, 16), rng.uniform(0, 0.99, 16), rng.uniform(0, 5, (16, 2)),
                             rng.uniform(0, 2 * np.pi, (16, 2))])
    fixed = {"inclination": 2.8, "polarization": 0.4}
    firefly = FireflyLikelihood(model, analysis, ("final_mass", "final_spin"), fixed)

    class DirectFirefly(FireflyLikelihood):
        def _projections(self, row, data):
            return projections_direct(self.model, data, *self.nonlinear(row))

    reference = DirectFirefly(model, direct, ("final_mass", "final_spin"), fixed)
    np.testing.assert_allclose(firefly(theta[:, :2]), reference(theta[:, :2]), rtol=1e-12)
    params = ("final_mass", "final_spin", "amplitude_220", "amplitude_221", "phase_220", "phase_221")
    full = FullLikelihood(model, analysis, params, fixed)
    amplitudes, phases = theta[:, 2:4], theta[:, 4:6]
    quadratures = np.stack([amplitudes * np.cos(phases), amplitudes * np.sin(phases)], axis=-1).reshape(-1, 4)
    direct_full = jax.jit(jax.vmap(lambda row, b: log_likelihood_direct(model, direct, b, row[0], row[1], 2.8, 0.4)))
    np.testing.assert_allclose(full(theta), direct_full(jnp.asarray(theta), jnp.asarray(quadratures)), rtol=1e-12)


def test_analyses_of_equal_shape_stack_and_vmap(small_analysis):
    """A start-time scan as one batch: leaves stacked, vmap over analyses."""
    analysis, _ = small_analysis
    times, data, acfs, antenna, detectors = small_setup(acf_scale=1.5, seed=3)
    other = build_analysis_data(times + 1e-3, data, acfs, antenna, detectors)
    stacked = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), analysis, other)
    model = RingdownModel(("220",))
    s, m = jax.jit(jax.vmap(lambda d: projections(model, d, 70.0, 0.6, 1.0, 0.2)))(stacked)
    for i, single in enumerate((analysis, other)):
        s_i, m_i, _ = evaluate(model, single, np.zeros(2), 70.0, 0.6, 1.0, 0.2)
        np.testing.assert_allclose(s[i], s_i, rtol=1e-13)
        np.testing.assert_allclose(m[i], m_i, rtol=1e-13)


def test_likelihood_pickles_and_fingerprints_with_the_new_data(small_analysis):
    analysis, _ = small_analysis
    model = RingdownModel(("220",))
    likelihood = FireflyLikelihood(model, analysis, ("final_mass", "final_spin"))
    theta = np.array([[60.0, 0.5], [75.0, 0.8]])
    values = likelihood(theta)
    back = pickle.loads(pickle.dumps(likelihood))
    np.testing.assert_array_equal(back(theta), values)
    assert back.fingerprint() == likelihood.fingerprint()
    other = FireflyLikelihood(model, build_analysis_data(*small_setup(acf_scale=2.0)), ("final_mass", "final_spin"))
    assert other.fingerprint() != likelihood.fingerprint()


def test_optimal_snr_equals_the_whitened_template_norm(small_analysis):
    analysis, direct = small_analysis
    model = RingdownModel(("220", "221"))
    injection = Injection(final_mass=68.0, final_spin=0.7, amplitudes=(4.0, 6.0), phases=(0.3, 2.0),
                          inclination=2.9, polarization=0.8)
    times, _, acfs, antenna, _ = small_setup()
    clean = inject(model, injection, times, acfs, antenna, seed=None)
    rotated = np.asarray(rotate_antenna(jnp.asarray(ANTENNA[:2]), injection.polarization))
    basis = np.asarray(design_matrix(model, 68.0, 0.7, np.asarray(analysis.times), rotated, 2.9))
    b = np.array([4.0 * np.cos(0.3), 4.0 * np.sin(0.3), 6.0 * np.cos(2.0), 6.0 * np.sin(2.0)])
    white = np.einsum("dmn,dn->dm", np.asarray(direct.whitening), b @ basis)
    assert optimal_snr(model, injection, clean) == pytest.approx(np.sqrt(np.sum(white**2)), rel=1e-10)
