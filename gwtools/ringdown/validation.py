"""FIREFLY against the full-parameter baseline on the same data, priors and sampler.

:func:`compare_firefly_with_full` runs both analyses of one data set and reports what a user
needs to trust the marginalization: wall time, likelihood calls, the speed-up, ln Z of each
(FIREFLY's converted to the physical flat-in-amplitude prior by importance reweighting) and the
Jensen-Shannon divergences of the one-dimensional marginals.  Tests run it small; the
benchmark ``benchmarks/firefly_vs_full.py`` runs it at full size.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np

from gwtools.compression.metrics import js_divergence_1d
from gwtools.ringdown.baseline import FullLikelihood, full_parameter_space
from gwtools.ringdown.firefly import FireflyLikelihood, QuadraturePrior, reweight_to_physical_prior
from gwtools.ringdown.likelihood import AnalysisData
from gwtools.ringdown.model import RingdownModel
from gwtools.ringdown.priors import ParameterSpace
from gwtools.ringdown.sampling import NestedSamplingResult, SamplerSettings, run_nested, warm_up

__all__ = ["Comparison", "compare_firefly_with_full"]

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
