"""Ringdown templates as linear combinations of damped-sinusoid basis waveforms.

A ringdown is a sum of quasinormal modes (QNMs).  Writing each mode's amplitude A and phase phi
as two quadratures, B1 = A cos(phi) and B2 = A sin(phi), makes the detector response *linear* in
the quadrature vector B:

    h_det(t) = sum_a B_a g_a(t; final_mass, final_spin, inclination, F_plus, F_cross),

with the basis waveforms g_a collected in the **design matrix**.  Both the exact likelihood and
the analytic FIREFLY marginalization (arXiv:2502.01093) are built on it.

Amplitude models
----------------
``"kerr"`` (2 quadratures per mode)
    Each (l, m, n) mode with m >= 0 and its mirror mode (l, -m, n), related by the reflection
    symmetry of a non-precessing remnant, radiate as

        h_plus  = A e^{-t/tau} Y_plus(iota)  cos(2 pi f t - phi)
        h_cross = A e^{-t/tau} Y_cross(iota) sin(2 pi f t - phi)

    with Y_plus/cross = -2Y_lm(iota, 0) +/- (-1)^l -2Y_l-m(iota, 0): spin-weighted **spherical**
    harmonics stand in for the spheroidal ones (the spherical-spheroidal mixing, which the
    ``qnm`` package tabulates, is neglected).  For 220 this gives the familiar (1 + cos^2 iota)
    and 2 cos iota.  The inclination iota enters the template, so it is a
    nonlinear parameter (fixed or sampled).
``"free"`` (4 quadratures per mode)
    Independent plus and cross damped sinusoids per mode,
    h_plus = e^{-t/tau}(B1 cos + B2 sin), h_cross = e^{-t/tau}(B3 cos + B4 sin); no inclination.

Units: times in seconds since the analysis start in each detector; frequencies in Hz; the
quadratures are in units of :data:`AMPLITUDE_UNIT` (strain 1e-21), which keeps the quadrature
normal matrix of order unity for LIGO data.
"""

from __future__ import annotations

from dataclasses import dataclass

import gwtools.ringdown.precision  # noqa: F401  (float64 before JAX makes any array)

# isort: split
import jax.numpy as jnp
import numpy as np

from gwtools.ringdown.constants import POLARIZATION_MODELS
from gwtools.ringdown.harmonics import spin_weighted_spherical_harmonic
from gwtools.ringdown.modes import Mode, parse_modes
from gwtools.ringdown.qnm import frequency_damping_time

__all__ = [
    "AMPLITUDE_UNIT",
    "RingdownModel",
    "decay_rates",
    "design_matrix",
    "mixing_matrix",
    "mode_mixing",
    "mode_harmonic_factors",
    "mode_waveforms",
    "mode_waveforms_uniform",
]

AMPLITUDE_UNIT = 1e-21
"""Strain unit of the quadratures B and amplitudes A."""


@dataclass(frozen=True)
class RingdownModel:
    """Which QNMs the template contains and how their polarizations are parameterized.

    Parameters
    ----------
    modes
        Mode specifications, e.g. ``("220", "221")`` or :class:`Mode` objects.  Modes must have
        m >= 0 in the ``"kerr"`` model (the mirror mode is included automatically).
    polarization
        ``"kerr"`` (2 quadratures per mode) or ``"free"`` (4 quadratures per mode).
    """

    modes: tuple[Mode, ...]
    polarization: str = "kerr"

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes", parse_modes(self.modes))
        if self.polarization not in POLARIZATION_MODELS:
            raise ValueError(
                f"unknown polarization model {self.polarization!r}: choose one of {POLARIZATION_MODELS}"
            )
        if self.polarization == "kerr" and any(mode.m < 0 for mode in self.modes):
            raise ValueError(
                "the 'kerr' polarization model takes modes with m >= 0 (each includes its mirror "
                f"mode); got {[str(m) for m in self.modes]}"
            )

    @property
    def quadratures_per_mode(self) -> int:
        return 2 if self.polarization == "kerr" else 4

    @property
    def n_quadratures(self) -> int:
        return self.quadratures_per_mode * len(self.modes)

    @property
    def needs_inclination(self) -> bool:
        return self.polarization == "kerr"

    @property
    def amplitude_labels(self) -> tuple[str, ...]:
        """One label per (amplitude, phase) pair: ``"220"`` (kerr) or ``"220_plus"``, ``"220_cross"``."""
        if self.polarization == "kerr":
            return tuple(str(mode) for mode in self.modes)
        return tuple(f"{mode}_{pol}" for mode in self.modes for pol in ("plus", "cross"))

    @property
    def quadrature_names(self) -> tuple[str, ...]:
        """Names of the entries of B in order: ``B1_220, B2_220, ...``."""
        return tuple(f"B{i}_{label}" for label in self.amplitude_labels for i in (1, 2))


