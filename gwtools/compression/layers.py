"""Network layers of a compressed posterior, numpy only: spline layers and formula layers.

Both kinds follow one :class:`Layer` protocol, so the mixture density
(:mod:`gwtools.compression.mixture`) evaluates and samples either without knowing which it
has.  A layer has two evaluation paths:

* density evaluation, float64, samples as rows: :meth:`Layer.features` maps inputs to
  per-input features and :meth:`Layer.combine` sums the weighted features into outputs;
* ancestral sampling, float32, samples along rows: :meth:`Layer.feature_rows` writes one
  input's features into a block of rows and :meth:`Layer.combine_rows` combines the features
  of the inputs known so far.

The spline layer is a KAN layer (Liu et al. 2024, arXiv:2404.19756) as trained by pykan; the
formula layer is its symbolic form (:mod:`gwtools.compression.formulas`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gwtools.compression.formulas import parse_formula, permute_variables
from gwtools.compression.splines import (
    SPLINE_ORDER,
    cubic_bspline_basis,
    interior_knots,
    power_basis,
)

__all__ = ["ExpressionLayer", "Layer", "SplineLayer", "silu"]


class Layer(Protocol):
    """What :class:`~gwtools.compression.mixture.MixtureDensity` needs of a layer.

    ``n_features`` is the number of features per input, ``n_out`` the number of outputs.
    """

    @property
    def n_features(self) -> int: ...

    @property
    def n_out(self) -> int: ...

    def features(self, x: np.ndarray, inputs=slice(None)) -> np.ndarray:
        """Features (n, m, n_features) of inputs ``x`` (n, m) that are layer inputs ``inputs``."""

    def combine(self, features: np.ndarray, columns=slice(None)) -> np.ndarray:
        """Outputs ``columns`` (n, len(columns)) from the features of all inputs."""

    def __call__(self, x: np.ndarray, columns=slice(None)) -> np.ndarray:
        """``combine(features(x), columns)``."""

    def feature_rows(self, x: np.ndarray, index: int, out: np.ndarray) -> None:
        """Write the features of values ``x`` (m,) of input ``index`` into ``out``
        (n_features, m)."""

    def combine_rows(self, features: np.ndarray, columns, n_known: int,
                     out: np.ndarray | None = None) -> np.ndarray:
        """Outputs ``columns`` as rows (len(columns), m) from the row features of the first
        ``n_known`` inputs."""

    def permute_inputs(self, order: np.ndarray) -> Layer:
        """The same layer with input ``p`` taken from former input ``order[p]``."""


def silu(x: np.ndarray) -> np.ndarray:
    """``x / (1 + exp(-x))``, the base function of pykan's spline edges."""
    return x / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class SplineLayer:
    """One KAN layer: ``out_j = sum_i [w_ij silu(x_i) + sum_b c_ijb B_b(x_i)] + bias_j``.

    Evaluation is split in two steps so that ancestral sampling can reuse work:
    :meth:`features` maps inputs to per-input features (the B-spline bases and the SiLU
    value), :meth:`combine` sums the weighted features into chosen outputs.  Sampling uses
    :meth:`feature_rows` and :meth:`combine_rows` instead: the same layer in single
    precision, with features stored as rows and the splines in truncated-power form.

    Attributes
    ----------
    grid_lo, grid_step : numpy.ndarray, shape (n_in,)
    n_intervals : int
    weights : numpy.ndarray, shape (n_in * (G + 4), n_out)
        Per input, G + 3 spline coefficients then the SiLU scale; zero on masked edges.
    bias : numpy.ndarray, shape (n_out,)
    """

    grid_lo: np.ndarray
    grid_step: np.ndarray
    n_intervals: int
    weights: np.ndarray
    bias: np.ndarray

    @property
    def n_features(self) -> int:
        return self.n_intervals + SPLINE_ORDER + 1

    @property
    def n_out(self) -> int:
        return int(self.bias.shape[0])

    def features(self, x: np.ndarray, inputs=slice(None)) -> np.ndarray:
        """Features of inputs ``x`` (n, m) that are layer inputs ``inputs``: (n, m, G + 4)."""
        basis = cubic_bspline_basis(x, self.grid_lo[inputs], self.grid_step[inputs], self.n_intervals)
        return np.concatenate([basis, silu(x)[..., None]], axis=-1)

    def combine(self, features: np.ndarray, columns=slice(None)) -> np.ndarray:
        """Outputs ``columns`` from the features of all inputs (n, n_in, G + 4)."""
        # A contiguous copy of the (small) weight block keeps numpy's matmul on BLAS.
        weights = np.ascontiguousarray(self.weights[:, columns], dtype=features.dtype)
        bias = self.bias[columns].astype(features.dtype)
        return features.reshape(len(features), -1) @ weights + bias

    def __call__(self, x: np.ndarray, columns=slice(None)) -> np.ndarray:
        return self.combine(self.features(x), columns)

    @functools.cached_property
    def _power_weights(self) -> np.ndarray:
        """:attr:`weights` for the truncated-power features of :meth:`feature_rows`."""
        spline_of_power = power_basis(self.n_intervals)[0]
        n_basis = self.n_intervals + SPLINE_ORDER
        weights = self.weights.reshape(len(self.grid_lo), self.n_features, -1).copy()
        # B = T P on the interior, so sum_b c_b B_b = (T^T c) . P.
        weights[:, :n_basis] = np.einsum("bj,ibo->ijo", spline_of_power, weights[:, :n_basis])
        return weights.reshape(self.weights.shape)

    def feature_rows(self, x: np.ndarray, index: int, out: np.ndarray) -> None:
        """Write sampling features of values ``x`` (m,) of input ``index`` into ``out``
        (G + 4, m), a C-contiguous block of rows; :meth:`combine_rows` combines them.

        On the interior grid, in knot units ``u`` from the first interior knot, the G + 3
        cubic B-splines span the same space as the truncated powers ``1, u, u^2, u^3,
        (u - 1)_+^3 .. (u - G + 1)_+^3`` (:func:`~gwtools.compression.splines.power_basis`);
        those take a few arithmetic passes, where the B-splines need a scatter, so sampling
        uses them with weights
        transformed once (:attr:`_power_weights`).  Points in the extension cells, where
        the B-splines are other cubics (a coarse output grid puts a tenth of the samples
        there), get the power coordinates of their exact B-spline values, from a cubic per
        cell.  Single precision keeps the outputs to ~1e-5 of the weights' scale (the powers
        reach G^3).  Each numpy call costs about a microsecond whatever its size, a fifth
        of the sampling time at 8192 samples a block, hence whole-block operations only.
        """
        n_intervals = self.n_intervals
        u = np.subtract(x, x.dtype.type(self.grid_lo[index]), out=out[1])
        u *= x.dtype.type(1.0 / self.grid_step[index])
        out[0] = 1.0
        np.multiply(u, u, out=out[2])
        np.multiply(out[2], u, out=out[3])
        if n_intervals > 1:
            shifted = out[4 : 3 + n_intervals]  # (G - 1, m): (u - knot)_+^3 per interior knot
            np.subtract(u, interior_knots(n_intervals, x.dtype), out=shifted)
            np.maximum(shifted, 0.0, out=shifted)
            square = np.square(shifted)
            shifted *= square
        silu = out[-1]  # x / (1 + exp(-x)), in place
        np.negative(x, out=silu)
        np.exp(silu, out=silu)
        silu += 1.0
        np.divide(x, silu, out=silu)
        # u (u - G) > 0 off the grid; out[2] is u^2.
        outside = np.greater(out[2], n_intervals * u)
        if outside.any():
            edge = np.flatnonzero(outside)
            u_edge = u[edge]
            cell = np.floor(u_edge)
            s = u_edge - cell
            slot = np.clip(cell, -4, n_intervals + 3).astype(np.intp)
            slot += 4
            table = power_basis(n_intervals)[1]
            values = np.take(table[3], slot, axis=1)  # Horner, (G + 3, e)
            for power in (2, 1, 0):
                values *= s
                values += np.take(table[power], slot, axis=1)
            out[:-1, edge] = values

    def combine_rows(self, features: np.ndarray, columns, n_known: int,
                     out: np.ndarray | None = None) -> np.ndarray:
        """Outputs ``columns`` as rows (len(columns), m) from :meth:`feature_rows` features.

        ``features`` is (n_in * (G + 4), m), input after input; only the first ``n_known``
        inputs are used: the others are not known yet and have zero weight by the masks.
        ``out`` optionally receives the result.
        """
        rows = n_known * self.n_features
        weights = np.ascontiguousarray(self._power_weights[:rows, columns].T,
                                       dtype=features.dtype)
        out = np.matmul(weights, features[:rows], out=out)
        out += self.bias[columns, None].astype(features.dtype)
        return out

    def permute_inputs(self, order: np.ndarray) -> SplineLayer:
        """The same layer with input ``p`` taken from former input ``order[p]``."""
        n_in = len(self.grid_lo)
        weights = self.weights.reshape(n_in, self.n_features, -1)[order]
        return SplineLayer(self.grid_lo[order], self.grid_step[order], self.n_intervals,
                           weights.reshape(self.weights.shape), self.bias)


