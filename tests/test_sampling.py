"""Nested sampling, both engines: analytic evidences and moments, seeding, checkpoints, batches.

Known answers: a Gaussian on a box (ln Z from the error function), a curved "banana" density
(ln Z and moments by 2-D adaptive quadrature) and a von Mises phase across the periodic
boundary (ln Z from the Bessel function I0).
"""

from __future__ import annotations

import gwtools.ringdown.precision  # noqa: F401  (float64 before the likelihoods' data are made)

# isort: split
import jax.numpy as jnp
import jax.scipy.special
import numpy as np
import pytest
import scipy.integrate
from scipy.special import erf, i0

from gwtools.ringdown.dynesty_engine import BatchingPool, _PoolLikelihood
from gwtools.ringdown.sampling import (
    ParameterSpace,
    PriorRange,
    SamplerSettings,
    run_nested,
    run_nested_batch,
)

ENGINES = ("blackjax", "dynesty")
SIGMA = np.array([0.3, 0.5])
MU = np.array([0.4, -0.2])
BOX = 3.0
SPACE = ParameterSpace((PriorRange("x", -BOX, BOX), PriorRange("y", -BOX, BOX)))


class Gaussian2D:
    """Uncorrelated Gaussian likelihood: a JAX per-point function and a numpy batch call.

    Points with x > ``fail_above`` have a NaN likelihood (a prior corner where, say, a matrix
    cannot be factorized).  Its parameters live in ``data``, so every instance shares the
    blackjax engine's compiled program.
    """

    parameters = ("x", "y")

    def __init__(self, mu=MU, sigma=SIGMA, fail_above=np.inf):
        self.data = {"mu": jnp.asarray(mu, dtype=float), "sigma": jnp.asarray(sigma, dtype=float),
                     "fail_above": jnp.asarray(fail_above, dtype=float)}

    def _point(self, row, data):
        z = (row - data["mu"]) / data["sigma"]
        value = -0.5 * jnp.sum(z**2) - jnp.sum(jnp.log(jnp.sqrt(2 * jnp.pi) * data["sigma"]))
        return jnp.where(row[0] > data["fail_above"], jnp.nan, value)

    def __call__(self, theta):
        theta = np.atleast_2d(theta)
        mu, sigma = np.asarray(self.data["mu"]), np.asarray(self.data["sigma"])
        z = (theta - mu) / sigma
        value = -0.5 * np.sum(z**2, axis=1) - np.sum(np.log(np.sqrt(2 * np.pi) * sigma))
        return np.where(theta[:, 0] > float(self.data["fail_above"]), -np.inf, value)


def gaussian_log_evidence(mu=MU, sigma=SIGMA):
    # int N(x; mu, sigma) / (2 BOX) dx over [-BOX, BOX], per dimension
    mass = [0.5 * (erf((BOX - m) / (np.sqrt(2) * s)) - erf((-BOX - m) / (np.sqrt(2) * s)))
            for m, s in zip(mu, sigma)]
    return float(np.sum(np.log(mass)) - 2 * np.log(2 * BOX))


# One likelihood object per density, so the blackjax tests share their compiled programs.
GAUSSIAN = Gaussian2D()
NLIVE = 200


def settings(engine, **kw):
    return SamplerSettings(engine=engine, nlive=kw.pop("nlive", NLIVE), **kw)


@pytest.mark.parametrize("engine", ENGINES)
def test_gaussian_evidence_and_moments_match_analytic_values(engine):
    result = run_nested(GAUSSIAN, SPACE, settings(engine, dlogz=0.05, seed=3), progress=False)
    assert result.log_evidence == pytest.approx(gaussian_log_evidence(), abs=4 * result.log_evidence_err)
    assert 0.05 < result.log_evidence_err < 0.3
    np.testing.assert_allclose(result.samples.mean(0), MU, atol=0.06)
    np.testing.assert_allclose(result.samples.std(0), SIGMA, rtol=0.1)
    assert result.ncall >= result.niter and result.samples.shape[1] == 2
    np.testing.assert_allclose(np.exp(result.log_weights).sum(), 1.0, rtol=1e-9)
    assert result.settings["engine"] == engine


BANANA_X, BANANA_Y, BEND, WIDTH = (-4.0, 4.0), (-3.0, 12.0), 1.5, 0.1


