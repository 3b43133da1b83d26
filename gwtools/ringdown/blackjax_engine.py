"""The blackjax engine: nested slice sampling compiled into device loops.

Nested slice sampling (NSS; Yallup, Kroupa & Handley, arXiv:2601.23252, as implemented in
``blackjax.ns.nss``): each step deletes the ``num_delete`` lowest-likelihood live points and
replaces them by as many hit-and-run slice chains (Neal 2003, stepping out and shrinkage) of
``num_inner_steps`` moves along directions drawn from the live-point covariance, each chain
started from a surviving live point and constrained to ln L > the deleted contour.  The
deletion, the live-covariance adaptation and the evidence bookkeeping of a step are blackjax's
(``blackjax.ns.adaptive``); the chains of a step are advanced in lockstep by
:func:`replacement_update`, one batched likelihood evaluation per iteration for all of them.

Before the slice chains, a step draws replacements by rejection from the bounding ellipsoid of
the surviving live points (Mukherjee, Parkinson & Liddle 2006; Feroz & Hobson 2008; dynesty's
``bound = "single"``), enlarged by :data:`ELLIPSOID_ENLARGEMENT` in volume: a point drawn
uniformly in the ellipsoid and accepted when ln L > the contour is an independent draw from the
constrained prior, at the cost of 1 / acceptance likelihood calls, against about five calls per
slice move.  In few dimensions (FIREFLY's two or three nonlinear parameters) the acceptance
stays high all run long and the ellipsoid supplies almost every live point; in many it falls
towards zero (the ellipsoid's volume outgrows the contour's), and the step goes back to slice
chains.  Each step draws a first round and goes on while the acceptance so far says the
remaining slots fill in fewer rounds than a step of slice chains costs; the slots still empty
get slice chains.  ``ellipsoid = false`` turns the rejection stage off.

The whole run is compiled.  One jitted function advances the sampler by up to ``n_steps``
steps in a ``lax.while_loop`` that also applies the stopping rule (the evidence the live points
can still add, ln(Z + L_max X) - ln Z < dlogz, as dynesty's) and the ``maxcall`` limit, and
returns the dead points of those steps.  Python only runs between such chunks (about one per
second of wall time): progress, checkpoints.  Sampling happens in the unit cube; the prior
transform (:meth:`~gwtools.ringdown.priors.ParameterSpace.transform`) is part of the jitted
likelihood, and slice moves wrap periodic coordinates (phases) around the cube.  The analysis
data are an *argument* of the jitted functions, never a constant baked into them, so JAX's
persistent compilation cache serves every analysis of equal shape.

Evidence: the dead points and the final live points are weighted with prior volumes simulated
from their birth and death contours (Skilling 2006; Fowlie, Handley & Su 2021 for the batch
deletions; the same computation as ``blackjax.ns.utils.log_weights``, in numpy so that it
compiles nothing); ln Z and its error are the mean and standard deviation over the simulated
volume sequences.

A run is reproducible: the random key is carried through every step, so the same seed gives
the same samples whatever the chunk boundaries, and a run resumed from a checkpoint (an
``.npz`` of arrays: the sampler state and the dead points so far) gives exactly the result of an
uninterrupted one.  :func:`run_batch` vmaps the same loop over a stack of analyses; an analysis
that has met its stopping rule stays unchanged while the others go on.
"""

from __future__ import annotations

import functools
import logging
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import gwtools.ringdown.precision  # noqa: F401  (float64 before JAX makes any array)

# isort: split
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.ns import adaptive, nss
from blackjax.ns.base import StateWithLogLikelihood, delete_fn, init_state_strategy
from scipy.special import logsumexp

from gwtools.io.atomic import atomic_path
from gwtools.ringdown.likelihood import static_key
from gwtools.ringdown.priors import ParameterSpace
from gwtools.ringdown.sampling import NestedSamplingResult, SamplerSettings, make_result, warn_failed

__all__ = ["CHECKPOINT_FORMAT", "ELLIPSOID_ENLARGEMENT", "replacement_update", "run", "run_batch", "warm_up"]

logger = logging.getLogger(__name__)

#: Version of the checkpoint layout; a checkpoint of another version is refused.
CHECKPOINT_FORMAT = 2

#: Simulated prior-volume sequences behind ln Z, its error and the posterior weights.
VOLUME_SIMULATIONS = 100

#: Wall time aimed at per compiled chunk of steps, s (progress and checkpoint cadence).
CHUNK_SECONDS = 1.0


