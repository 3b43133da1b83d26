"""Compressed posterior files and their numpy-only evaluation (no torch, no pykan).

A compressed posterior is an autoregressive Gaussian mixture whose conditioner is a two-layer
Kolmogorov-Arnold network with MADE masks (see :mod:`.kan_density`; arXiv:2508.18698).  It
is stored twice:

``MODEL.weights.npz``
    The spline network: uniform knot grids, B-spline coefficients (float16), SiLU base
    scales (float16) and node biases, plus a JSON header (parameters, transforms,
    standardisation, fidelity metrics, source checksum).
``MODEL.expr.json``
    The same network after symbolic regression: every node of every layer is a closed-form
    formula of the previous layer's nodes (``x0``, ``x1``, ...), parsed here by a small
    whitelisting evaluator; nothing is passed to :func:`eval`.

Both give a :class:`CompressedPosterior`, which samples (``d`` network passes, one per
dimension) and evaluates log densities in the original parameters, transform Jacobians
included.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from gwtools.io.atomic import atomic_path

__all__ = [
    "FORMAT_VERSION",
    "LOG_SIGMA_BOUNDS",
    "WEIGHTS_SUFFIX",
    "EXPRESSIONS_SUFFIX",
    "made_masks",
    "cubic_bspline_basis",
    "SplineLayer",
    "ExpressionLayer",
    "MixtureDensity",
    "CompressedPosterior",
    "parse_formula",
    "posterior_from_weights",
    "posterior_from_expressions",
    "write_weights",
    "write_expressions",
    "load",
    "model_paths",
]

FORMAT_VERSION = 1
#: Clamp of the mixture log standard deviations (standardised units): keeps densities finite
#: and stops a poorly constrained component from throwing samples far into the tails.
LOG_SIGMA_BOUNDS = (-7.0, 1.0)
WEIGHTS_SUFFIX = ".weights.npz"
EXPRESSIONS_SUFFIX = ".expr.json"
_SPLINE_ORDER = 3
_CHUNK = 1 << 15
#: Samples evaluated together inside a chunk: their features stay in cache.
_BLOCK = 1 << 13


def made_masks(n_dim: int, hidden: int, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """MADE connectivity (Germain et al. 2015) for a one-hidden-layer mixture conditioner.

    Input ``i`` has degree ``i + 1``; hidden unit ``h`` has degree ``h % max(d - 1, 1) + 1``;
    output block ``j`` (3K outputs of dimension ``j``) has degree ``j + 1``.  An edge exists
    where the degree rises (input -> hidden: ``m_h >= i + 1``) or strictly rises
    (hidden -> output: ``j + 1 > m_h``), so block ``j`` depends on inputs ``< j`` only.

    Returns
    -------
    mask_in : numpy.ndarray of bool, shape (d, hidden)
    mask_out : numpy.ndarray of bool, shape (hidden, d * 3 * n_components)
    """
    hidden_degree = np.arange(hidden) % max(n_dim - 1, 1) + 1
    in_degree = np.arange(1, n_dim + 1)
    out_degree = np.repeat(np.arange(1, n_dim + 1), 3 * n_components)
    mask_in = hidden_degree[None, :] >= in_degree[:, None]
    mask_out = out_degree[None, :] > hidden_degree[:, None]
    return mask_in, mask_out


def _bspline_rows(t: np.ndarray, n_basis: int) -> np.ndarray:
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
    t = (x - lo) / step + _SPLINE_ORDER  # position in units of knots from the first knot
    rows = _bspline_rows(t, n_intervals + _SPLINE_ORDER)
    return np.moveaxis(rows.reshape((-1,) + x.shape), 0, -1)


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


@functools.lru_cache(maxsize=None)
def _interior_knots(n_intervals: int, dtype) -> np.ndarray:
    """Interior knots ``1 .. G - 1`` in knot units, a column (G - 1, 1) of ``dtype``."""
    return np.arange(1, n_intervals, dtype=dtype)[:, None]


@functools.lru_cache(maxsize=None)
def _power_basis(n_intervals: int) -> tuple[np.ndarray, np.ndarray]:
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
    n_basis = n_intervals + _SPLINE_ORDER
    u = np.linspace(0.0, n_intervals, 8 * n_intervals + 1)
    power = np.stack([u**0, u, u**2, u**3]
                     + [np.maximum(u - knot, 0.0) ** 3 for knot in range(1, n_intervals)])
    basis = _bspline_rows(u + _SPLINE_ORDER, n_basis)
    spline_of_power = np.linalg.lstsq(power.T, basis.T, rcond=None)[0].T
    to_power = np.linalg.inv(spline_of_power)
    s = np.linspace(0.0, 1.0, 9)
    monomials = np.stack([s**0, s, s**2, s**3])  # (4, 9)
    cell_power = np.zeros((4, n_basis, n_intervals + 8))
    for cell in range(-3, n_intervals + 3):
        values = to_power @ _bspline_rows(cell + s + _SPLINE_ORDER, n_basis)  # (G + 3, 9)
        cell_power[:, :, cell + 4] = np.linalg.lstsq(monomials.T, values.T, rcond=None)[0]
    return spline_of_power, cell_power


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
        return self.n_intervals + _SPLINE_ORDER + 1

    @property
    def n_out(self) -> int:
        return int(self.bias.shape[0])

    def features(self, x: np.ndarray, inputs=slice(None)) -> np.ndarray:
        """Features of inputs ``x`` (n, m) that are layer inputs ``inputs``: (n, m, G + 4)."""
        basis = cubic_bspline_basis(x, self.grid_lo[inputs], self.grid_step[inputs], self.n_intervals)
        return np.concatenate([basis, _silu(x)[..., None]], axis=-1)

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
        spline_of_power = _power_basis(self.n_intervals)[0]
        n_basis = self.n_intervals + _SPLINE_ORDER
        weights = self.weights.reshape(len(self.grid_lo), self.n_features, -1).copy()
        # B = T P on the interior, so sum_b c_b B_b = (T^T c) . P.
        weights[:, :n_basis] = np.einsum("bj,ibo->ijo", spline_of_power, weights[:, :n_basis])
        return weights.reshape(self.weights.shape)

    def feature_rows(self, x: np.ndarray, index: int, out: np.ndarray) -> None:
        """Write sampling features of values ``x`` (m,) of input ``index`` into ``out``
        (G + 4, m), a C-contiguous block of rows; :meth:`combine_rows` combines them.

        On the interior grid, in knot units ``u`` from the first interior knot, the G + 3
        cubic B-splines span the same space as the truncated powers ``1, u, u^2, u^3,
        (u - 1)_+^3 .. (u - G + 1)_+^3`` (:func:`_power_basis`); those take a few arithmetic
        passes, where the B-splines need a scatter, so sampling uses them with weights
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
            np.subtract(u, _interior_knots(n_intervals, x.dtype), out=shifted)
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
            table = _power_basis(n_intervals)[1]
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

    def permute_inputs(self, order: np.ndarray) -> "SplineLayer":
        """The same layer with input ``p`` taken from former input ``order[p]``."""
        n_in = len(self.grid_lo)
        weights = self.weights.reshape(n_in, self.n_features, -1)[order]
        return SplineLayer(self.grid_lo[order], self.grid_step[order], self.n_intervals,
                           weights.reshape(self.weights.shape), self.bias)


