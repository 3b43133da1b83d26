"""Spin-weighted spherical harmonics against closed forms, scipy and quadrature."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import roots_legendre, sph_harm_y

from gwtools.ringdown.harmonics import spin_weighted_spherical_harmonic, wigner_small_d

THETA = np.linspace(0.0, np.pi, 13)
PHI = np.linspace(-1.0, 5.0, 13)


def closed_form(l: int, m: int, theta: np.ndarray) -> np.ndarray:
    """LAL's explicit -2Y_lm(theta, 0) (XLALSpinWeightedSphericalHarmonic) for l = 2, 3."""
    c, s = np.cos(theta), np.sin(theta)
    c2, s2 = np.cos(theta / 2.0), np.sin(theta / 2.0)
    forms = {
        (2, -2): np.sqrt(5.0 / (64.0 * np.pi)) * (1.0 - c) ** 2,
        (2, -1): np.sqrt(5.0 / (16.0 * np.pi)) * s * (1.0 - c),
        (2, 0): np.sqrt(15.0 / (32.0 * np.pi)) * s**2,
        (2, 1): np.sqrt(5.0 / (16.0 * np.pi)) * s * (1.0 + c),
        (2, 2): np.sqrt(5.0 / (64.0 * np.pi)) * (1.0 + c) ** 2,
        (3, -3): np.sqrt(21.0 / (2.0 * np.pi)) * c2 * s2**5,
        (3, -2): np.sqrt(7.0 / (4.0 * np.pi)) * (2.0 + 3.0 * c) * s2**4,
        (3, -1): np.sqrt(35.0 / (2.0 * np.pi))
        * (np.sin(theta) + 4.0 * np.sin(2.0 * theta) - 3.0 * np.sin(3.0 * theta))
        / 32.0,
        (3, 0): np.sqrt(105.0 / (2.0 * np.pi)) * c * s**2 / 4.0,
        (3, 1): -np.sqrt(35.0 / (2.0 * np.pi))
        * (np.sin(theta) - 4.0 * np.sin(2.0 * theta) - 3.0 * np.sin(3.0 * theta))
        / 32.0,
        (3, 2): np.sqrt(7.0 / np.pi) * c2**4 * (-2.0 + 3.0 * c) / 2.0,
        (3, 3): -np.sqrt(21.0 / (2.0 * np.pi)) * c2**5 * s2,
    }
    return forms[(l, m)]


@pytest.mark.parametrize("l, m", [(2, m) for m in range(-2, 3)] + [(3, m) for m in range(-3, 4)])
def test_matches_lal_closed_forms(l, m):
    ours = np.asarray(spin_weighted_spherical_harmonic(-2, l, m, THETA, PHI))
    expected = closed_form(l, m, THETA) * np.exp(1j * m * PHI)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-14)


def test_brief_closed_forms_22():
    # -2Y22 and -2Y2-2 as usually quoted, with full phi dependence.
    norm = np.sqrt(5.0 / (64.0 * np.pi))
    np.testing.assert_allclose(
        spin_weighted_spherical_harmonic(-2, 2, 2, THETA, PHI),
        norm * (1.0 + np.cos(THETA)) ** 2 * np.exp(2j * PHI),
        atol=1e-15,
    )
    np.testing.assert_allclose(
        spin_weighted_spherical_harmonic(-2, 2, -2, THETA, PHI),
        norm * (1.0 - np.cos(THETA)) ** 2 * np.exp(-2j * PHI),
        atol=1e-15,
    )


@pytest.mark.parametrize("l", range(0, 6))
def test_spin_zero_is_scipy_ylm(l):
    for m in range(-l, l + 1):
        np.testing.assert_allclose(
            spin_weighted_spherical_harmonic(0, l, m, THETA, PHI),
            sph_harm_y(l, m, THETA, PHI),
            atol=1e-14,
        )