class _Carry(NamedTuple):
    """Everything a run needs to continue: sampler state, key and counters.

    ``moves`` counts the slice moves made, ``rejected`` those whose shrinkage ran out of
    evaluations (the chain then stays where it was for that move), ``from_ellipsoid`` the new
    live points drawn from the bounding ellipsoid.
    """

    state: object  # blackjax AdaptiveNSState
    key: jax.Array
    ncall: jax.Array
    nsteps: jax.Array
    moves: jax.Array
    rejected: jax.Array
    from_ellipsoid: jax.Array


class _Dead(NamedTuple):
    """Dead points of a chunk, (steps, num_delete, ...) in the unit cube."""

    position: jax.Array
    loglikelihood: jax.Array
    birth: jax.Array


def _point_function(likelihood):
    point = getattr(likelihood, "_point", None)
    if point is None:
        raise ValueError(
            f"engine 'blackjax' needs a JAX likelihood with a pure per-point _point(row, data) (a "
            f"VectorizedLikelihood); {type(likelihood).__name__} has none: use engine = 'dynesty'"
        )
    return point


#: Caps of one slice move (blackjax's NSS defaults): bracket expansions, shrinkage evaluations.
MAX_EXPANSIONS = 10
MAX_SHRINKAGE = 100

_LEFT, _RIGHT, _SHRINK = 0, 1, 2


class _Chain(NamedTuple):
    """One slice chain between likelihood evaluations.

    ``offset`` is the position along ``direction`` (from ``position``) evaluated next; ``phase``
    says what that evaluation decides: whether the bracket grows left, grows right, or (shrink
    phase) whether the point is accepted.
    """

    position: jax.Array
    loglikelihood: jax.Array
    direction: jax.Array
    left: jax.Array
    right: jax.Array
    offset: jax.Array
    phase: jax.Array
    budget_left: jax.Array
    budget_right: jax.Array
    shrinks: jax.Array
    moves: jax.Array
    calls: jax.Array
    rejected: jax.Array


class ReplacementStats(NamedTuple):
    """What a step's replacements cost.

    ``calls``, ``moves`` and ``rejected`` are per new live point: likelihood calls of its slice
    chain, slice moves made and those whose shrinkage budget ran out (all 0 for a point drawn from
    the ellipsoid); ``ellipsoid_calls`` (scalar) counts the points drawn from the bounding
    ellipsoid, ``ellipsoid_points`` the new live points among them.
    """

    calls: jax.Array
    moves: jax.Array
    rejected: jax.Array
    ellipsoid_calls: jax.Array
    ellipsoid_points: jax.Array


#: Volume factor of the bounding ellipsoid of the live points over the smallest one centred on
#: their mean that holds them all: a margin for the parts of the contour the live points leave
#: empty near its edge (dynesty's default for its ellipsoids is 1.25).
ELLIPSOID_ENLARGEMENT = 1.5

#: Likelihood evaluations, per slice move, of a step of slice chains in lockstep (each move
#: takes about five; the step lasts as long as its slowest chain, about twice the mean): the
#: number of rejection rounds beyond which slice chains are cheaper.
_LOCKSTEP_CALLS_PER_MOVE = 10


def _begin_slice(chain: _Chain, uniforms, normals, covariance_factor) -> _Chain:
    """A new slice move from ``chain.position``: direction, unit bracket, expansion budgets.

    The direction is ``2 L z / |z|`` (z = ``normals``, L L^T the live-point covariance), the
    bracket [-u, 1 - u] in units of it, and the expansion budget is split at random between the
    two ends (Neal 2003, Fig. 3), as in blackjax's NSS.  ``uniforms``: (u, v) in [0, 1).
    """
    left = -uniforms[0]
    budget = jnp.floor(MAX_EXPANSIONS * uniforms[1]).astype(jnp.int64)
    return chain._replace(direction=2.0 * (covariance_factor @ normals) / jnp.linalg.norm(normals),
                          left=left, right=left + 1.0, offset=left, phase=jnp.asarray(_LEFT),
                          budget_left=budget, budget_right=MAX_EXPANSIONS - 1 - budget,
                          shrinks=jnp.asarray(0, dtype=jnp.int64))


