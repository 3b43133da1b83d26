"""Nested sampling of ringdown likelihoods: settings, results and the engine dispatch.

Two engines sample the same unit-cube parameterization (:mod:`gwtools.ringdown.priors`) and
return the same :class:`NestedSamplingResult`:

``blackjax`` (:mod:`gwtools.ringdown.blackjax_engine`)
    Nested slice sampling (Yallup, Kroupa & Handley, arXiv:2601.23252) from blackjax, compiled
    whole: many nested-sampling steps run in one jitted device loop, Python only runs between
    chunks of steps (progress, stopping rule, checkpoint).  Needs a JAX likelihood (one with a
    pure per-point ``_point(row, data)``, as every
    :class:`~gwtools.ringdown.likelihood.VectorizedLikelihood`), and also runs a batch of
    analyses of equal shape in one vmapped loop (:func:`run_nested_batch`).
``dynesty`` (:mod:`gwtools.ringdown.dynesty_engine`)
    dynesty's static sampler (J. Speagle, MNRAS 493, 3132, 2020) with its per-proposal
    likelihood calls joined into batches; takes any vectorized Python callable.

Settings specific to one engine (dynesty: ``sample``, ``bound``, ``queue_size``; blackjax:
``num_delete``, ``num_inner_steps``, ``ellipsoid``) are rejected when given to the other, naming the key.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from gwtools.ringdown.priors import ParameterSpace, PriorRange

__all__ = [
    "ENGINES",
    "NestedSamplingResult",
    "ParameterSpace",
    "PriorRange",
    "SamplerSettings",
    "run_nested",
    "run_nested_batch",
    "warm_up",
]

logger = logging.getLogger(__name__)

ENGINES = ("blackjax", "dynesty")

#: Fewest live points of a run: with fewer the prior volume shrinks by more than 10% per dead
#: point and ln Z and its error are too coarse to use.
MIN_NLIVE = 10

SAMPLE_METHODS = ("auto", "unif", "rwalk", "slice", "rslice")
BOUNDS = ("none", "single", "multi", "balls", "cubes")

#: Settings only one engine reads, and the values it uses when they are not given.
ENGINE_DEFAULTS = {
    "dynesty": {"sample": "auto", "bound": "multi", "queue_size": 64},
    "blackjax": {"num_delete": None, "num_inner_steps": None, "ellipsoid": True},
}

#: Seconds between checkpoints when ``checkpoint_every`` is not given.  A blackjax checkpoint
#: (state and dead points as arrays) takes milliseconds, so one a second costs nothing even in a
#: run of seconds; a dynesty checkpoint (its pickle) takes tens of milliseconds, so one every
#: 5 s costs about 1% of the run.
CHECKPOINT_EVERY = {"blackjax": 1.0, "dynesty": 5.0}


def default_num_delete(nlive: int) -> int:
    """Live points replaced per nested-slice-sampling step: half of them.

    In a two-dimensional FIREFLY analysis, deleting a half, a quarter or a tenth of the live
    points per step gives the same ln Z (within its error, and dynesty's) and the same
    posteriors, and a half is the fastest: the steps run one after another, the chains of a
    step as one batch.  On analytic test densities the reported ln Z errors stay calibrated
    (scatter of the pulls 1.0-1.3) at nlive / 2.
    """
    return max(1, nlive // 2)


def default_num_inner_steps(ndim: int) -> int:
    """Slice moves per new live point: 2 ndim - 1, at least 3.

    On correlated Gaussians with known ln Z (24 runs each, nlive 200): in 10 dimensions
    10 moves bias ln Z upwards by one sigma, 15, 19 and 20 do not; in 6 dimensions 11 do not; in
    2 dimensions 3 moves keep ln Z unbiased with calibrated errors on a curved density, where 2
    underestimate the error by 30%; on a two-dimensional ringdown of real data 3 moves give the
    ln Z of dynesty within its error.
    """
    return max(3, 2 * ndim - 1)


@dataclass(frozen=True)
class SamplerSettings:
    """Settings of a nested-sampling run (the ``[sampler]`` configuration section).

    Attributes
    ----------
    engine : {"blackjax", "dynesty"}
        Sampler (see the module docstring).
    nlive : int
        Live points, at least :data:`MIN_NLIVE`.
    dlogz : float
        Stop when the evidence the live points can still add, ln(Z + L_max X) - ln Z, falls
        below this.
    seed : int
        Seed of the run (>= 0): same seed, same samples.
    checkpoint_every : float or None
        Wall-clock seconds between checkpoints (when a checkpoint path is given); ``None``:
        :data:`CHECKPOINT_EVERY` of the engine (blackjax 1 s, dynesty 5 s).  The blackjax
        engine also waits at least 20 times the last checkpoint's write time, so writing them
        never takes more than 5% of a run.
    maxcall : int or None
        Stop after about this many likelihood calls (a partial run that ``--resume``
        continues); ``None``: no limit.
    sample, bound, queue_size : str, str, int or None
        dynesty only: sampling method, bounding distribution and proposals per batch
        (defaults ``"auto"``, ``"multi"``, 64).
    num_delete, num_inner_steps : int or None
        blackjax only: live points replaced per step and slice moves per new point
        (defaults :func:`default_num_delete` and :func:`default_num_inner_steps`).
    ellipsoid : bool or None
        blackjax only: draw new live points from the bounding ellipsoid of the live points
        while that costs fewer likelihood calls than slice moves (default true; see
        :mod:`gwtools.ringdown.blackjax_engine`).
    """

    engine: str = "blackjax"
    nlive: int = 1000
    dlogz: float = 0.1
    seed: int = 1234
    checkpoint_every: float | None = None
    maxcall: int | None = None
    sample: str | None = None
    bound: str | None = None
    queue_size: int | None = None
    num_delete: int | None = None
    num_inner_steps: int | None = None
    ellipsoid: bool | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine: {self.engine!r} is not one of {', '.join(ENGINES)}")
        if self.nlive < MIN_NLIVE:
            raise ValueError(f"nlive: must be >= {MIN_NLIVE}, got {self.nlive}")
        if self.seed < 0:
            raise ValueError(f"seed: must be >= 0, got {self.seed}")
        if not self.dlogz > 0:
            raise ValueError(f"dlogz: must be positive, got {self.dlogz}")
        if self.checkpoint_every is not None and not self.checkpoint_every >= 0:
            raise ValueError(f"checkpoint_every: must be >= 0 s, got {self.checkpoint_every}")
        if self.maxcall is not None and self.maxcall < 1:
            raise ValueError(f"maxcall: must be >= 1, got {self.maxcall}")
        for engine, keys in ENGINE_DEFAULTS.items():
            if engine == self.engine:
                continue
            for key in keys:
                if getattr(self, key) is not None:
                    raise ValueError(
                        f"{key}: a setting of engine {engine!r}, not used by engine "
                        f"{self.engine!r}: remove it or set engine = {engine!r}"
                    )
        if self.sample is not None and self.sample not in SAMPLE_METHODS:
            raise ValueError(f"sample: {self.sample!r} is not one of {', '.join(SAMPLE_METHODS)}")
        if self.bound is not None and self.bound not in BOUNDS:
            raise ValueError(f"bound: {self.bound!r} is not one of {', '.join(BOUNDS)}")
        if self.queue_size is not None and self.queue_size < 1:
            raise ValueError(f"queue_size: must be >= 1, got {self.queue_size}")
        if self.num_delete is not None and not 1 <= self.num_delete < self.nlive:
            raise ValueError(f"num_delete: must lie in [1, nlive - 1 = {self.nlive - 1}], got {self.num_delete}")
        if self.num_inner_steps is not None and self.num_inner_steps < 1:
            raise ValueError(f"num_inner_steps: must be >= 1, got {self.num_inner_steps}")

    def resolved(self, ndim: int) -> SamplerSettings:
        """These settings with the engine's defaults filled in, for a space of ``ndim`` dimensions."""
        if self.engine == "dynesty":
            defaults = dict(ENGINE_DEFAULTS["dynesty"])
        else:
            defaults = {"num_delete": default_num_delete(self.nlive),
                        "num_inner_steps": default_num_inner_steps(ndim),
                        "ellipsoid": ENGINE_DEFAULTS["blackjax"]["ellipsoid"]}
        defaults["checkpoint_every"] = CHECKPOINT_EVERY[self.engine]
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})


