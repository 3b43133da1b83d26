"""KAN posterior compression (arXiv:2508.18698).

Regeneration needs numpy and scipy only: this package imports neither torch nor pykan.

Modules, numpy only: :mod:`.transforms` (parameters to the real line), :mod:`.splines`,
:mod:`.formulas` (writing and safely reading node formulas), :mod:`.layers` (spline and
formula layers), :mod:`.mixture` (the autoregressive mixture: density and sampling),
:mod:`.posterior` (:class:`CompressedPosterior`), :mod:`.model_file` (the file format),
:mod:`.metrics`, :mod:`.baselines`.  Fitting, with torch and pykan, imported on demand:
:mod:`.kan_density`, :mod:`.symbolic`, :mod:`.training` (their one training loop) and
:mod:`.pykan_adapter` (everything that reaches into pykan); :mod:`.catalog` runs the whole
pipeline, and :mod:`.commands` the command line.

>>> from gwtools.compression import load                       # doctest: +SKIP
>>> posterior = load("GW150914")                                # GW150914.weights.npz
>>> samples = posterior.sample(100_000, seed=1)                 # (n, d), posterior.parameters
>>> ln_p = posterior.log_prob(samples)                          # original parameters
"""

from gwtools.compression.model_file import load
from gwtools.compression.posterior import CompressedPosterior

__all__ = ["CompressedPosterior", "load"]
