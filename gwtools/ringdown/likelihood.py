"""Exact time-domain Gaussian likelihood of a ringdown, in the quadrature (design-matrix) form.

For stationary Gaussian noise with autocovariance (ACF) rho_i in detector i, the analysis segment
d_i (n samples) has covariance C_i = toeplitz(rho_i) and

    ln L = sum_i [ -1/2 (d_i - h_i)^T C_i^{-1} (d_i - h_i) - 1/2 ln det C_i - n/2 ln 2 pi ].

With C_i = L_i L_i^T (Cholesky) and the whitening matrix W_i = L_i^{-1}, a template linear in the
quadratures, h_i = B @ G_i, gives

    ln L(theta, B) = ln L0 + S(theta) . B - 1/2 B^T M(theta) B,
    S = sum_i (W_i G_i)(W_i d_i),  M = sum_i (W_i G_i)(W_i G_i)^T,  ln L0 = ln L(B = 0).

Everything that does not depend on the sampled parameters theta (whitening matrices, whitened
data, ln L0) is computed once, in :func:`build_analysis_data`; per theta only the design matrix
and two matrix products are evaluated, in JAX float64, jit-compiled and vmapped over batches.
All arrays are kept in units of :data:`~gwtools.ringdown.model.AMPLITUDE_UNIT` so the normal
matrix M is of order unity; ln L itself is the likelihood density of the strain data.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from gwtools.ringdown.model import AMPLITUDE_UNIT, RingdownModel, mixing_matrix, mode_waveforms_uniform
from gwtools.ringdown.noise import cholesky_factor, toeplitz_covariance

__all__ = [
    "AnalysisData",
    "build_analysis_data",
    "rotate_antenna",
    "projections",
    "log_likelihood",
]


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class AnalysisData:
    """Precomputed, parameter-independent pieces of a ringdown likelihood.

    Attributes
    ----------
    times
        (n_det, n) seconds since the analysis start in each detector.
    whitening
        (n_det, n, n) W_i = L_i^{-1} for the covariance in units of AMPLITUDE_UNIT^2.
    whitened_data
        (n_det, n) W_i d_i with d in units of AMPLITUDE_UNIT.
    antenna
        (n_det, 2) antenna patterns (F_plus, F_cross) at polarization angle psi = 0.
    log_l0
        ln L at zero signal, in strain units (includes -1/2 ln det C and -n/2 ln 2 pi).
    detectors
        Detector names, in the order of the arrays (static, not traced).
    """

    times: jax.Array
    whitening: jax.Array
    whitened_data: jax.Array
    antenna: jax.Array
    log_l0: jax.Array
    detectors: tuple[str, ...] = ()

    def tree_flatten(self):
        children = (self.times, self.whitening, self.whitened_data, self.antenna, self.log_l0)
        return children, self.detectors

    @classmethod
    def tree_unflatten(cls, detectors, children):
        return cls(*children, detectors=detectors)

    @property
    def n_samples(self) -> int:
        return int(self.times.shape[-1])

    @property
    def n_detectors(self) -> int:
        return int(self.times.shape[0])


def build_analysis_data(times, data, acfs, antenna, detectors=()) -> AnalysisData:
    """Whiten the analysis segments once per analysis.

    Parameters
    ----------
    times
        (n_det, n) seconds since the analysis start in each detector (>= 0).
    data
        (n_det, n) strain (dimensionless) of the analysis segments.
    acfs
        (n_det, n) noise autocovariance at lags 0 .. n-1 samples, strain^2.
    antenna
        (n_det, 2) antenna patterns (F_plus, F_cross) at polarization angle 0.
    detectors
        Detector names for messages.

    Raises
    ------
    ValueError
        On mismatched shapes, non-finite input, or a covariance that is not numerically
        positive definite or is ill-conditioned (see :func:`gwtools.ringdown.noise.cholesky_factor`).
    """
    times = np.atleast_2d(np.asarray(times, dtype=float))
    data = np.atleast_2d(np.asarray(data, dtype=float))
    acfs = np.atleast_2d(np.asarray(acfs, dtype=float))
    antenna = np.atleast_2d(np.asarray(antenna, dtype=float))
    n_det, n = data.shape
    detectors = tuple(detectors) or tuple(f"detector{i}" for i in range(n_det))
    if times.shape != data.shape or acfs.shape != data.shape:
        raise ValueError(
            f"times {times.shape}, data {data.shape} and acfs {acfs.shape} must all have shape "
            "(n_detectors, n_samples): one ACF lag per data sample"
        )
    if antenna.shape != (n_det, 2):
        raise ValueError(f"antenna must have shape ({n_det}, 2) (F_plus, F_cross), got {antenna.shape}")
    if len(detectors) != n_det:
        raise ValueError(f"{len(detectors)} detector names for {n_det} data segments")
    for name, arr in (("times", times), ("data", data), ("acfs", acfs), ("antenna", antenna)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or inf: check the input strain and noise estimate")
    if n < 2:
        raise ValueError(f"the analysis segment needs at least 2 samples, got {n}")
    steps = np.diff(times, axis=1)
    if not np.allclose(steps, steps[0, 0], rtol=1e-9, atol=0) or steps[0, 0] <= 0:
        raise ValueError("times must be uniformly and increasingly sampled at one rate in all detectors")
    if np.any(times[:, 0] < 0):
        raise ValueError("times are counted from the analysis start and must be >= 0")

    whitening = np.empty((n_det, n, n))
    whitened = np.empty((n_det, n))
    log_l0 = 0.0
    eye = np.eye(n)
    for i, det in enumerate(detectors):
        chol = cholesky_factor(toeplitz_covariance(acfs[i] / AMPLITUDE_UNIT**2), detector=det)
        whitening[i] = scipy.linalg.solve_triangular(chol, eye, lower=True)
        whitened[i] = whitening[i] @ (data[i] / AMPLITUDE_UNIT)
        log_det_cov = 2.0 * np.sum(np.log(np.diag(chol))) + 2.0 * n * np.log(AMPLITUDE_UNIT)
        log_l0 += -0.5 * whitened[i] @ whitened[i] - 0.5 * log_det_cov - 0.5 * n * np.log(2 * np.pi)
    return AnalysisData(
        times=jnp.asarray(times),
        whitening=jnp.asarray(whitening),
        whitened_data=jnp.asarray(whitened),
        antenna=jnp.asarray(antenna),
        log_l0=jnp.asarray(log_l0),
        detectors=detectors,
    )


def rotate_antenna(antenna, polarization):
    """Antenna patterns at polarization angle psi from those at psi = 0.

    F_plus(psi) = F_plus(0) cos 2psi + F_cross(0) sin 2psi,
    F_cross(psi) = -F_plus(0) sin 2psi + F_cross(0) cos 2psi   (the convention of bilby/LAL).

    Parameters
    ----------
    antenna
        (n_det, 2) patterns at psi = 0.
    polarization
        psi, rad (scalar).
    """
    c, s = jnp.cos(2.0 * polarization), jnp.sin(2.0 * polarization)
    f_plus, f_cross = antenna[:, 0], antenna[:, 1]
    return jnp.stack([f_plus * c + f_cross * s, -f_plus * s + f_cross * c], axis=-1)


def _mode_waveforms(model: RingdownModel, data: AnalysisData, final_mass, final_spin):
    """Mode waveforms (n_det, 2 n_modes, n) on the data's (uniform) time grids."""
    delta_t = data.times[0, 1] - data.times[0, 0]
    return mode_waveforms_uniform(model, final_mass, final_spin, data.times[:, 0], delta_t, data.n_samples)


