"""Ringdown engine: Kerr QNMs, templates, likelihood and FIREFLY marginalization.

Importing this package enables 64-bit floats in JAX: ringdown likelihoods difference numbers
of order 1e5 and need double precision.
"""

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
