"""Exact time-domain Gaussian likelihood of a ringdown, in the quadrature form, at O(n K) per point.

For stationary Gaussian noise with autocovariance (ACF) rho_i in detector i, the analysis segment
d_i (n samples) has covariance T_i = toeplitz(rho_i) and

    ln L = sum_i [ -1/2 (d_i - h_i)^T T_i^-1 (d_i - h_i) - 1/2 ln det T_i - n/2 ln 2 pi ].

A template linear in the quadratures, h_i = B @ G_i, gives

    ln L(theta, B) = ln L0 + S(theta) . B - 1/2 B^T M(theta) B,
    S = sum_i G_i T_i^-1 d_i,  M = sum_i G_i T_i^-1 G_i^T,  ln L0 = ln L(B = 0).

The rows of G_i mix (through antenna patterns and inclination) the real and imaginary parts of
the complex exponentials x_k(t_j) = c_k z_k^j on the detector's grid t_j = t0 + j dt, with
z_k = exp(a_k dt), c_k = exp(a_k t0) and a_k = -1/tau_k + 2 pi i f_k.  Their noise products
follow without any n x n operation from the order n - 1 Levinson predictor a of T (T a = E e_0,
:class:`gwtools.ringdown.noise.ToeplitzNoise`): by the Gohberg-Semencul formula and the
Christoffel-Darboux identity,

    x_k^T T^-1 x_l = c_k c_l [p(z_k) p(z_l) - z_k z_l p~(z_k) p~(z_l)] / (E (1 - z_k z_l)),
    p(z) = sum_m a_m z^m,  p~(z) = z^(n-1) p(1/z),

and x_k^T T^-1 d = c_k u(z_k) with u(z) = sum_j (T^-1 d)_j z^j; products with conj x_l take
conj z_l, since T^-1 is real.  Per point this costs three polynomial evaluations per mode and
detector, O(n K), instead of whitening every basis waveform, O(n^2 K).  The polynomials are
evaluated in blocks, z^(32 b + r): the sums over r are one real matrix product whose
coefficient side is the same for every point of a batch, the sums over b are O(n / 32).
Near z w = 1 (long-lived modes, |z| -> 1) the difference in the numerator leaves a relative
error of about 1e-16 / |1 - z w|.  Kerr modes have |1 - z w| >= 1 - |z|^2 = 2 dt / tau: 3e-3 at
8192 Hz for the longest-lived modes of the QNM table (tau ~ 0.08 s for 500 Msun at chi = 0.99),
so the error stays below 1e-13 and no special branch is needed.

Everything that does not depend on the sampled parameters theta (predictors, T^-1 d, ln L0) is
computed once, in :func:`build_analysis_data`; :mod:`gwtools.ringdown.direct` keeps the
whitening-matrix form as the reference.  All arrays are kept in units of
:data:`~gwtools.ringdown.model.AMPLITUDE_UNIT` so the normal matrix M is of order unity; ln L
itself is the likelihood density of the strain data.

Start time within a window
--------------------------
The analysis may also sample the start time, as a shift s (seconds, ``start_shift``) of the
configured start within a window [lo, hi] (lo <= 0 <= hi).  The sky position is fixed, so the
start moves by s in every detector.  Detector i's segment then begins at the first sample at or
after its shifted start, j_i(s) = ceil((s - g_i) / dt) samples after the first sample of the
configured segment (g_i in [0, dt) is that sample's time after the configured start), and the
template starts t0_i = g_i + j_i dt - s in [0, dt) before it.  The n x n covariance of an
n-sample stretch of stationary noise does not depend on where it starts, so the predictor is
shared by all candidate segments; T^-1 d and ln L0 of every segment the window can reach are
precomputed (:class:`StartWindow`).  A point evaluates the polynomial u(z) of every candidate
(their coefficients are shared by all points of a batch) and picks its own by index, with
ln L0 (:func:`segment_log_l0`): the likelihood stays O(n K) per point and compiled.  ln L0 of
each candidate is the full normalized Gaussian density of that segment, so ln L(s) is the
likelihood of the data selected by s; :func:`log_noise_evidence` gives the matching noise-only
evidence.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, fields
from typing import NamedTuple

import gwtools.ringdown.precision  # noqa: F401  (float64 before JAX makes any array)

# isort: split
import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

# the segment cut for a start time must be the one conditioning.extract_segment cuts
from gwtools.io.strain import _INDEX_TOLERANCE
from gwtools.ringdown.constants import START_SHIFT
from gwtools.ringdown.model import AMPLITUDE_UNIT, RingdownModel, decay_rates, mode_mixing
from gwtools.ringdown.noise import ToeplitzNoise

__all__ = [
    "AnalysisData",
    "SegmentData",
    "StartWindow",
    "build_analysis_data",
    "check_analysis_inputs",
    "complex_projections",
    "complex_weights",
    "log_likelihood",
    "log_noise_evidence",
    "mode_noise_products",
    "polynomial_values",
    "projections",
    "rotate_antenna",
    "segment_log_l0",
    "start_steps",
    "static_key",
    "window_steps",
]



class SegmentData:
    """Base of the analysis-data pytrees: every dataclass field but ``detectors`` is a child (an
    array with the detectors on its first axis, a scalar ``log_l0`` summed over detectors, or a
    sub-tree such as :class:`StartWindow`); ``detectors`` (names) is static."""

    #: Candidate segments of a sampled start time; data without the field have a fixed start.
    start_window = None

    def tree_flatten(self):
        children = tuple(getattr(self, f.name) for f in fields(self) if f.name != "detectors")
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


class StartWindow(NamedTuple):
    """The candidate segments of a start time sampled within a window (a pytree of arrays).

    Candidate m of detector i is the n-sample segment whose first sample lies
    ``first_step[i] + m`` samples after the first sample of the configured segment.

    Attributes
    ----------
    bounds
        (2,) the window [lo, hi] of start shifts relative to the configured start, s (lo <= 0 <= hi).
    first_step
        (n_det,) integer step of candidate 0 (<= 0), from :func:`window_steps`.
    weighted_data
        (n_det, n_starts, n) T_i^-1 d of every candidate, AMPLITUDE_UNIT^-1.
    log_l0
        (n_det, n_starts) ln L at zero signal of every candidate, in strain units.
    """

    bounds: jax.Array
    first_step: jax.Array
    weighted_data: jax.Array
    log_l0: jax.Array


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class AnalysisData(SegmentData):
    """Precomputed, parameter-independent pieces of a ringdown likelihood.

    Every array has a fixed shape for given (n_det, n) and start window, so analyses of equal
    shape can be stacked leaf by leaf and vmapped over (e.g. the start times of a scan).

    Attributes
    ----------
    times
        (n_det, n) seconds since the analysis start in each detector (uniform grids, one dt).
    antenna
        (n_det, 2) antenna patterns (F_plus, F_cross) at polarization angle psi = 0.
    log_l0
        ln L at zero signal, in strain units (includes -1/2 ln det T and -n/2 ln 2 pi).
    predictor
        (n_det, n) Levinson predictor a of each detector's covariance (a[0] = 1).
    prediction_error
        (n_det,) its prediction error E, in units of AMPLITUDE_UNIT^2.
    weighted_data
        (n_det, n) T_i^-1 d_i with d in units of AMPLITUDE_UNIT (AMPLITUDE_UNIT^-1).
    start_window
        The candidate segments of a sampled start time (:class:`StartWindow`), or None for a
        fixed start.  The fields above always describe the configured start (shift 0).
    detectors
        Detector names, in the order of the arrays (static, not traced).
    """

    times: jax.Array
    antenna: jax.Array
    log_l0: jax.Array
    predictor: jax.Array
    prediction_error: jax.Array
    weighted_data: jax.Array
    start_window: StartWindow | None = None
    detectors: tuple[str, ...] = ()


def check_analysis_inputs(times, data, acfs, antenna, detectors=()):
    """Validate the inputs of an analysis and return them as float arrays.

    Parameters are as for :func:`build_analysis_data` (for a fixed start).

    Returns
    -------
    (times, data, acfs, antenna, detectors)
        numpy arrays of shapes (n_det, n), (n_det, n), (n_det, n), (n_det, 2), and a tuple of
        n_det names (``detector0``, ... when none are given).

    Raises
    ------
    ValueError
        On mismatched shapes, non-finite values, fewer than 2 samples, non-uniform or negative
        times.
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
    return times, data, acfs, antenna, detectors


