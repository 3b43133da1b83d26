"""Full-parameter baseline: sample amplitudes and phases explicitly, no marginalization.

This is the conventional ringdown analysis (as in pyRing or ``ringdown``): the nested sampler
explores the nonlinear parameters together with one amplitude A (flat in [0, A_max]) and one
phase phi (uniform in [0, 2pi)) per (mode, polarization) pair.  It uses the same data, template
and likelihood as FIREFLY, so every FIREFLY claim (posteriors, evidence, speed) can be checked
against it.
"""

from __future__ import annotations

import gwtools.ringdown.precision  # noqa: F401  (float64 before JAX makes any array)

# isort: split
import jax.numpy as jnp
import numpy as np

from gwtools.ringdown.likelihood import VectorizedLikelihood, log_likelihood
from gwtools.ringdown.priors import ParameterSpace, PriorRange

__all__ = ["FullLikelihood", "full_parameter_space"]


class FullLikelihood(VectorizedLikelihood):
    """Exact ln L(theta, A, phi), batched; amplitude parameters named ``amplitude_<label>``.

    Parameters are as for :class:`~gwtools.ringdown.firefly.FireflyLikelihood`, with the
    amplitude and phase of every label in ``model.amplitude_labels`` among ``parameters``.
    Amplitudes are in units of AMPLITUDE_UNIT (1e-21).  Each point costs O(n K) like the
    marginal likelihood: ln L = ln L0 + S . B - 1/2 B^T M B with S and M from
    :func:`~gwtools.ringdown.likelihood.projections`.
    """

    def amplitude_parameters(self) -> tuple[str, ...]:
        labels = self.model.amplitude_labels
        return tuple(f"amplitude_{x}" for x in labels) + tuple(f"phase_{x}" for x in labels)

    def known_parameters(self) -> tuple[str, ...]:
        return super().known_parameters() + self.amplitude_parameters()

    def _check_parameters(self) -> None:
        super()._check_parameters()
        missing = [p for p in self.amplitude_parameters() if p not in self.parameters]
        if missing:
            raise ValueError(f"the full-parameter likelihood must sample {missing}")

    def quadratures(self, row):
        """B (AMPLITUDE_UNIT) of one row of sampled values: (A cos phi, A sin phi) per label."""
        labels = self.model.amplitude_labels
        amplitude = jnp.stack([self.value(row, f"amplitude_{x}") for x in labels])
        phase = jnp.stack([self.value(row, f"phase_{x}") for x in labels])
        return jnp.stack([amplitude * jnp.cos(phase), amplitude * jnp.sin(phase)], axis=-1).ravel()

    def _point(self, row, data):
        return log_likelihood(self.model, data, self.quadratures(row), *self.nonlinear(row),
                              start_shift=self.start_shift(row))


def full_parameter_space(nonlinear: ParameterSpace, amplitude_labels, amplitude_max: float) -> ParameterSpace:
    """The nonlinear priors followed by flat amplitude and uniform phase priors per label."""
    amplitudes = tuple(PriorRange(f"amplitude_{x}", 0.0, amplitude_max) for x in amplitude_labels)
    phases = tuple(PriorRange(f"phase_{x}", 0.0, 2 * np.pi, periodic=True) for x in amplitude_labels)
    return ParameterSpace(tuple(nonlinear.priors) + amplitudes + phases)
