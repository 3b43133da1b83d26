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
"""