class Banana:
    """x ~ N(0, 1), y ~ N(BEND (x^2 - 1), WIDTH): a thin curved ridge."""

    parameters = ("x", "y")

    def __init__(self):
        self.data = {"bend": jnp.asarray(BEND), "width": jnp.asarray(WIDTH)}

    def _point(self, row, data):
        x, y = row[0], row[1]
        return (-0.5 * x**2 - 0.5 * ((y - data["bend"] * (x**2 - 1)) / data["width"]) ** 2
                - jnp.log(2 * jnp.pi * data["width"]))

    def __call__(self, theta):
        x, y = np.atleast_2d(theta).T
        return -0.5 * x**2 - 0.5 * ((y - BEND * (x**2 - 1)) / WIDTH) ** 2 - np.log(2 * np.pi * WIDTH)


BANANA = Banana()
BANANA_SPACE = ParameterSpace((PriorRange("x", *BANANA_X), PriorRange("y", *BANANA_Y)))


def banana_quadrature(x_range=BANANA_X, y_range=BANANA_Y, weight=lambda x, y: 1.0):
    """int weight * L dx dy over a box, by adaptive quadrature."""
    def density(y, x):
        return weight(x, y) * np.exp(-0.5 * x**2 - 0.5 * ((y - BEND * (x**2 - 1)) / WIDTH) ** 2) / (
            2 * np.pi * WIDTH)

    return scipy.integrate.dblquad(density, *x_range, *y_range, epsabs=1e-13, epsrel=1e-10)[0]


@pytest.mark.parametrize("engine", ["blackjax", pytest.param("dynesty", marks=pytest.mark.slow)])
def test_curved_density_evidence_and_moments_match_quadrature(engine):
    norm = banana_quadrature()
    log_z = np.log(norm) - np.log(np.ptp(BANANA_X) * np.ptp(BANANA_Y))
    inner_x = banana_quadrature(x_range=(-1.0, 1.0)) / norm
    negative_y = banana_quadrature(y_range=(BANANA_Y[0], 0.0)) / norm
    mean_y = banana_quadrature(weight=lambda x, y: y) / norm
    result = run_nested(BANANA, BANANA_SPACE, settings(engine, nlive=1000, seed=5), progress=False)
    assert result.log_evidence == pytest.approx(log_z, abs=4 * result.log_evidence_err)
    post = result.posterior()
    # tolerances: 3-4 times the run-to-run scatter measured over 40 seeds at nlive 400, scaled
    # to nlive 1000 (the live points spread slowly along the thin ridge)
    assert np.mean(np.abs(post["x"]) < 1) == pytest.approx(inner_x, abs=0.1)
    assert np.mean(post["y"] < 0) == pytest.approx(negative_y, abs=0.1)
    assert np.mean(post["y"]) == pytest.approx(mean_y, abs=0.4)
    # the ridge is thin: samples sit on it
    assert np.percentile(np.abs(post["y"] - BEND * (post["x"] ** 2 - 1)), 90) < 3 * WIDTH


KAPPA = 4.0


class VonMisesPhase:
    """A Gaussian in x and a von Mises phase centred on 0 = 2 pi, the periodic boundary."""

    parameters = ("x", "phase")

    def __init__(self):
        self.data = {"kappa": jnp.asarray(KAPPA)}

    def _point(self, row, data):
        return (-0.5 * row[0] ** 2 - 0.5 * jnp.log(2 * jnp.pi)
                + data["kappa"] * jnp.cos(row[1]) - jnp.log(2 * jnp.pi * i0(KAPPA)))


def test_periodic_parameter_wraps_around_its_range():
    space = ParameterSpace((PriorRange("x", -BOX, BOX), PriorRange("phase", 0.0, 2 * np.pi, periodic=True)))
    result = run_nested(VonMisesPhase(), space, settings("blackjax", seed=2), progress=False)
    # prior density 1/(2 BOX) * 1/(2 pi); the likelihood integrates to erf(BOX/sqrt 2) over the box
    log_z = np.log(erf(BOX / np.sqrt(2))) - np.log(2 * BOX) - np.log(2 * np.pi)
    assert result.log_evidence == pytest.approx(log_z, abs=4 * result.log_evidence_err)
    phase = result.posterior()["phase"]
    assert phase.min() >= 0.0 and phase.max() < 2 * np.pi
    # both sides of the boundary are sampled, and the circular mean is the centre
    assert 0.3 < np.mean(phase < np.pi) < 0.7
    assert abs(np.angle(np.mean(np.exp(1j * phase)))) < 0.05