def mode_harmonic_factors(mode: Mode, inclination):
    """Plus and cross inclination factors (Y_plus, Y_cross) of a mode and its mirror.

    Parameters
    ----------
    mode
        QNM with m >= 0.
    inclination
        Angle between the remnant spin and the line of sight, rad; any shape.

    Returns
    -------
    (Y_plus, Y_cross)
        Real arrays of the shape of ``inclination``.
    """
    y_lm = jnp.real(spin_weighted_spherical_harmonic(-2, mode.l, mode.m, inclination, 0.0))
    y_lmm = jnp.real(spin_weighted_spherical_harmonic(-2, mode.l, -mode.m, inclination, 0.0))
    sign = (-1.0) ** mode.l
    return y_lm + sign * y_lmm, y_lm - sign * y_lmm


def decay_rates(model: RingdownModel, final_mass, final_spin):
    """Complex rates a_k = -1/tau_k + 2 pi i f_k (1/s), shape (n_modes,): modes go as e^{a_k t}."""
    freq, tau = frequency_damping_time(model.modes, final_mass, final_spin)
    return -1.0 / tau + 2j * jnp.pi * freq


def _waveforms_from_exponentials(exponentials):
    """(..., n_modes, n) complex e^{a t} -> (..., 2 n_modes, n) real: e^{-t/tau}cos, e^{-t/tau}sin per mode."""
    stacked = jnp.stack([jnp.real(exponentials), jnp.imag(exponentials)], axis=-2)
    return stacked.reshape(stacked.shape[:-3] + (2 * stacked.shape[-3], stacked.shape[-1]))


def mode_waveforms(model: RingdownModel, final_mass, final_spin, times):
    """Damped cosine and sine of every mode, before projection onto the polarizations.

    Parameters
    ----------
    model
        Mode content.
    final_mass, final_spin
        Detector-frame remnant mass (Msun) and dimensionless spin (scalars; vmap for batches).
    times
        Seconds since the analysis start, shape (..., n); the waveforms vanish before 0.

    Returns
    -------
    Array (..., 2 n_modes, n): rows e^{-t/tau_k} cos(2 pi f_k t), e^{-t/tau_k} sin(2 pi f_k t), k = 0, 1, ...
    """
    rates = decay_rates(model, final_mass, final_spin)
    t = jnp.asarray(times)[..., None, :]
    started = t >= 0.0
    exponentials = jnp.where(started, jnp.exp(rates[:, None] * jnp.where(started, t, 0.0)), 0.0)
    return _waveforms_from_exponentials(exponentials)


_POWER_BLOCK = 32


