"""FIREFLY marginalization against brute-force numerical integration over the quadratures."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
import scipy.integrate
import scipy.stats
from helpers import damped_cosine_acf

from gwtools.ringdown import firefly
from gwtools.ringdown.firefly import (
    FireflyLikelihood,
    QuadraturePrior,
    amplitudes_and_phases,
    log_physical_prior,
    marginal_log_likelihood,
    physical_proposal,
    reweight_to_physical_prior,
)
from gwtools.ringdown.likelihood import build_analysis_data, projections
from gwtools.ringdown.model import AMPLITUDE_UNIT, RingdownModel
from gwtools.ringdown.modes import parse_modes
from gwtools.ringdown.qnm import frequency_damping_time
from gwtools.ringdown.reference import ReferenceLikelihood, reference_template

FS = 2048.0
N = 128
INCLINATION = 0.6


def _setup(modes, amplitudes, phases, seed=11):
    """Two-detector injection of l = 2 modes in coloured noise; returns data pieces and a reference."""
    rng = np.random.default_rng(seed)
    modes = parse_modes(modes)
    acfs = np.stack([damped_cosine_acf(N, FS, 1.0e-21, 3e-3, 150.0), damped_cosine_acf(N, FS, 1.3e-21, 2e-3, 80.0)])
    times = np.stack([np.arange(N) / FS, np.arange(N) / FS + 0.4 / FS])
    antenna = np.array([[0.6, -0.3], [-0.5, 0.35]])
    freqs, taus = (np.asarray(x) for x in frequency_damping_time(modes, 68.0, 0.69))
    data = []
    for i in range(2):
        cov = np.array([[acfs[i][abs(j - k)] for k in range(N)] for j in range(N)])
        signal = reference_template(times[i], freqs, taus, np.asarray(amplitudes) * AMPLITUDE_UNIT, phases,
                                    antenna[i], ms=[m.m for m in modes], inclination=INCLINATION)
        data.append(signal + np.linalg.cholesky(cov) @ rng.standard_normal(N))
    data = np.stack(data)

    @functools.cache
    def qnm(mass, spin):  # cached: the brute-force integrals call it at fixed (mass, spin)
        return tuple(np.asarray(x) for x in frequency_damping_time(modes, mass, spin))

    ref = ReferenceLikelihood(times, data, acfs, antenna, qnm, [m.m for m in modes], inclination=INCLINATION)
    analysis = build_analysis_data(times, data, acfs, antenna)
    return RingdownModel(modes), analysis, ref


def _ref_lnl_quadratures(ref, mass, spin, b):
    """Reference ln L at quadratures b (units of 1e-21), via amplitudes and phases."""
    amp, phase = amplitudes_and_phases(np.asarray(b))
    return ref(mass, spin, amp * AMPLITUDE_UNIT, phase)


@pytest.mark.parametrize("theta", [(68.0, 0.69), (60.0, 0.5), (75.0, 0.8)])
def test_one_mode_marginal_equals_2d_quadrature(theta):
    model, analysis, ref = _setup(["220"], [3.0], [0.7])
    prior = QuadraturePrior("flat", amplitude_max=50.0)
    s, m = projections(model, analysis, *theta, INCLINATION, 0.0)
    analytic = float(marginal_log_likelihood(s, m, analysis.log_l0, prior))
    # brute force: integrate exp(ln L_ref - peak) over a box of +-9 sigma around the maximum
    mean = np.linalg.solve(np.asarray(m), np.asarray(s))
    sig = np.sqrt(np.diag(np.linalg.inv(np.asarray(m))))
    peak = _ref_lnl_quadratures(ref, *theta, mean)

    def integrand(b2, b1):
        return np.exp(_ref_lnl_quadratures(ref, *theta, np.array([b1, b2])) - peak)

    value, err = scipy.integrate.dblquad(
        integrand, mean[0] - 9 * sig[0], mean[0] + 9 * sig[0], mean[1] - 9 * sig[1], mean[1] + 9 * sig[1],
        epsabs=0, epsrel=1e-6)
    brute = peak + np.log(value) - np.log(np.pi * prior.amplitude_max**2)
    assert analytic == pytest.approx(brute, abs=1e-3)


def test_two_mode_marginal_equals_4d_grid_integral():
    """4-D trapezoid rule over +-6.5 sigma of the reference likelihood (error ~ exp(-2 pi^2 / h^2))."""
    model, analysis, ref = _setup(["220", "221"], [3.0, 4.0], [0.7, 2.0])
    prior = QuadraturePrior("flat", amplitude_max=50.0)
    nodes = np.linspace(-6.5, 6.5, 15)
    step = nodes[1] - nodes[0]
    grid = np.stack(np.meshgrid(nodes, nodes, nodes, nodes, indexing="ij"), axis=-1).reshape(-1, 4)
    for theta in [(64.0, 0.6)]:
        s, m = (np.asarray(x) for x in projections(model, analysis, *theta, INCLINATION, 0.0))
        analytic = float(marginal_log_likelihood(s, m, analysis.log_l0, prior))
        # the grid is laid out with the Gaussian's own scale; the integrand is the reference ln L
        mean = np.linalg.solve(m, s)
        chol = np.linalg.cholesky(m)
        points = mean + np.linalg.solve(chol.T, grid.T).T
        log_l = np.array([_ref_lnl_quadratures(ref, *theta, b) for b in points])
        peak = log_l.max()
        integral = np.sum(np.exp(log_l - peak)) * step**4 / np.prod(np.diag(chol))
        brute = peak + np.log(integral) - 2 * np.log(np.pi * prior.amplitude_max**2)
        assert analytic == pytest.approx(brute, abs=1e-3)


def test_gaussian_prior_marginal_equals_numerical_integral():
    model, analysis, ref = _setup(["220"], [2.0], [4.0], seed=3)
    prior = QuadraturePrior("gaussian", amplitude_max=50.0, scale=1.5)
    theta = (70.0, 0.7)
    s, m = (np.asarray(x) for x in projections(model, analysis, *theta, INCLINATION, 0.0))
    analytic = float(marginal_log_likelihood(s, m, analysis.log_l0, prior))
    peak = _ref_lnl_quadratures(ref, *theta, np.zeros(2))

    def integrand(b2, b1):
        log_prior = -0.5 * (b1**2 + b2**2) / 1.5**2 - np.log(2 * np.pi * 1.5**2)
        return np.exp(_ref_lnl_quadratures(ref, *theta, np.array([b1, b2])) - peak + log_prior)

    value, _ = scipy.integrate.dblquad(integrand, -15, 15, -15, 15, epsabs=0, epsrel=1e-6)
    assert analytic == pytest.approx(peak + np.log(value), abs=1e-3)


def test_conditional_draws_have_the_gaussian_moments():
    # weak pairs (mean amplitude ~0.3 sigma): part of the draws come from the line component,
    # and the weights N / q must give back the moments of the conditional Gaussian
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 4))
    normal = a @ a.T + 4 * np.eye(4)
    s = rng.standard_normal(4)
    draws, log_ratio = physical_proposal(jax.random.PRNGKey(1), s, normal, QuadraturePrior(), 200_000)
    draws, weights = np.asarray(draws), np.exp(np.asarray(log_ratio))
    assert np.std(log_ratio) > 0.1  # the proposal is not the plain Gaussian
    mean = np.average(draws, axis=0, weights=weights)
    np.testing.assert_allclose(mean, np.linalg.solve(normal, s), atol=0.01)
    np.testing.assert_allclose(np.cov(draws.T, aweights=weights), np.linalg.inv(normal), atol=0.01)
    # a loud pair is drawn from the Gaussian alone
    loud, log_ratio = physical_proposal(jax.random.PRNGKey(2), 40.0 * s, normal, QuadraturePrior(), 1000)
    np.testing.assert_array_equal(np.asarray(log_ratio), 0.0)
    np.testing.assert_allclose(np.asarray(loud).mean(0), np.linalg.solve(normal, 40.0 * s), atol=0.05)


def test_line_proposal_cancels_the_physical_prior_of_a_pair_at_zero_amplitude(monkeypatch):
    """For an isotropic Gaussian of width sigma centred on A = 0, the line component alone draws
    B exactly from N(B) / A: N / q = A sqrt(pi / 2) / sigma, so the physical weights are equal."""
    monkeypatch.setattr(firefly, "LINE_SHARE", 1.0)
    sigma = 0.7
    draws, log_ratio = physical_proposal(jax.random.PRNGKey(3), np.zeros(2), np.eye(2) / sigma**2,
                                         QuadraturePrior(), 10_000)
    amplitude = np.hypot(*np.asarray(draws).T)
    np.testing.assert_allclose(np.asarray(log_ratio) - np.log(amplitude), np.log(np.sqrt(np.pi / 2) / sigma),
                               rtol=0, atol=1e-9)
    # and the amplitudes follow N(B) / A: a half-normal of scale sigma
    assert scipy.stats.kstest(amplitude, scipy.stats.halfnorm(scale=sigma).cdf).pvalue > 1e-3


@pytest.mark.parametrize("amplitude", [8.0, 1.0])
def test_physical_prior_evidence_equals_polar_integral(amplitude, caplog):
    """Importance reweighting to flat-in-amplitude reproduces the direct (A, phi) integral.

    A loud mode gives a precise answer; for a weak one the heavy 1/A weights widen the error bar,
    which must still cover the truth.  Too few effective samples are reported with a warning.
    """
    model, analysis, ref = _setup(["220"], [amplitude], [0.7])
    prior = QuadraturePrior("flat", amplitude_max=20.0)
    like = FireflyLikelihood(model, analysis, ("final_mass", "final_spin"), {"inclination": INCLINATION}, prior)
    theta = np.array([[68.0, 0.69]])
    log_z_flat = float(like(theta)[0])  # delta-function prior on theta: Z = L_marg
    rec = reweight_to_physical_prior(like, np.repeat(theta, 4000, axis=0), log_z_flat, 0.0, seed=2,
                                     draws_per_sample=10, min_ess=5000)
    peak = ref(68.0, 0.69, np.array([amplitude * AMPLITUDE_UNIT]), np.array([0.7]))

    def integrand(phase, amp):
        return np.exp(ref(68.0, 0.69, np.array([amp * AMPLITUDE_UNIT]), np.array([phase])) - peak)

    value, _ = scipy.integrate.dblquad(integrand, 0, prior.amplitude_max, 0, 2 * np.pi, epsrel=1e-6)
    direct = peak + np.log(value / (2 * np.pi * prior.amplitude_max))
    assert rec.log_evidence_physical == pytest.approx(direct, abs=max(0.01, 3 * rec.log_evidence_physical_err))
    if amplitude > 5:
        assert rec.ess > 20000 and rec.log_evidence_physical_err < 0.01
        assert "effective sample size" not in caplog.text
    caplog.clear()
    reweight_to_physical_prior(like, theta, log_z_flat, 0.0, seed=2, draws_per_sample=10, min_ess=1e9)
    assert "effective sample size" in caplog.text


def test_physical_prior_density_and_amplitude_phase_round_trip():
    rng = np.random.default_rng(1)
    amp, phase = rng.uniform(0, 5, (10, 3)), rng.uniform(0, 2 * np.pi, (10, 3))
    b = np.stack([amp * np.cos(phase), amp * np.sin(phase)], axis=-1).reshape(10, 6)
    amp2, phase2 = amplitudes_and_phases(b)
    np.testing.assert_allclose(amp2, amp, rtol=1e-12)
    np.testing.assert_allclose(phase2, phase, atol=1e-12)
    # density integrates to one over the disc: int 1/(2 pi A_max A) A dA dphi = 1
    value, _ = scipy.integrate.dblquad(
        lambda p, a: np.exp(log_physical_prior(np.array([a * np.cos(p), a * np.sin(p)]), 4.0)) * a,
        1e-9, 4.0, 0, 2 * np.pi)
    assert value == pytest.approx(1.0, rel=1e-6)
    assert log_physical_prior(np.array([5.0, 0.0]), 4.0) == -np.inf


def test_closely_spaced_modes_stay_well_conditioned():
    """220 and 221 with a short segment: the scaled Cholesky still matches a float64 solve."""
    model, analysis, _ = _setup(["220", "221", "222"], [3.0, 1.0, 0.5], [0.1, 0.2, 0.3])
    prior = QuadraturePrior("flat", amplitude_max=50.0)
    s, m = (np.asarray(x) for x in projections(model, analysis, 68.0, 0.69, INCLINATION, 0.0))
    sign, logdet = np.linalg.slogdet(m)
    assert sign > 0
    expected = (float(analysis.log_l0) + 0.5 * s @ np.linalg.solve(m, s) - 0.5 * logdet + 3 * np.log(2 * np.pi)
                - 3 * np.log(np.pi * 50.0**2))
    assert float(marginal_log_likelihood(s, m, analysis.log_l0, prior)) == pytest.approx(expected, abs=1e-8)


def test_singular_normal_matrix_gives_minus_infinity():
    model, analysis, _ = _setup(["220"], [3.0], [0.7])
    # detectors blind to the source (zero antenna patterns): M = 0 cannot be factorized
    blind = build_analysis_data(np.asarray(analysis.times), np.zeros((2, N)),
                                np.stack([damped_cosine_acf(N, FS, 1e-21, 3e-3, 150.0)] * 2), np.zeros((2, 2)))
    like = FireflyLikelihood(model, blind, ("final_mass", "final_spin"), {"inclination": 0.3})
    value = like(np.array([[68.0, 0.69], [70.0, 0.5]]))
    assert np.all(value == -np.inf)
    assert like.n_failed == 2


def test_fingerprint_identifies_the_analysis():
    model, analysis, _ = _setup(["220"], [3.0], [0.7])
    make = lambda amax, data=analysis: FireflyLikelihood(  # noqa: E731
        model, data, ("final_mass", "final_spin"), {"inclination": 0.3}, QuadraturePrior(amplitude_max=amax))
    assert make(20.0).fingerprint() == make(20.0).fingerprint()
    assert make(20.0).fingerprint() != make(30.0).fingerprint()
    _, other_noise, _ = _setup(["220"], [3.0], [0.7], seed=12)
    assert make(20.0).fingerprint() != make(20.0, other_noise).fingerprint()


def test_reconstruction_compiles_once_for_likelihoods_that_differ_only_in_data():
    """Analyses of one model (a scan's start times) share the compiled conditional draws, and
    each still draws from its own data: the same draws as a fresh compilation for it alone."""
    from gwtools.ringdown.firefly import _conditional_draws

    model, first, _ = _setup(["220"], [3.0], [0.7], seed=11)
    _, second, _ = _setup(["220"], [3.0], [0.7], seed=12)
    prior = QuadraturePrior("flat", amplitude_max=50.0)
    theta = np.array([[68.0, 0.69], [62.0, 0.6]])
    likelihoods = [FireflyLikelihood(model, data, fixed={"inclination": INCLINATION}, prior=prior)
                   for data in (first, second)]
    _conditional_draws.clear_cache()
    shared = [reweight_to_physical_prior(like, theta, 0.0, 0.0, seed=3, min_ess=0).quadratures
              for like in likelihoods]
    assert _conditional_draws._cache_size() == 1
    _conditional_draws.clear_cache()
    alone = reweight_to_physical_prior(likelihoods[1], theta, 0.0, 0.0, seed=3, min_ess=0).quadratures
    np.testing.assert_array_equal(shared[1], alone)
    assert not np.allclose(shared[0], shared[1])  # the data differ, so do the draws