def start_steps(start_shift, grid_offset, delta_t):
    """Where each detector's segment begins when the start moves by ``start_shift``.

    Parameters
    ----------
    start_shift
        s, the start relative to the configured start (scalar).
    grid_offset
        (n_det,) time of the configured segment's first sample after the configured start, s,
        in [0, delta_t).
    delta_t
        Sampling interval, s.

    Returns
    -------
    (steps, offsets)
        steps (n_det,): the first sample at or after the shifted start, counted in samples from
        the configured segment's first sample (integer-valued floats); offsets (n_det,): the
        time of that sample after the shifted start, s, in [0, delta_t) (the template's t0).
    """
    steps = jnp.ceil((start_shift - grid_offset) / delta_t - _INDEX_TOLERANCE)
    return steps, jnp.maximum(grid_offset + steps * delta_t - start_shift, 0.0)


def window_steps(grid_offset, delta_t, window) -> tuple[np.ndarray, int]:
    """The candidate segments a start window can reach: first step and their number.

    Parameters
    ----------
    grid_offset, delta_t
        As for :func:`start_steps`.
    window
        (lo, hi), s: start shifts relative to the configured start, lo <= 0 <= hi, lo < hi.

    Returns
    -------
    (first_step, n_starts)
        first_step (n_det,) int: the step of the earliest candidate (<= 0); n_starts: the number
        of candidates per detector, floor((hi - lo) / delta_t) + 2, which bounds the number of
        distinct steps in any detector and depends only on the window and the rate, so analyses
        of one configuration have arrays of equal shape.

    Raises
    ------
    ValueError
        If the window does not contain the configured start (0) or is empty.
    """
    lo, hi = (float(x) for x in window)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= 0.0 <= hi and lo < hi):
        raise ValueError(
            f"the start window [{lo}, {hi}] s must contain the configured start 0 and have lo < hi")
    first_step, _ = start_steps(lo, np.asarray(grid_offset, dtype=float), float(delta_t))
    return np.asarray(first_step).astype(int), int(np.floor((hi - lo) / delta_t)) + 2


