"""gwtools: Bayesian gravitational-wave ringdown analysis and posterior compression.

Subpackages
-----------
gwtools.io
    Shared input/output: strain readers, posterior-file readers, atomic writes.
gwtools.ringdown
    Kerr quasinormal modes, ringdown templates, the time-domain Gaussian likelihood and
    FIREFLY amplitude marginalization (arXiv:2502.01093) inside nested sampling.
gwtools.compression
    Kolmogorov-Arnold-network density models of catalog posteriors (arXiv:2508.18698).

Importing :mod:`gwtools` itself is cheap: it imports neither JAX nor torch.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
