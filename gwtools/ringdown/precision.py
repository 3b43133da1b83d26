"""JAX in 64-bit floats: the one place the ringdown engine switches it on.

JAX computes in float32 unless its ``jax_enable_x64`` flag is set, and the flag only applies to
arrays made after it is set.  Ringdown likelihoods need double precision: their log likelihoods
are differences of terms of order 1e4 whose result matters to a fraction of a unit, and times
are GPS seconds of order 1e9 resolved to fractions of a sample (float32 keeps about 7 digits).

So every module of the engine that uses JAX imports this module before JAX itself, also in the
functions that import JAX lazily; whichever of them an API user imports first, arrays are
float64.  Modules that need no JAX (the configuration reader, sampler settings, priors) do not
import it, and stay free of JAX.

The flag is global to the process: importing this module also switches it for any other JAX
code running there.
"""

import jax

jax.config.update("jax_enable_x64", True)
