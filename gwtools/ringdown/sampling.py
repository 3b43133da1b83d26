"""Nested sampling of ringdown likelihoods with dynesty, evaluated in batches.

dynesty proposes ``queue_size`` points at a time and evolves each (uniform draw, random walk or
slice) through a ``map``.  :class:`BatchingPool` runs those evolutions on worker threads and
joins their individual likelihood calls into one vectorized call of a
:class:`~gwtools.ringdown.likelihood.VectorizedLikelihood` whenever every running evolution is
waiting for a likelihood value.  Any dynesty sampling method therefore gets batched JAX
evaluations, and a run is not bound by per-call Python overhead.  (JAX releases the GIL while
it computes; the threads only exchange arrays.)

Runs are seeded (``numpy.random.Generator`` handed to dynesty), checkpoint with dynesty's own
atomic pickles every ``checkpoint_every`` seconds, and resume from them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dynesty
import numpy as np
from dynesty.utils import resample_equal

from gwtools.io.atomic import atomic_path

__all__ = [
    "PriorRange",
    "ParameterSpace",
    "SamplerSettings",
    "BatchingPool",
    "NestedSamplingResult",
    "run_nested",
]

logger = logging.getLogger(__name__)

_worker_state = threading.local()

PRIOR_KINDS = ("uniform", "sine")


@dataclass(frozen=True)
class PriorRange:
    """One-dimensional prior of a sampled parameter.

    ``uniform``: flat on [lower, upper].  ``sine``: density proportional to sin(x) on
    [lower, upper] within [0, pi] (isotropic inclination: flat in cos x).  ``periodic``: the
    sampler wraps the parameter around its range (phases), so no posterior mode is split at
    the boundary.
    """

    name: str
    lower: float
    upper: float
    kind: str = "uniform"
    periodic: bool = False

    def __post_init__(self) -> None:
        if self.kind not in PRIOR_KINDS:
            raise ValueError(f"prior of {self.name}: unknown kind {self.kind!r}; choose one of {PRIOR_KINDS}")
        if not (np.isfinite(self.lower) and np.isfinite(self.upper) and self.lower < self.upper):
            raise ValueError(
                f"prior of {self.name}: need finite lower < upper, got [{self.lower}, {self.upper}]"
            )
        if self.kind == "sine" and not (0.0 <= self.lower and self.upper <= np.pi):
            raise ValueError(f"prior of {self.name}: a sine prior must lie within [0, pi]")

    def transform(self, u):
        """Map u ~ U(0, 1) to the prior."""
        if self.kind == "uniform":
            return self.lower + u * (self.upper - self.lower)
        c_lo, c_hi = np.cos(self.lower), np.cos(self.upper)
        return np.arccos(c_lo - u * (c_lo - c_hi))

    def log_density(self, x):
        x = np.asarray(x, dtype=float)
        inside = (x >= self.lower) & (x <= self.upper)
        if self.kind == "uniform":
            value = -np.log(self.upper - self.lower) * np.ones_like(x)
        else:
            with np.errstate(divide="ignore"):
                value = np.log(np.sin(x) / (np.cos(self.lower) - np.cos(self.upper)))
        return np.where(inside, value, -np.inf)


@dataclass(frozen=True)
class ParameterSpace:
    """Ordered sampled parameters and their priors (the order is stored, never implied)."""

    priors: tuple[PriorRange, ...]

    def __post_init__(self) -> None:
        names = [p.name for p in self.priors]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate sampled parameters: {names}")
        if not names:
            raise ValueError("at least one parameter must be sampled")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.priors)

    @property
    def ndim(self) -> int:
        return len(self.priors)

    @property
    def periodic_indices(self) -> list[int] | None:
        indices = [i for i, p in enumerate(self.priors) if p.periodic]
        return indices or None

    def __call__(self, u) -> np.ndarray:
        """Prior transform from the unit cube (dynesty's ``prior_transform``)."""
        u = np.asarray(u, dtype=float)
        return np.array([p.transform(u[..., i]) for i, p in enumerate(self.priors)]).T

    def log_prior(self, x) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        return sum(p.log_density(x[:, i]) for i, p in enumerate(self.priors))


@dataclass(frozen=True)
class SamplerSettings:
    """dynesty settings of a run (see dynesty's NestedSampler for their meaning)."""

    nlive: int = 1000
    dlogz: float = 0.1
    sample: str = "auto"
    bound: str = "multi"
    queue_size: int = 64
    seed: int = 1234
    checkpoint_every: float = 120.0
    maxcall: int | None = None

    def __post_init__(self) -> None:
        if self.nlive < 2:
            raise ValueError(f"nlive must be >= 2, got {self.nlive}")
        if not self.dlogz > 0:
            raise ValueError(f"dlogz must be positive, got {self.dlogz}")
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {self.queue_size}")


class _Slot:
    """One waiting likelihood request: its point, then its value or error."""

    __slots__ = ("point", "value", "error", "ready")

    def __init__(self, point):
        self.point = point
        self.value = None
        self.error = None
        self.ready = threading.Event()


class _Batcher:
    """Joins single-point likelihood calls from concurrent tasks into vectorized calls.

    ``active`` is the number of tasks that are running or about to run (at most the number
    of worker threads); once that many requests wait, they are evaluated together.  Each
    waiting thread sleeps on its own event, so a batch wakes only its own callers.
    """

    def __init__(self, batch_likelihood, workers: int):
        self.batch_likelihood = batch_likelihood
        self.workers = workers
        self.lock = threading.Lock()
        self.pending: list[_Slot] = []
        self.outstanding = 0
        self.active = 0
        self.n_batches = 0
        self.n_points = 0

    def _take_if_ready(self) -> list[_Slot]:
        # caller holds the lock
        if self.pending and len(self.pending) >= self.active:
            batch, self.pending = self.pending, []
            return batch
        return []

    def _evaluate(self, batch: list[_Slot]) -> None:
        try:
            values = self.batch_likelihood(np.stack([slot.point for slot in batch]))
            for slot, value in zip(batch, values):
                slot.value = float(value)
        except BaseException as err:  # hand the error to every waiting caller
            for slot in batch:
                slot.error = err
        self.n_batches += 1
        self.n_points += len(batch)
        for slot in batch:
            slot.ready.set()

    def __call__(self, x) -> float:
        slot = _Slot(np.asarray(x, dtype=float))
        with self.lock:
            self.pending.append(slot)
            batch = self._take_if_ready()
        if batch:
            self._evaluate(batch)
        slot.ready.wait()
        if slot.error is not None:
            raise slot.error
        return slot.value

    def begin(self, n_tasks: int) -> None:
        with self.lock:
            self.outstanding = n_tasks
            self.active = min(self.workers, n_tasks)

    def finish_task(self) -> None:
        with self.lock:
            self.outstanding -= 1
            self.active = min(self.workers, self.outstanding)
            batch = self._take_if_ready()
        if batch:
            self._evaluate(batch)


class BatchingPool:
    """A dynesty-compatible pool whose ``map`` runs tasks on threads with batched likelihoods.

    Parameters
    ----------
    batch_likelihood
        Callable mapping (n, ndim) parameter arrays to (n,) log likelihoods.
    size
        Worker threads, i.e. concurrent evolutions (dynesty's ``queue_size``).

    Use as a context manager (or call :meth:`close`) to stop the threads.
    """

    def __init__(self, batch_likelihood, size: int):
        self.size = int(size)
        self.batcher = _Batcher(batch_likelihood, self.size)
        self.executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="gwtools-batch")

    def map(self, func, iterable):
        items = list(iterable)
        self.batcher.begin(len(items))

        def work(item):
            _worker_state.batcher = self.batcher
            try:
                return func(item)
            finally:
                self.batcher.finish_task()

        futures = [self.executor.submit(work, item) for item in items]
        return [future.result() for future in futures]

    def close(self) -> None:
        self.executor.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _PoolLikelihood:
    """Single-point likelihood for dynesty (picklable, holds no pool).

    Inside a :class:`BatchingPool` worker thread the call joins the pool's batch; elsewhere (e.g.
    dynesty's own serial calls) it evaluates the point alone.
    """

    def __init__(self, batch_likelihood):
        self.batch_likelihood = batch_likelihood

    def __call__(self, x) -> float:
        batcher = getattr(_worker_state, "batcher", None)
        if batcher is None:
            return float(self.batch_likelihood(np.asarray(x, dtype=float)[None])[0])
        return batcher(x)


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
        All dead+live points, their normalized log importance weights and ln L.
    log_evidence, log_evidence_err
        ln Z and its error from dynesty.
    ncall, niter
        Likelihood evaluations and iterations of the whole run (resumed runs included).
    walltime
        Wall time (s) of this call of :func:`run_nested`.
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

    def posterior(self) -> dict[str, np.ndarray]:
        return {name: self.samples[:, i] for i, name in enumerate(self.parameters)}