_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exp": np.exp,
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "abs": np.abs,
}
_BINARY = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
    ast.Pow: np.power,
}


def _variable_index(node: ast.AST) -> int | None:
    """``i`` for a name node ``x<i>``; None for anything else."""
    if isinstance(node, ast.Name) and node.id.startswith("x") and node.id[1:].isdigit():
        return int(node.id[1:])
    return None


def _compile(node: ast.AST, n_in: int) -> Callable[[np.ndarray], np.ndarray]:
    """Compile a whitelisted expression tree into a function of the input matrix (n, n_in)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        value = float(node.value)
        return lambda x: value
    if isinstance(node, ast.Name):
        column = _variable_index(node)
        if column is None or column >= n_in:
            raise ValueError(f"unknown variable {node.id!r} (expected x0 .. x{n_in - 1})")
        return lambda x: x[:, column]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _compile(node.operand, n_in)
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        return lambda x: sign * inner(x)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        op = _BINARY[type(node.op)]
        left, right = _compile(node.left, n_in), _compile(node.right, n_in)
        return lambda x: op(left(x), right(x))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and len(node.args) == 1
        and not node.keywords
    ):
        fun, arg = _FUNCTIONS[node.func.id], _compile(node.args[0], n_in)
        return lambda x: fun(arg(x))
    raise ValueError(
        f"unsupported expression element {ast.dump(node)[:60]!r}; allowed: numbers, x<i>, "
        f"+ - * / **, and {sorted(_FUNCTIONS)}"
    )


def _additive_terms(node: ast.AST, sign: float = 1.0):
    """Flatten a top-level sum into (sign, term) pairs."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        yield from _additive_terms(node.left, sign)
        yield from _additive_terms(node.right, sign if isinstance(node.op, ast.Add) else -sign)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        yield from _additive_terms(node.operand, -sign)
    else:
        yield sign, node


