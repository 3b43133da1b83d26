"""Nested-sampling driver: analytic evidence, batching, seeding, checkpoint and resume."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from gwtools.ringdown.sampling import (
    BatchingPool,
    ParameterSpace,
    PriorRange,
    SamplerSettings,
    _PoolLikelihood,
    run_nested,
)

SIGMA = np.array([0.3, 0.5])
MU = np.array([0.4, -0.2])
BOX = 3.0


class Gaussian2D:
    """Vectorized correlated-free Gaussian likelihood with a known evidence on a uniform box."""

    parameters = ("x", "y")

    def __init__(self):
        self.calls = 0
        self.batches = []

    def __call__(self, theta):
        theta = np.atleast_2d(theta)
        self.calls += len(theta)
        self.batches.append(len(theta))
        z = (theta - MU) / SIGMA
        return -0.5 * np.sum(z**2, axis=1) - np.sum(np.log(np.sqrt(2 * np.pi) * SIGMA))


def analytic_log_evidence():
    # int N(x; mu, sigma) / (2 BOX) dx over [-BOX, BOX], per dimension
    mass = [0.5 * (erf((BOX - m) / (np.sqrt(2) * s)) - erf((-BOX - m) / (np.sqrt(2) * s)))
            for m, s in zip(MU, SIGMA)]
    return float(np.sum(np.log(mass)) - 2 * np.log(2 * BOX))


SPACE = ParameterSpace((PriorRange("x", -BOX, BOX), PriorRange("y", -BOX, BOX)))


def test_evidence_and_posterior_match_analytic_values():
    like = Gaussian2D()
    result = run_nested(like, SPACE, SamplerSettings(nlive=300, dlogz=0.05, seed=3, queue_size=32),
                        progress=False)
    assert result.log_evidence == pytest.approx(analytic_log_evidence(), abs=4 * result.log_evidence_err + 0.05)
    np.testing.assert_allclose(result.samples.mean(0), MU, atol=0.05)
    np.testing.assert_allclose(result.samples.std(0), SIGMA, rtol=0.1)
    # likelihood calls really were batched
    assert max(like.batches) >= 16
    assert result.ncall >= result.niter


def test_same_seed_same_samples_different_seed_different():
    runs = [run_nested(Gaussian2D(), SPACE, SamplerSettings(nlive=100, dlogz=0.5, seed=s, sample="rwalk"),
                       progress=False) for s in (7, 7, 8)]
    np.testing.assert_array_equal(runs[0].samples, runs[1].samples)
    assert runs[0].log_evidence != runs[2].log_evidence


@pytest.mark.filterwarnings("ignore:The sampling was stopped short")
def test_checkpoint_and_resume(tmp_path):
    path = tmp_path / "run.ckpt"
    settings = SamplerSettings(nlive=100, dlogz=0.1, seed=1, checkpoint_every=0.0, maxcall=600)
    partial = run_nested(Gaussian2D(), SPACE, settings, checkpoint_path=path, progress=False)
    assert path.exists()
    resumed = run_nested(Gaussian2D(), SPACE, SamplerSettings(nlive=100, dlogz=0.1, seed=1),
                         checkpoint_path=path, resume=True, progress=False)
    assert resumed.niter > partial.niter
    # a different analysis must not silently continue this checkpoint
    other = ParameterSpace((PriorRange("x", -BOX, BOX), PriorRange("y", -2 * BOX, BOX)))
    with pytest.raises(ValueError, match="different analysis"):
        run_nested(Gaussian2D(), other, SamplerSettings(nlive=100, dlogz=0.1, seed=1),
                   checkpoint_path=path, resume=True, progress=False)
    assert resumed.log_evidence == pytest.approx(analytic_log_evidence(), abs=4 * resumed.log_evidence_err + 0.1)


def test_pool_batches_concurrent_calls_and_propagates_errors():
    like = Gaussian2D()
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
    with pytest.raises(ValueError, match="differ"):
        run_nested(Gaussian2D(), ParameterSpace((PriorRange("y", 0, 1), PriorRange("x", 0, 1))),
                   progress=False)


def test_sine_prior_transform_is_isotropic():
    prior = PriorRange("inclination", 0.0, np.pi, kind="sine")
    u = np.random.default_rng(0).uniform(size=200_000)
    cos_i = np.cos(prior.transform(u))
    hist, _ = np.histogram(cos_i, bins=10, range=(-1, 1))
    assert np.all(np.abs(hist / hist.mean() - 1) < 0.03)


def test_failed_evaluations_are_reported(caplog):
    class Failing(Gaussian2D):
        n_failed = 0

        def __call__(self, theta):
            values = super().__call__(theta)
            bad = np.atleast_2d(theta)[:, 0] > 2.5  # a corner of the prior "cannot be factorized"
            self.n_failed += int(bad.sum())
            return np.where(bad, -np.inf, values)

    run_nested(Failing(), SPACE, SamplerSettings(nlive=50, dlogz=1.0, seed=2), progress=False)
    assert "were not finite" in caplog.text