def _window_segments(times, data, start_window):
    """Split window input into the configured segments and the stretches of all candidates."""
    times = np.atleast_2d(np.asarray(times, dtype=float))
    stretch = np.atleast_2d(np.asarray(data, dtype=float))
    n_det, n = times.shape
    if n < 2:
        raise ValueError(f"the analysis segment needs at least 2 samples, got {n}")
    first_step, n_starts = window_steps(times[:, 0], times[0, 1] - times[0, 0], start_window)
    if stretch.shape != (n_det, n + n_starts - 1):
        raise ValueError(
            f"with a start window of {n_starts} candidate segments the data must have shape "
            f"({n_det}, {n + n_starts - 1}) (the strain from the earliest candidate's first sample), "
            f"got {stretch.shape}"
        )
    if not np.all(np.isfinite(stretch)):
        raise ValueError("data contains NaN or inf: check the input strain and noise estimate")
    segments = np.stack([row[-k:n - k] for row, k in zip(stretch, first_step)])
    return segments, stretch, first_step, n_starts


def build_analysis_data(times, data, acfs, antenna, detectors=(), start_window=None) -> AnalysisData:
    """Precompute the noise predictors and the noise-weighted data once per analysis.

    Parameters
    ----------
    times
        (n_det, n) seconds since the (configured) analysis start in each detector (>= 0).
    data
        (n_det, n) strain (dimensionless) of the analysis segments.  With ``start_window``,
        (n_det, n + n_starts - 1): each detector's strain from the first sample of its earliest
        candidate segment (``first_step`` samples after the configured segment's first sample;
        :func:`window_steps` gives both numbers).
    acfs
        (n_det, n) noise autocovariance at lags 0 .. n-1, strain^2.
    antenna
        (n_det, 2) antenna patterns (F_plus, F_cross) at polarization angle 0.
    detectors
        Detector names for messages.
    start_window
        (lo, hi), s: precompute T^-1 d and ln L0 of every segment a start shifted by lo .. hi
        from the configured start can select (:class:`StartWindow`); None for a fixed start.

    Raises
    ------
    ValueError
        On mismatched shapes, non-finite input, a window that does not contain the configured
        start, or a covariance that is not numerically positive definite or is ill-conditioned
        (see :func:`gwtools.ringdown.noise.cholesky_factor`).
    """
    if start_window is None:
        segments = np.atleast_2d(np.asarray(data, dtype=float))
        stretch, first_step, n_starts = segments, np.zeros(len(segments), dtype=int), 1
    else:
        segments, stretch, first_step, n_starts = _window_segments(times, data, start_window)
    times, segments, acfs, antenna, detectors = check_analysis_inputs(
        times, segments, acfs, antenna, detectors)
    n_det, n = segments.shape
    predictor = np.empty((n_det, n))
    prediction_error = np.empty(n_det)
    weighted = np.empty((n_det, n_starts, n))
    log_l0 = np.empty((n_det, n_starts))
    for i, det in enumerate(detectors):
        noise = ToeplitzNoise.from_acf(acfs[i] / AMPLITUDE_UNIT**2, det)
        # one n-sample candidate per start: the covariance, hence the predictor, is shared
        scaled = np.lib.stride_tricks.sliding_window_view(stretch[i] / AMPLITUDE_UNIT, n)
        predictor[i], prediction_error[i] = noise.predictor, noise.prediction_error
        weighted[i] = noise.solve(scaled)
        log_det_cov = noise.log_det + 2.0 * n * np.log(AMPLITUDE_UNIT)
        log_l0[i] = (-0.5 * np.sum(scaled * weighted[i], axis=-1) - 0.5 * log_det_cov
                     - 0.5 * n * np.log(2 * np.pi))
    configured = -first_step  # candidate index of the configured start
    window = None
    if start_window is not None:
        window = StartWindow(bounds=jnp.asarray(start_window, dtype=float),
                             first_step=jnp.asarray(first_step), weighted_data=jnp.asarray(weighted),
                             log_l0=jnp.asarray(log_l0))
    return AnalysisData(
        times=jnp.asarray(times),
        antenna=jnp.asarray(antenna),
        log_l0=jnp.asarray(np.sum(log_l0[np.arange(n_det), configured])),
        predictor=jnp.asarray(predictor),
        prediction_error=jnp.asarray(prediction_error),
        weighted_data=jnp.asarray(weighted[np.arange(n_det), configured]),
        start_window=window,
        detectors=detectors,
    )


