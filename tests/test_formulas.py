"""Node formulas: the safe reader against numpy, and the writer read back by the reader."""

from __future__ import annotations

import numpy as np
import pytest

from gwtools.compression.formulas import parse_formula
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