def _advance_chain(chain: _Chain, value, candidate, uniforms, normals, covariance_factor, loglikelihood_0,
                   moves: int) -> _Chain:
    """The chain after the evaluation ``value`` = ln L(``candidate``) it asked for.

    ``uniforms`` (3,) and ``normals`` (ndim,) are this step's random numbers.
    """
    inside = value > loglikelihood_0
    grow_left = (chain.phase == _LEFT) & inside & (chain.budget_left > 0)
    grow_right = (chain.phase == _RIGHT) & inside & (chain.budget_right > 0)
    to_right = (chain.phase == _LEFT) & ~grow_left
    to_shrink = (chain.phase == _RIGHT) & ~grow_right
    accept = (chain.phase == _SHRINK) & inside
    shrink = (chain.phase == _SHRINK) & ~inside
    left = jnp.where(grow_left, chain.left - 1.0, jnp.where(shrink & (chain.offset < 0), chain.offset, chain.left))
    right = jnp.where(grow_right, chain.right + 1.0,
                      jnp.where(shrink & (chain.offset >= 0), chain.offset, chain.right))
    shrinks = chain.shrinks + shrink
    give_up = shrink & (shrinks >= MAX_SHRINKAGE)
    draw = left + uniforms[0] * (right - left)
    offset = jnp.where(grow_left, left, jnp.where(grow_right | to_right, right, draw))
    chain = chain._replace(
        position=jnp.where(accept, candidate, chain.position),
        loglikelihood=jnp.where(accept, value, chain.loglikelihood),
        left=left, right=right, offset=offset,
        phase=jnp.where(to_right, _RIGHT, jnp.where(to_shrink, _SHRINK, chain.phase)),
        budget_left=chain.budget_left - grow_left, budget_right=chain.budget_right - grow_right,
        shrinks=shrinks, moves=chain.moves + (accept | give_up), calls=chain.calls + 1,
        rejected=chain.rejected + give_up,
    )
    fresh = _begin_slice(chain, uniforms[1:], normals, covariance_factor)
    restart = (accept | give_up) & (chain.moves < moves)
    return jax.tree_util.tree_map(lambda new, old: jnp.where(restart, new, old), fresh, chain)


def _select(mask, new, old):
    """Per-chain choice between two pytrees with leading chain axis."""
    return jax.tree_util.tree_map(
        lambda a, b: jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b), new, old)


def bounding_ellipsoid(position, inside, enlargement: float):
    """Centre (ndim,) and factor F (ndim, ndim) of the ellipsoid {c + F u : |u| <= 1}.

    The ellipsoid has the shape of the covariance of the points ``position`` (n, ndim) where
    ``inside`` (n,) holds, is centred on their mean, is just large enough to hold them all, and
    is then enlarged by the volume factor ``enlargement``.
    """
    ndim = position.shape[-1]
    weights = inside / jnp.maximum(jnp.sum(inside), 1)
    centre = weights @ position
    offsets = position - centre
    covariance = (offsets * weights[:, None]).T @ offsets
    covariance = covariance + 1e-12 * jnp.mean(jnp.diagonal(covariance)) * jnp.eye(ndim)
    factor = jnp.linalg.cholesky(covariance)
    # the inverse of the small factor, then one product: a triangular solve with the n points
    # as right-hand sides is a slow LAPACK call on CPU
    inverse = jax.scipy.linalg.solve_triangular(factor, jnp.eye(ndim), lower=True)
    radius2 = jnp.max(jnp.where(inside, jnp.sum((offsets @ inverse.T) ** 2, axis=1), 0.0))
    return centre, factor * jnp.sqrt(radius2 * enlargement ** (2.0 / ndim))


class _Rounds(NamedTuple):
    """Rejection rounds from the bounding ellipsoid: slots filled so far, in order."""

    key: jax.Array
    position: jax.Array
    loglikelihood: jax.Array
    filled: jax.Array
    rounds: jax.Array
    accepted: jax.Array

    @classmethod
    def empty(cls, key, num_delete: int, ndim: int) -> _Rounds:
        zero = jnp.asarray(0, dtype=jnp.int64)
        return cls(key, jnp.zeros((num_delete, ndim)), jnp.full(num_delete, -jnp.inf), zero, zero, zero)