@dataclass
class NestedSamplingResult:
    """Outcome of a nested-sampling run.

    Attributes
    ----------
    parameters
        Names of the sampled parameters (column order).
    samples
        (n_eff, ndim) equally weighted posterior samples.
    weighted_samples, log_weights, log_likelihoods
        All dead+live points (in order of increasing ln L for blackjax, of death for dynesty),
        their normalized log importance weights and ln L.
    log_evidence, log_evidence_err
        ln Z and its error (blackjax: mean and standard deviation over simulated
        prior-volume sequences; dynesty: its own estimate).
    ncall, niter
        Likelihood evaluations and dead points of the whole run (resumed runs included).
    walltime
        Wall time (s) of this call of :func:`run_nested`.
    settings
        The resolved sampler settings (engine defaults filled in).
    resumed_ncall
        Likelihood calls already made when this call resumed from a checkpoint (0 for a
        fresh run).
    """

    parameters: tuple[str, ...]
    samples: np.ndarray
    weighted_samples: np.ndarray
    log_weights: np.ndarray
    log_likelihoods: np.ndarray
    log_evidence: float
    log_evidence_err: float
    ncall: int
    niter: int
    walltime: float
    settings: dict = field(default_factory=dict)
    resumed_ncall: int = 0

    def posterior(self) -> dict[str, np.ndarray]:
        return {name: self.samples[:, i] for i, name in enumerate(self.parameters)}


