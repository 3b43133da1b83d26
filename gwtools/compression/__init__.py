"""KAN posterior compression (arXiv:2508.18698).

Regeneration needs numpy and scipy only: this package imports neither torch nor pykan
(fitting lives in :mod:`gwtools.compression.kan_density` and
:mod:`gwtools.compression.symbolic`, imported on demand).

>>> from gwtools.compression import load                       # doctest: +SKIP
>>> posterior = load("GW150914")                                # GW150914.weights.npz
>>> samples = posterior.sample(100_000, seed=1)                 # (n, d), posterior.parameters
>>> ln_p = posterior.log_prob(samples)                          # original parameters
"""

from gwtools.compression.model_file import CompressedPosterior, load

__all__ = ["CompressedPosterior", "load"]