def projections(model: RingdownModel, data: AnalysisData, final_mass, final_spin,
                inclination=0.0, polarization=0.0):
    """Data projection S and normal matrix M of the quadratures at one parameter point.

    Only the 2 n_modes damped cosines and sines are whitened (n x n products); antenna patterns
    and inclination enter through the small mixing matrix, so S and M follow from their
    projections and Gram matrices at negligible cost.

    Returns
    -------
    (S, M)
        S: (n_quadratures,), M: (n_quadratures, n_quadratures), both for B in units of
        AMPLITUDE_UNIT.  vmap over the scalar arguments for batches.
    """
    waveforms = _mode_waveforms(model, data, final_mass, final_spin)
    white = jnp.einsum("dkn,dmn->dkm", waveforms, data.whitening)
    mixing = mixing_matrix(model, rotate_antenna(data.antenna, polarization), inclination)
    overlap_modes = jnp.einsum("dkm,dm->dk", white, data.whitened_data)
    gram = jnp.einsum("dkm,dlm->dkl", white, white)
    overlap_data = jnp.einsum("dqk,dk->q", mixing, overlap_modes)
    normal = jnp.einsum("dqk,dkl,dpl->qp", mixing, gram, mixing)
    return overlap_data, normal


def log_likelihood(model: RingdownModel, data: AnalysisData, quadratures, final_mass, final_spin,
                   inclination=0.0, polarization=0.0):
    """Exact Gaussian log likelihood ln L(theta, B) at one point.

    Whitens the template itself (one n x n product per detector):
    ln L = ln L0 + sum_i [(W_i h_i).(W_i d_i) - 1/2 |W_i h_i|^2].

    Parameters
    ----------
    quadratures
        B, shape (n_quadratures,), in units of AMPLITUDE_UNIT, ordered as
        :attr:`RingdownModel.quadrature_names`.
    final_mass, final_spin, inclination, polarization
        Scalars (Msun, dimensionless, rad, rad).
    """
    waveforms = _mode_waveforms(model, data, final_mass, final_spin)
    mixing = mixing_matrix(model, rotate_antenna(data.antenna, polarization), inclination)
    coefficients = jnp.einsum("q,dqk->dk", jnp.asarray(quadratures), mixing)
    template = jnp.einsum("dk,dkn->dn", coefficients, waveforms)
    white = jnp.einsum("dmn,dn->dm", data.whitening, template)
    return data.log_l0 + jnp.sum(white * data.whitened_data) - 0.5 * jnp.sum(white * white)