def replacement_update(loglikelihood, periodic: np.ndarray, num_inner_steps: int, num_delete: int,
                       ellipsoid: bool):
    """Inner kernel of nested sampling: new live points from the ellipsoid, then slice chains.

    First rounds of ``num_delete`` points drawn uniformly in the bounding ellipsoid of the
    survivors (ln L > ln L_0), evaluated as one batch each; the accepted points fill the slots in
    order.  After the first round the rounds go on while, at the acceptance so far, the empty
    slots would be filled within the rounds a step of slice chains costs
    (:data:`_LOCKSTEP_CALLS_PER_MOVE` per move).  Each slot still empty then gets a slice chain
    started from a survivor chosen at random.  Whether the rounds stop depends only on how many
    points were accepted, never on where they are, so the accepted points stay independent
    draws from the constrained prior.

    The moves are blackjax's NSS moves (hit-and-run slice sampling along live-covariance-shaped
    directions, stepping out and shrinkage, Neal 2003, constrained to ln L > ln L_0; periodic
    coordinates wrap around the unit cube), but the chains are not run as vmapped per-chain
    loops: in each iteration every unfinished chain asks for one likelihood value, all of them
    are evaluated as one batch, and each chain's stepping-out/shrinkage state advances on its own
    value.  A vmapped loop instead runs each stage (left end, right end, shrinkage) until its
    slowest chain is done, evaluating the finished chains' points too, about three times the
    evaluations the chains need, and its compiled program holds five copies of the likelihood
    where this one holds one.  The random numbers of an iteration are drawn for all chains at
    once (per-chain keys make the program several times slower to compile).

    Returns ``update(rng_key, state, loglikelihood_0, covariance_factor) -> (particles, stats)``
    for ``blackjax.ns.adaptive.build_kernel``: ``num_delete`` new particles with ln L > ln L_0.
    """
    step = jax.vmap(functools.partial(_advance_chain, moves=num_inner_steps), in_axes=(0, 0, 0, 0, 0, None, None))
    begin = jax.vmap(_begin_slice, in_axes=(0, 0, 0, None))
    # one jitted batch for both loops: traced and lowered once, not once per call site
    batch_loglikelihood = jax.jit(jax.vmap(loglikelihood))
    round_limit = _LOCKSTEP_CALLS_PER_MOVE * num_inner_steps

    def rejection_rounds(key, particles, survivors, loglikelihood_0):
        ndim = particles.position.shape[-1]
        centre, factor = bounding_ellipsoid(particles.position, survivors, ELLIPSOID_ENLARGEMENT)

        def going(loop):
            per_round = loop.accepted / jnp.maximum(loop.rounds, 1)
            rounds_needed = loop.rounds + (num_delete - loop.filled) / jnp.maximum(per_round, 1e-9)
            return (loop.filled < num_delete) & ((loop.rounds == 0) | (rounds_needed <= round_limit))

        def draw(loop):
            key, direction_key, radius_key = jax.random.split(loop.key, 3)
            directions = jax.random.normal(direction_key, (num_delete, ndim))
            radii = jax.random.uniform(radius_key, (num_delete, 1)) ** (1.0 / ndim)
            candidates = centre + (radii * directions / jnp.linalg.norm(directions, axis=1, keepdims=True)) @ factor.T
            values = batch_loglikelihood(candidates)
            # periodic coordinates too must lie in [0, 1): wrapped, the draws would not be uniform
            # where the ellipsoid overlaps its own image
            in_cube = jnp.all((candidates >= 0.0) & (candidates < 1.0), axis=1)
            inside = in_cube & (values > loglikelihood_0)
            slot = jnp.where(inside, loop.filled + jnp.cumsum(inside) - 1, num_delete)  # num_delete: dropped
            n_inside = jnp.sum(inside)
            return _Rounds(key, loop.position.at[slot].set(candidates, mode="drop"),
                           loop.loglikelihood.at[slot].set(values, mode="drop"),
                           jnp.minimum(loop.filled + n_inside, num_delete), loop.rounds + 1,
                           loop.accepted + n_inside)

        return jax.lax.while_loop(going, draw, _Rounds.empty(key, num_delete, ndim))

    def update(rng_key, state, loglikelihood_0, covariance_factor):
        choice_key, uniform_key, normal_key, loop_key, ellipsoid_key = jax.random.split(rng_key, 5)
        particles = state.particles
        survivors = particles.loglikelihood > loglikelihood_0
        if ellipsoid:
            drawn = rejection_rounds(ellipsoid_key, particles, survivors, loglikelihood_0)
        else:
            drawn = _Rounds.empty(ellipsoid_key, num_delete, particles.position.shape[-1])
        from_ellipsoid = jnp.arange(num_delete) < drawn.filled
        n_survivors = jnp.sum(survivors)
        pool = jnp.where(n_survivors > 0, n_survivors, survivors.size)
        pick = jnp.floor(jax.random.uniform(choice_key, (num_delete,)) * pool).astype(jnp.int64)
        start = jnp.argsort(~survivors, stable=True)[pick]  # survivors first
        ndim = particles.position.shape[-1]
        zero = jnp.zeros(num_delete, dtype=jnp.int64)
        chains = _Chain(particles.position[start], particles.loglikelihood[start],
                        jnp.zeros((num_delete, ndim)), jnp.zeros(num_delete), jnp.zeros(num_delete),
                        jnp.zeros(num_delete), zero, zero, zero, zero, zero, zero, zero)
        chains = begin(chains, jax.random.uniform(uniform_key, (num_delete, 2)),
                       jax.random.normal(normal_key, (num_delete, ndim)), covariance_factor)
        chains = chains._replace(moves=jnp.where(from_ellipsoid, num_inner_steps, 0))  # filled: no chain

        def going(loop):
            return jnp.any(loop[0].moves < num_inner_steps)

        def evaluate(loop):
            chains, key = loop
            key, uniform_key, normal_key = jax.random.split(key, 3)
            moved = chains.position + chains.offset[:, None] * chains.direction
            candidates = jnp.where(periodic, jnp.mod(moved, 1.0), moved)
            values = batch_loglikelihood(candidates)
            advanced = step(chains, values, candidates, jax.random.uniform(uniform_key, (num_delete, 3)),
                            jax.random.normal(normal_key, (num_delete, ndim)), covariance_factor,
                            loglikelihood_0)
            return _select(chains.moves < num_inner_steps, advanced, chains), key

        chains, _ = jax.lax.while_loop(going, evaluate, (chains, loop_key))
        position = jnp.where(from_ellipsoid[:, None], drawn.position, chains.position)
        value = jnp.where(from_ellipsoid, drawn.loglikelihood, chains.loglikelihood)
        new = StateWithLogLikelihood(position, jnp.zeros(num_delete), value, jnp.full(num_delete, loglikelihood_0))
        slice_moves = jnp.where(from_ellipsoid, 0, chains.moves)
        return new, ReplacementStats(chains.calls, slice_moves, chains.rejected, drawn.rounds * num_delete,
                                     drawn.filled)

    return update


