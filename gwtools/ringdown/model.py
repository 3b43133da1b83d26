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

    with Y_plus/cross = -2Y_lm(iota, 0) +/- (-1)^l -2Y_l-m(iota, 0), spin-weighted **spherical**
    harmonics standing in for the spheroidal ones (their mixing is below 1e-2 for the modes used
    here at chi < 0.9; documented approximation, as in e.g. Isi et al. 2019).  For 220 this gives the
    familiar (1 + cos^2 iota) and 2 cos iota.  The inclination iota enters the template, so it is a
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

import jax.numpy as jnp

from gwtools.ringdown.harmonics import spin_weighted_spherical_harmonic
from gwtools.ringdown.qnm import Mode, frequency_damping_time, parse_modes

__all__ = [
    "AMPLITUDE_UNIT",
    "POLARIZATION_MODELS",
    "RingdownModel",
    "mode_harmonic_factors",
    "polarization_basis",
    "design_matrix",
]

AMPLITUDE_UNIT = 1e-21
"""Strain unit of the quadratures B and amplitudes A."""

POLARIZATION_MODELS = ("kerr", "free")


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


def polarization_basis(model: RingdownModel, final_mass, final_spin, times, inclination=0.0):
    """Plus and cross basis waveforms of every quadrature, for one point of parameter space.

    Parameters
    ----------
    model
        Mode content and polarization model.
    final_mass
        Detector-frame remnant mass, solar masses (scalar).
    final_spin
        Dimensionless remnant spin chi in [0, 0.99] (scalar).
    times
        Times since the analysis start, s; shape (..., n_times).  Negative times give zero.
    inclination
        rad (scalar); ignored by the ``"free"`` model.

    Returns
    -------
    (h_plus, h_cross)
        Arrays of shape (..., n_quadratures, n_times): the polarizations produced by a unit value
        of each quadrature (in units of :data:`AMPLITUDE_UNIT`).
    """
    freq, tau = frequency_damping_time(model.modes, final_mass, final_spin)  # (n_modes,)
    t = jnp.asarray(times)[..., None, :]  # (..., 1, n_times)
    started = t >= 0.0
    t_pos = jnp.where(started, t, 0.0)
    envelope = jnp.where(started, jnp.exp(-t_pos / tau[:, None]), 0.0)  # (..., n_modes, n_times)
    phase = 2.0 * jnp.pi * freq[:, None] * t_pos
    cos_part = envelope * jnp.cos(phase)
    sin_part = envelope * jnp.sin(phase)
    zeros = jnp.zeros_like(cos_part)
    if model.polarization == "kerr":
        factors = [mode_harmonic_factors(mode, inclination) for mode in model.modes]
        y_plus = jnp.stack([f[0] for f in factors])[:, None]
        y_cross = jnp.stack([f[1] for f in factors])[:, None]
        # h+ = Y+ e (B1 cos + B2 sin);  hx = Yx e (B1 sin - B2 cos)   [from A cos/sin(2 pi f t - phi)]
        plus = jnp.stack([y_plus * cos_part, y_plus * sin_part], axis=-2)
        cross = jnp.stack([y_cross * sin_part, -y_cross * cos_part], axis=-2)
    else:
        plus = jnp.stack([cos_part, sin_part, zeros, zeros], axis=-2)
        cross = jnp.stack([zeros, zeros, cos_part, sin_part], axis=-2)
    # (..., n_modes, q_per_mode, n_times) -> (..., n_quadratures, n_times), mode-major order
    shape = plus.shape[:-3] + (model.n_quadratures, plus.shape[-1])
    return plus.reshape(shape), cross.reshape(shape)


def design_matrix(model: RingdownModel, final_mass, final_spin, times, antenna, inclination=0.0):
    """Detector-frame basis waveforms g_a(t) of every quadrature, for one parameter point.

    Parameters
    ----------
    model, final_mass, final_spin, inclination
        As in :func:`polarization_basis` (scalars; vmap for batches).
    times
        Times since the analysis start in each detector, s; shape (n_det, n_times).
    antenna
        Antenna patterns (F_plus, F_cross) per detector; shape (n_det, 2).

    Returns
    -------
    Array of shape (n_det, n_quadratures, n_times), in units of :data:`AMPLITUDE_UNIT`: the strain
    template in detector i is ``B @ G[i]``.
    """
    h_plus, h_cross = polarization_basis(model, final_mass, final_spin, times, inclination)
    antenna = jnp.asarray(antenna)
    return antenna[:, 0, None, None] * h_plus + antenna[:, 1, None, None] * h_cross