NONLINEAR_PARAMETERS = ("final_mass", "final_spin", "inclination", "polarization")
"""Parameters the template depends on nonlinearly (Msun, dimensionless, rad, rad)."""


class VectorizedLikelihood:
    """Base of the batched likelihoods handed to the nested sampler.

    A subclass defines ``_point(self, row, data)``: the log likelihood (JAX scalar) at one row of
    sampled parameters, in the order of :attr:`parameters`.  Calling the instance on an array of
    shape (n, n_parameters) evaluates all rows in one jit-compiled, vmapped call and returns a numpy
    array (n,) in which non-finite values (e.g. a failed Cholesky factorization) become -inf;
    their number accumulates in ``n_failed``.

    Batches are padded to the next power of four, so that the sampler's varying batch sizes
    trigger only a few compilations (each takes one or two seconds) while the many small
    batches at the end of each round of proposals stay cheap.  Instances pickle
    without their compiled function (dynesty checkpoints pickle the likelihood); it is rebuilt
    on first use.
    """

    def __init__(self, model: RingdownModel, data: AnalysisData, parameters, fixed=None):
        self.model = model
        self.data = data
        self.parameters = tuple(parameters)
        self.fixed = dict(fixed or {})
        self._check_parameters()
        self._compiled = None
        self.n_failed = 0  # points whose value was not finite (e.g. a singular normal matrix)

    def _check_parameters(self) -> None:
        known = set(self.known_parameters())
        unknown = [p for p in list(self.parameters) + list(self.fixed) if p not in known]
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(known)}")
        overlap = set(self.parameters) & set(self.fixed)
        if overlap:
            raise ValueError(f"parameter(s) {sorted(overlap)} are both sampled and fixed")
        for required in ("final_mass", "final_spin"):
            if required not in self.parameters and required not in self.fixed:
                raise ValueError(f"{required} must be sampled or fixed")

    def known_parameters(self) -> tuple[str, ...]:
        return NONLINEAR_PARAMETERS

    @property
    def ndim(self) -> int:
        return len(self.parameters)

    def value(self, row, name: str, default=0.0):
        """Parameter ``name`` from a row of sampled values, else its fixed value, else default."""
        if name in self.parameters:
            return row[self.parameters.index(name)]
        return self.fixed.get(name, default)

    def nonlinear(self, row):
        """(final_mass, final_spin, inclination, polarization) of one row."""
        return tuple(self.value(row, name) for name in NONLINEAR_PARAMETERS)

    def _point(self, row, data):  # pragma: no cover - abstract
        raise NotImplementedError

    def _batch(self, rows, data):
        values = jax.vmap(self._point, in_axes=(0, None))(rows, data)
        return jnp.where(jnp.isfinite(values), values, -jnp.inf)

    def __call__(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        single = theta.ndim == 1
        theta = np.atleast_2d(theta)
        if theta.shape[1] != self.ndim:
            raise ValueError(f"expected {self.ndim} parameters {self.parameters}, got {theta.shape[1]}")
        if self._compiled is None:
            self._compiled = jax.jit(self._batch)
        n = theta.shape[0]
        padded = 1
        while padded < n:
            padded *= 4
        if padded != n:
            theta = np.concatenate([theta, np.repeat(theta[:1], padded - n, axis=0)])
        values = np.asarray(self._compiled(jnp.asarray(theta), self.data))[:n]
        self.n_failed += int(np.count_nonzero(np.isneginf(values)))
        return values[0] if single else values

    def fingerprint(self) -> str:
        """sha256 of everything the likelihood depends on (model, parameters, data, settings)."""
        digest = hashlib.sha256()
        for key, value in sorted(self.__dict__.items()):
            if key in ("_compiled", "n_failed", "data"):
                continue
            digest.update(f"{key}={value!r};".encode())
        for leaf in jax.tree_util.tree_leaves(self.data):
            digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
        return digest.hexdigest()

    def warm_up(self, row, max_batch: int = 1024) -> float:
        """Compile every padded batch size up to ``max_batch`` at parameter ``row``; return seconds.

        Lets benchmarks time sampling separately from JAX compilation.
        """
        start = time.perf_counter()
        size = 1
        while size <= max_batch:
            self(np.tile(np.asarray(row, dtype=float), (size, 1)))
            size *= 4
        return time.perf_counter() - start

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_compiled"] = None
        state["data"] = jax.tree_util.tree_map(np.asarray, self.data)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.data = jax.tree_util.tree_map(jnp.asarray, self.data)