def _window_index(data: AnalysisData, start_shift):
    """Candidate index (n_det,) of each detector's segment for a start shift, and its t0 (n_det,)."""
    window = data.start_window
    steps, offsets = start_steps(start_shift, data.times[:, 0], data.times[0, 1] - data.times[0, 0])
    index = jnp.clip(steps.astype(jnp.int64) - window.first_step, 0, window.log_l0.shape[-1] - 1)
    return index, offsets


def segment_log_l0(data: AnalysisData, start_shift=0.0):
    """ln L at zero signal of the segments a start shifted by ``start_shift`` (s) selects.

    Without a start window this is ``data.log_l0`` (the shift is not used); with one, the sum of
    each detector's precomputed candidate, and -inf for a shift outside the window (no segment
    was prepared for it).
    """
    window = data.start_window
    if window is None:
        return data.log_l0
    index, _ = _window_index(data, start_shift)
    log_l0 = jnp.sum(jnp.take_along_axis(window.log_l0, index[:, None], axis=1))
    inside = (start_shift >= window.bounds[0]) & (start_shift <= window.bounds[1])
    return jnp.where(inside, log_l0, -jnp.inf)


def log_noise_evidence(data: AnalysisData) -> float:
    """ln Z of the noise-only hypothesis: ln L0, averaged over the start window if there is one.

    With a start time sampled uniformly in [lo, hi], the data analysed depend on the start, so
    the noise hypothesis that a ringdown evidence is compared with selects its data the same
    way: Z_noise = (hi - lo)^-1 int_lo^hi L0(s) ds.  L0(s) is piecewise constant (it changes
    where a detector's segment gains a sample), so the integral is an exact finite sum.  Then
    Z / Z_noise is the average of the fixed-start Bayes factors B(s) weighted by L0(s).
    """
    window = data.start_window
    if window is None:
        return float(data.log_l0)
    lo, hi = (float(x) for x in window.bounds)
    times = np.asarray(data.times)
    delta_t, grid_offset = times[0, 1] - times[0, 0], times[:, 0]
    # shifts at which some detector's segment changes: s = g_i + k dt
    k = np.arange(np.floor((lo - grid_offset.max()) / delta_t),
                  np.ceil((hi - grid_offset.min()) / delta_t) + 1)
    changes = (grid_offset[:, None] + k[None, :] * delta_t).ravel()
    edges = np.unique(np.concatenate([[lo, hi], changes[(changes > lo) & (changes < hi)]]))
    middles, widths = 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)
    steps, _ = start_steps(middles[:, None], grid_offset[None, :], delta_t)
    index = np.asarray(steps).astype(int) - np.asarray(window.first_step)[None, :]
    log_l0 = np.asarray(window.log_l0)
    values = np.sum(log_l0[np.arange(log_l0.shape[0])[None, :], index], axis=1)
    return float(logsumexp(values + np.log(widths)) - np.log(hi - lo))


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