@pytest.mark.parametrize("engine", ENGINES)
def test_same_seed_same_samples_different_seed_different(engine):
    runs = [run_nested(GAUSSIAN, SPACE, settings(engine, dlogz=0.5, seed=s), progress=False) for s in (7, 7, 8)]
    np.testing.assert_array_equal(runs[0].samples, runs[1].samples)
    assert runs[0].log_evidence == runs[1].log_evidence
    assert runs[0].log_evidence != runs[2].log_evidence


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.filterwarnings("ignore:The sampling was stopped short")
def test_a_stopped_run_resumes_from_its_checkpoint(engine, tmp_path):
    path = tmp_path / "run.ckpt"
    full = settings(engine, dlogz=0.1, seed=1)
    partial = run_nested(GAUSSIAN, SPACE, settings(engine, dlogz=0.1, seed=1, checkpoint_every=0.0, maxcall=700),
                         checkpoint_path=path, progress=False)
    assert path.exists()
    resumed = run_nested(GAUSSIAN, SPACE, full, checkpoint_path=path, resume=True, progress=False)
    # it continued from where the partial run stopped instead of starting again
    assert resumed.resumed_ncall == partial.ncall
    assert resumed.niter > partial.niter
    assert resumed.log_evidence == pytest.approx(gaussian_log_evidence(), abs=4 * resumed.log_evidence_err)
    if engine == "blackjax":
        # the key travels with the state: a resumed run is the uninterrupted run
        uninterrupted = run_nested(GAUSSIAN, SPACE, full, progress=False)
        assert partial.ncall < uninterrupted.ncall / 2
        np.testing.assert_array_equal(resumed.samples, uninterrupted.samples)
        assert (resumed.ncall, resumed.log_evidence) == (uninterrupted.ncall, uninterrupted.log_evidence)


@pytest.mark.parametrize("engine", ENGINES)
def test_foreign_and_truncated_checkpoints_are_clear_errors(engine, tmp_path):
    path = tmp_path / "run.ckpt"
    run_nested(GAUSSIAN, SPACE, settings(engine, dlogz=1.0, seed=1), checkpoint_path=path, progress=False)
    other = ParameterSpace((PriorRange("x", -BOX, BOX), PriorRange("y", -2 * BOX, BOX)))
    with pytest.raises(ValueError, match="different analysis"):
        run_nested(GAUSSIAN, other, settings(engine, dlogz=1.0, seed=1), checkpoint_path=path, resume=True,
                   progress=False)
    with pytest.raises(ValueError, match="different analysis"):
        run_nested(GAUSSIAN, SPACE, settings(engine, dlogz=1.0, seed=2), checkpoint_path=path, resume=True,
                   progress=False)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="cannot be read.*delete it"):
        run_nested(GAUSSIAN, SPACE, settings(engine, dlogz=1.0, seed=1), checkpoint_path=path, resume=True,
                   progress=False)


def test_a_batch_of_analyses_runs_in_one_loop():
    means = [(0.4, -0.2), (-1.0, 1.5), (0.0, 0.0)]
    widths = [(0.3, 0.5), (0.05, 0.08), (1.0, 1.0)]  # the narrow one needs the most steps
    datas = [Gaussian2D(m, s).data for m, s in zip(means, widths)]
    results = run_nested_batch(GAUSSIAN, datas, SPACE, settings("blackjax", seed=4), progress=False)
    assert len(results) == 3
    for result, mean, width in zip(results, means, widths):
        assert result.log_evidence == pytest.approx(gaussian_log_evidence(mean, width),
                                                    abs=4 * result.log_evidence_err)
        np.testing.assert_allclose(result.samples.mean(0), mean, atol=0.2 * np.max(width))
        np.testing.assert_allclose(result.samples.std(0), width, rtol=0.15)
    # analyses that converge early stop there: the narrow one made the most steps
    assert results[1].niter > max(results[0].niter, results[2].niter)
    # and analysis 0 of a batch is the single run with the same seed
    single = run_nested(GAUSSIAN, SPACE, settings("blackjax", seed=4), progress=False)
    assert results[0].niter == single.niter
    np.testing.assert_allclose(results[0].log_evidence, single.log_evidence, atol=1e-8)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_batch_with_a_seed_per_analysis_runs_each_as_its_single_run(engine):
    narrow = Gaussian2D((-1.0, 1.5), (0.05, 0.08))
    datas = [GAUSSIAN.data, narrow.data]
    batch = settings(engine, nlive=100, dlogz=0.5, seed=4)
    results = run_nested_batch(GAUSSIAN, datas, SPACE, batch, seeds=[11, 12], progress=False)
    single = run_nested(narrow, SPACE, settings(engine, nlive=100, dlogz=0.5, seed=12), progress=False)
    assert results[1].settings["seed"] == 12 and results[1].niter == single.niter
    assert results[1].ncall == single.ncall
    np.testing.assert_allclose(results[1].log_evidence, single.log_evidence, rtol=0, atol=1e-9)
    np.testing.assert_allclose(results[1].samples, single.samples, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="1 seeds for a batch of 2 analyses"):
        run_nested_batch(GAUSSIAN, datas, SPACE, batch, seeds=[11], progress=False)


