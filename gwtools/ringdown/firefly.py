"""FIREFLY: analytic marginalization of QNM amplitudes and phases (arXiv:2502.01093).

The log likelihood is quadratic in the quadratures B (see :mod:`gwtools.ringdown.likelihood`),

    ln L(theta, B) = ln L0 + S^T B - 1/2 B^T M B,

so B integrates out in closed form and nested sampling explores only the nonlinear parameters
theta (final mass, final spin and optionally inclination, polarization and start time).  Three quadrature
priors are supported:

``flat``
    Flat in the quadratures of each amplitude, with density 1/(pi A_max^2) per (B1, B2) pair (the
    disc of radius A_max).  The Gaussian integral is taken over the whole plane,

        ln L_marg = ln L0 + 1/2 S^T M^-1 S - 1/2 ln det M + D/2 ln 2pi - K ln(pi A_max^2),

    exact when the likelihood lies well inside the disc; the truncation is restored exactly by
    the importance step below (the indicator of the disc is part of the physical weight).
``gaussian``
    B ~ N(0, sigma^2 I): ln L_marg = ln L0 + 1/2 S^T (M + I/sigma^2)^-1 S - 1/2 ln det(I + sigma^2 M),
    exact.
``physical`` (reached by importance reweighting, cf. arXiv:2411.13333)
    Flat in each amplitude A in [0, A_max] and uniform phase: density 1/(2 pi A_max A) per pair.
    Draw B from its conditional Gaussian given each posterior theta and weight by
    w = pi_phys(B) / pi_quad(B); then Z_phys = Z_quad E[w] and resampling with w gives the
    physical-prior posterior of (theta, A, phi).

Numerics: M is Jacobi-scaled (unit diagonal) before a Cholesky factorization, so closely spaced
or weak modes (e.g. 220 and 221, whose basis waveforms overlap strongly) keep full float64
accuracy; a point where the factorization fails gets ln L = -inf, and the number of such points
is counted (``n_failed``) and reported at the end of a run.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import gwtools.ringdown.precision  # noqa: F401  (float64 before JAX makes any array)

# isort: split
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from scipy.special import logsumexp

from gwtools.ringdown.constants import QUADRATURE_PRIORS
from gwtools.ringdown.likelihood import (
    AnalysisData,
    VectorizedLikelihood,
    projections,
    segment_log_l0,
    static_key,
)
from gwtools.ringdown.model import RingdownModel

__all__ = [
    "MIN_ESS",
    "QuadraturePrior",
    "marginal_log_likelihood",
    "conditional_gaussian",
    "physical_proposal",
    "FireflyLikelihood",
    "amplitudes_and_phases",
    "log_physical_prior",
    "Reconstruction",
    "reweight_to_physical_prior",
    "effective_sample_size",
]

logger = logging.getLogger(__name__)

#: Effective sample size of the physical-prior importance weights that :func:`reweight_to_physical_prior`
#: aims for; below it the physical-prior results are flagged as unreliable.
MIN_ESS = 1000.0


@dataclass(frozen=True)
class QuadraturePrior:
    """Prior on the quadratures B used inside the analytic marginalization.

    Parameters
    ----------
    kind
        ``"flat"`` (flat within discs of radius ``amplitude_max``) or ``"gaussian"``
        (independent N(0, ``scale``^2) quadratures).
    amplitude_max
        A_max, upper bound of every amplitude, in units of AMPLITUDE_UNIT (1e-21).  Also the
        bound of the physical prior reached by reweighting.
    scale
        sigma of the Gaussian prior, AMPLITUDE_UNIT; required for ``"gaussian"``.
    """

    kind: str = "flat"
    amplitude_max: float = 50.0
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in QUADRATURE_PRIORS:
            raise ValueError(f"unknown quadrature prior {self.kind!r}: choose one of {QUADRATURE_PRIORS}")
        if not (np.isfinite(self.amplitude_max) and self.amplitude_max > 0):
            raise ValueError(f"amplitude_max must be positive and finite, got {self.amplitude_max}")
        if self.kind == "gaussian" and not (self.scale is not None and self.scale > 0):
            raise ValueError("the gaussian quadrature prior needs a positive 'scale'")

    def log_density(self, quadratures):
        """ln pi(B) for B of shape (..., D) (pairs of quadratures), improper extension for flat."""
        b = jnp.asarray(quadratures)
        n_pairs = b.shape[-1] // 2
        if self.kind == "flat":
            return jnp.full(b.shape[:-1], -n_pairs * jnp.log(jnp.pi * self.amplitude_max**2))
        dim = b.shape[-1]
        return (-0.5 * jnp.sum(b**2, axis=-1) / self.scale**2
                - 0.5 * dim * jnp.log(2.0 * jnp.pi * self.scale**2))


def _scaled_cholesky(overlap_data, normal, prior: QuadraturePrior):
    """Cholesky factor of the (Jacobi-scaled) posterior precision of B.

    Returns (chol, scale, scaled_overlap, log_det_precision): precision = diag(scale) chol chol^T
    diag(scale), scaled_overlap = S / scale.
    """
    precision = normal
    if prior.kind == "gaussian":
        precision = normal + jnp.eye(normal.shape[-1]) / prior.scale**2
    scale = jnp.sqrt(jnp.diagonal(precision))
    scaled = precision / (scale[:, None] * scale[None, :])
    chol = jnp.linalg.cholesky(scaled)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol))) + 2.0 * jnp.sum(jnp.log(scale))
    return chol, scale, overlap_data / scale, log_det


def marginal_log_likelihood(overlap_data, normal, log_l0, prior: QuadraturePrior):
    """ln of the likelihood integrated over the quadratures against their prior.

    Parameters
    ----------
    overlap_data
        S, shape (D,).
    normal
        M, shape (D, D).
    log_l0
        ln L at B = 0.
    prior
        Quadrature prior.

    Returns
    -------
    Scalar ln L_marg(theta) = ln int L(theta, B) pi(B) dB; NaN if M is not positive definite.
    """
    dim = normal.shape[-1]
    chol, _, scaled_overlap, log_det = _scaled_cholesky(overlap_data, normal, prior)
    whitened = jsl.solve_triangular(chol, scaled_overlap, lower=True)
    quadratic = 0.5 * whitened @ whitened
    if prior.kind == "flat":
        log_prior_norm = -(dim // 2) * jnp.log(jnp.pi * prior.amplitude_max**2)
        return log_l0 + quadratic - 0.5 * log_det + 0.5 * dim * jnp.log(2.0 * jnp.pi) + log_prior_norm
    return log_l0 + quadratic - 0.5 * log_det - dim * jnp.log(prior.scale)


def conditional_gaussian(overlap_data, normal, prior: QuadraturePrior):
    """Mean and factor of the conditional posterior N(P^-1 S, P^-1) of B given theta.

    P = M (flat prior) or M + I/sigma^2 (Gaussian prior).

    Returns
    -------
    (mean, factor)
        mean: (D,); factor: (D, D) upper triangular U with U U^T = P^-1, so B = mean + U z for
        z ~ N(0, I); both in units of AMPLITUDE_UNIT.
    """
    chol, scale, scaled_overlap, _ = _scaled_cholesky(overlap_data, normal, prior)
    # scaled precision = chol chol^T and B = x / scale, so U = diag(1/scale) chol^-T
    mean = jsl.cho_solve((chol, True), scaled_overlap) / scale
    factor = jsl.solve_triangular(chol.T, jnp.eye(normal.shape[-1]), lower=False) / scale[:, None]
    return mean, factor


#: Share of each weak pair's draws taken from the line component of the reconstruction proposal.
LINE_SHARE = 0.5

#: A pair counts as weak (its conditional Gaussian reaches A = 0) when its mean amplitude is
#: below this many standard deviations.
WEAK_PAIR_SIGMAS = 3.0


def _whiten_pair(block, x):
    """U^-1 x for the upper triangular 2 x 2 ``block`` U and x of shape (n, 2)."""
    second = x[:, 1] / block[1, 1]
    return jnp.stack([(x[:, 0] - block[0, 1] * second) / block[0, 0], second], axis=-1)


def physical_proposal(key, overlap_data, normal, prior: QuadraturePrior, n_draws: int):
    """Draws of B for the physical-prior reweighting, and their ln N(B) - ln q(B).

    The conditional Gaussian N(B; mu, Sigma) of :func:`conditional_gaussian` alone makes the
    weights pi_phys / pi_quad, which go as 1/A per pair, of infinite variance for a pair whose
    Gaussian reaches A = 0 (an unresolved mode): the ESS then grows only logarithmically with the
    draws.  Here the pairs are drawn one after the other from the chain rule of the Gaussian
    (B = mu + U z, U upper triangular, U U^T = Sigma: last pair first, each given those drawn),
    and each weak pair's conditional N(B_k; m_k, C_k) is mixed with a *line* component
    (defensive importance sampling, Hesterberg 1995):

        q_k(B_k | B_>k) = (1 - e) N(B_k; m_k, C_k) + e L(B_k),

    e = :data:`LINE_SHARE` for weak pairs (|mu_k| < :data:`WEAK_PAIR_SIGMAS` sigma_k, sigma_k the
    largest marginal standard deviation of the pair) and 0 otherwise.  L draws a line through
    A = 0 at a uniform angle psi in [0, pi), and on it the signed amplitude s from the Gaussian
    restricted to that line, N(s; v.w / p, 1/p) with v = U_k^-1 (cos psi, sin psi),
    w = U_k^-1 m_k, p = v.v; B_k = s (cos psi, sin psi).  Its density,

        L(B_k) = N(B_k; m_k, C_k) 2 |det U_k| sqrt(p / 2 pi) exp(d^2 / 2) / A,

    with d^2 = w.w - (v.w)^2 / p the whitened distance of m_k from the line, carries the 1/A of
    the physical prior, so the target N/A over L depends on the angle alone: it is bounded, and
    constant for an isotropic Gaussian centred on A = 0.

    Returns
    -------
    (B, log_ratio)
        B: (n_draws, D) in units of AMPLITUDE_UNIT; log_ratio: (n_draws,) ln N(B) - ln q(B).
    """
    mean, factor = conditional_gaussian(overlap_data, normal, prior)
    dim = normal.shape[-1]
    marginal_sd = jnp.sqrt(jnp.diagonal(factor @ factor.T)).reshape(-1, 2).max(axis=1)
    mean_amplitude = jnp.hypot(mean[0::2], mean[1::2])
    share = jnp.where(mean_amplitude < WEAK_PAIR_SIGMAS * marginal_sd, LINE_SHARE, 0.0)
    normal_key, choice_key, line_key, angle_key = jax.random.split(key, 4)
    gauss = jax.random.normal(normal_key, (n_draws, dim))
    n_pairs = dim // 2
    from_line = jax.random.uniform(choice_key, (n_draws, n_pairs)) < share
    along_line = jax.random.normal(line_key, (n_draws, n_pairs))
    angle = jnp.pi * jax.random.uniform(angle_key, (n_draws, n_pairs))
    z = jnp.zeros((n_draws, dim))
    log_ratio = jnp.zeros(n_draws)
    for k in reversed(range(n_pairs)):
        pair = slice(2 * k, 2 * k + 2)
        block = factor[pair, pair]  # upper triangular 2 x 2
        centre = mean[pair] + z[:, 2 * k + 2:] @ factor[pair, 2 * k + 2:].T
        w = _whiten_pair(block, centre)
        direction = jnp.stack([jnp.cos(angle[:, k]), jnp.sin(angle[:, k])], -1)
        v = _whiten_pair(block, direction)
        p = jnp.sum(v**2, axis=-1)
        s = jnp.sum(v * w, axis=-1) / p + along_line[:, k] / jnp.sqrt(p)
        b = jnp.where(from_line[:, k, None], s[:, None] * direction, centre + gauss[:, pair] @ block.T)
        z_k = _whiten_pair(block, b - centre)
        z = z.at[:, pair].set(z_k)
        log_det = jnp.log(jnp.abs(block[0, 0] * block[1, 1]))
        log_gauss = -0.5 * jnp.sum(z_k**2, axis=-1) - jnp.log(2.0 * jnp.pi) - log_det
        # L at b, on b's own line (for a line draw, the line it was drawn on)
        a = jnp.hypot(b[:, 0], b[:, 1])
        v = _whiten_pair(block, b / a[:, None])
        p = jnp.sum(v**2, axis=-1)
        d2 = jnp.sum(w**2, axis=-1) - jnp.sum(v * w, axis=-1) ** 2 / p
        log_line = log_gauss + jnp.log(2.0) + log_det + 0.5 * jnp.log(p / (2.0 * jnp.pi)) + 0.5 * d2 - jnp.log(a)
        log_q = jnp.logaddexp(jnp.log1p(-share[k]) + log_gauss, jnp.log(share[k]) + log_line)
        log_ratio = log_ratio + log_gauss - log_q
    return mean + z @ factor.T, log_ratio


class FireflyLikelihood(VectorizedLikelihood):
    """Amplitude-marginalized ringdown likelihood of the nonlinear parameters, batched.

    Parameters
    ----------
    model
        Mode content and polarization model.
    data
        Precomputed analysis data (:func:`~gwtools.ringdown.likelihood.build_analysis_data`).
    parameters
        Names of the sampled parameters, in the order of the columns of theta; a subset of
        ``final_mass, final_spin, inclination, polarization, start_shift`` (the last with
        data prepared for a start window).
    fixed
        Values of the parameters that are not sampled (inclination, polarization and start
        shift default to 0).
    prior
        Quadrature prior of the marginalization.

    Calling the instance with theta of shape (n, len(parameters)) returns ln L_marg, shape (n,).
    """

    def __init__(self, model: RingdownModel, data: AnalysisData, parameters=("final_mass", "final_spin"),
                 fixed=None, prior: QuadraturePrior = QuadraturePrior()):
        super().__init__(model, data, parameters, fixed)
        self.prior = prior

    def _projections(self, row, data):
        return projections(self.model, data, *self.nonlinear(row), start_shift=self.start_shift(row))

    def _point(self, row, data):
        overlap_data, normal = self._projections(row, data)
        return marginal_log_likelihood(overlap_data, normal, segment_log_l0(data, self.start_shift(row)),
                                       self.prior)


_RECONSTRUCTION_CHUNK = 256  # posterior samples per compiled call: one compilation for any n


class _SameModel:
    """A likelihood as a static argument of ``jax.jit``, equal to any other whose attributes
    besides the data are equal (:func:`~gwtools.ringdown.likelihood.static_key`), so the
    analyses of a scan reuse one compiled function (the data are its argument)."""

    def __init__(self, likelihood: FireflyLikelihood):
        self.likelihood = likelihood
        self.key = static_key(likelihood)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other) -> bool:
        return isinstance(other, _SameModel) and other.key == self.key


@functools.partial(jax.jit, static_argnums=(0, 5))
def _conditional_draws(model: _SameModel, seed, chunk, theta, data, n_draws: int):
    """B drawn from :func:`physical_proposal` at each row of theta, (n, n_draws, D), and their
    physical-prior importance weights ln w = ln pi_phys(B) + ln N(B) - ln pi_quad(B) - ln q(B),
    (n, n_draws), computed here so that the draws are not passed over again outside.

    The keys of chunk ``chunk`` are made inside the compiled function, so no operation outside
    it depends on the number of samples (which would compile anew for every run).
    """
    likelihood = model.likelihood
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), chunk), theta.shape[0])
    overlap_data, normal = jax.vmap(likelihood._projections, in_axes=(0, None))(theta, data)
    prior = likelihood.prior
    draw = jax.vmap(lambda k, s, m: physical_proposal(k, s, m, prior, n_draws))
    quadratures, log_ratio = draw(keys, overlap_data, normal)
    log_w = log_physical_prior(quadratures, prior.amplitude_max) - prior.log_density(quadratures) + log_ratio
    return quadratures, log_w


def amplitudes_and_phases(quadratures):
    """Amplitude A = |B1 + i B2| and phase phi = arg(B1 + i B2) in [0, 2pi) of each pair.

    Parameters
    ----------
    quadratures
        (..., 2K) pairs (B1, B2) in order.

    Returns
    -------
    (amplitude, phase), each (..., K).
    """
    b = np.asarray(quadratures)
    pairs = b.reshape(b.shape[:-1] + (b.shape[-1] // 2, 2))
    amplitude = np.hypot(pairs[..., 0], pairs[..., 1])
    phase = np.mod(np.arctan2(pairs[..., 1], pairs[..., 0]), 2 * np.pi)
    return amplitude, phase


def log_physical_prior(quadratures, amplitude_max: float):
    """ln of the physical prior density of B: flat in A in [0, A_max], uniform phase.

    Per pair the density in (B1, B2) is 1/(2 pi A_max A) inside the disc A <= A_max, 0 outside.
    Returns an array of shape (...,) (-inf outside the support).
    """
    b = jnp.asarray(quadratures)
    amplitude = jnp.hypot(b[..., 0::2], b[..., 1::2])
    inside = jnp.all(amplitude <= amplitude_max, axis=-1)
    log_pdf = -jnp.sum(jnp.log(2 * jnp.pi * amplitude_max * amplitude), axis=-1)
    return jnp.where(inside, log_pdf, -jnp.inf)


def effective_sample_size(log_weights) -> float:
    """Kish effective sample size (sum w)^2 / sum w^2 of importance weights given as logs."""
    log_weights = np.asarray(log_weights, dtype=float)
    if not np.any(np.isfinite(log_weights)):
        return 0.0
    return float(np.exp(2 * logsumexp(log_weights) - logsumexp(2 * log_weights)))


@dataclass(frozen=True)
class Reconstruction:
    """Amplitude/phase reconstruction and evidence under the physical prior.

    Attributes
    ----------
    theta
        (n, n_params) posterior samples of the sampled parameters, repeated per quadrature draw.
    quadratures
        (n, D) draws of B from the conditional Gaussians (quadrature-prior posterior).
    log_weights
        (n,) ln w = ln pi_phys(B) - ln pi_quad(B).
    ess
        Kish effective sample size of the weights.
    log_evidence_physical, log_evidence_physical_err
        ln Z under the physical amplitude prior and its error (sampler and importance error).
    physical_indices
        (n_theta * draws_per_sample,) indices into theta/quadratures of a weighted resample (with
        replacement): the posterior under the physical prior.
    """

    theta: np.ndarray
    quadratures: np.ndarray
    log_weights: np.ndarray
    ess: float
    log_evidence_physical: float
    log_evidence_physical_err: float
    physical_indices: np.ndarray

    @property
    def amplitudes(self) -> np.ndarray:
        return amplitudes_and_phases(self.quadratures)[0]

    @property
    def phases(self) -> np.ndarray:
        return amplitudes_and_phases(self.quadratures)[1]


def _conditional_draws_all(likelihood: FireflyLikelihood, theta, seed: int, draws: int):
    """(n_theta * draws, D) proposal draws and their (n_theta * draws,) ln w, in chunks."""
    n_theta = theta.shape[0]
    padded = -(-n_theta // _RECONSTRUCTION_CHUNK) * _RECONSTRUCTION_CHUNK
    theta_pad = np.concatenate([theta, np.repeat(theta[:1], padded - n_theta, axis=0)])
    model = _SameModel(likelihood)
    chunks = [
        _conditional_draws(model, seed, i // _RECONSTRUCTION_CHUNK, theta_pad[i:i + _RECONSTRUCTION_CHUNK],
                           likelihood.data, draws)
        for i in range(0, padded, _RECONSTRUCTION_CHUNK)
    ]
    quadratures = np.concatenate([np.asarray(c[0]) for c in chunks])[:n_theta]
    log_w = np.concatenate([np.asarray(c[1]) for c in chunks])[:n_theta]
    return quadratures.reshape(n_theta * draws, -1), log_w.reshape(n_theta * draws)


def reweight_to_physical_prior(likelihood: FireflyLikelihood, theta, log_evidence: float,
                               log_evidence_err: float, *, seed: int, draws_per_sample: int = 4,
                               min_ess: float = MIN_ESS,
                               max_draws_per_sample: int = 64) -> Reconstruction:
    """Posterior and evidence under the physical prior (flat in amplitude, uniform phase) from a
    run of the marginal likelihood.

    At each posterior sample of theta the quadratures B are drawn from their conditional
    Gaussian posterior under the quadrature prior of the marginalization, N(B), mixed near
    A = 0 with a line component for unresolved modes (:func:`physical_proposal`, density q),
    weighted by w = pi_phys(B) N(B) / (pi_quad(B) q(B)) (:func:`log_physical_prior`), and
    resampled with these weights: the result is the joint
    posterior of (theta, amplitudes, phases) under the physical prior, and
    Z_phys = Z_quad E[w].  This is the step that turns an amplitude-marginalized run into
    amplitude and phase posteriors (arXiv:2502.01093, cf. arXiv:2411.13333).

    Parameters
    ----------
    likelihood
        The marginalized likelihood that was sampled.
    theta
        (n, n_params) equally weighted posterior samples of its parameters.
    log_evidence, log_evidence_err
        ln Z (and error) of the run under ``likelihood.prior``.
    seed
        Seed of the quadrature draws and of the resampling.
    draws_per_sample
        Conditional draws of B per theta sample to start with.
    min_ess
        Target effective sample size of the physical-prior weights: while it is not reached,
        the draws per sample are raised by a power of 4, to what the ESS so far says is needed
        (the ESS of weights of finite variance grows in proportion to the draws), up to
        ``max_draws_per_sample``; if it is still not reached, a warning says the physical-prior
        results are unreliable.
    max_draws_per_sample
        Cap of the draws per theta sample.
    """
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    draws = draws_per_sample
    while True:
        quadratures, log_w = _conditional_draws_all(likelihood, theta, seed, draws)
        ess = effective_sample_size(log_w)
        if ess >= min_ess or draws * 4 > max_draws_per_sample:
            break
        needed = draws * min_ess / max(ess, 1.0)
        while draws * 4 <= max_draws_per_sample and draws < needed:
            draws *= 4
    theta_rep = np.repeat(theta, draws, axis=0)

    n = log_w.size
    log_mean_w = logsumexp(log_w) - np.log(n)
    # relative standard error of the mean weight -> error of its log
    weights = np.exp(log_w - logsumexp(log_w))
    rel_err = np.sqrt(max(n * np.sum(weights**2) - 1.0, 0.0) / n)
    err = float(np.hypot(log_evidence_err, rel_err))
    if ess < min_ess:
        logger.warning(
            "physical-prior importance weights have an effective sample size of %.0f (of %d draws): "
            "amplitude posteriors and the physical-prior evidence are unreliable; raise "
            "max_draws_per_sample or the number of posterior samples (a mode consistent with zero "
            "amplitude gives heavy 1/A weights)", ess, n)
    rng = np.random.default_rng(seed)
    if np.isfinite(log_mean_w):
        indices = rng.choice(n, size=theta.shape[0] * draws_per_sample, replace=True, p=weights)
    else:
        indices = np.zeros(0, dtype=int)
    return Reconstruction(
        theta=theta_rep,
        quadratures=quadratures,
        log_weights=log_w,
        ess=ess,
        log_evidence_physical=float(log_evidence + log_mean_w),
        log_evidence_physical_err=err,
        physical_indices=indices,
    )
