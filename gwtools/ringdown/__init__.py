"""Ringdown engine: Kerr QNMs, templates, likelihood and FIREFLY marginalization.

Modules
-------
constants, modes, precision
    Constants and mode labels (with the QNM table's modes) shared with the configuration, without
    JAX; JAX in float64.
qnm, harmonics
    Kerr quasinormal-mode frequencies/damping times and spin-weighted spherical harmonics (JAX).
model
    Ringdown templates as a design matrix, linear in the mode quadratures.
likelihood
    Exact time-domain Gaussian likelihood (Toeplitz noise covariance), batched in JAX.
firefly
    Analytic marginalization over amplitudes and phases, reconstruction, physical-prior evidence.
baseline
    Full-parameter likelihood (amplitudes and phases sampled), the reference FIREFLY is checked against.
priors, sampling, blackjax_engine, dynesty_engine
    Priors on the unit cube; nested sampling (settings, results, checkpoints, resume) with a
    compiled blackjax nested-slice sampler (also over batches of analyses) or dynesty.
conditioning, noise, detectors
    Filtering, decimation, segment extraction; ACF/PSD noise model; detector geometry (bilby).
config, config_values, input_checks, pipeline, results, plots, scan
    Configured runs on real data (the TOML read without JAX, then checked against its files),
    results files, figures and start-time scans (Dask).
injection, validation, reference
    Simulated data, FIREFLY-versus-full comparisons and a plain numpy/scipy likelihood.

Every JAX module of the engine imports :mod:`~gwtools.ringdown.precision` first, which switches
JAX to 64-bit floats: ringdown likelihoods difference numbers of order 1e4 and need double precision.
Importing this package itself is cheap (no JAX), so the command line starts quickly.

The names a user reaches for first are available here, each imported on first use (PEP 562):

``marginal_log_likelihood``, ``FireflyLikelihood``
    The likelihood with the amplitudes and phases integrated out analytically (the
    F-statistic-like marginalization of FIREFLY), as a function of the projections and as a
    batched likelihood of the nonlinear parameters.
``reweight_to_physical_prior``
    From a run of the marginal likelihood to the posterior of amplitudes and phases and the
    evidence under the physical (flat-in-amplitude) prior.
``ToeplitzNoise``
    Stationary Gaussian noise of a segment, from its autocovariance.
``load_config``, ``run_pipeline``
    A TOML run configuration, and the whole analysis of one.
"""

import importlib

#: Public name -> module of this package that defines it.
_EXPORTS = {
    "marginal_log_likelihood": "firefly",
    "FireflyLikelihood": "firefly",
    "reweight_to_physical_prior": "firefly",
    "ToeplitzNoise": "noise",
    "load_config": "config",
    "run_pipeline": "pipeline",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
