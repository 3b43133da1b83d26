"""The dynesty engine: dynesty's static nested sampler with batched likelihood calls.

dynesty proposes ``queue_size`` points at a time and evolves each (uniform draw, random walk or
slice) through a ``map``.  :class:`BatchingPool` runs those evolutions on worker threads and
joins their individual likelihood calls into one vectorized call of a
:class:`~gwtools.ringdown.likelihood.VectorizedLikelihood` whenever every running evolution is
waiting for a likelihood value.  Any dynesty sampling method therefore gets batched JAX
evaluations, and a run is not bound by per-call Python overhead.  (JAX releases the GIL while
it computes; the threads only exchange arrays.)

Runs are seeded (``numpy.random.Generator`` handed to dynesty), checkpoint with dynesty's own
atomic pickles every ``checkpoint_every`` seconds, and resume from them.  Use it through
:func:`gwtools.ringdown.sampling.run_nested` with ``engine = "dynesty"``.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dynesty
import numpy as np

from gwtools.io.atomic import atomic_path
from gwtools.ringdown.priors import ParameterSpace
from gwtools.ringdown.sampling import NestedSamplingResult, SamplerSettings, make_result, warn_failed

__all__ = ["BatchingPool", "run"]

logger = logging.getLogger(__name__)

_worker_state = threading.local()


class _Slot:
    """One waiting likelihood request: its point, then its value or error."""

    __slots__ = ("error", "point", "ready", "value")

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
        self.n_failed = 0

    def _take_if_ready(self) -> list[_Slot]:
        # caller holds the lock
        if self.pending and len(self.pending) >= self.active:
            batch, self.pending = self.pending, []
            return batch
        return []

    def _evaluate(self, batch: list[_Slot]) -> None:
        try:
            values = np.asarray(self.batch_likelihood(np.stack([slot.point for slot in batch])))
            self.n_failed += int(np.count_nonzero(~np.isfinite(values)))
            for slot, value in zip(batch, values):
                slot.value = float(value)
        except BaseException as err:  # noqa: BLE001  (hand the error to every waiting caller)
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


def _restore(checkpoint: str, fingerprint: str, pool: BatchingPool):
    """The dynesty sampler saved in ``checkpoint``, if this analysis wrote it."""
    stamp = Path(checkpoint + ".fingerprint")
    if not stamp.exists() or stamp.read_text().strip() != fingerprint:
        raise ValueError(
            f"the checkpoint {checkpoint} was made by a different analysis (data, model, "
            "priors or sampler settings changed): run without --resume, or delete the checkpoint"
        )
    try:
        return dynesty.NestedSampler.restore(checkpoint, pool=pool)
    except (EOFError, pickle.UnpicklingError, RuntimeError, AttributeError, KeyError) as err:
        raise ValueError(
            f"the checkpoint {checkpoint} cannot be read ({type(err).__name__}: it is truncated or "
            "was written by another dynesty version): delete it, or run without --resume"
        ) from None


def run(likelihood, space: ParameterSpace, settings: SamplerSettings, *, fingerprint: str,
        checkpoint_path: Path | None, resume: bool, progress: bool) -> NestedSamplingResult:
    """Run dynesty on a batched likelihood; see :func:`gwtools.ringdown.sampling.run_nested`.

    ``settings`` must be resolved (engine defaults filled in).
    """
    loglike = _PoolLikelihood(likelihood)
    checkpoint = str(checkpoint_path) if checkpoint_path is not None else None
    start = time.time()
    kwargs = {"dlogz": settings.dlogz, "print_progress": progress, "maxcall": settings.maxcall}
    if checkpoint:
        kwargs.update(checkpoint_file=checkpoint, checkpoint_every=settings.checkpoint_every)
    resumed_ncall = 0
    with BatchingPool(likelihood, settings.queue_size) as pool:
        if resume and checkpoint and Path(checkpoint).exists():
            sampler = _restore(checkpoint, fingerprint, pool)
            resumed_ncall = int(sampler.ncall)
            logger.info("resuming nested sampling from %s (%d iterations, %d likelihood calls)",
                        checkpoint, sampler.it - 1, resumed_ncall)
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
    ncall = int(np.sum(res.ncall))
    logger.info("dynesty: %d likelihood calls in %d batches", ncall, pool.batcher.n_batches)
    warn_failed(pool.batcher.n_failed, ncall, "likelihood calls")
    return make_result(
        space, settings,
        samples=np.asarray(res.samples),
        log_weights=np.asarray(res.logwt - res.logz[-1]),
        log_likelihoods=np.asarray(res.logl),
        log_evidence=float(res.logz[-1]),
        log_evidence_err=float(res.logzerr[-1]),
        ncall=ncall,
        niter=int(res.niter),
        walltime=time.time() - start,
        resumed_ncall=resumed_ncall,
    )