_BLOCK = 32  # powers per block of the polynomial evaluation: z^(32 b + r)


def _powers(step, count: int):
    """exp(step j) for j = 0 .. count - 1, shape step.shape + (count,).

    One complex exponential per power, so each has a single rounding error whatever j.  Products
    of fewer exponentials (exp(step 2^bit) over the set bits of j) would be cheaper in operation
    count, but XLA fuses the exponentials into the products and evaluates them again for every
    power, which makes them several times slower on CPU.
    """
    return jnp.exp(step[..., None] * np.arange(count))


def polynomial_values(coefficients, rates, delta_t):
    """Real polynomials sum_j c_j z^j at the points z_k = exp(a_k delta_t).

    The powers are taken in blocks, z^(32 b + r) = z^(32 b) z^r: the sums over r are one real
    matrix product of the 32 powers z_k^r with the coefficients (which do not depend on the
    rates, so a vmapped batch shares them), the sums over b are O(n / 32) per polynomial and rate.

    Parameters
    ----------
    coefficients
        (..., n) real coefficients c_0 .. c_(n-1).
    rates
        (K,) complex rates a_k, 1/s (Re a_k < 0).
    delta_t
        Sampling interval, s.

    Returns
    -------
    Array (..., K) complex.
    """
    coefficients = jnp.asarray(coefficients)
    lead, n = coefficients.shape[:-1], coefficients.shape[-1]
    n_blocks = -(-n // _BLOCK)
    blocks = jnp.pad(coefficients, [(0, 0)] * len(lead) + [(0, n_blocks * _BLOCK - n)]).reshape(-1, _BLOCK)
    within = _powers(rates * delta_t, _BLOCK)  # (K, 32)
    across = _powers(rates * (delta_t * _BLOCK), n_blocks)  # (K, n_blocks)
    n_rates = rates.shape[0]
    # Powers on the left: under vmap this is one (batch 2K, 32) x (32, rows) product, no transposes.
    inner = jnp.concatenate([within.real, within.imag], axis=0) @ blocks.T  # (2K, rows * n_blocks)
    real, imag = inner[:n_rates].reshape(n_rates, -1, n_blocks), inner[n_rates:].reshape(n_rates, -1, n_blocks)
    # sums over b as elementwise products and reductions (as a dot, XLA runs one per point and rate)
    across_real, across_imag = across.real[:, None, :], across.imag[:, None, :]
    values = (jnp.sum(real * across_real - imag * across_imag, axis=-1)
              + 1j * jnp.sum(real * across_imag + imag * across_real, axis=-1))  # (K, rows)
    return values.T.reshape(lead + (n_rates,))


def mode_noise_products(data: AnalysisData, rates, start_shift=0.0):
    """Noise products of the complex exponentials x_k(t_j) = exp(a_k t_j) in every detector.

    Parameters
    ----------
    data
        Analysis data (grids t_j = t0_i + j dt, predictors, T^-1 d).
    rates
        (K,) complex rates a_k = -1/tau_k + 2 pi i f_k, 1/s.
    start_shift
        s, relative to the configured start; used only with a start window, where it selects
        each detector's segment and t0 (a fixed-start analysis has one segment).

    Returns
    -------
    (overlap, direct, mixed)
        overlap (n_det, K) = x_k^T T^-1 d, direct (n_det, K, K) = x_k^T T^-1 x_l and
        mixed (n_det, K, K) = x_k^T T^-1 conj(x_l), all complex, in AMPLITUDE_UNIT units.
    """
    delta_t = data.times[0, 1] - data.times[0, 0]
    if data.start_window is None:
        offsets, weighted = data.times[:, 0], data.weighted_data[:, None]
        index = jnp.zeros(data.n_detectors, dtype=int)
    else:
        # every candidate's polynomial, then the selected one: the coefficients stay the same for
        # all points of a batch (one shared matrix product), which is ~2x faster than gathering
        # each point's T^-1 d first although it evaluates n_starts data polynomials
        (index, offsets), weighted = _window_index(data, start_shift), data.start_window.weighted_data
    coefficients = jnp.concatenate([data.predictor[:, None], data.predictor[:, None, ::-1], weighted], axis=1)
    values = polynomial_values(coefficients, rates, delta_t)  # (n_det, 2 + n_starts, K)
    first = jnp.exp(offsets[:, None] * rates[None, :])  # c_k in each detector
    forward = first * values[:, 0]  # c_k p(z_k)
    backward = first * jnp.exp(rates * delta_t) * values[:, 1]  # c_k z_k p~(z_k)
    error = data.prediction_error[:, None, None]

    def kernel(other_forward, other_backward, other_rates):
        numerator = (forward[:, :, None] * other_forward[:, None, :]
                     - backward[:, :, None] * other_backward[:, None, :])
        return numerator / (error * -jnp.expm1(delta_t * (rates[:, None] + other_rates[None, :])))

    direct = kernel(forward, backward, rates)
    mixed = kernel(jnp.conj(forward), jnp.conj(backward), jnp.conj(rates))
    overlap = jnp.take_along_axis(values[:, 2:], index[:, None, None], axis=1)[:, 0]
    return first * overlap, direct, mixed


def complex_weights(model: RingdownModel, antenna, inclination, polarization):
    """Complex weights g of the quadrature pairs in every detector, and each pair's mode.

    Pair j holds the quadratures (B1, B2) = (B_2j, B_2j+1); its strain in detector i is
    Re[(B1 - i B2) g_ij x_k(j)] with x_k = exp(a_k t) the complex exponential of its mode
    k(j): one pair per mode in the kerr model (g = F+ Y+ - i Fx Yx), two in the free model
    (g = F+ and Fx).  Read from the real weights of :func:`~gwtools.ringdown.model.mode_mixing`,
    whose second row of a pair is (-Im g, Re g) of the first.

    Returns
    -------
    (g, pair_mode)
        g: (n_det, n_pairs) complex; pair_mode: (n_pairs,) numpy integer mode index.
    """
    weights = mode_mixing(model, rotate_antenna(antenna, polarization), inclination)
    n_pairs = model.n_quadratures // 2
    pair_mode = np.arange(n_pairs) // (n_pairs // len(model.modes))
    return weights[:, 0::2, 0] - 1j * weights[:, 0::2, 1], pair_mode


def complex_projections(model: RingdownModel, antenna, inclination, polarization, overlap, direct, mixed):
    """S and M of the quadratures from the complex noise products of the mode exponentials.

    With beta_j = B1_j - i B2_j and the weights g of :func:`complex_weights`, the data term is
    S . B = Re sum_j beta_j s_j, s_j = sum_i g_ij (x_k(j)^T T_i^-1 d_i), and

        B^T M B = 1/2 Re sum_jl [beta_j beta_l P_jl + beta_j conj(beta_l) Q_jl],
        P_jl = sum_i g_ij g_il x_k(j)^T T_i^-1 x_k(l),  Q_jl = sum_i g_ij conj(g_il) x_k(j)^T T_i^-1 conj(x_k(l)),

    so the 2 x 2 block of pairs (j, l) is [[Re(P + Q), Im(P - Q)], [Im(P + Q), Re(Q - P)]] / 2.
    Everything is an elementwise product over (detector, pair, pair): no matrix product with
    the mostly zero real mixing matrix.

    Parameters
    ----------
    antenna
        (n_det, 2) antenna patterns at psi = 0.
    overlap, direct, mixed
        As returned by :func:`mode_noise_products`.

    Returns
    -------
    (S, M) as in :func:`projections`.
    """
    g, pair_mode = complex_weights(model, antenna, inclination, polarization)
    data_term = jnp.sum(g * overlap[:, pair_mode], axis=0)
    outer = g[:, :, None] * g[:, None, :]
    p = jnp.sum(outer * direct[:, pair_mode][:, :, pair_mode], axis=0)
    q = jnp.sum(g[:, :, None] * jnp.conj(g)[:, None, :] * mixed[:, pair_mode][:, :, pair_mode], axis=0)
    n_pairs = pair_mode.size
    overlap_data = jnp.stack([data_term.real, data_term.imag], axis=-1).reshape(2 * n_pairs)
    blocks = jnp.stack([jnp.stack([p.real + q.real, p.imag - q.imag], axis=-1),
                        jnp.stack([p.imag + q.imag, q.real - p.real], axis=-1)], axis=1)  # (j, a, l, b)
    return overlap_data, 0.5 * blocks.reshape(2 * n_pairs, 2 * n_pairs)


def projections(model: RingdownModel, data: AnalysisData, final_mass, final_spin,
                inclination=0.0, polarization=0.0, start_shift=0.0):
    """Data projection S and normal matrix M of the quadratures at one parameter point.

    The noise products of the 2 n_modes damped cosines and sines cost O(n) each
    (:func:`mode_noise_products`); antenna patterns and inclination enter through the small
    mixing matrix.  ``start_shift`` (s) selects the segments of data with a start window.

    Returns
    -------
    (S, M)
        S: (n_quadratures,), M: (n_quadratures, n_quadratures), both for B in units of
        AMPLITUDE_UNIT.  vmap over the scalar arguments for batches.
    """
    rates = decay_rates(model, final_mass, final_spin)
    return complex_projections(model, data.antenna, inclination, polarization,
                               *mode_noise_products(data, rates, start_shift))


def log_likelihood(model: RingdownModel, data: AnalysisData, quadratures, final_mass, final_spin,
                   inclination=0.0, polarization=0.0, start_shift=0.0):
    """Exact Gaussian log likelihood ln L(theta, B) = ln L0 + S . B - 1/2 B^T M B at one point.

    Parameters
    ----------
    quadratures
        B, shape (n_quadratures,), in units of AMPLITUDE_UNIT, ordered as
        :attr:`RingdownModel.quadrature_names`.
    final_mass, final_spin, inclination, polarization
        Scalars (Msun, dimensionless, rad, rad).
    start_shift
        s, relative to the configured start: selects the segments of data with a start window.
    """
    overlap_data, normal = projections(model, data, final_mass, final_spin, inclination, polarization,
                                       start_shift)
    b = jnp.asarray(quadratures)
    return segment_log_l0(data, start_shift) + overlap_data @ b - 0.5 * b @ normal @ b


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
        if self.data.start_window is None and (START_SHIFT in self.parameters or START_SHIFT in self.fixed):
            raise ValueError(
                f"{START_SHIFT} needs analysis data prepared for a start window "
                "(build_analysis_data(..., start_window=(lo, hi)); [analysis] start_window_ms in a "
                "configuration)"
            )

    def known_parameters(self) -> tuple[str, ...]:
        return NONLINEAR_PARAMETERS + (START_SHIFT,)

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

    def start_shift(self, row):
        """The start shift of one row, s (0, the configured start, unless sampled or fixed)."""
        return self.value(row, START_SHIFT)

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


def static_key(likelihood) -> str:
    """sha256 of everything a likelihood's ``_point`` may read besides its data argument.

    Two likelihood objects of one class with equal attributes (model, parameters, fixed values,
    quadrature prior, ...) trace to the same programs, so compiled functions that take the data
    as an argument can serve both (the analyses of a start-time scan share one compilation).
    """
    digest = hashlib.sha256(type(likelihood).__qualname__.encode() + b";")
    for name, value in sorted(vars(likelihood).items()):
        if name in ("data", "_compiled", "n_failed"):
            continue
        array = isinstance(value, (np.ndarray, jax.Array))
        text = np.ascontiguousarray(np.asarray(value)).tobytes() if array else repr(value).encode()
        digest.update(f"{name}=".encode() + text + b";")
    return digest.hexdigest()