def test_a_dynesty_batch_runs_the_analyses_one_after_the_other():
    means = [(0.4, -0.2), (-1.0, 1.5)]
    datas = [Gaussian2D(m).data for m in means]
    results = run_nested_batch(Gaussian2D(), datas, SPACE, settings("dynesty", nlive=100, dlogz=0.5, seed=4),
                               progress=False)
    for result, mean in zip(results, means):
        np.testing.assert_allclose(result.samples.mean(0), mean, atol=0.1)
    assert results[0].settings["seed"] != results[1].settings["seed"]


def test_pool_batches_concurrent_calls_and_propagates_errors():
    class Counting(Gaussian2D):
        def __init__(self):
            super().__init__()
            self.batches = []

        def __call__(self, theta):
            self.batches.append(len(np.atleast_2d(theta)))
            return super().__call__(theta)

    like = Counting()
    pool = BatchingPool(like, size=8)
    single = _PoolLikelihood(like)
    values = pool.map(lambda x: single(x) + single(x + 1), [np.zeros(2)] * 8)
    assert like.batches == [8, 8]
    assert values[0] == pytest.approx(like(np.zeros((1, 2)))[0] + like(np.ones((1, 2)))[0])

    def broken(theta):
        raise RuntimeError("likelihood exploded")

    bad = BatchingPool(broken, size=4)
    with pytest.raises(RuntimeError, match="exploded"):
        bad.map(_PoolLikelihood(broken), [np.zeros(2)] * 4)


def test_impossible_priors_and_settings_are_rejected():
    with pytest.raises(ValueError, match="lower < upper"):
        PriorRange("final_mass", 100.0, 20.0)
    with pytest.raises(ValueError, match="within \\[0, pi\\]"):
        PriorRange("inclination", -1.0, 1.0, kind="sine")
    with pytest.raises(ValueError, match="duplicate"):
        ParameterSpace((PriorRange("x", 0, 1), PriorRange("x", 0, 2)))
    with pytest.raises(ValueError, match="nlive"):
        SamplerSettings(nlive=1)
    with pytest.raises(ValueError, match="queue_size: a setting of engine 'dynesty'"):
        SamplerSettings(queue_size=8)
    with pytest.raises(ValueError, match="differ"):
        run_nested(Gaussian2D(), ParameterSpace((PriorRange("y", 0, 1), PriorRange("x", 0, 1))),
                   progress=False)
    with pytest.raises(ValueError, match="needs a JAX likelihood.*engine = 'dynesty'"):
        run_nested(lambda theta: np.zeros(len(theta)), SPACE, progress=False)


def test_prior_transforms_agree_in_numpy_and_jax_and_sine_is_isotropic():
    space = ParameterSpace((PriorRange("m", 35.0, 140.0), PriorRange("inclination", 0.0, np.pi, kind="sine"),
                            PriorRange("phase", 0.0, 2 * np.pi, periodic=True)))
    u = np.random.default_rng(0).uniform(size=(200_000, 3))
    x = space(u)
    np.testing.assert_allclose(np.asarray(space.transform(jnp.asarray(u))), x, rtol=1e-12)
    hist, _ = np.histogram(np.cos(x[:, 1]), bins=10, range=(-1, 1))
    assert np.all(np.abs(hist / hist.mean() - 1) < 0.03)
    assert x[:, 0].min() >= 35.0 and x[:, 0].max() <= 140.0
    np.testing.assert_allclose(np.asarray(space.wrap(jnp.asarray([[1.2, 0.5, 1.25]]))), [[1.2, 0.5, 0.25]])
    assert not bool(space.in_unit_cube(jnp.asarray([1.2, 0.5, 1.25])))
    assert bool(space.in_unit_cube(jnp.asarray([0.2, 0.5, 1.25])))


