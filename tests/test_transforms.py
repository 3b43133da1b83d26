"""Tests of the parameter transforms against closed forms, scipy and numerical derivatives."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from gwtools.compression.transforms import (
    BOUNDARY_PAD,
    ParameterTransform,
    TransformStack,
    default_transform,
    physical_support,
    widest_gap_centre,
)

TRANSFORMS = [
    ParameterTransform("x", "identity"),
    ParameterTransform("chirp_mass", "log", 0.0),
    ParameterTransform("shifted", "log", -3.0),
    ParameterTransform("a_1", "logit", 0.0, 1.0),
    ParameterTransform("dec", "logit", -0.5 * math.pi, 0.5 * math.pi),
    ParameterTransform("ra", "angle", 0.0, 2 * math.pi, cut=2.0),
]


def _interior(t: ParameterTransform, n: int = 200) -> np.ndarray:
    lower = -5.0 if t.lower is None else t.lower
    upper = lower + 60.0 if t.upper is None else t.upper
    return np.linspace(lower, upper, n + 2)[1:-1]


@pytest.mark.parametrize("t", TRANSFORMS, ids=lambda t: t.kind + "-" + t.name)
def test_inverse_undoes_forward(t):
    x = _interior(t)
    np.testing.assert_allclose(t.inverse(t.forward(x)), x, rtol=1e-12, atol=1e-12)
    # beyond |y| ~ 10 float64 cannot resolve x near a bound finely enough to invert back exactly
    y = np.linspace(-10, 10, 101)
    np.testing.assert_allclose(t.forward(t.inverse(y)), y, atol=1e-9)


@pytest.mark.parametrize("t", TRANSFORMS, ids=lambda t: t.kind + "-" + t.name)
def test_inverse_into_a_buffer_or_in_place(t):
    """Sampling writes inverse transforms into preallocated columns, even over their input."""
    y = np.linspace(-40.0, 40.0, 161)
    expected = t.inverse(y)
    buffer = np.full_like(y, np.nan)
    assert t.inverse(y, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, expected)
    same = y.copy()
    t.inverse(same, out=same)
    np.testing.assert_array_equal(same, expected)
    if t.kind != "identity":
        assert np.all((expected > t.lower) & ((expected < t.upper) if t.upper is not None else True))


@pytest.mark.parametrize("t", TRANSFORMS, ids=lambda t: t.kind + "-" + t.name)
def test_log_jacobian_matches_central_difference(t):
    x = _interior(t, 50)
    h = 1e-6 * (1.0 if t.upper is None else t.upper - t.lower)
    numeric = (t.forward(x + h) - t.forward(x - h)) / (2 * h)
    np.testing.assert_allclose(t.log_abs_det_jacobian(x), np.log(np.abs(numeric)), atol=1e-6)


def test_closed_forms():
    np.testing.assert_allclose(ParameterTransform("m", "log", 0.0).forward([30.0]), [math.log(30.0)])
    p = np.array([0.1, 0.5, 0.93])
    np.testing.assert_allclose(ParameterTransform("q", "logit", 0.0, 1.0).forward(p), special.logit(p))
    # logit on (-1, 1) is 2 artanh(x)
    c = np.array([-0.7, 0.0, 0.4])
    np.testing.assert_allclose(ParameterTransform("c", "logit", -1.0, 1.0).forward(c), 2 * np.arctanh(c))


@pytest.mark.parametrize("t", TRANSFORMS[1:], ids=lambda t: t.kind + "-" + t.name)
def test_pushed_forward_density_integrates_to_one(t):
    # a standard normal in y, pulled back with the Jacobian, is a normalised density in x
    def density(x):
        return math.exp(stats.norm.logpdf(t.forward(np.array([x]))[0]) + t.log_abs_det_jacobian(np.array([x]))[0])

    upper = np.inf if t.upper is None else t.upper
    total, _ = integrate.quad(density, t.lower, upper, limit=200)
    assert total == pytest.approx(1.0, abs=1e-6)


def test_stack_density_matches_logit_normal_closed_form():
    rng = np.random.default_rng(0)
    stack = TransformStack((ParameterTransform("a_1", "logit", 0.0, 1.0), ParameterTransform("m", "log", 0.0)))
    x = stack.inverse(rng.normal(size=(1000, 2)))
    log_px = stats.norm.logpdf(stack.forward(x)).sum(axis=1) + stack.log_abs_det_jacobian(x)
    # logit-normal and log-normal densities written out by hand
    a, m = x[:, 0], x[:, 1]
    expected = (
        -0.5 * special.logit(a) ** 2 - 0.5 * math.log(2 * math.pi) - np.log(a * (1 - a))
        + stats.lognorm.logpdf(m, s=1.0)
    )
    np.testing.assert_allclose(log_px, expected, rtol=1e-10)


def test_default_transform_supports():
    assert physical_support("chirp_mass") == ("log", 0.0, None)
    assert physical_support("luminosity_distance") == ("log", 0.0, None)
    assert physical_support("mass_ratio") == ("logit", 0.0, 1.0)
    assert physical_support("tilt_2") == ("logit", 0.0, math.pi)
    assert physical_support("ra") == ("angle", 0.0, 2 * math.pi)
    assert physical_support("psi") == ("angle", 0.0, math.pi)
    assert physical_support("dec") == ("logit", -math.pi / 2, math.pi / 2)
    assert physical_support("cos_theta_jn") == ("logit", -1.0, 1.0)
    assert default_transform("geocent_time").kind == "identity"


def test_default_transform_pads_bounds_touched_by_samples():
    q = np.array([0.3, 0.8, 1.0])
    t = default_transform("mass_ratio", q)
    assert t.lower == 0.0 and t.upper == pytest.approx(1.0 + BOUNDARY_PAD)
    assert np.all(np.isfinite(t.forward(q)))
    assert default_transform("mass_ratio", q[:2]).upper == 1.0


def test_support_samples_widen_logit_bounds_but_not_the_angle_cut():
    """Prior draws go through the posterior's transforms: they must map to finite values, but
    must not move a periodic angle's cut, which belongs in the posterior's empty arc."""
    names = ("mass_ratio", "ra")
    posterior = np.column_stack([[0.3, 0.5, 0.8], [0.1, 0.2, 6.2]])
    prior = np.column_stack([[0.2, 1.0, 0.6], [1.0, 3.0, 5.0]])
    stack = TransformStack.default(names, posterior, support_samples=prior)
    q, ra = stack.transforms
    assert q.upper == pytest.approx(1.0 + BOUNDARY_PAD)
    assert np.all(np.isfinite(stack.forward(prior)))
    assert ra.cut == pytest.approx(widest_gap_centre(posterior[:, 1], 0.0, 2 * math.pi))
    assert TransformStack.default(names, posterior).transforms[0].upper == 1.0
    with pytest.raises(ValueError, match="support_samples must have shape"):
        TransformStack.default(names, posterior, support_samples=prior[:, :1])
    with pytest.raises(ValueError, match="outside its support"):
        TransformStack.default(names, posterior, support_samples=prior + [[0.5, 0.0]])
    with pytest.raises(ValueError, match="ra.*outside its support"):
        TransformStack.default(names, posterior, support_samples=prior + [[0.0, 7.0]])


def test_default_transform_rejects_unphysical_samples():
    with pytest.raises(ValueError, match="a_1.*outside its support"):
        default_transform("a_1", np.array([0.5, 1.2]))
    with pytest.raises(ValueError, match="must be > 0"):
        default_transform("chirp_mass", np.array([0.0, 3.0]))
    with pytest.raises(ValueError, match="outside its support"):
        default_transform("a_2", np.array([0.5, np.nan]))


def test_forward_rejects_out_of_support_and_stack_masks_it():
    stack = TransformStack.default(["chirp_mass", "a_1"])
    x = np.array([[30.0, 0.5], [-1.0, 0.5], [30.0, 1.5]])
    np.testing.assert_array_equal(stack.in_support(x), [True, False, False])
    with pytest.raises(ValueError, match="chirp_mass"):
        stack.forward(x)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        stack.forward(np.zeros((3, 3)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="a", kind="sqrt"), "unknown"),
        (dict(name="a", kind="log"), "finite lower"),
        (dict(name="a", kind="logit", lower=1.0, upper=0.0), "lower < upper"),
        (dict(name="a", kind="identity", lower=0.0), "takes no lower"),
    ],
)
def test_invalid_transforms_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ParameterTransform(**kwargs)


def test_dict_round_trip_through_json():
    stack = TransformStack.default(["chirp_mass", "mass_ratio", "tilt_1", "geocent_time"])
    again = TransformStack.from_dict(json.loads(json.dumps(stack.to_dict())))
    assert again == stack
    with pytest.raises(ValueError, match="unknown transform keys"):
        ParameterTransform.from_dict({"name": "a", "kind": "identity", "scale": 2})
    with pytest.raises(ValueError, match="duplicate"):
        TransformStack((TRANSFORMS[0], TRANSFORMS[0]))


def test_bound_overrides():
    a = np.array([0.2, 0.5, 0.98])
    t = default_transform("a_1", a, bounds=(0.0, 0.99))
    assert (t.kind, t.lower, t.upper) == ("logit", 0.0, 0.99)
    assert default_transform("geocent_time", bounds=(1e9, None)).kind == "log"
    with pytest.raises(ValueError, match="outside its support"):
        default_transform("a_1", np.array([0.995]), bounds=(0.0, 0.99))
    stack = TransformStack.default(["a_1", "a_2"], np.column_stack([a, a]), bounds={"a_2": (0.0, 0.99)})
    assert [t.upper for t in stack.transforms] == [1.0, 0.99]
    with pytest.raises(ValueError, match="not among the parameters"):
        TransformStack.default(["a_1"], bounds={"a_3": (0.0, 1.0)})


def test_inverse_of_extreme_values_stays_inside_the_support():
    for t in TRANSFORMS[1:]:
        # a log transform's inverse genuinely overflows for y > 709, so only logits get large y
        x = t.inverse(np.array([-1e4, -800.0] + ([800.0, 1e4] if t.kind in ("logit", "angle") else [])))
        assert np.all(t.contains(x)) and np.all(np.isfinite(t.forward(x)))
        assert np.all(x > t.lower) and (t.upper is None or np.all(x < t.upper))


def test_angle_cut_goes_to_the_widest_empty_arc_and_keeps_a_wrapping_cluster_connected():
    """A von Mises cluster around ra = 0 straddles the interval's ends: a logit splits it into
    two tails at -inf and +inf, the angle transform cut opposite it keeps it one region."""
    rng = np.random.default_rng(3)
    ra = np.mod(stats.vonmises.rvs(kappa=20.0, loc=0.0, size=4000, random_state=rng), 2 * math.pi)
    cut = widest_gap_centre(ra, 0.0, 2 * math.pi)
    assert abs(cut - math.pi) < 0.5
    t = default_transform("ra", ra)
    assert (t.kind, t.cut) == ("angle", cut)
    y = t.forward(ra)
    assert np.ptp(y) < 3.0  # one compact region
    split = ParameterTransform("ra", "logit", 0.0, 2 * math.pi).forward(ra)
    assert np.ptp(split) > 6.0
    np.testing.assert_allclose(t.inverse(y), ra, atol=1e-12)
    # The cut also wraps: samples on the far side of the upper end.
    assert widest_gap_centre(np.array([3.0, 3.5, 5.8]), 0.0, 2 * math.pi) == pytest.approx(
        0.5 * (5.8 + 3.0 + 2 * math.pi) - 2 * math.pi)


def test_angle_density_integrates_to_one_over_the_circle():
    """A standard normal in y pulled back through the angle transform is a density on the circle."""
    t = ParameterTransform("psi", "angle", 0.0, math.pi, cut=2.5)

    def density(x):
        return np.exp(stats.norm.logpdf(t.forward(np.array([x]))) + t.log_abs_det_jacobian(np.array([x])))[0]

    total = sum(integrate.quad(density, a, b, limit=200)[0] for a, b in ((0.0, 2.5), (2.5, math.pi)))
    assert total == pytest.approx(1.0, abs=1e-8)


def test_angle_transform_validation_and_round_trip_through_a_dict():
    t = ParameterTransform("phase", "angle", 0.0, 2 * math.pi, cut=4.0)
    assert ParameterTransform.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    assert ParameterTransform("phase", "angle", 0.0, 2 * math.pi).cut == 0.0
    with pytest.raises(ValueError, match="cut in"):
        ParameterTransform("phase", "angle", 0.0, 2 * math.pi, cut=7.0)
    with pytest.raises(ValueError, match="takes no cut"):
        ParameterTransform("a_1", "logit", 0.0, 1.0, cut=0.5)
    # Bounds on a periodic angle make it an interval again.
    assert default_transform("ra", bounds=(0.0, 2 * math.pi)).kind == "logit"