def mode_waveforms_uniform(model: RingdownModel, final_mass, final_spin, start, delta_t, n: int):
    """:func:`mode_waveforms` on uniform grids t_j = start_d + j delta_t (start_d >= 0), fast.

    e^{a t_j} = e^{a start} w^j with w = e^{a delta_t}; the powers w^j come from two short
    cumulative products (j = 32 p + r), one complex multiply per sample instead of three
    transcendental functions (relative error ~1e-14).

    Parameters
    ----------
    start
        (n_det,) time of the first sample since the analysis start in each detector, s (>= 0).
    delta_t
        Sampling interval, s.
    n
        Samples per detector (static).

    Returns
    -------
    Array (n_det, 2 n_modes, n).
    """
    rates = decay_rates(model, final_mass, final_spin)  # (K,)
    step = jnp.exp(rates * delta_t)
    n_blocks = -(-n // _POWER_BLOCK)
    ones = jnp.ones((1,) + rates.shape, dtype=step.dtype)
    within = jnp.concatenate([ones, jnp.cumprod(jnp.broadcast_to(step, (_POWER_BLOCK - 1,) + rates.shape), axis=0)])
    block_step = within[-1] * step
    across = jnp.concatenate(
        [ones, jnp.cumprod(jnp.broadcast_to(block_step, (n_blocks - 1,) + rates.shape), axis=0)])
    powers = (across[:, None, :] * within[None, :, :]).reshape(-1, rates.shape[0])[:n]  # (n, K)
    first = jnp.exp(rates[None, :] * jnp.asarray(start)[:, None])  # (n_det, K)
    return _waveforms_from_exponentials(first[:, :, None] * powers.T[None, :, :])


def mode_mixing(model: RingdownModel, antenna, inclination=0.0):
    """Weights of every quadrature's detector basis waveform on its own mode's damped cosine and sine.

    Quadrature q belongs to mode ``q // model.quadratures_per_mode``; its basis waveform in
    detector i is ``w[i, q, 0] e^{-t/tau} cos(2 pi f t) + w[i, q, 1] e^{-t/tau} sin(2 pi f t)`` of
    that mode, and it has no weight on the other modes.

    Parameters
    ----------
    model
        Mode content and polarization model.
    antenna
        (n_det, 2) antenna patterns (F_plus, F_cross) at the source's polarization angle.
    inclination
        rad (scalar); ignored by the ``"free"`` model.

    Returns
    -------
    Array (n_det, n_quadratures, 2).
    """
    antenna = jnp.asarray(antenna)
    f_plus, f_cross = antenna[:, 0], antenna[:, 1]
    zero = jnp.zeros_like(f_plus)
    rows = []
    for mode in model.modes:
        if model.polarization == "kerr":
            # h+ = Y+ (B1 cos + B2 sin), hx = Yx (B1 sin - B2 cos)   [A cos/sin(2 pi f t - phi)]
            y_plus, y_cross = mode_harmonic_factors(mode, inclination)
            rows += [(f_plus * y_plus, f_cross * y_cross), (-f_cross * y_cross, f_plus * y_plus)]
        else:
            # h+ = B1 cos + B2 sin, hx = B3 cos + B4 sin
            rows += [(f_plus, zero), (zero, f_plus), (f_cross, zero), (zero, f_cross)]
    return jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=1)


def mixing_matrix(model: RingdownModel, antenna, inclination=0.0):
    """Linear map from the mode waveforms to the detector basis of every quadrature.

    The dense form of :func:`mode_mixing` (same arguments).

    Returns
    -------
    Array (n_det, n_quadratures, 2 n_modes): the detector basis is ``mixing @ mode_waveforms``.
    """
    weights = mode_mixing(model, antenna, inclination)
    n_modes, per_mode = len(model.modes), model.quadratures_per_mode
    own_mode = np.repeat(np.eye(n_modes), per_mode, axis=0)  # (n_quadratures, n_modes)
    dense = weights[:, :, None, :] * own_mode[None, :, :, None]
    return dense.reshape(weights.shape[:2] + (2 * n_modes,))


def design_matrix(model: RingdownModel, final_mass, final_spin, times, antenna, inclination=0.0):
    """Detector-frame basis waveforms g_a(t) of every quadrature, for one parameter point.

    Parameters
    ----------
    model, final_mass, final_spin
        As in :func:`mode_waveforms` (scalars; vmap for batches).
    times
        Times since the analysis start in each detector, s; shape (n_det, n_times).
    antenna
        Antenna patterns (F_plus, F_cross) per detector at the source's polarization angle;
        shape (n_det, 2).
    inclination
        rad (scalar); ignored by the ``"free"`` model.

    Returns
    -------
    Array of shape (n_det, n_quadratures, n_times), in units of :data:`AMPLITUDE_UNIT`: the strain
    template in detector i is ``B @ G[i]``.
    """
    waveforms = mode_waveforms(model, final_mass, final_spin, times)
    return jnp.einsum("dqk,dkn->dqn", mixing_matrix(model, antenna, inclination), waveforms)