@pytest.mark.parametrize("engine", ENGINES)
def test_failed_evaluations_are_reported(engine, caplog):
    failing = Gaussian2D(fail_above=2.5)
    result = run_nested(failing, SPACE, settings(engine, dlogz=1.0, seed=2), progress=False)
    assert "had a non-finite likelihood" in caplog.text
    assert result.posterior()["x"].max() < 2.5


class TwoModes:
    """Two separated Gaussian peaks of weights 2/3 and 1/3 on the box: one bounding ellipsoid
    of the live points holds both and much empty space between them."""

    parameters = ("x", "y")
    centres = np.array([[1.5, 1.5], [-1.5, -1.0]])
    widths = np.array([[0.1, 0.1], [0.1, 0.2]])
    weights = np.array([2.0, 1.0]) / 3.0

    def __init__(self):
        self.data = {"centres": jnp.asarray(self.centres), "widths": jnp.asarray(self.widths),
                     "weights": jnp.asarray(self.weights)}

    def _point(self, row, data):
        z = (row - data["centres"]) / data["widths"]
        log_peaks = -0.5 * jnp.sum(z**2, axis=1) - jnp.sum(jnp.log(2 * jnp.pi * data["widths"] ** 2), axis=1) / 2
        return jax.scipy.special.logsumexp(log_peaks + jnp.log(data["weights"]))


TWO_MODES = TwoModes()


def two_modes_log_evidence():
    # each normalized peak holds all its mass inside the box; the prior density is 1 / (2 BOX)^2
    return -2 * np.log(2 * BOX)


@pytest.mark.parametrize("ellipsoid", [True, False])
def test_bimodal_evidence_and_mode_weights_with_and_without_the_ellipsoid(ellipsoid):
    result = run_nested(TWO_MODES, SPACE, settings("blackjax", dlogz=0.1, seed=5, ellipsoid=ellipsoid),
                        progress=False)
    assert result.log_evidence == pytest.approx(two_modes_log_evidence(), abs=4 * result.log_evidence_err)
    near_first = np.hypot(*(result.samples - TwoModes.centres[0]).T) < 1.0
    # both modes, in about their weights: slice chains do not move between the modes, so the
    # share of each is fixed by the live points that found it early on and scatters by ~0.05
    assert abs(near_first.mean() - 2 / 3) < 0.15


def test_the_ellipsoid_saves_calls_in_few_dimensions_and_hands_over_in_many():
    thin = Gaussian2D(mu=[0.1, -0.2], sigma=[0.02, 1.0])
    truth = gaussian_log_evidence(mu=[0.1, -0.2], sigma=[0.02, 1.0])
    runs = {e: run_nested(thin, SPACE, settings("blackjax", dlogz=0.1, seed=4, ellipsoid=e), progress=False)
            for e in (True, False)}
    for run in runs.values():
        assert run.log_evidence == pytest.approx(truth, abs=4 * run.log_evidence_err)
    assert runs[True].ncall < runs[False].ncall / 3
    # ten dimensions: the ellipsoid's acceptance falls off and the slice chains take over; the
    # evidence stays right and the rounds it still draws cost a small part of the run
    ndim = 10
    space = ParameterSpace(tuple(PriorRange(f"x{i}", -BOX, BOX) for i in range(ndim)))
    wide = Gaussian2D(mu=np.full(ndim, 0.2), sigma=np.full(ndim, 0.4))
    wide.parameters = space.names
    truth = gaussian_log_evidence(mu=np.full(ndim, 0.2), sigma=np.full(ndim, 0.4)) - (ndim - 2) * np.log(2 * BOX)
    runs = {e: run_nested(wide, space, settings("blackjax", dlogz=0.1, seed=4, ellipsoid=e), progress=False)
            for e in (True, False)}
    for run in runs.values():
        assert run.log_evidence == pytest.approx(truth, abs=4 * run.log_evidence_err)
    assert runs[True].ncall < 1.2 * runs[False].ncall