def _number_node(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool))


def _monomial(node: ast.AST) -> tuple[float, str | None, int] | None:
    """``c``, ``x3``, ``c*x3``, ``x3**2`` or ``c*x3**2`` as (c, name, power); None for
    anything else."""
    if _number_node(node):
        return float(node.value), None, 0
    coefficient = 1.0
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and _number_node(node.left):
        coefficient, node = float(node.left.value), node.right
    power = 1
    if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow)
            and _number_node(node.right) and node.right.value == 2):
        power, node = 2, node.left
    if isinstance(node, ast.Name):
        return coefficient, node.id, power
    return None


def _formula_variables(text: str) -> set[int]:
    """Indices ``i`` of the variables ``x<i>`` a formula uses."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"cannot parse formula {text!r}: {err.msg}") from None
    return {i for i in map(_variable_index, ast.walk(tree)) if i is not None}


def parse_formula(text: str, n_in: int):
    """Parse one node formula into its polynomial part and compiled nonlinear terms.

    Parameters
    ----------
    text : str
        E.g. ``"0.31*x0 - 0.2*x0**2 - 1.2*tanh(0.8*x2 + 0.1) + 0.05"``; variables
        ``x0 .. x{n_in-1}``.
    n_in : int

    Returns
    -------
    weights : numpy.ndarray, shape (n_in, 2)
        Coefficients of the terms ``c*x<i>`` (column 0) and ``c*x<i>**2`` (column 1).
    constant : float
    nonlinear : list of callables
        Each maps the input matrix (n, n_in) to an (n,) array.
    """
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as err:
        raise ValueError(f"cannot parse formula {text!r}: {err.msg}") from None
    weights = np.zeros((n_in, 2))
    constant = 0.0
    nonlinear = []
    for sign, term in _additive_terms(tree):
        monomial = _monomial(term)
        if monomial is None:
            compiled = _compile(term, n_in)
            nonlinear.append(compiled if sign > 0 else (lambda x, f=compiled: -f(x)))
            continue
        value, name, power = monomial
        if name is None:
            constant += sign * value
            continue
        _compile(ast.Name(id=name), n_in)  # validates the variable name
        weights[int(name[1:]), power - 1] += sign * value
    return weights, constant, nonlinear


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
    def from_formulas(cls, formulas, n_in: int) -> "ExpressionLayer":
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

    def permute_inputs(self, order: np.ndarray) -> "ExpressionLayer":
        """The same layer with input ``p`` taken from former input ``order[p]``."""
        position = np.argsort(order)
        formulas = []
        for text in self.formulas:
            tree = ast.parse(text, mode="eval")
            for node in ast.walk(tree):
                index = _variable_index(node)
                if index is not None:
                    node.id = f"x{position[index]}"
            formulas.append(ast.unparse(tree))
        return ExpressionLayer.from_formulas(formulas, len(order))


@dataclass(frozen=True)
class MixtureDensity:
    """Autoregressive Gaussian mixture on standardised coordinates, numpy only.

    Attributes
    ----------
    layers : tuple of SplineLayer or ExpressionLayer
        The conditioner, (n, d) -> (n, d * 3 * K).
    mean, scale : numpy.ndarray, shape (d,)
        ``z = (y - mean) / scale`` for unbounded coordinates ``y``.
    n_components : int
    """

    layers: tuple
    mean: np.ndarray
    scale: np.ndarray
    n_components: int

    @property
    def n_dim(self) -> int:
        return int(self.mean.shape[0])

    def _outputs(self, z: np.ndarray) -> np.ndarray:
        h = z
        for layer in self.layers:
            h = layer(h)
        return h

    def _split(self, out: np.ndarray):
        k = self.n_components
        out = out.reshape(len(out), -1, 3, k)
        logits = out[:, :, 0]
        log_weight = logits - _logsumexp(logits)[..., None]
        log_sigma = np.clip(out[:, :, 2], *LOG_SIGMA_BOUNDS)
        return log_weight, out[:, :, 1], log_sigma

    def log_prob_unbounded(self, y: np.ndarray) -> np.ndarray:
        """Log density of unbounded coordinates ``y``, shape (n, d) -> (n,)."""
        result = np.empty(len(y))
        for start in range(0, len(y), _CHUNK):
            chunk = y[start : start + _CHUNK]
            z = (chunk - self.mean) / self.scale
            log_weight, mu, log_sigma = self._split(self._outputs(z))
            r = (z[:, :, None] - mu) * np.exp(-log_sigma)
            comp = log_weight - 0.5 * r * r - log_sigma - 0.5 * math.log(2.0 * math.pi)
            result[start : start + _CHUNK] = _logsumexp(comp).sum(axis=1)
        return result - np.log(self.scale).sum()

    @functools.cached_property
    def _sampling_network(self):
        """Layers with hidden units sorted by MADE degree, the order, and the number of
        units known before each dimension is drawn (those of degree <= j)."""
        first, last = self.layers
        degree = np.arange(first.n_out) % max(self.n_dim - 1, 1) + 1
        order = np.argsort(degree, kind="stable")
        n_known = np.searchsorted(degree[order], np.arange(self.n_dim + 1), side="right")
        return first, last.permute_inputs(order), order, n_known

    def _workspace(self, first, last, m: int) -> dict[str, np.ndarray]:
        """Flat work buffers for blocks of up to ``m`` draws, reused from block to block: a
        fresh multi-megabyte array per block would cost a page fault per 4 kB on first touch."""
        return {
            "z": np.empty(self.n_dim * m, dtype=np.float32),
            "mixture": np.empty(3 * self.n_components * m, dtype=np.float32),
            "input_features": np.empty(self.n_dim * first.n_features * m, dtype=np.float32),
            "hidden_features": np.empty(first.n_out * last.n_features * m, dtype=np.float32),
        }

    def _draw_block(self, first, last, order, n_known, uniform, normal, out, work) -> None:
        """Ancestral draws for a block of uniform and normal draws (d, m), written to ``out`` (d, m).

        ``work`` is a :meth:`_workspace` for at least ``m`` columns.  Feature rows are read
        only after this block has written them: the output layer reads the first
        ``n_known[dim]`` hidden units, the first layer the first ``dim`` inputs.
        """
        m = uniform.shape[1]
        k = self.n_components
        width = 3 * k
        f_in, f_hidden = first.n_features, last.n_features

        def rows(name, count):
            # C-contiguous (count, m) view: feature writers need whole contiguous rows.
            return work[name][: count * m].reshape(count, m)

        # Single precision inside the network: twice the throughput, and its rounding
        # (1e-7 relative) is far below the model's own error.
        z = rows("z", self.n_dim)
        input_features = rows("input_features", self.n_dim * f_in)
        hidden_features = rows("hidden_features", first.n_out * f_hidden)
        mixture = rows("mixture", width)
        columns = np.arange(m)
        for dim in range(self.n_dim):
            if dim > 0:
                first.feature_rows(z[dim - 1], dim - 1,
                                   input_features[(dim - 1) * f_in : dim * f_in])
                new = np.arange(n_known[dim - 1], n_known[dim])
                if new.size:
                    hidden = first.combine_rows(input_features, order[new], dim)
                    for position, values in zip(new, hidden):
                        last.feature_rows(values, position, hidden_features[
                            position * f_hidden : (position + 1) * f_hidden])
            block = last.combine_rows(hidden_features, slice(dim * width, (dim + 1) * width),
                                      n_known[dim], out=mixture)
            _draw_component(block, k, uniform[dim], normal[dim], columns, z[dim])
        np.multiply(z, self.scale[:, None], out=out)
        out += self.mean[:, None]

    def draw_chunks(self, n: int, rng: np.random.Generator):
        """Draw ``n`` samples of the unbounded coordinates, chunk by chunk.

        Ancestral sampling, one dimension at a time.  By the MADE degrees, hidden unit ``h``
        depends on dimensions ``< m_h`` only, so it is evaluated once, as soon as those are
        drawn, and its output-layer features are kept: sampling all ``d`` dimensions costs
        about one network pass.  Hidden units are reordered by degree so that the units
        known before dimension ``j`` are a prefix, and features are stored one row per
        feature (samples along rows): every step reads and writes contiguous memory, and
        the output layer multiplies only the known units.  Uniform and normal draws are
        taken in fixed-size chunks, so a seed gives the same draws whichever file the
        network came from and however many samples are asked for.

        Yields
        ------
        start : int
            Index of the chunk's first sample.
        y : numpy.ndarray, shape (m, d)
            The chunk (Fortran order: each parameter's samples contiguous), a view of a
            buffer that the next chunk overwrites.  All buffers are allocated once, not per
            chunk or block: fresh memory is page-faulted 4 kB at a time, which on a
            virtual machine cost a third of a first call's time.
        """
        first, last, order, n_known = self._sampling_network
        work = self._workspace(first, last, min(_BLOCK, n))
        size = min(_CHUNK, n)
        chunk = np.empty((self.n_dim, size))
        uniform_buffer = np.empty(self.n_dim * size, dtype=np.float32)
        normal_buffer = np.empty_like(uniform_buffer)
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            # Single-precision draws, one row per dimension, as the network consumes them.
            uniform = rng.random(dtype=np.float32,
                                 out=uniform_buffer[: self.n_dim * m].reshape(self.n_dim, m))
            normal = rng.standard_normal(
                dtype=np.float32, out=normal_buffer[: self.n_dim * m].reshape(self.n_dim, m))
            for block in range(0, m, _BLOCK):
                cols = slice(block, min(block + _BLOCK, m))
                self._draw_block(first, last, order, n_known, uniform[:, cols], normal[:, cols],
                                 chunk[:, cols], work)
            yield start, chunk[:, :m].T

    def sample_unbounded(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` samples of the unbounded coordinates, shape (n, d) (Fortran order);
        see :meth:`draw_chunks`."""
        rows = np.empty((self.n_dim, n))
        for start, y in self.draw_chunks(n, rng):
            rows[:, start : start + len(y)] = y.T
        return rows.T


def _draw_component(block: np.ndarray, k: int, uniform: np.ndarray, normal: np.ndarray,
                    columns: np.ndarray, out: np.ndarray) -> None:
    """One draw per column from the mixture in ``block`` (3k, m): logits, means, log sigmas.

    The component is the first whose cumulative weight exceeds ``uniform * total`` (inverse
    CDF); its mean and log sigma are then picked with one flat gather each.  Components are
    contiguous rows: reductions over them run row against row, fast; only the cumulative sum
    is a loop, as numpy's ``cumsum`` along that axis is some 20 times slower.  ``columns`` is
    ``arange(m)``; the draws go to ``out`` (m,).
    """
    logits = block[:k]
    peak = np.maximum.reduce(logits, axis=0)
    cumulative = np.subtract(logits, peak, out=logits)
    np.exp(cumulative, out=cumulative)
    for comp in range(1, k):
        cumulative[comp] += cumulative[comp - 1]
    threshold = cumulative[-1] * uniform
    # Number of cumulative weights below the threshold = index of the chosen component.
    index = np.add.reduce(cumulative[:-1] < threshold, axis=0, dtype=np.intp)
    index *= len(uniform)
    index += columns
    mean = np.take(block[k : 2 * k], index)
    log_sigma = np.take(block[2 * k :], index)
    np.clip(log_sigma, *LOG_SIGMA_BOUNDS, out=log_sigma)
    np.exp(log_sigma, out=log_sigma)
    log_sigma *= normal
    np.add(mean, log_sigma, out=out)


def _logsumexp(a: np.ndarray) -> np.ndarray:
    peak = a.max(axis=-1)
    return peak + np.log(np.exp(a - peak[..., None]).sum(axis=-1))


@dataclass(frozen=True)
class CompressedPosterior:
    """A posterior regenerated from a weights or expressions file.

    Attributes
    ----------
    parameters : tuple of str
        Parameter names (bilby convention), the column order of samples.
    transforms : gwtools.compression.transforms.TransformStack
        Physical support -> real line, one transform per parameter.
    density : MixtureDensity
        Posterior density of the transformed coordinates.
    prior : MixtureDensity or None
        Prior density of the transformed coordinates, when the source carried prior draws.
    metadata : dict
        Source file and checksum, fit settings, fidelity metrics, sizes.
    source : str
        ``"weights"`` or ``"expressions"``.
    """

    parameters: tuple[str, ...]
    transforms: object
    density: MixtureDensity
    prior: MixtureDensity | None
    metadata: dict
    source: str

    def sample(self, n: int, *, seed: int | None = None) -> np.ndarray:
        """Draw ``n`` posterior samples, shape (n, d), columns in :attr:`parameters` order.

        ``seed`` (an integer, or None for fresh entropy) seeds numpy's SFC64 generator
        (Small Fast Chaotic, passes PractRand and BigCrush): its normal and uniform draws
        cost about a third less than the default PCG64's, a sixth of the whole sampling
        time at 11 parameters.
        """
        if n < 0:
            raise ValueError(f"number of samples must be >= 0, got {n}")
        n = int(n)
        rng = np.random.Generator(np.random.SFC64(seed))
        samples = np.empty((n, self.density.n_dim), order="F")
        # Chunk by chunk: the transforms' temporaries stay small and are recycled, where
        # arrays of n values would be fresh memory on every call.
        for start, y in self.density.draw_chunks(n, rng):
            self.transforms.inverse(y, out=samples[start : start + len(y)])
        return samples

    def _points(self, points) -> np.ndarray:
        if hasattr(points, "array") and hasattr(points, "parameters"):
            points = points.array(self.parameters)
        elif isinstance(points, Mapping):
            missing = [p for p in self.parameters if p not in points]
            if missing:
                raise KeyError(f"points lack parameters {missing}; have {sorted(points)}")
            points = np.column_stack([np.asarray(points[p], dtype=float) for p in self.parameters])
        x = np.atleast_2d(np.asarray(points, dtype=float))
        if x.shape[1] != len(self.parameters):
            raise ValueError(
                f"points have {x.shape[1]} columns, the model has {len(self.parameters)} "
                f"parameters {list(self.parameters)}"
            )
        return x

    def _log_density(self, density: MixtureDensity, points) -> np.ndarray:
        x = self._points(points)
        result = np.full(len(x), -np.inf)
        inside = self.transforms.in_support(x)
        if inside.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                y = self.transforms.forward(x[inside])
                log_jac = self.transforms.log_abs_det_jacobian(x[inside])
            # Points on a logit/log bound map to infinity: zero density there.
            finite = np.all(np.isfinite(y), axis=1) & np.isfinite(log_jac)
            values = np.full(len(y), -np.inf)
            values[finite] = density.log_prob_unbounded(y[finite]) + log_jac[finite]
            result[inside] = values
        return result

    def log_prob(self, points) -> np.ndarray:
        """Posterior log density in the original parameters (Jacobian included), shape (n,).

        ``points`` is an (n, d) array in :attr:`parameters` order, a mapping of names to
        arrays, or a :class:`~gwtools.io.posteriors.PosteriorTable`.  Points outside the
        physical support get ``-inf``.
        """
        return self._log_density(self.density, points)

    def ln_prior(self, points) -> np.ndarray:
        """Prior log density in the original parameters, shape (n,).

        Raises
        ------
        ValueError
            If the source file carried no prior information.
        """
        if self.prior is None:
            raise ValueError(
                "this compressed posterior stores no prior (the source had no prior samples)"
            )
        return self._log_density(self.prior, points)


def model_paths(model: str | os.PathLike) -> tuple[Path, Path]:
    """Weights and expressions paths of a model stem (``MODEL`` -> two files)."""
    stem = str(model)
    for suffix in (WEIGHTS_SUFFIX, EXPRESSIONS_SUFFIX):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return Path(stem + WEIGHTS_SUFFIX), Path(stem + EXPRESSIONS_SUFFIX)


def _spline_layers(arrays: Mapping[str, np.ndarray], prefix: str, header: dict) -> tuple:
    masks = made_masks(header["n_dim"], header["hidden"], header["n_components"])
    layers = []
    for index, mask in enumerate(masks):
        key = f"{prefix}layer{index}_"
        coef_edges = np.asarray(arrays[key + "coef"], dtype=np.float64)
        n_basis = coef_edges.shape[1]
        if coef_edges.shape[0] != mask.sum():
            raise ValueError(f"{key}coef has {coef_edges.shape[0]} edges, mask has {mask.sum()}")
        weights = np.zeros(mask.shape + (n_basis + 1,))
        weights[mask, :n_basis] = coef_edges
        weights[mask, n_basis] = arrays[key + "scale_base"]
        layers.append(
            SplineLayer(
                grid_lo=np.asarray(arrays[key + "grid_lo"], dtype=np.float64),
                grid_step=np.asarray(arrays[key + "grid_step"], dtype=np.float64),
                n_intervals=n_basis - _SPLINE_ORDER,
                weights=np.ascontiguousarray(
                    weights.transpose(0, 2, 1).reshape(-1, mask.shape[1])
                ),
                bias=np.asarray(arrays[key + "bias"], dtype=np.float64),
            )
        )
    return tuple(layers)


def _check_header(header: dict, path: Path, kind: str) -> None:
    if header.get("format") != f"gwtools-kan-{kind}":
        raise ValueError(f"{path} is not a gwtools KAN {kind} file (format={header.get('format')!r})")
    if header.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {header.get('format_version')}, this gwtools reads "
            f"version {FORMAT_VERSION}; re-run `gwtools compress`"
        )


