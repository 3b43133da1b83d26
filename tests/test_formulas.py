"""Node formulas: the safe reader against numpy, and the writer read back by the reader."""

from __future__ import annotations

import numpy as np
import pytest

from gwtools.compression.formulas import (
    LIBRARY,
    EdgeTerms,
    formula_variables,
    parse_formula,
    write_layer_formulas,
)
from gwtools.compression.layers import ExpressionLayer


def test_formula_parser_matches_numpy_and_splits_polynomial_terms():
    x = np.random.default_rng(0).normal(size=(50, 3))
    text = ("0.5*x0 - 2*x2 + 1.25*tanh(0.3*x1 - 0.2) - exp(-(x0+1)**2) + 0.75 - x1"
            " + 0.4*x1**2 - x2**2 + 0.2*(x0 - 1)**2 + x0**3")
    weights, constant, nonlinear = parse_formula(text, 3)
    np.testing.assert_allclose(weights, [[0.5, 0.0], [-1.0, 0.4], [-2.0, -1.0]])
    assert constant == pytest.approx(0.75)
    # Powers of sums and other powers stay general terms.
    assert len(nonlinear) == 4
    value = x @ weights[:, 0] + x**2 @ weights[:, 1] + constant + sum(term(x) for term in nonlinear)
    expected = (
        0.5 * x[:, 0] - 2 * x[:, 2] + 1.25 * np.tanh(0.3 * x[:, 1] - 0.2)
        - np.exp(-((x[:, 0] + 1) ** 2)) + 0.75 - x[:, 1]
        + 0.4 * x[:, 1] ** 2 - x[:, 2] ** 2 + 0.2 * (x[:, 0] - 1) ** 2 + x[:, 0] ** 3
    )
    np.testing.assert_allclose(value, expected, rtol=1e-12)


@pytest.mark.parametrize(
    "text",
    ["__import__('os').system('true')", "x0.real", "y0 + 1", "x5", "lambda: 1", "open(x0)",
     "x0 +", "[x0]"],
)
def test_formula_parser_rejects_anything_else(text):
    with pytest.raises(ValueError):
        parse_formula(text, 3)


def test_expression_layer_input_permutation():
    rng = np.random.default_rng(10)
    layer = ExpressionLayer.from_formulas(
        ["0.5*x0 - x2 + tanh(0.3*x1 - x2)", "exp(-x2**2) + 2*x1 - 0.3*x0**2", "sin(x0*x1) - 0.1"],
        3)
    order = np.array([2, 0, 1])
    x = rng.normal(size=(40, 3))
    np.testing.assert_allclose(layer.permute_inputs(order)(x[:, order]), layer(x), rtol=1e-12)


def test_written_formulas_read_back_to_the_symbolic_layer():
    """The writer and the reader in one round trip, numpy only: every library function,
    pruned edges (constants), masked edges and second terms, against an explicit sum of
    c f(a x + b) + d; rounding stays within the tolerance per term."""
    functions = {"x": lambda u: u, "x^2": lambda u: u * u, "x^3": lambda u: u * u * u,
                 "exp": np.exp, "sin": np.sin, "cos": np.cos, "tanh": np.tanh, "abs": np.abs,
                 "gaussian": lambda u: np.exp(-u * u)}
    assert set(functions) == set(LIBRARY)
    rng = np.random.default_rng(12)
    n_in, n_out = 3, 5
    names = sorted(functions) + ["0"]
    terms = []
    for offset in (0, 4):
        choice = [[names[(i + 2 * j + offset) % len(names)] for i in range(n_in)]
                  for j in range(n_out)]
        affine = np.column_stack([rng.uniform(0.5, 3.0, n_in * n_out), rng.uniform(-1, 1, n_in * n_out),
                                  rng.uniform(-2, 2, n_in * n_out), rng.uniform(-1, 1, n_in * n_out)])
        mask = rng.random((n_out, n_in)) < (0.8 if offset == 0 else 0.3)
        terms.append(EdgeTerms(tuple(map(tuple, choice)), affine.reshape(n_out, n_in, 4), mask))
    bias = rng.normal(size=n_out)
    x = rng.uniform(-2, 2, size=(500, n_in))
    exact = np.zeros((len(x), n_out)) + bias
    for edges in terms:
        for j in range(n_out):
            for i in range(n_in):
                if edges.mask[j, i]:
                    a, b, c, d = edges.affine[j, i]
                    name = edges.names[j][i]
                    value = 0.0 if name == "0" else c * functions[name](a * x[:, i] + b)
                    exact[:, j] += value + d
    tolerance = 1e-5
    written = write_layer_formulas(terms, bias, x, 3, tolerance)
    assert len(written) == n_out
    got = ExpressionLayer.from_formulas(written, n_in)(x)
    n_terms = 2 * n_in + 1
    assert np.abs(got - exact).max() <= n_terms * tolerance
    # A masked edge's input appears in no formula of its node.
    for j, text in enumerate(written):
        live = {i for i in range(n_in) if any(e.mask[j, i] and e.names[j][i] != "0" for e in terms)}
        assert formula_variables(text) == live
    # Without sample inputs the constants get 3 digits: coarser, as the test can tell.
    rough = ExpressionLayer.from_formulas(write_layer_formulas(terms, bias, None, 3), n_in)(x)
    assert np.abs(rough - exact).max() > 10 * n_terms * tolerance