def make_result(space: ParameterSpace, settings: SamplerSettings, *, samples, log_weights, log_likelihoods,
                log_evidence: float, log_evidence_err: float, ncall: int, niter: int, walltime: float,
                resumed_ncall: int = 0) -> NestedSamplingResult:
    """Assemble a result; the equal-weight posterior is a systematic resample (seed + 1)."""
    from dynesty.utils import resample_equal

    log_weights = np.asarray(log_weights, dtype=float)
    weights = np.exp(log_weights - np.logaddexp.reduce(log_weights))
    rng = np.random.default_rng(settings.seed + 1)
    equal = resample_equal(np.asarray(samples), weights / weights.sum(), rstate=rng)
    logger.info("nested sampling done (%s): ln Z = %.3f +- %.3f, %d likelihood calls, %d dead points, "
                "%.1f s", settings.engine, log_evidence, log_evidence_err, ncall, niter, walltime)
    return NestedSamplingResult(
        parameters=space.names,
        samples=equal,
        weighted_samples=np.asarray(samples),
        log_weights=log_weights,
        log_likelihoods=np.asarray(log_likelihoods),
        log_evidence=float(log_evidence),
        log_evidence_err=float(log_evidence_err),
        ncall=int(ncall),
        niter=int(niter),
        walltime=float(walltime),
        settings=asdict(settings),
        resumed_ncall=int(resumed_ncall),
    )


def warn_failed(n_failed: int, n_total: int, what: str) -> None:
    """Log that ``n_failed`` of ``n_total`` ``what`` had a non-finite likelihood."""
    if n_failed:
        logger.warning(
            "%d of %d %s had a non-finite likelihood, counted as ln L = -inf (for FIREFLY: the "
            "amplitude normal matrix could not be factorized, i.e. nearly degenerate modes or "
            "detectors blind to the source; for any model: parameters outside the QNM table). "
            "If this is a large fraction, narrow the priors or drop a mode.", n_failed, n_total, what)


def run_fingerprint(likelihood, space: ParameterSpace, settings: SamplerSettings) -> str:
    """Identifies an analysis, so a checkpoint is only resumed by the run that wrote it.

    ``settings`` should be resolved; the checkpoint interval and ``maxcall`` are left out, so a
    partial run can be continued without its limit.
    """
    own = likelihood.fingerprint() if hasattr(likelihood, "fingerprint") else type(likelihood).__qualname__
    relevant = {k: v for k, v in asdict(settings).items() if k not in ("checkpoint_every", "maxcall")}
    text = f"{own};{space!r};{sorted(relevant.items())!r}"
    return hashlib.sha256(text.encode()).hexdigest()


def _check_parameters(likelihood, space: ParameterSpace) -> None:
    names = getattr(likelihood, "parameters", None)
    if names is not None and tuple(names) != space.names:
        raise ValueError(
            f"likelihood parameters {tuple(names)} differ from the sampled space {space.names}"
        )


def run_nested(likelihood, space: ParameterSpace, settings: SamplerSettings = SamplerSettings(), *,
               checkpoint_path: str | Path | None = None, resume: bool = False,
               progress: bool = True) -> NestedSamplingResult:
    """Run nested sampling of ``likelihood`` over ``space`` with the engine of ``settings``.

    Parameters
    ----------
    likelihood
        blackjax: a JAX likelihood with ``_point(row, data)`` and ``data`` (a
        :class:`~gwtools.ringdown.likelihood.VectorizedLikelihood`); dynesty: any vectorized
        log likelihood (n, ndim) -> (n,).  Columns in ``space.names`` order (checked where the
        likelihood names its ``parameters``).
    space
        Sampled parameters and priors.
    settings
        Sampler settings (engine, nlive, dlogz, seed, ...).
    checkpoint_path
        Checkpoint file, written atomically every ``settings.checkpoint_every`` s (blackjax:
        an ``.npz`` of arrays; dynesty: its own pickle, plus ``<path>.fingerprint``).
    resume
        Continue from ``checkpoint_path`` if it exists (a warning is logged if it does not).
        A checkpoint written by a different analysis (data, model, priors or sampler
        settings) or a truncated one raises :class:`ValueError`.
    progress
        Report progress (blackjax: one log line per chunk of steps; dynesty: its progress line).
    """
    _check_parameters(likelihood, space)
    settings = settings.resolved(space.ndim)
    fingerprint = run_fingerprint(likelihood, space, settings)
    checkpoint = None if checkpoint_path is None else Path(checkpoint_path)
    if settings.engine == "dynesty":
        from gwtools.ringdown import dynesty_engine as engine
    else:
        from gwtools.ringdown import blackjax_engine as engine
    return engine.run(likelihood, space, settings, fingerprint=fingerprint, checkpoint_path=checkpoint,
                      resume=resume, progress=progress)