@dataclass(frozen=True)
class ExpressionLayer:
    """A layer of closed-form node formulas: polynomial parts as a matrix, the rest as terms.

    The features of an input ``x`` are ``x`` and ``x**2``, so the terms linear and quadratic
    in one input (most terms of the output layer) cost one matrix product; the other
    terms are evaluated one by one.

    Attributes
    ----------
    formulas : tuple of str
        One formula per output node, in the variables ``x0 .. x{n_in-1}``.
    weights : numpy.ndarray, shape (n_in * 2, n_out)
        Per input, the coefficients of ``x`` and of ``x**2``.
    constant : numpy.ndarray, shape (n_out,)
    nonlinear : tuple of tuple of callables
    """

    formulas: tuple[str, ...]
    weights: np.ndarray
    constant: np.ndarray
    nonlinear: tuple

    @classmethod
    def from_formulas(cls, formulas, n_in: int) -> ExpressionLayer:
        parsed = [parse_formula(text, n_in) for text in formulas]
        return cls(
            formulas=tuple(formulas),
            weights=np.stack([p[0].ravel() for p in parsed], axis=1),
            constant=np.array([p[1] for p in parsed]),
            nonlinear=tuple(tuple(p[2]) for p in parsed),
        )

    n_features = 2

    @property
    def n_out(self) -> int:
        return len(self.formulas)

    def features(self, x: np.ndarray, inputs=slice(None)) -> np.ndarray:
        """The inputs and their squares, shape (n, m, 2)."""
        return np.stack([x, x * x], axis=-1)

    def combine(self, features: np.ndarray, columns=slice(None)) -> np.ndarray:
        """Evaluate the formulas of nodes ``columns`` at features (n, n_in, 2)."""
        x = features[..., 0]
        weights = np.ascontiguousarray(self.weights[:, columns], dtype=x.dtype)
        out = features.reshape(len(features), -1) @ weights
        out += self.constant[columns].astype(x.dtype)
        nodes = np.arange(len(self.formulas))[columns]
        for k, node in enumerate(nodes):
            for term in self.nonlinear[node]:
                out[:, k] += term(x)
        return out

    def __call__(self, x: np.ndarray, columns=slice(None)) -> np.ndarray:
        return self.combine(self.features(x), columns)

    def feature_rows(self, x: np.ndarray, index: int, out: np.ndarray) -> None:
        """Write the values ``x`` (m,) of input ``index`` and their squares into ``out`` (2, m)."""
        out[0] = x
        np.multiply(x, x, out=out[1])

    def combine_rows(self, features: np.ndarray, columns, n_known: int,
                     out: np.ndarray | None = None) -> np.ndarray:
        """Formulas of nodes ``columns`` as rows (len(columns), m) from :meth:`feature_rows`
        features (n_in * 2, m).

        Only the first ``n_known`` inputs are read (the masks give the others no weight, and
        their rows may hold anything); the formulas refer to known inputs only.  ``out``
        optionally receives the result.
        """
        rows = n_known * self.n_features
        x = features[:rows:self.n_features].T  # (m, n_known) view of the inputs themselves
        weights = np.ascontiguousarray(self.weights[:rows, columns].T, dtype=features.dtype)
        out = np.matmul(weights, features[:rows], out=out)
        out += self.constant[columns, None].astype(features.dtype)
        nodes = np.arange(len(self.formulas))[columns]
        for row, node in zip(out, nodes):
            for term in self.nonlinear[node]:
                row += term(x)
        return out

    def permute_inputs(self, order: np.ndarray) -> ExpressionLayer:
        """The same layer with input ``p`` taken from former input ``order[p]``."""
        position = np.argsort(order)
        formulas = [permute_variables(text, position) for text in self.formulas]
        return ExpressionLayer.from_formulas(formulas, len(order))
