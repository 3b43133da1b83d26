"""Kerr quasinormal-mode (QNM) frequencies of gravitational perturbations (spin weight -2).

The complex frequencies come from a shipped table, ``kerr_qnm_table.npz``, of Chebyshev
coefficients fitted offline to the solutions of the ``qnm`` package (Stein 2019, JOSS 4, 1683,
which implements Leaver's continued-fraction method, Leaver 1985, Proc. R. Soc. A 402, 285,
with the Cook & Zalutskiy 2014 spectral angular solver).  The table is rebuilt by
``python -m gwtools.ringdown.qnm_table``; its relative error in frequency and damping time is
below 1e-8 over the whole spin range (:data:`gwtools.ringdown.qnm_table.MAX_RELATIVE_ERROR`;
each mode's largest error at the validation spins is recorded in the file itself).

Conventions
-----------
* Time dependence :math:`e^{-i \\omega t}` with :math:`\\omega = 2 \\pi f - i / \\tau`, so a
  decaying mode has ``Im(omega) < 0`` and ``tau > 0``.
* :func:`kerr_omega` returns the dimensionless :math:`M \\omega` (``M`` the remnant mass in
  geometric units); :func:`frequency_damping_time` returns ``f`` in Hz and ``tau`` in s.
* For ``m >= 0`` the mode is the prograde (co-rotating) branch, the one that is continuously
  connected to the Schwarzschild mode with ``f > 0``; for ``m > 0`` its frequency grows with
  spin towards ``m / 2`` (in units of ``1/M``) as ``chi -> 1``.  For ``m = 0`` both branches are
  mirror images and the one with ``f > 0`` is returned.
* For ``m < 0`` the mirror image of the prograde ``(l, |m|, n)`` mode is returned,
  :math:`\\omega_{l,-m,n} = -\\omega^*_{l,m,n}`: same damping time, ``f < 0``.  This is the
  partner that the ``(l, |m|, n)`` prograde mode brings into the ``-m`` harmonic (the mirror
  modes of, e.g., Berti, Cardoso & Will 2006, PRD 73, 064030, Sec. II).  Retrograde
  (counter-rotating) branches are not provided.
* Spins are dimensionless, ``0 <= chi <= CHI_MAX = 0.99``.  Jitted code cannot raise, so
  outside that range (or for a non-positive mass) the results are NaN; a run's prior ranges
  are checked against it when its configuration is read.
* Modes are labelled by :class:`~gwtools.ringdown.modes.Mode` (``"220"``, ``"2,-2,0"``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import gwtools.ringdown.precision  # noqa: F401  (float64 before JAX makes any array)

# isort: split
import jax
import jax.numpy as jnp
import numpy as np

from gwtools.ringdown.constants import CHI_MAX, MTSUN_S
from gwtools.ringdown.modes import Mode, parse_modes, read_table, tabulated_modes

__all__ = [
    "frequency_damping_time",
    "kerr_omega",
    "spin_to_chebyshev_variable",
]

logger = logging.getLogger(__name__)


def spin_to_chebyshev_variable(final_spin):
    """Map the spin onto the table's Chebyshev variable ``x`` in ``[-1, 1]``.

    ``x`` is affine in ``sqrt(1 - chi)``: the QNM frequencies have a square-root branch point
    at ``chi = 1`` (e.g. Yang et al. 2013, PRD 87, 041502), which this puts outside the
    interval, so that the Chebyshev series converges geometrically up to ``CHI_MAX``.

    Parameters
    ----------
    final_spin : array_like, shape (...)
        Dimensionless spin ``chi``; meaningful for ``0 <= chi <= CHI_MAX``.

    Returns
    -------
    array, shape (...)
        ``x = 1`` at ``chi = 0`` and ``x = -1`` at ``chi = CHI_MAX``.  NumPy in, NumPy out;
        JAX in, JAX out.
    """
    xp = jnp if isinstance(final_spin, jax.Array) else np
    u_min = math.sqrt(1.0 - CHI_MAX)
    return 2.0 * (xp.sqrt(1.0 - final_spin) - u_min) / (1.0 - u_min) - 1.0


def _coefficients(modes: Sequence[Mode]) -> tuple[np.ndarray, np.ndarray]:
    """Chebyshev coefficients, shape (len(modes), D), and a mask of the mirrored (m < 0) modes."""
    index, coefficients = read_table()
    rows = []
    for mode in modes:
        key = (mode.l, abs(mode.m), mode.n)
        if key not in index:
            available = ", ".join(str(m) for m in tabulated_modes())
            raise ValueError(
                f"mode {mode} is not in the QNM table (available, with their m < 0 mirrors: "
                f"{available}); add it to gwtools.ringdown.qnm_table and rebuild"
            )
        rows.append(index[key])
    selected = coefficients[rows]
    # Drop the zero padding that only other modes need: it would lengthen the Clenshaw scan.
    n_terms = int(np.flatnonzero(np.any(selected != 0.0, axis=0))[-1]) + 1
    return selected[:, :n_terms], np.array([mode.m < 0 for mode in modes])


def _clenshaw(coefficients: jax.Array, x: jax.Array) -> jax.Array:
    """Sum Chebyshev series for several modes at once.

    Parameters
    ----------
    coefficients : complex array, shape (K, D)
        Coefficients of ``T_0 ... T_{D-1}`` for each of ``K`` series.
    x : real array, shape (...)
        Points in ``[-1, 1]``.

    Returns
    -------
    complex array, shape (..., K)
    """
    x = x[..., None]

    def step(carry, c_k):
        b_next, b_next2 = carry
        return (c_k + 2.0 * x * b_next - b_next2, b_next), None

    zeros = jnp.zeros(x.shape[:-1] + coefficients.shape[:1], dtype=coefficients.dtype)
    (b_1, b_2), _ = jax.lax.scan(step, (zeros, zeros), coefficients[:, :0:-1].T)
    return coefficients[:, 0] + x * b_1 - b_2


# The numerics are jitted as a whole: called eagerly, the dozens of small operations would
# each be compiled separately, which takes seconds; nested in a caller's jit it is inlined.
@jax.jit
def _omega_from_table(coefficients, mirrored, final_spin) -> jax.Array:
    """``M omega``, shape ``final_spin.shape + (K,)``, from coefficients (K, D); NaN off-range."""
    final_spin = jnp.asarray(final_spin, dtype=jnp.float64)
    valid = (final_spin >= 0.0) & (final_spin <= CHI_MAX)
    # Evaluate at a harmless spin where invalid, so no NaN reaches the gradient of valid points.
    safe_spin = jnp.where(valid, final_spin, 0.5 * CHI_MAX)
    omega = _clenshaw(coefficients, spin_to_chebyshev_variable(safe_spin))
    omega = jnp.where(mirrored, -jnp.conj(omega), omega)
    return jnp.where(valid[..., None], omega, jnp.nan + 1j * jnp.nan)


@jax.jit
def _frequency_damping_time_from_table(coefficients, mirrored, final_mass, final_spin):
    """``(f_hz, tau_s)``, each of shape ``broadcast(final_mass, final_spin).shape + (K,)``."""
    final_mass, final_spin = jnp.broadcast_arrays(
        jnp.asarray(final_mass, dtype=jnp.float64), jnp.asarray(final_spin, dtype=jnp.float64)
    )
    omega = _omega_from_table(coefficients, mirrored, final_spin)
    mass_s = jnp.where(final_mass > 0.0, final_mass, jnp.nan)[..., None] * MTSUN_S
    return omega.real / (2.0 * jnp.pi * mass_s), -mass_s / omega.imag


def kerr_omega(mode: Mode | str | Sequence[int], final_spin) -> jax.Array:
    """Dimensionless complex QNM frequency ``M omega`` of a Kerr black hole.

    Parameters
    ----------
    mode : Mode or mode spec
        Must be in the table (:func:`tabulated_modes`), or the mirror of one (``m < 0``).
    final_spin : array_like, shape (...)
        Dimensionless remnant spin ``chi`` in ``[0, CHI_MAX]``.

    Returns
    -------
    complex jax array, shape (...)
        ``M omega = 2 pi f M - i M / tau`` (``M`` in seconds); NaN where ``chi`` is out of range.
        Jit-, vmap- and grad-compatible in ``final_spin`` (``mode`` is static).

    Raises
    ------
    ValueError
        If the mode is malformed or not tabulated (raised while tracing, never at run time).
    """
    return _omega_from_table(*_coefficients((Mode.parse(mode),)), final_spin)[..., 0]


def frequency_damping_time(modes, final_mass, final_spin) -> tuple[jax.Array, jax.Array]:
    """Frequencies and damping times of Kerr QNMs for a remnant of given mass and spin.

    Parameters
    ----------
    modes : str, Mode or sequence of mode specs
        Anything :func:`parse_modes` accepts; static under ``jax.jit``.
    final_mass : array_like, shape (...)
        Detector-frame remnant mass in solar masses, ``> 0``.
    final_spin : array_like, shape (...)
        Dimensionless remnant spin in ``[0, CHI_MAX]``; broadcast against ``final_mass``.

    Returns
    -------
    f_hz : jax array, shape (..., len(modes))
        Frequencies ``Re(omega) / (2 pi)`` in Hz (negative for the ``m < 0`` mirror modes).
    tau_s : jax array, shape (..., len(modes))
        Damping times ``-1 / Im(omega)`` in seconds.

    Notes
    -----
    Both outputs are NaN where the spin is outside ``[0, CHI_MAX]`` or the mass is not positive
    (jitted code cannot raise).
    """
    coefficients, mirrored = _coefficients(parse_modes(modes))
    return _frequency_damping_time_from_table(coefficients, mirrored, final_mass, final_spin)