@pytest.mark.parametrize("s", [-2, -1, 0, 2])
def test_orthonormal_over_sphere(s):
    # Gauss-Legendre in cos(theta) is exact here: for equal m and s the product of two harmonics
    # is a polynomial in cos(theta) of degree <= 2 l_max.  The uniform phi rule is exact for the
    # e^{i (m - m') phi} factors, |m - m'| <= 10 < 24.
    labels = [(l, m) for l in range(abs(s), 6) for m in range(-l, l + 1)]
    x, weights = roots_legendre(16)
    phi = 2.0 * np.pi * np.arange(24) / 24
    theta_grid, phi_grid = np.meshgrid(np.arccos(x), phi, indexing="ij")
    area = (weights[:, None] * np.full(phi.size, 2.0 * np.pi / phi.size)).ravel()
    values = np.stack(
        [
            np.asarray(spin_weighted_spherical_harmonic(s, l, m, theta_grid, phi_grid)).ravel()
            for l, m in labels
        ]
    )
    gram = (values * area) @ values.conj().T
    np.testing.assert_allclose(gram, np.eye(len(labels)), atol=1e-12)


def test_conjugation_symmetry():
    # conj(sY_lm) = (-1)^(s + m) (-s)Y_l,-m  (Goldberg et al. 1967).
    for s, l in ((-2, 2), (-2, 4), (-1, 3)):
        for m in range(-l, l + 1):
            left = np.conj(spin_weighted_spherical_harmonic(s, l, m, THETA, PHI))
            right = (-1) ** (s + m) * spin_weighted_spherical_harmonic(-s, l, -m, THETA, PHI)
            np.testing.assert_allclose(left, right, atol=1e-14)


def test_values_at_the_poles():
    # d^l_{m,-s}(0) = delta_{m,-s}: only m = 2 survives on the axis for s = -2.
    for l in range(2, 6):
        for m in range(-l, l + 1):
            value = complex(spin_weighted_spherical_harmonic(-2, l, m, 0.0))
            expected = math.sqrt((2 * l + 1) / (4.0 * math.pi)) if m == 2 else 0.0
            assert value == pytest.approx(expected, abs=1e-15)


def test_wigner_small_d_l1_and_unitarity():
    beta = np.linspace(0.0, np.pi, 9)
    cos, sin, root2 = np.cos(beta), np.sin(beta), np.sqrt(2.0)
    for (m_prime, m), expected in {
        (1, 1): (1.0 + cos) / 2.0,
        (1, 0): -sin / root2,
        (0, 1): sin / root2,
        (1, -1): (1.0 - cos) / 2.0,
        (0, 0): cos,
    }.items():
        np.testing.assert_allclose(wigner_small_d(1, m_prime, m, beta), expected, atol=1e-15)
    l = 4
    matrix = np.stack(
        [np.stack([np.asarray(wigner_small_d(l, a, b, 1.1)) for b in range(-l, l + 1)])
         for a in range(-l, l + 1)]
    )
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(2 * l + 1), atol=1e-13)


def test_jax_transformations():
    theta = jnp.array([0.0, 0.4, 1.3, 3.0])
    phi = jnp.array([0.1, 0.2, 0.3, 0.4])
    eager = spin_weighted_spherical_harmonic(-2, 3, 2, theta, phi)
    jitted = jax.jit(lambda t, p: spin_weighted_spherical_harmonic(-2, 3, 2, t, p))(theta, phi)
    mapped = jax.vmap(lambda t, p: spin_weighted_spherical_harmonic(-2, 3, 2, t, p))(theta, phi)
    np.testing.assert_allclose(jitted, eager, rtol=1e-14)
    np.testing.assert_allclose(mapped, eager, rtol=1e-14)
    assert eager.dtype == jnp.complex128
    assert spin_weighted_spherical_harmonic(-2, 2, 2, jnp.zeros((2, 3))).shape == (2, 3)
    broadcast = spin_weighted_spherical_harmonic(-2, 2, 2, jnp.zeros((3, 1)), jnp.zeros(4))
    assert broadcast.shape == (3, 4)
    # d/dtheta of -2Y22(theta, 0) = -2 sqrt(5 / 64 pi) (1 + cos theta) sin theta.
    for value in (0.0, 0.7, np.pi):
        grad = jax.grad(lambda t: spin_weighted_spherical_harmonic(-2, 2, 2, t).real)(value)
        expected = -2.0 * np.sqrt(5.0 / (64.0 * np.pi)) * (1.0 + np.cos(value)) * np.sin(value)
        assert float(grad) == pytest.approx(expected, abs=1e-14)


@pytest.mark.parametrize(
    "s, l, m", [(-2, 1, 0), (-2, 2, 3), (-2, 2, -3), (0, -1, 0), (-2, 2.0, 2), (-2, 2, True)]
)
def test_bad_indices(s, l, m):
    with pytest.raises(ValueError):
        spin_weighted_spherical_harmonic(s, l, m, 0.3)
