"""Spline maths (numpy only): B-spline bases against scipy, and the truncated-power features
of sampling against the B-spline layer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import interpolate

from gwtools.compression.layers import SplineLayer
from gwtools.compression.splines import cubic_bspline_basis


def test_bspline_basis_matches_scipy():
    lo, step, n_intervals = np.array([-2.0, 0.5]), np.array([0.8, 0.1]), 5
    x = np.column_stack([np.linspace(-6, 6, 401), np.linspace(-0.2, 1.5, 401)])
    basis = cubic_bspline_basis(x, lo, step, n_intervals)
    assert basis.shape == (401, 2, n_intervals + 3)
    for m in range(2):
        knots = lo[m] + step[m] * np.arange(-3, n_intervals + 4)
        for b in range(n_intervals + 3):
            element = interpolate.BSpline.basis_element(knots[b : b + 5], extrapolate=False)
            expected = np.nan_to_num(element(x[:, m]))
            np.testing.assert_allclose(basis[:, m, b], expected, atol=1e-12)


@pytest.mark.parametrize("n_intervals", [1, 2, 5, 8])
def test_sampling_features_reproduce_the_bspline_layer(n_intervals):
    """The truncated-power features used in sampling, with their transformed weights, give
    the layer's B-spline outputs: inside the grid, in the extension cells and beyond."""
    rng = np.random.default_rng(n_intervals)
    n_in, n_out, n_feat = 3, 4, n_intervals + 4
    layer = SplineLayer(
        grid_lo=np.array([-2.0, -0.5, 1.0]), grid_step=np.array([4.0, 1.0, 0.5]) / n_intervals,
        n_intervals=n_intervals, weights=rng.normal(size=(n_in * n_feat, n_out)),
        bias=rng.normal(size=n_out))
    x = np.column_stack([rng.uniform(-9, 9, 3000), rng.uniform(-3, 3, 3000),
                         rng.uniform(-1, 4, 3000)])
    expected = layer(x)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 3e-5)):
        features = np.empty((n_in * n_feat, len(x)), dtype=dtype)
        for i in range(n_in):
            layer.feature_rows(x[:, i].astype(dtype), i, features[i * n_feat : (i + 1) * n_feat])
        got = layer.combine_rows(features, slice(None), n_in).T
        scale = np.abs(layer.weights).sum(axis=0)  # bound on any output's magnitude
        assert np.abs(got - expected).max() / scale.max() < tol