def _transform_stack(header: dict):
    from gwtools.compression.transforms import TransformStack

    return TransformStack.from_dict(header["transforms"])


def _posterior_from_header(header: dict, build_layers, source: str) -> CompressedPosterior:
    """A :class:`CompressedPosterior` whose network layers come from ``build_layers(name, part)``."""
    densities = {}
    for name in ("posterior", "prior"):
        part = header.get(name)
        densities[name] = None if part is None else MixtureDensity(
            layers=build_layers(name, part),
            mean=np.asarray(part["mean"], dtype=np.float64),
            scale=np.asarray(part["scale"], dtype=np.float64),
            n_components=part["n_components"],
        )
    return CompressedPosterior(
        parameters=tuple(header["parameters"]),
        transforms=_transform_stack(header),
        density=densities["posterior"],
        prior=densities["prior"],
        metadata=header.get("metadata", {}),
        source=source,
    )


def posterior_from_weights(header: dict, arrays: Mapping[str, np.ndarray]) -> CompressedPosterior:
    """Build a :class:`CompressedPosterior` from a weights header and its arrays."""
    return _posterior_from_header(
        header, lambda name, part: _spline_layers(arrays, f"{name}_", part), "weights")


def posterior_from_expressions(header: dict) -> CompressedPosterior:
    """Build a :class:`CompressedPosterior` from an expressions header (formulas included)."""

    def expression_layers(name, part):
        masks = made_masks(part["n_dim"], part["hidden"], part["n_components"])
        if len(part["layers"]) != len(masks):
            raise ValueError(f"{name}: {len(part['layers'])} formula layers, expected {len(masks)}")
        layers = []
        for index, (formulas, mask) in enumerate(zip(part["layers"], masks)):
            if len(formulas) != mask.shape[1]:
                raise ValueError(f"{name} layer {index}: {len(formulas)} formulas, expected "
                                 f"{mask.shape[1]} for the header's network sizes")
            for node, text in enumerate(formulas):
                # A formula reaching an input the MADE masks do not connect would break the
                # autoregressive order (and the density's normalisation).
                stray = sorted(i for i in _formula_variables(text)
                               if i >= mask.shape[0] or not mask[i, node])
                if stray:
                    raise ValueError(
                        f"{name} layer {index} node {node} uses inputs {stray}, which the "
                        "autoregressive structure does not connect to it; the expressions "
                        "file is corrupt or was edited"
                    )
            layers.append(ExpressionLayer.from_formulas(formulas, mask.shape[0]))
        return tuple(layers)

    return _posterior_from_header(header, expression_layers, "expressions")