def _run_fingerprint(likelihood, space: ParameterSpace, settings: SamplerSettings) -> str:
    """Identifies an analysis, so a checkpoint is only resumed by the run that wrote it."""
    own = likelihood.fingerprint() if hasattr(likelihood, "fingerprint") else type(likelihood).__qualname__
    relevant = {k: v for k, v in asdict(settings).items() if k not in ("checkpoint_every", "maxcall")}
    text = f"{own};{space!r};{sorted(relevant.items())!r}"
    return hashlib.sha256(text.encode()).hexdigest()


def run_nested(likelihood, space: ParameterSpace, settings: SamplerSettings = SamplerSettings(), *,
               checkpoint_path: str | Path | None = None, resume: bool = False,
               progress: bool = True) -> NestedSamplingResult:
    """Run dynesty's static nested sampler on a batched likelihood.

    Parameters
    ----------
    likelihood
        Vectorized log likelihood: (n, ndim) -> (n,), with columns in ``space.names`` order
        (a :class:`~gwtools.ringdown.likelihood.VectorizedLikelihood` is checked for that).
    space
        Sampled parameters and priors.
    settings
        Sampler settings (nlive, dlogz, seed, ...).
    checkpoint_path
        dynesty checkpoint file, written atomically every ``settings.checkpoint_every`` s.
    resume
        Continue from ``checkpoint_path`` if it exists (a warning is logged if it does not).
        The run continues with the likelihood and priors stored in the checkpoint: resume
        only with the configuration that started it.
    progress
        Show dynesty's progress line (iterations, calls, efficiency, ln Z, dlogz).
    """
    names = getattr(likelihood, "parameters", None)
    if names is not None and tuple(names) != space.names:
        raise ValueError(
            f"likelihood parameters {tuple(names)} differ from the sampled space {space.names}"
        )
    loglike = _PoolLikelihood(likelihood)
    checkpoint = str(checkpoint_path) if checkpoint_path is not None else None
    start = time.time()
    fingerprint = _run_fingerprint(likelihood, space, settings)
    kwargs = dict(dlogz=settings.dlogz, print_progress=progress, maxcall=settings.maxcall)
    if checkpoint:
        kwargs.update(checkpoint_file=checkpoint, checkpoint_every=settings.checkpoint_every)
    with BatchingPool(likelihood, settings.queue_size) as pool:
        if resume and checkpoint and Path(checkpoint).exists():
            stamp = Path(checkpoint + ".fingerprint")
            if not stamp.exists() or stamp.read_text().strip() != fingerprint:
                raise ValueError(
                    f"the checkpoint {checkpoint} was made by a different analysis (data, model, "
                    "priors or sampler settings changed): run without --resume, or delete the checkpoint"
                )
            logger.info("resuming nested sampling from %s", checkpoint)
            sampler = dynesty.NestedSampler.restore(checkpoint, pool=pool)
        else:
            if checkpoint:
                with atomic_path(checkpoint + ".fingerprint") as tmp:
                    tmp.write_text(fingerprint + "\n")
            if resume:
                logger.warning("no checkpoint at %s: starting a new run", checkpoint)
            sampler = dynesty.NestedSampler(
                loglike,
                space,
                space.ndim,
                nlive=settings.nlive,
                bound=settings.bound,
                sample=settings.sample,
                pool=pool,
                queue_size=settings.queue_size,
                periodic=space.periodic_indices,
                use_pool={"prior_transform": False, "loglikelihood": True,
                          "propose_point": True, "update_bound": False},
                rstate=np.random.default_rng(settings.seed),
            )
        sampler.run_nested(**kwargs)
    res = sampler.results
    failed = getattr(likelihood, "n_failed", 0)
    if failed:
        logger.warning(
            "%d likelihood evaluations were not finite and counted as ln L = -inf (for FIREFLY: the "
            "amplitude normal matrix could not be factorized, i.e. nearly degenerate modes or "
            "detectors blind to the source; for any model: parameters outside the QNM table). "
            "If this is a large fraction of the %d calls, narrow the priors or drop a mode.",
            failed, int(np.sum(res.ncall)))
    log_weights = res.logwt - res.logz[-1]
    rng = np.random.default_rng(settings.seed + 1)
    samples = resample_equal(res.samples, np.exp(log_weights), rstate=rng)
    walltime = time.time() - start
    logger.info(
        "nested sampling done: ln Z = %.3f +- %.3f, %d likelihood calls in %d batches, %.1f s",
        res.logz[-1], res.logzerr[-1], int(np.sum(res.ncall)), pool.batcher.n_batches, walltime)
    return NestedSamplingResult(
        parameters=space.names,
        samples=samples,
        weighted_samples=np.asarray(res.samples),
        log_weights=np.asarray(log_weights),
        log_likelihoods=np.asarray(res.logl),
        log_evidence=float(res.logz[-1]),
        log_evidence_err=float(res.logzerr[-1]),
        ncall=int(np.sum(res.ncall)),
        niter=int(res.niter),
        walltime=walltime,
        settings=asdict(settings),
    )
