"""The FIREFLY marginal likelihood as a bilby likelihood, for bilby's priors and samplers.

:class:`FireflyBilbyLikelihood` wraps a :class:`~gwtools.ringdown.firefly.FireflyLikelihood`
(QNM amplitudes and phases integrated out analytically, arXiv:2502.01093) in the interface of
:class:`bilby.core.likelihood.Likelihood`: ``log_likelihood(parameters)`` evaluates the
marginal at the remnant ``final_mass`` (detector-frame solar masses) and ``final_spin``, and at
``inclination`` / ``polarization`` (rad) and ``start_shift`` (s) where those are sampled.  The
value is a pure function of ``parameters``: nothing is stored on the instance between calls
(bilby's parameters-as-state is deprecated).  :func:`from_config` builds the likelihood and the matching
bilby priors from a run configuration.

What bilby's sampler returns is the posterior and the evidence under the *quadrature* prior
of the marginalization (``[prior] quadrature``).  The physical prior (flat in each amplitude)
and the amplitude posteriors follow from
:func:`gwtools.ringdown.firefly.reweight_to_physical_prior` on the bilby samples, as in the
pipeline.

References: bilby, Ashton et al., ApJS 241, 27 (2019); dynesty, Speagle, MNRAS 493, 3132 (2020).

Examples
--------
>>> import bilby                                                   # doctest: +SKIP
>>> config = load_config("pipelines/gw150914.toml")                # doctest: +SKIP
>>> likelihood, priors = from_config(config)                       # doctest: +SKIP
>>> result = bilby.run_sampler(likelihood, priors, sampler="dynesty", nlive=500,
...                            outdir="bilby_out", label="gw150914")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import bilby
import numpy as np

from gwtools.ringdown.config import RingdownConfig
from gwtools.ringdown.firefly import FireflyLikelihood
from gwtools.ringdown.likelihood import log_noise_evidence
from gwtools.ringdown.results import bilby_priors

__all__ = ["FireflyBilbyLikelihood", "from_config"]

# Priors of the angles when they are sampled in addition to a configuration's parameters:
# isotropic inclination (flat in cos, a sine prior), polarization on its period pi.
_ANGLE_PRIORS = {
    "inclination": ((0.0, math.pi), "sine", ()),
    "polarization": ((0.0, math.pi), "uniform", ("polarization",)),
}


class FireflyBilbyLikelihood(bilby.core.likelihood.Likelihood):
    """bilby likelihood of the FIREFLY amplitude-marginalized ringdown likelihood.

    Parameters
    ----------
    firefly : FireflyLikelihood
        The engine's likelihood; its ``parameters`` are the names bilby must sample, its
        ``fixed`` values stay fixed.

    Notes
    -----
    ``noise_log_likelihood`` is ln L of the data without a signal, so bilby's
    ``log_likelihood_ratio`` and ``log_bayes_factor`` are ringdown against noise.
    """

    def __init__(self, firefly: FireflyLikelihood):
        super().__init__()
        self.firefly = firefly

    def __repr__(self) -> str:
        return f"{type(self).__name__}(parameters={list(self.firefly.parameters)})"

    @property
    def sampled_parameters(self) -> tuple[str, ...]:
        """The parameters ``log_likelihood`` reads, in the engine's column order."""
        return self.firefly.parameters

    def log_likelihood(self, parameters: Mapping[str, float] | None = None) -> float:
        """ln of the marginal likelihood at ``parameters`` (a dict with every sampled name).

        Raises
        ------
        ValueError
            ``parameters`` is missing or lacks a sampled parameter.
        """
        if parameters is None:
            raise ValueError(
                f"{self!r}: pass the parameters, log_likelihood(parameters={{...}}); they are "
                "not kept on the likelihood"
            )
        missing = [name for name in self.sampled_parameters if name not in parameters]
        if missing:
            raise ValueError(f"{self!r}: no value for {missing} in the parameters given")
        row = np.array([float(parameters[name]) for name in self.sampled_parameters])
        return float(self.firefly(row))

    def log_likelihood_ratio(self, parameters: Mapping[str, float] | None = None) -> float:
        """ln L(parameters) - ln L(noise)."""
        return self.log_likelihood(parameters) - self.noise_log_likelihood()

    def noise_log_likelihood(self) -> float:
        """ln L of the data with no signal (with a start window: its average over the window,
        :func:`~gwtools.ringdown.likelihood.log_noise_evidence`)."""
        return log_noise_evidence(self.firefly.data)


def from_config(
    config: RingdownConfig, *, sample: Sequence[str] = ()
) -> tuple[FireflyBilbyLikelihood, bilby.core.prior.PriorDict]:
    """The bilby likelihood and priors of a run configuration.

    Data, noise and priors are those of :func:`gwtools.ringdown.pipeline.run_pipeline`: the
    remnant mass and spin uniform on ``[prior]`` ranges, the inclination fixed or sine-distributed
    as ``[prior] cos_inclination`` says, the polarization fixed to ``[event] psi`` or uniform
    on ``[prior] psi``, the start shift uniform in ``[analysis] start_window_ms`` if given.

    Parameters
    ----------
    config : RingdownConfig
    sample : sequence of str
        Angles to sample as well although the configuration fixes them: ``"inclination"``
        (sine prior on [0, pi]) and/or ``"polarization"`` (uniform on [0, pi], periodic).

    Returns
    -------
    (FireflyBilbyLikelihood, bilby.core.prior.PriorDict)
        The priors name exactly the likelihood's sampled parameters; edit or replace them as
        bilby allows (keeping those names).
    """
    from gwtools.ringdown.pipeline import (
        build_likelihood,
        estimate_acfs,
        load_strain,
        prepare_analysis,
    )

    unknown = [name for name in sample if name not in _ANGLE_PRIORS]
    if unknown:
        raise ValueError(f"can sample only {sorted(_ANGLE_PRIORS)} in addition, not {unknown}")
    strain = load_strain(config)
    prepared = prepare_analysis(config, strain, estimate_acfs(config, strain))
    firefly, space = build_likelihood(config, prepared)
    ranges = {p.name: (p.lower, p.upper) for p in space.priors}
    kinds = {p.name: p.kind for p in space.priors}
    periodic = tuple(p.name for p in space.priors if p.periodic)
    for name in sample:
        if name in ranges:
            continue
        if name not in firefly.fixed:
            raise ValueError(f"{name} is not a parameter of the {config.model.polarization!r} model")
        ranges[name], kinds[name], wrapped = _ANGLE_PRIORS[name]
        periodic += wrapped
    if tuple(ranges) != firefly.parameters:
        fixed = {k: v for k, v in firefly.fixed.items() if k not in ranges}
        firefly = FireflyLikelihood(
            firefly.model, firefly.data, parameters=tuple(ranges), fixed=fixed, prior=firefly.prior
        )
    return FireflyBilbyLikelihood(firefly), bilby_priors(ranges, kinds, periodic)