def _load_weights(path: Path) -> CompressedPosterior:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        header = json.loads(arrays.pop("header").tobytes().decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a gwtools KAN weights file ({err})") from None
    _check_header(header, path, "weights")
    return posterior_from_weights(header, arrays)


def _load_expressions(path: Path) -> CompressedPosterior:
    try:
        header = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); is it a gwtools expressions file?") from None
    _check_header(header, path, "expressions")
    return posterior_from_expressions(header)


def load(model: str | os.PathLike, source: str = "weights") -> CompressedPosterior:
    """Load a compressed posterior.

    Parameters
    ----------
    model : str or path
        A model stem (``MODEL``), or the path of one of its files
        (``MODEL.weights.npz`` / ``MODEL.expr.json``; the file then decides the source).
    source : {"weights", "expressions"}
        Which file to read when ``model`` is a stem.

    Raises
    ------
    FileNotFoundError
        If the file is missing.
    ValueError
        For an unknown ``source`` or a file of another format or version.
    """
    text = str(model)
    if text.endswith(WEIGHTS_SUFFIX):
        source = "weights"
    elif text.endswith(EXPRESSIONS_SUFFIX):
        source = "expressions"
    if source not in ("weights", "expressions"):
        raise ValueError(f"source must be 'weights' or 'expressions', got {source!r}")
    weights_path, expressions_path = model_paths(model)
    path = weights_path if source == "weights" else expressions_path
    if not path.is_file():
        raise FileNotFoundError(
            f"no compressed-posterior {source} file at {path}; create it with `gwtools compress`"
        )
    return _load_weights(path) if source == "weights" else _load_expressions(path)


def write_weights(path: str | os.PathLike, header: dict, arrays: Mapping[str, np.ndarray]) -> int:
    """Write a weights file atomically; return its size in bytes.

    ``header`` holds ``parameters``, ``transforms``, ``metadata`` and, per density
    (``posterior``, optionally ``prior``), ``n_dim``, ``hidden``, ``n_components``, ``mean``
    and ``scale``; ``arrays`` holds ``<density>_layer<l>_<name>`` arrays.
    """
    header = {"format": "gwtools-kan-weights", "format_version": FORMAT_VERSION, **header}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            # The header as UTF-8 bytes: a numpy string array would spend 4 bytes a character.
            text = np.frombuffer(json.dumps(header, separators=(",", ":")).encode(), np.uint8)
            np.savez_compressed(handle, header=text, **arrays)
    return Path(path).stat().st_size


def write_expressions(path: str | os.PathLike, header: dict) -> int:
    """Write an expressions file atomically; return its size in bytes.

    ``header`` is as for :func:`write_weights`, with per density ``layers``: a list of
    layers, each a list of node formulas.
    """
    header = {"format": "gwtools-kan-expressions", "format_version": FORMAT_VERSION, **header}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(header, separators=(",", ":")))
    return Path(path).stat().st_size
