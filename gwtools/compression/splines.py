"""Cubic B-splines on uniform knots (pykan's convention) and their truncated-power form.

numpy only.  :func:`cubic_bspline_basis` evaluates the bases the way pykan's ``B_batch`` does
(de Boor 1978), for density evaluation; :func:`power_basis` gives the same spline space as
truncated powers ``1, u, u^2, u^3, (u - k)_+^3``, which sampling evaluates with a few
arithmetic passes instead of a scatter (:meth:`gwtools.compression.layers.SplineLayer.feature_rows`).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["SPLINE_ORDER", "bspline_rows", "cubic_bspline_basis", "interior_knots", "power_basis"]

#: Degree of the splines (pykan's ``k``).
SPLINE_ORDER = 3


def bspline_rows(t: np.ndarray, n_basis: int) -> np.ndarray:
    """Cubic B-spline bases at knot coordinates ``t``, bases first: (n_basis, t.size).

    ``t`` is the position in knot steps from the first knot of the extended grid.  Only the
    four bases of the knot interval ``floor(t)`` are nonzero; they are the four cardinal cubic
    pieces of the local coordinate ``t - floor(t)`` (de Boor 1978), scattered into place,
    so no Cox-de Boor recursion over all knots is needed.
    """
    t = t.ravel()
    cell = np.floor(t)
    u = t - cell
    w = 1.0 - u
    # The pieces of the bases cell-3 .. cell on knot interval cell (the middle two are
    # mirror images, in Horner form).
    pieces = (
        w * w * w / 6.0,
        (0.5 * u - 1.0) * u * u + 2.0 / 3.0,
        (0.5 * w - 1.0) * w * w + 2.0 / 3.0,
        u * u * u / 6.0,
    )
    # Padded rows: basis cell-3+offset sits in padded row cell+offset; the three pad rows
    # each side absorb bases beyond the extended grid, and values outside the extended grid
    # go to four discarded rows at the end.
    width = n_basis + 6
    padded = np.zeros((width + 4) * t.size, dtype=t.dtype)
    inside = (cell >= 0) & (cell <= width - 4)
    index = np.where(inside, cell, width).astype(np.intp) * t.size + np.arange(t.size)
    for value in pieces:
        padded[index] = value
        index += t.size
    return padded.reshape(width + 4, t.size)[3 : 3 + n_basis]


def cubic_bspline_basis(x: np.ndarray, lo: np.ndarray, step: np.ndarray, n_intervals: int):
    """Cubic B-spline basis on uniform knots, pykan's convention (de Boor 1978).

    Knots are ``lo + step * m`` for ``m = -3 .. n_intervals + 3`` (the grid extended by three
    knots each side); basis ``b`` is supported on knots ``b .. b + 4``.  Outside the
    extended grid all bases vanish, as in pykan.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, m)
    lo, step : numpy.ndarray, shape (m,)
    n_intervals : int
        Interior grid intervals ``G``.

    Returns
    -------
    numpy.ndarray, shape (n, m, G + 3)
    """
    lo, step = lo.astype(x.dtype), step.astype(x.dtype)
    t = (x - lo) / step + SPLINE_ORDER  # position in units of knots from the first knot
    rows = bspline_rows(t, n_intervals + SPLINE_ORDER)
    return np.moveaxis(rows.reshape((-1,) + x.shape), 0, -1)


@functools.cache
def interior_knots(n_intervals: int, dtype) -> np.ndarray:
    """Interior knots ``1 .. G - 1`` in knot units, a column (G - 1, 1) of ``dtype``."""
    return np.arange(1, n_intervals, dtype=dtype)[:, None]


@functools.cache
def power_basis(n_intervals: int) -> tuple[np.ndarray, np.ndarray]:
    """The truncated-power form of the cubic B-splines on a uniform grid of G intervals.

    On the interior grid (``u`` in [0, G], knot units), the G + 3 B-splines are
    ``B(u) = T P(u)`` with ``P = (1, u, u^2, u^3, (u - 1)_+^3, .., (u - G + 1)_+^3)``
    (de Boor 1978, ch. IX).  On each of the three extension cells either side they are
    other cubics, and zero beyond.

    Returns
    -------
    spline_of_power : numpy.ndarray, shape (G + 3, G + 3)
        ``T``.
    cell_power : numpy.ndarray, shape (4, G + 3, G + 8)
        For every cell ``c`` from -4 (all of ``u < -3``) to G + 3 (all of ``u >= G + 3``),
        column ``c + 4``: the power coordinates ``T^-1 B(u)`` as cubics in the position
        ``s = u - c`` in the cell, coefficient of ``s^p`` in row ``p``.  Inside the grid
        these are ``P`` itself; on the extension cells they reproduce the B-splines there,
        and beyond they are zero.

    Both are exact up to rounding: found by least squares at points of every cell, where
    the bases are polynomials.
    """
    n_basis = n_intervals + SPLINE_ORDER
    u = np.linspace(0.0, n_intervals, 8 * n_intervals + 1)
    power = np.stack([u**0, u, u**2, u**3]
                     + [np.maximum(u - knot, 0.0) ** 3 for knot in range(1, n_intervals)])
    basis = bspline_rows(u + SPLINE_ORDER, n_basis)
    spline_of_power = np.linalg.lstsq(power.T, basis.T, rcond=None)[0].T
    to_power = np.linalg.inv(spline_of_power)
    s = np.linspace(0.0, 1.0, 9)
    monomials = np.stack([s**0, s, s**2, s**3])  # (4, 9)
    cell_power = np.zeros((4, n_basis, n_intervals + 8))
    for cell in range(-3, n_intervals + 3):
        values = to_power @ bspline_rows(cell + s + SPLINE_ORDER, n_basis)  # (G + 3, 9)
        cell_power[:, :, cell + 4] = np.linalg.lstsq(monomials.T, values.T, rcond=None)[0]
    return spline_of_power, cell_power
