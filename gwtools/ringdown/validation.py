"""Validation of the analysis on simulated data: FIREFLY against the full-parameter baseline,
and P-P tests of the sampler.

:func:`compare_firefly_with_full` runs both analyses of one data set and reports what a user
needs to trust the marginalization: wall time, likelihood calls, the speed-up, ln Z of each
(FIREFLY's converted to the physical flat-in-amplitude prior by importance reweighting) and the
Jensen-Shannon divergences of the one-dimensional marginals.

:func:`pp_test` analyses injections drawn from the analysis prior itself (:func:`prior_injections`)
and returns the credible level of each true value (:func:`credible_levels`): for calibrated
posteriors these are uniform over injections, which :func:`ks_pvalues` tests.

Tests run both small; the benchmarks ``benchmarks/firefly_vs_full.py`` and
``benchmarks/pp_test.py`` run them at full size.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
import scipy.stats

from gwtools.compression.metrics import js_divergence_1d
from gwtools.ringdown.baseline import FullLikelihood, full_parameter_space
from gwtools.ringdown.firefly import FireflyLikelihood, QuadraturePrior, reweight_to_physical_prior
from gwtools.ringdown.injection import Injection, detector_grid, inject, optimal_snr
from gwtools.ringdown.likelihood import AnalysisData
from gwtools.ringdown.model import RingdownModel
from gwtools.ringdown.priors import ParameterSpace
from gwtools.ringdown.sampling import (
    NestedSamplingResult,
    SamplerSettings,
    run_nested,
    run_nested_batch,
    warm_up,
)

__all__ = [
    "Comparison",
    "PPOutcome",
    "PPSetup",
    "compare_firefly_with_full",
    "credible_levels",
    "ks_pvalues",
    "pp_test",
    "prior_injections",
    "ringdown_injection",
]

#: Injected amplitude of the (2, 2, n) modes by overtone number n, 1e-21 strain: the overtones
#: fade along the sequence, the first as loud as the fundamental (as fits of GW150914 find).
OVERTONE_AMPLITUDES = {0: 4.0, 1: 4.0, 2: 2.0, 3: 1.0}
#: Injected amplitude of every mode of another (l, m), 1e-21 strain.
HIGHER_HARMONIC_AMPLITUDE = 1.5

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    """Outcome of one FIREFLY / full-parameter comparison (see module docstring)."""

    modes: tuple[str, ...]
    engine: str
    nlive: int
    firefly_seconds: float
    firefly_reconstruction_seconds: float
    full_seconds: float
    compile_seconds: dict
    firefly_calls: int
    full_calls: int
    firefly_log_evidence: float
    firefly_log_evidence_err: float
    full_log_evidence: float
    full_log_evidence_err: float
    jsd_bits: dict
    ess: float
    firefly_samples: dict
    full_samples: dict

    @property
    def speedup(self) -> float:
        return self.full_seconds / self.firefly_seconds

    def summary(self) -> dict:
        """JSON-ready figures (no sample arrays)."""
        return {
            "modes": list(self.modes),
            "engine": self.engine,
            "nlive": self.nlive,
            "firefly_seconds": self.firefly_seconds,
            "firefly_reconstruction_seconds": self.firefly_reconstruction_seconds,
            "full_seconds": self.full_seconds,
            "compile_seconds": self.compile_seconds,
            "speedup": self.speedup,
            "firefly_calls": self.firefly_calls,
            "full_calls": self.full_calls,
            "firefly_ln_z_physical": self.firefly_log_evidence,
            "firefly_ln_z_err": self.firefly_log_evidence_err,
            "full_ln_z": self.full_log_evidence,
            "full_ln_z_err": self.full_log_evidence_err,
            "jsd_bits": self.jsd_bits,
            "importance_ess": self.ess,
        }


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def compare_firefly_with_full(model: RingdownModel, data: AnalysisData, space: ParameterSpace,
                              fixed: dict, amplitude_max: float, settings: SamplerSettings, *,
                              full_sample: str = "rwalk", draws_per_sample: int = 4,
                              progress: bool = False) -> Comparison:
    """Run FIREFLY and the full-parameter baseline on ``data`` and compare them.

    Parameters
    ----------
    model
        Mode content and polarization model.
    data
        Analysis data (real or injected).
    space
        Priors of the nonlinear sampled parameters (FIREFLY's whole space).
    fixed
        Fixed nonlinear parameters (e.g. inclination, polarization).
    amplitude_max
        A_max of the flat-in-amplitude prior, AMPLITUDE_UNIT.
    settings
        Sampler settings shared by both runs, engine included (blackjax: the default
        ``num_inner_steps`` follows each run's dimension; dynesty: the full run uses the
        ``sample`` method ``full_sample``, since uniform sampling is hopeless in its higher
        dimension).

    Both runs are compiled before the clocks start (:func:`~gwtools.ringdown.sampling.warm_up`);
    the compilation times are reported separately (``compile_seconds``).
    """
    prior = QuadraturePrior("flat", amplitude_max=amplitude_max)
    firefly = FireflyLikelihood(model, data, space.names, fixed, prior)
    full_space = full_parameter_space(space, model.amplitude_labels, amplitude_max)
    full = FullLikelihood(model, data, full_space.names, fixed)
    full_settings = replace(settings, sample=full_sample) if settings.engine == "dynesty" else settings
    compile_seconds = {"firefly": warm_up(firefly, space, settings),
                       "full": warm_up(full, full_space, full_settings)}
    # the reconstruction compiles once per number of draws per sample: every one it may reach
    middle = space(np.full((8, space.ndim), 0.5))
    draws = [draws_per_sample * 4**k for k in range(4) if draws_per_sample * 4**k <= 64]
    with np.errstate(invalid="ignore"):  # the prior's middle may hold no amplitude inside the prior
        compile_seconds["reconstruction"] = _timed(lambda: [
            reweight_to_physical_prior(firefly, middle, 0.0, 0.0, seed=0, draws_per_sample=d, min_ess=0.0)
            for d in draws])[1]
    ff_run: NestedSamplingResult
    ff_run, ff_sampling = _timed(lambda: run_nested(firefly, space, settings, progress=progress))
    rec, ff_reconstruct = _timed(lambda: reweight_to_physical_prior(
        firefly, ff_run.samples, ff_run.log_evidence, ff_run.log_evidence_err, seed=settings.seed,
        draws_per_sample=draws_per_sample))
    full_run, full_seconds = _timed(lambda: run_nested(full, full_space, full_settings, progress=progress))

    idx = rec.physical_indices
    firefly_samples = {name: rec.theta[idx, i] for i, name in enumerate(space.names)}
    for k, label in enumerate(model.amplitude_labels):
        firefly_samples[f"amplitude_{label}"] = rec.amplitudes[idx, k]
    full_samples = full_run.posterior()
    jsd = {name: js_divergence_1d(firefly_samples[name], full_samples[name]) for name in firefly_samples}
    logger.info("FIREFLY %.1f s (%d calls), full %.1f s (%d calls); ln Z %.2f vs %.2f",
                ff_sampling + ff_reconstruct, ff_run.ncall, full_seconds, full_run.ncall,
                rec.log_evidence_physical, full_run.log_evidence)
    return Comparison(
        modes=tuple(str(m) for m in model.modes),
        engine=settings.engine,
        nlive=settings.nlive,
        firefly_seconds=ff_sampling + ff_reconstruct,
        firefly_reconstruction_seconds=ff_reconstruct,
        full_seconds=full_seconds,
        compile_seconds=compile_seconds,
        firefly_calls=ff_run.ncall,
        full_calls=full_run.ncall,
        firefly_log_evidence=rec.log_evidence_physical,
        firefly_log_evidence_err=rec.log_evidence_physical_err,
        full_log_evidence=full_run.log_evidence,
        full_log_evidence_err=full_run.log_evidence_err,
        jsd_bits=jsd,
        ess=rec.ess,
        firefly_samples=firefly_samples,
        full_samples=full_samples,
    )


def ringdown_injection(modes, acf, *, ra: float, dec: float, gps: float, polarization: float,
                       sample_rate: float, detectors=("H1", "L1"), inclination: float | None = None,
                       final_mass: float = 68.0, final_spin: float = 0.69, seed: int = 0):
    """A loud Kerr ringdown of the given modes in simulated noise: the data of FIREFLY-vs-full.

    Amplitudes :data:`OVERTONE_AMPLITUDES` for the (2, 2, n) modes and
    :data:`HIGHER_HARMONIC_AMPLITUDE` for the others, phases 1 + 0.7 k rad for the k-th mode,
    every detector with noise of the same ACF.

    Parameters
    ----------
    modes : sequence of str
        Mode labels, e.g. ``["220", "221"]``.
    acf : array_like, shape (n,)
        Noise autocovariance at ``sample_rate``, strain^2; its length is the segment's.
    ra, dec, gps, polarization
        Sky position (rad), geocentre start (GPS s) and polarization angle (rad).
    sample_rate : float
        Hz.
    detectors : tuple of str
    inclination : float, optional
        rad; default face-off (pi) when every mode has l = m = 2, else pi/3, where every
        harmonic is seen (face-off hides the m != 2 modes).
    final_mass, final_spin : float
        Remnant, detector-frame Msun and dimensionless.
    seed : int
        Seed of the noise.

    Returns
    -------
    (RingdownModel, AnalysisData, Injection, float)
        The model, the data, the injection and its network optimal SNR.
    """
    model = RingdownModel(tuple(modes))
    acf = np.asarray(acf, dtype=float)
    times, antenna = detector_grid(detectors, ra, dec, gps, sample_rate, acf.size)
    if inclination is None:
        inclination = np.pi if all(m.l == 2 and m.m == 2 for m in model.modes) else np.pi / 3
    amplitudes = tuple(OVERTONE_AMPLITUDES[m.n] if (m.l, m.m) == (2, 2) else HIGHER_HARMONIC_AMPLITUDE
                       for m in model.modes)
    injection = Injection(final_mass, final_spin, amplitudes,
                          tuple(1.0 + 0.7 * i for i in range(len(model.modes))),
                          inclination=inclination, polarization=polarization)
    data = inject(model, injection, times, np.stack([acf] * len(detectors)), antenna, seed=seed,
                  detectors=tuple(detectors))
    return model, data, injection, optimal_snr(model, injection, data)


@dataclass(frozen=True)
class PPSetup:
    """Simulated data of a P-P test: a 220 ringdown in Gaussian noise of a given ACF.

    Attributes
    ----------
    ra, dec : float
        Sky position of the injections, rad.
    gps : float
        Geocentre start time of the analysis, GPS s.
    polarization, inclination : float
        Fixed angles of the injections and of the analysis, rad.
    sample_rate : float
        Hz.
    duration : float
        Segment length, s.
    scale : float
        sigma of the Gaussian quadrature prior the quadratures are drawn from, 1e-21 strain.
    detectors : tuple of str
        Every detector sees noise of the same ACF.
    """

    ra: float
    dec: float
    gps: float
    polarization: float
    inclination: float = np.pi
    sample_rate: float = 2048.0
    duration: float = 0.05
    scale: float = 4.0
    detectors: tuple[str, ...] = ("H1", "L1")

    @property
    def fixed(self) -> dict[str, float]:
        """The fixed nonlinear parameters of the analysis."""
        return {"inclination": self.inclination, "polarization": self.polarization}


def prior_injections(space: ParameterSpace, acf, setup: PPSetup, n: int, seed: int):
    """``n`` injections drawn from the analysis prior, and the likelihood that analyses them.

    The remnant mass and spin are drawn from ``space`` (its first two parameters), the 220
    quadratures from the Gaussian quadrature prior N(0, ``setup.scale``^2), whose
    marginalization is exact, so the analysis prior is the injection prior.  Each injection has
    its own noise draw.

    Parameters
    ----------
    space : ParameterSpace
        Prior of (final_mass, final_spin), Msun and dimensionless.
    acf : array_like, shape (round(duration * sample_rate),)
        Noise autocovariance at the analysis rate, strain^2.
    setup : PPSetup
    n : int
        Number of injections.
    seed : int
        Seed of the draws; injection i has noise seed ``seed + 1 + i``.

    Returns
    -------
    (FireflyLikelihood, list of AnalysisData, ndarray of shape (n, 2))
        The likelihood (of the first injection's data; the others share its shape), every
        injection's data, and the true (final_mass, final_spin).
    """
    model = RingdownModel(("220",))
    rng = np.random.default_rng(seed)
    size = round(setup.duration * setup.sample_rate)
    acf = np.asarray(acf, dtype=float)
    if acf.shape != (size,):
        raise ValueError(f"the ACF must have {size} lags (duration x sample rate), got shape {acf.shape}")
    times, antenna = detector_grid(setup.detectors, setup.ra, setup.dec, setup.gps, setup.sample_rate, size)
    acfs = np.stack([acf] * len(setup.detectors))
    truths = space(rng.uniform(size=(n, space.ndim)))
    quadratures = rng.normal(scale=setup.scale, size=(n, 2))
    datas = []
    for i, ((mass, spin), (b1, b2)) in enumerate(zip(truths, quadratures)):
        injection = Injection(mass, spin, (float(np.hypot(b1, b2)),), (float(np.arctan2(b2, b1)),),
                              inclination=setup.inclination, polarization=setup.polarization)
        datas.append(inject(model, injection, times, acfs, antenna, seed=seed + 1 + i,
                            detectors=setup.detectors))
    prior = QuadraturePrior("gaussian", amplitude_max=10 * setup.scale, scale=setup.scale)
    likelihood = FireflyLikelihood(model, datas[0], space.names, setup.fixed, prior)
    return likelihood, datas, truths


def credible_levels(results, truths) -> np.ndarray:
    """Posterior probability below the true value, P(x < x_true | data), per parameter.

    Parameters
    ----------
    results : sequence of NestedSamplingResult
        One run per injection; the weighted samples are used.
    truths : array_like, shape (n, ndim)
        True values, in the order of the sampled parameters.

    Returns
    -------
    ndarray, shape (n, ndim)
    """
    levels = []
    for result, truth in zip(results, truths):
        weights = np.exp(result.log_weights)
        levels.append([np.sum(weights * (result.weighted_samples[:, j] < truth[j])) / np.sum(weights)
                       for j in range(len(truth))])
    return np.array(levels)


def ks_pvalues(levels, names) -> dict[str, float]:
    """Kolmogorov-Smirnov p-value of each parameter's credible levels (columns of ``levels``)
    against the uniform distribution on [0, 1]."""
    levels = np.asarray(levels, dtype=float)
    return {name: float(scipy.stats.kstest(levels[:, j], "uniform").pvalue) for j, name in enumerate(names)}


@dataclass(frozen=True)
class PPOutcome:
    """Outcome of :func:`pp_test`.

    Attributes
    ----------
    levels : ndarray, shape (n, ndim)
        Credible level of each true value (:func:`credible_levels`).
    pvalues : dict of str to float
        Kolmogorov-Smirnov p-value per parameter (:func:`ks_pvalues`).
    results : tuple of NestedSamplingResult
        The runs, one per injection.
    seconds : float
        Wall time of the sampling.
    """

    levels: np.ndarray
    pvalues: dict
    results: tuple
    seconds: float


def pp_test(space: ParameterSpace, acf, setup: PPSetup, n_injections: int,
            settings: SamplerSettings) -> PPOutcome:
    """P-P test of the sampler: ``n_injections`` prior injections (:func:`prior_injections`,
    seeded by ``settings.seed``) analysed as one batch
    (:func:`~gwtools.ringdown.sampling.run_nested_batch`)."""
    likelihood, datas, truths = prior_injections(space, acf, setup, n_injections, settings.seed)
    begin = time.perf_counter()
    results = run_nested_batch(likelihood, datas, space, settings, progress=False)
    seconds = time.perf_counter() - begin
    levels = credible_levels(results, truths)
    return PPOutcome(levels=levels, pvalues=ks_pvalues(levels, space.names), results=tuple(results),
                     seconds=seconds)