class _Program:
    """The jitted functions of one (likelihood model, space, settings); data are arguments."""

    def __init__(self, likelihood, space: ParameterSpace, settings: SamplerSettings):
        point = _point_function(likelihood)
        self.buffer_steps = max(1, -(-2 * settings.nlive // settings.num_delete))
        periodic = space.periodic_mask

        def algorithm(data):
            def loglikelihood(u):
                value = point(space.transform(u), data)
                return jnp.where(space.in_unit_cube(u) & jnp.isfinite(value), value, -jnp.inf)

            def logprior(u):
                # strongly typed, so a state read back from a checkpoint has the traced types
                return jnp.where(space.in_unit_cube(u), jnp.zeros(()), -jnp.inf)

            particle = functools.partial(init_state_strategy, logprior_fn=logprior, loglikelihood_fn=loglikelihood)
            update = replacement_update(loglikelihood, periodic, settings.num_inner_steps, settings.num_delete,
                                        settings.ellipsoid)
            step = adaptive.build_kernel(functools.partial(delete_fn, num_delete=settings.num_delete), update,
                                         update_inner_kernel_params_fn=nss.live_covariance_factor)

            def start(positions):
                return adaptive.init(positions, jax.vmap(particle),
                                     update_inner_kernel_params_fn=nss.live_covariance_factor)

            return start, step

        def init(seed, index, data):
            key = jax.random.fold_in(jax.random.PRNGKey(seed), index)
            key, draw = jax.random.split(key)
            positions = jax.random.uniform(draw, (settings.nlive, space.ndim))
            state = algorithm(data)[0](positions)
            zero = jnp.asarray(0, dtype=jnp.int64)
            return _Carry(state, key, jnp.asarray(settings.nlive, dtype=jnp.int64), zero, zero, zero, zero)

        def chunk(carry, data, n_steps, dlogz, maxcall):
            step = algorithm(data)[1]
            shape = (self.buffer_steps, settings.num_delete)
            dead = _Dead(jnp.zeros(shape + (space.ndim,)), jnp.zeros(shape), jnp.zeros(shape))

            def going(loop):
                carry, i, _ = loop
                return (i < n_steps) & (remaining(carry.state) > dlogz) & (carry.ncall < maxcall)

            def advance(loop):
                carry, i, dead = loop
                key, step_key = jax.random.split(carry.key)
                state, info = step(step_key, carry.state)
                stats = info.update_info
                particles = info.particles
                dead = _Dead(dead.position.at[i].set(particles.position),
                             dead.loglikelihood.at[i].set(particles.loglikelihood),
                             dead.birth.at[i].set(particles.loglikelihood_birth))
                carry = _Carry(state, key, carry.ncall + jnp.sum(stats.calls) + stats.ellipsoid_calls,
                               carry.nsteps + 1, carry.moves + jnp.sum(stats.moves),
                               carry.rejected + jnp.sum(stats.rejected),
                               carry.from_ellipsoid + stats.ellipsoid_points)
                return carry, i + 1, dead

            carry, n_done, dead = jax.lax.while_loop(going, advance, (carry, jnp.asarray(0), dead))
            return carry, n_done, dead, remaining(carry.state)

        self.init = jax.jit(init)
        self.chunk = jax.jit(chunk)
        self.init_batch = jax.jit(jax.vmap(init))
        self.chunk_batch = jax.jit(jax.vmap(chunk, in_axes=(0, 0, None, None, None)))


def remaining(state):
    """ln(Z + L_max X) - ln Z: the most the live points can still add to ln Z (dynesty's dlogz)."""
    integrator = state.integrator
    live = jnp.max(state.particles.loglikelihood) + integrator.logX
    return jnp.logaddexp(integrator.logZ, live) - integrator.logZ


#: Compiled programs kept in memory, by likelihood model, space and static settings.
_PROGRAMS: dict = {}
_MAX_PROGRAMS = 16


def _compiled(likelihood, space: ParameterSpace, settings: SamplerSettings) -> _Program:
    """The program of this run, shared with earlier runs of an equal likelihood and settings.

    The seed, stopping rule, limits and data do not enter the compiled functions.
    """
    static = SamplerSettings(engine="blackjax", nlive=settings.nlive, num_delete=settings.num_delete,
                             num_inner_steps=settings.num_inner_steps, ellipsoid=settings.ellipsoid)
    key = (type(likelihood), static_key(likelihood), space, static)
    if key not in _PROGRAMS:
        if len(_PROGRAMS) >= _MAX_PROGRAMS:
            del _PROGRAMS[next(iter(_PROGRAMS))]
        _PROGRAMS[key] = _Program(likelihood, space, static)
    return _PROGRAMS[key]


# --------------------------------------------------------------------------------------------
# Checkpoints: arrays only (numpy .npz), written atomically.


def _save_checkpoint(path: Path, fingerprint: str, carry: _Carry, dead: list[_Dead]) -> float:
    begin = time.perf_counter()
    leaves = jax.tree_util.tree_leaves(carry)
    arrays = {f"state_{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    joined = _join(dead)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, format=np.asarray(CHECKPOINT_FORMAT), fingerprint=np.asarray(fingerprint),
                 dead_position=joined.position, dead_loglikelihood=joined.loglikelihood,
                 dead_birth=joined.birth, **arrays)
    return time.perf_counter() - begin


def _load_checkpoint(path: Path, fingerprint: str, template) -> tuple[_Carry, list[_Dead]]:
    """The run saved in ``path``; ``template`` gives the expected state structure and shapes."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise ValueError(
            f"the checkpoint {path} cannot be read ({type(err).__name__}: truncated or not a checkpoint): "
            "delete it, or run without --resume"
        ) from None
    foreign = ValueError(
        f"the checkpoint {path} was made by a different analysis (data, model, priors or sampler "
        "settings changed): run without --resume, or delete the checkpoint"
    )
    if "format" not in arrays or int(arrays["format"]) != CHECKPOINT_FORMAT:
        raise ValueError(f"the checkpoint {path} has another format than version {CHECKPOINT_FORMAT} "
                         "(written by another gwtools version): delete it, or run without --resume")
    if str(arrays.get("fingerprint", "")) != fingerprint:
        raise foreign
    shapes, treedef = jax.tree_util.tree_flatten(template)
    leaves = []
    for i, shape in enumerate(shapes):
        leaf = arrays.get(f"state_{i}")
        if leaf is None or leaf.shape != shape.shape or leaf.dtype != shape.dtype:
            raise foreign
        leaves.append(jnp.asarray(leaf))
    carry = jax.tree_util.tree_unflatten(treedef, leaves)
    dead = [_Dead(arrays["dead_position"], arrays["dead_loglikelihood"], arrays["dead_birth"])]
    return carry, dead


# --------------------------------------------------------------------------------------------
# Results.


def _join(dead: list[_Dead]) -> _Dead:
    """One flat (n, ...) set of dead points from per-chunk pieces of any leading shape."""
    ndim = dead[0].position.shape[-1] if dead else 0
    if not dead:
        return _Dead(np.zeros((0, ndim)), np.zeros(0), np.zeros(0))
    return _Dead(np.concatenate([d.position.reshape(-1, ndim) for d in dead]),
                 np.concatenate([d.loglikelihood.ravel() for d in dead]),
                 np.concatenate([d.birth.ravel() for d in dead]))


def _live_counts(birth, death):
    """Live points just before each death, deaths in increasing ln L.

    Births and deaths are events on the ln L axis (Fowlie, Handley & Su, MNRAS 503, 1199, 2021):
    the initial prior draws (birth NaN) are born first, then events follow in ln L, a death
    before a birth at the same contour (a new point is born at the contour of the point it
    replaces).
    """
    initial = np.isnan(birth)
    levels = np.concatenate([np.where(initial, -np.inf, birth), death])
    steps = np.concatenate([np.ones(birth.size, dtype=int), -np.ones(death.size, dtype=int)])
    later = np.concatenate([~initial, np.ones(death.size, dtype=bool)])
    order = np.lexsort((steps, levels, later))
    counts = np.cumsum(steps[order])
    return counts[steps[order] < 0] + 1


def _simulated_log_weights(rng: np.random.Generator, birth, death, n_simulations: int):
    """ln(w) = ln L + ln dX of every point (sorted by ln L) for simulated prior-volume sequences.

    Each death shrinks the volume by t ~ Beta(n, 1) for n live points (Skilling 2006:
    ln t = ln(u) / n, u uniform), dX is the trapezoid (X_{i-1} - X_{i+1}) / 2.
    Returns (n_points, n_simulations).
    """
    counts = _live_counts(birth, death)
    log_x = np.cumsum(np.log(rng.uniform(size=(death.size, n_simulations))) / counts[:, None], axis=0)
    before = np.vstack([np.zeros((1, n_simulations)), log_x[:-1]])
    after = np.vstack([log_x[1:], np.full((1, n_simulations), -np.inf)])
    log_dx = before + np.log1p(-np.exp(after - before)) - np.log(2.0)
    return np.sort(death)[:, None] + log_dx


def _finish(space: ParameterSpace, settings: SamplerSettings, index: int, carry: _Carry, dead: list[_Dead],
            walltime: float, resumed_ncall: int) -> NestedSamplingResult:
    """Dead + final live points -> weighted samples, ln Z and its error, equal-weight samples.

    ``carry`` is the final state of this analysis (no batch axis).
    """
    live, ncall = carry.state.particles, int(carry.ncall)
    moves = int(carry.moves)
    logger.debug("%d of %d new live points drawn from the bounding ellipsoid, the others by %d slice moves",
                 int(carry.from_ellipsoid), int(carry.nsteps) * settings.num_delete, moves)
    if int(carry.rejected) > 0.01 * moves:
        logger.warning("%d of %d slice moves ran out of shrinkage steps (the likelihood contour is far "
                       "narrower than the live points' spread along some direction): raise nlive",
                       int(carry.rejected), moves)
    dead = _join(dead)
    position = np.concatenate([dead.position, np.asarray(live.position)])
    loglike = np.concatenate([dead.loglikelihood, np.asarray(live.loglikelihood)])
    birth = np.concatenate([dead.birth, np.asarray(live.loglikelihood_birth)])
    order = np.argsort(loglike, kind="stable")
    rng = np.random.default_rng([settings.seed, index, 1])
    log_w = _simulated_log_weights(rng, birth, loglike[order], VOLUME_SIMULATIONS)
    log_z = logsumexp(log_w, axis=0)
    mean_log_w = log_w.mean(axis=1)
    warn_failed(int(np.count_nonzero(~np.isfinite(loglike))), settings.nlive, "initial prior draws")
    return make_result(
        space, settings,
        samples=space.transform(position[order]),
        log_weights=mean_log_w - logsumexp(mean_log_w),
        log_likelihoods=loglike[order],
        log_evidence=float(np.mean(log_z)),
        log_evidence_err=float(np.std(log_z)),
        ncall=ncall,
        niter=dead.loglikelihood.size,
        walltime=walltime,
        resumed_ncall=resumed_ncall,
    )


def _limits(settings: SamplerSettings) -> tuple[float, int]:
    maxcall = np.iinfo(np.int64).max if settings.maxcall is None else settings.maxcall
    return settings.dlogz, int(maxcall)


def _next_steps(n_steps: int, seconds: float, buffer_steps: int) -> int:
    """Steps of the next chunk, so that it takes about CHUNK_SECONDS."""
    if seconds <= 0:
        return buffer_steps
    return int(np.clip(round(n_steps * CHUNK_SECONDS / seconds), 1, buffer_steps))


def run(likelihood, space: ParameterSpace, settings: SamplerSettings, *, fingerprint: str,
        checkpoint_path: Path | None, resume: bool, progress: bool) -> NestedSamplingResult:
    """Run nested slice sampling; see :func:`gwtools.ringdown.sampling.run_nested`.

    ``settings`` must be resolved (engine defaults filled in).
    """
    start = time.time()
    program = _compiled(likelihood, space, settings)
    data = getattr(likelihood, "data", None)
    if data is None:
        raise ValueError(f"engine 'blackjax': {type(likelihood).__name__} holds no analysis data (.data)")
    dlogz, maxcall = _limits(settings)
    if resume and checkpoint_path is not None and checkpoint_path.exists():
        template = jax.eval_shape(program.init, settings.seed, 0, data)
        carry, dead = _load_checkpoint(checkpoint_path, fingerprint, template)
        resumed_ncall = int(carry.ncall)
        logger.info("resuming nested sampling from %s (%d dead points, %d likelihood calls)",
                    checkpoint_path, _join(dead).loglikelihood.size, resumed_ncall)
    else:
        if resume:
            logger.warning("no checkpoint at %s: starting a new run", checkpoint_path)
        carry, dead, resumed_ncall = program.init(settings.seed, 0, data), [], 0
    report = logger.info if progress else logger.debug
    n_steps, last_save, interval = 1, time.time(), settings.checkpoint_every
    while True:
        begin = time.perf_counter()
        carry, n_done, chunk_dead, left = program.chunk(carry, data, n_steps, dlogz, maxcall)
        n_done = int(n_done)
        dead.append(_Dead(*(np.asarray(a)[:n_done] for a in chunk_dead)))
        seconds = time.perf_counter() - begin
        ncall, left = int(carry.ncall), float(left)
        report("blackjax NSS: %d dead points, ln Z = %.3f, dlogz %.3f (stop at %g), %d live, %d calls",
               int(carry.nsteps) * settings.num_delete, float(carry.state.integrator.logZ), left,
               settings.dlogz, settings.nlive, ncall)
        finished = n_done < n_steps or not np.isfinite(left)
        if checkpoint_path is not None and (finished or time.time() - last_save >= interval):
            cost = _save_checkpoint(checkpoint_path, fingerprint, carry, dead)
            logger.debug("checkpoint %s written in %.3f s", checkpoint_path, cost)
            last_save, interval = time.time(), max(settings.checkpoint_every, 20 * cost)
        if finished:
            break
        n_steps = _next_steps(n_steps, seconds, program.buffer_steps)
    if ncall >= maxcall:
        logger.warning("nested sampling stopped at maxcall = %d likelihood calls before reaching "
                       "dlogz = %g (now %.3f): the result is partial; --resume continues it",
                       settings.maxcall, settings.dlogz, left)
    return _finish(space, settings, 0, carry, dead, time.time() - start, resumed_ncall)


def run_batch(likelihood, datas, space: ParameterSpace, settings: SamplerSettings, *,
              seeds=None, progress: bool) -> list[NestedSamplingResult]:
    """Nested slice sampling of a stack of analyses in one vmapped loop (no checkpoints).

    ``datas`` has leaves stacked along a leading axis.  Without ``seeds``, analysis ``i`` uses
    the key ``fold_in(PRNGKey(settings.seed), i)`` (analysis 0 that of :func:`run` with the
    same seed); with ``seeds``, analysis ``i`` uses the key of :func:`run` with seed
    ``seeds[i]``.  See :func:`gwtools.ringdown.sampling.run_nested_batch`.
    """
    start = time.time()
    program = _compiled(likelihood, space, settings)
    n_analyses = int(jax.tree_util.tree_leaves(datas)[0].shape[0])
    dlogz, maxcall = _limits(settings)
    if seeds is None:
        seeds, indices = [settings.seed] * n_analyses, np.arange(n_analyses)
        own_settings = [settings] * n_analyses
    else:
        if len(seeds) != n_analyses:
            raise ValueError(f"{len(seeds)} seeds for a batch of {n_analyses} analyses")
        indices = np.zeros(n_analyses, dtype=np.int64)
        own_settings = [replace(settings, seed=int(seed)) for seed in seeds]
    carry = program.init_batch(np.asarray(seeds, dtype=np.int64), indices, datas)
    dead: list[list[_Dead]] = [[] for _ in range(n_analyses)]
    report = logger.info if progress else logger.debug
    n_steps = 1
    while True:
        begin = time.perf_counter()
        carry, n_done, chunk_dead, left = program.chunk_batch(carry, datas, n_steps, dlogz, maxcall)
        n_done, left = np.asarray(n_done), np.asarray(left)
        arrays = [np.asarray(a) for a in chunk_dead]
        for i in range(n_analyses):
            dead[i].append(_Dead(*(a[i, :n_done[i]] for a in arrays)))
        seconds = time.perf_counter() - begin
        going = (n_done == n_steps) & np.isfinite(left)
        report("blackjax NSS batch: %d of %d analyses still running, %d calls in all",
               int(going.sum()), n_analyses, int(np.sum(carry.ncall)))
        if not going.any():
            break
        n_steps = _next_steps(n_steps, seconds, program.buffer_steps)
    walltime = time.time() - start
    results = []
    for i in range(n_analyses):
        own = jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], carry)
        results.append(_finish(space, own_settings[i], int(indices[i]), own, dead[i], walltime, 0))
    return results


def warm_up(likelihood, space: ParameterSpace, settings: SamplerSettings) -> float:
    """Compile the run's jitted functions (a chunk of zero steps); see :func:`sampling.warm_up`."""
    begin = time.perf_counter()
    program = _compiled(likelihood, space, settings)
    carry = program.init(settings.seed, 0, likelihood.data)
    dlogz, maxcall = _limits(settings)
    jax.block_until_ready(program.chunk(carry, likelihood.data, 0, dlogz, maxcall))
    return time.perf_counter() - begin
