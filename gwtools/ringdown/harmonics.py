"""Spin-weighted spherical harmonics, in LAL's convention.

Closed form through Wigner's small d-matrix (Goldberg et al. 1967, J. Math. Phys. 8, 2155):

.. math::

    {}_sY_{lm}(\\theta, \\phi) = (-1)^s \\sqrt{\\frac{2l + 1}{4 \\pi}}\\,
        d^{\\,l}_{m, -s}(\\theta)\\, e^{i m \\phi},

    d^{\\,l}_{m' m}(\\theta) = \\sum_k (-1)^{k - m + m'}
        \\frac{\\sqrt{(l+m)!\\,(l-m)!\\,(l+m')!\\,(l-m')!}}{(l+m-k)!\\,k!\\,(l-k-m')!\\,(k-m+m')!}
        \\cos^{2l+m-m'-2k}(\\theta/2)\\,\\sin^{2k-m+m'}(\\theta/2),

with the sum over every ``k`` that keeps the factorials' arguments non-negative (Wigner's formula,
e.g. Sakurai, *Modern Quantum Mechanics*, eq. 3.8.33).  This reproduces LAL's
``XLALSpinWeightedSphericalHarmonic`` (e.g. :math:`{}_{-2}Y_{22} = \\sqrt{5/64\\pi}\\,
(1 + \\cos\\theta)^2 e^{2 i \\phi}`, :math:`{}_{-2}Y_{33} = -\\sqrt{21/2\\pi}\\,
\\cos^5(\\theta/2) \\sin(\\theta/2) e^{3 i \\phi}`) and, for ``s = 0``, the ordinary
:math:`Y_{lm}` with the Condon-Shortley phase.  ``theta`` is the polar angle of the emission
direction in the remnant's frame (the inclination for the observer) and ``phi`` its azimuth.

Every term has non-negative integer powers of ``cos(theta/2)`` and ``sin(theta/2)``, so the
poles ``theta = 0, pi`` need no special treatment and the function is smooth for ``jax.grad``.
"""

from __future__ import annotations

import math

import gwtools.ringdown.precision  # noqa: F401  (float64 before JAX makes any array)

# isort: split
import jax
import jax.numpy as jnp

__all__ = ["spin_weighted_spherical_harmonic", "wigner_small_d"]


def _check_indices(l: int, m: int, name: str, value: int) -> None:
    """Raise ValueError unless l, m and the second index are integers with |index| <= l."""
    for label, index in (("l", l), ("m", m), (name, value)):
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(f"{label}={index!r} must be a Python int (a static index)")
    if l < 0 or abs(m) > l or abs(value) > l:
        raise ValueError(
            f"need l >= 0, |m| <= l and |{name}| <= l; got l={l}, m={m}, {name}={value}"
        )


def wigner_small_d(l: int, m_prime: int, m: int, theta) -> jax.Array:
    """Wigner's small d-matrix element ``d^l_{m' m}(theta)`` for integer ``l``.

    Parameters
    ----------
    l : int
        Degree, ``l >= 0``.
    m_prime, m : int
        Row and column indices, ``|m_prime|, |m| <= l``.
    theta : array_like, shape (...)
        Rotation angle in radians.

    Returns
    -------
    jax array, float64, shape (...)

    Raises
    ------
    ValueError
        If an index is not an int or is out of range.
    """
    _check_indices(l, m, "m_prime", m_prime)
    half = 0.5 * jnp.asarray(theta, dtype=jnp.float64)
    cos_half, sin_half = jnp.cos(half), jnp.sin(half)
    norm = math.sqrt(
        math.factorial(l + m)
        * math.factorial(l - m)
        * math.factorial(l + m_prime)
        * math.factorial(l - m_prime)
    )
    total = jnp.zeros_like(half)
    for k in range(max(0, m - m_prime), min(l + m, l - m_prime) + 1):
        weight = (-1) ** (k - m + m_prime) * norm / (
            math.factorial(l + m - k)
            * math.factorial(k)
            * math.factorial(l - k - m_prime)
            * math.factorial(k - m + m_prime)
        )
        total = total + weight * cos_half ** (2 * l + m - m_prime - 2 * k) * sin_half ** (
            2 * k - m + m_prime
        )
    return total


def spin_weighted_spherical_harmonic(s: int, l: int, m: int, theta, phi=0.0) -> jax.Array:
    """Spin-weighted spherical harmonic ``{}_sY_{lm}(theta, phi)`` (LAL convention).

    Parameters
    ----------
    s : int
        Spin weight (``-2`` for gravitational-wave strain ``h = h_+ - i h_x``).
    l : int
        Degree, ``l >= |s|``.
    m : int
        Order, ``|m| <= l``.
    theta : array_like, shape (...)
        Polar angle in radians.
    phi : array_like, shape (...), optional
        Azimuthal angle in radians; broadcast against ``theta``.

    Returns
    -------
    jax array, complex128, broadcast shape of ``theta`` and ``phi``
        Jit-, vmap- and grad-compatible in the angles (the indices are static).

    Raises
    ------
    ValueError
        If an index is not an int, ``l < |s|`` or ``|m| > l``.
    """
    _check_indices(l, m, "s", s)
    theta, phi = jnp.broadcast_arrays(
        jnp.asarray(theta, dtype=jnp.float64), jnp.asarray(phi, dtype=jnp.float64)
    )
    norm = (-1) ** s * math.sqrt((2 * l + 1) / (4.0 * math.pi))
    amplitude = norm * wigner_small_d(l, m, -s, theta)
    return amplitude * jnp.exp(1j * m * phi)