def run_nested_batch(likelihood, datas, space: ParameterSpace, settings: SamplerSettings = SamplerSettings(),
                     *, seeds=None, progress: bool = True) -> list[NestedSamplingResult]:
    """Nested sampling of several analyses of equal shape that share a likelihood model.

    Parameters
    ----------
    likelihood
        A JAX likelihood (``_point(row, data)``); its own ``data`` is not used.
    datas
        The analyses: a sequence of :class:`~gwtools.ringdown.likelihood.AnalysisData` of
        equal shapes, or one whose leaves are stacked along a leading axis.
    space, settings
        As for :func:`run_nested`.  Analysis ``i`` is seeded with ``(settings.seed, i)``.
    seeds : sequence of int, optional
        One seed per analysis, instead: analysis ``i`` is then sampled as :func:`run_nested`
        samples it with seed ``seeds[i]`` (same random numbers), whatever else is in the batch.

    Returns
    -------
    list of NestedSamplingResult, one per analysis (walltime: that of the whole batch).

    With the blackjax engine all analyses run in one vmapped, compiled loop; an analysis that
    has converged stops changing while the others go on.  With dynesty they run one after the
    other.  No checkpoints are written.
    """
    _check_parameters(likelihood, space)
    settings = settings.resolved(space.ndim)
    if settings.engine == "dynesty":
        import copy

        from gwtools.ringdown import dynesty_engine

        results, datas = [], _unstack(datas)
        if seeds is not None and len(seeds) != len(datas):
            raise ValueError(f"{len(seeds)} seeds for a batch of {len(datas)} analyses")
        for i, data in enumerate(datas):
            own = copy.copy(likelihood)
            own.data, own._compiled = data, None
            seed = _batch_seed(settings.seed, i) if seeds is None else int(seeds[i])
            seeded = replace(settings, seed=seed)
            results.append(dynesty_engine.run(own, space, seeded, fingerprint="", checkpoint_path=None,
                                              resume=False, progress=progress))
        return results
    from gwtools.ringdown import blackjax_engine

    return blackjax_engine.run_batch(likelihood, _stack(datas), space, settings, seeds=seeds, progress=progress)


def _batch_seed(seed: int, index: int) -> int:
    """A distinct, reproducible seed for analysis ``index`` of a batch (dynesty engine)."""
    return int(hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:8], 16)


def _stack(datas):
    """One pytree with a leading batch axis from a sequence of pytrees (or the stacked one)."""
    import gwtools.ringdown.precision  # noqa: F401  (float64 before JAX makes any array)
    # isort: split
    import jax
    import jax.numpy as jnp

    if isinstance(datas, (list, tuple)):
        if not datas:
            raise ValueError("run_nested_batch needs at least one analysis")
        shapes = {tuple(np.shape(leaf) for leaf in jax.tree_util.tree_leaves(d)) for d in datas}
        if len(shapes) != 1:
            raise ValueError("the analyses of a batch must have equal shapes (detectors, samples)")
        return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *datas)
    return datas


def _unstack(datas) -> list:
    import gwtools.ringdown.precision  # noqa: F401  (float64 before JAX makes any array)
    # isort: split
    import jax

    if isinstance(datas, (list, tuple)):
        return list(datas)
    leaves, treedef = jax.tree_util.tree_flatten(datas)
    n = int(np.shape(leaves[0])[0])
    return [jax.tree_util.tree_unflatten(treedef, [leaf[i] for leaf in leaves]) for i in range(n)]



def warm_up(likelihood, space: ParameterSpace, settings: SamplerSettings = SamplerSettings()) -> float:
    """Compile what a run of ``settings`` will call, without sampling; return the seconds taken.

    Lets benchmarks time sampling apart from JAX compilation.  blackjax: the run's jitted
    initialization and chunk of steps (for this likelihood object); dynesty: every padded batch
    size of a :class:`~gwtools.ringdown.likelihood.VectorizedLikelihood` up to the batches
    dynesty asks for.
    """
    settings = settings.resolved(space.ndim)
    if settings.engine == "dynesty":
        middle = space(np.full(space.ndim, 0.5))
        return likelihood.warm_up(middle, max(settings.nlive, settings.queue_size))
    from gwtools.ringdown import blackjax_engine

    return blackjax_engine.warm_up(likelihood, space, settings)
