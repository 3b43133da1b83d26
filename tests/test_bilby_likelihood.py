"""The bilby adapter of the FIREFLY likelihood: values, a bilby dynesty run checked against a
brute-force integral, and the configuration route (priors of sampled angles)."""

from __future__ import annotations

import math
from pathlib import Path

import bilby
import numpy as np
import pytest
from helpers import gw150914_like  # the injection of benchmarks/firefly_vs_full.py
from scipy.special import logsumexp

from gwtools.ringdown.bilby_likelihood import FireflyBilbyLikelihood, from_config
from gwtools.ringdown.firefly import FireflyLikelihood, QuadraturePrior
from gwtools.ringdown.results import bilby_priors

MASS, SPIN = (40.0, 110.0), (0.0, 0.99)


@pytest.fixture(scope="module")
def injection_likelihood():
    """FIREFLY likelihood of a 220 injection (Mf 68, chi 0.69, SNR ~11) in GW150914-like noise."""
    model, data, injection, snr = gw150914_like(["220"], duration=0.05)
    assert snr > 8
    fixed = {"inclination": injection.inclination, "polarization": injection.polarization}
    return FireflyLikelihood(
        model, data, ("final_mass", "final_spin"), fixed, QuadraturePrior(amplitude_max=20.0)
    )


def test_values_follow_the_parameter_names_not_their_order(injection_likelihood):
    adapter = FireflyBilbyLikelihood(injection_likelihood)
    # bilby hands a dict; its order (and extra keys) must not matter
    value = adapter.log_likelihood({"final_spin": 0.6, "final_mass": 62.0, "phase": 1.0})
    assert value == pytest.approx(float(injection_likelihood(np.array([62.0, 0.6]))), rel=0, abs=1e-9)
    assert value != pytest.approx(float(injection_likelihood(np.array([0.6, 62.0]))), abs=1.0)
    assert adapter.noise_log_likelihood() == pytest.approx(float(injection_likelihood.data.log_l0))
    assert adapter.log_likelihood_ratio({"final_mass": 62.0, "final_spin": 0.6}) == pytest.approx(
        value - adapter.noise_log_likelihood())
    with pytest.raises(ValueError, match=r"no value for \['final_spin'\]"):
        adapter.log_likelihood({"final_mass": 62.0})
    with pytest.raises(ValueError, match="pass the parameters"):
        adapter.log_likelihood()


def test_bilby_dynesty_run_matches_a_brute_force_integral(injection_likelihood, tmp_path):
    adapter = FireflyBilbyLikelihood(injection_likelihood)
    priors = bilby_priors({"final_mass": MASS, "final_spin": SPIN})
    result = bilby.run_sampler(
        adapter, priors, sampler="dynesty", nlive=150, dlogz=0.1, sample="rwalk",
        outdir=str(tmp_path), label="bilby_firefly", save=False, plot=False, seed=11,
        check_point=False, resume=False,
    )
    # independent answer: the same likelihood integrated over the prior box on a fine grid
    masses = np.linspace(*MASS, 281)
    spins = np.linspace(*SPIN, 199)
    grid = np.stack(np.meshgrid(masses, spins, indexing="ij"), axis=-1).reshape(-1, 2)
    log_l = injection_likelihood(grid).reshape(masses.size, spins.size)
    weights = np.outer(np.gradient(masses), np.gradient(spins))  # trapezoid-like cell areas
    log_z_grid = logsumexp(log_l, b=weights) - math.log((MASS[1] - MASS[0]) * (SPIN[1] - SPIN[0]))
    post = np.exp(log_l - log_l.max()) * weights
    mean_mass = np.sum(post.sum(axis=1) * masses) / post.sum()
    assert result.log_evidence == pytest.approx(log_z_grid, abs=max(3 * result.log_evidence_err, 0.3))
    assert result.posterior["final_mass"].mean() == pytest.approx(mean_mass, abs=1.5)
    assert result.log_noise_evidence == pytest.approx(float(injection_likelihood.data.log_l0))


def test_from_config_samples_the_angles_it_is_asked_to(project_data, tmp_path):
    from gwtools.ringdown.config import load_config, override
    from gwtools.ringdown.pipeline import (
        build_likelihood,
        estimate_acfs,
        load_strain,
        prepare_analysis,
    )

    base = override(
        load_config(Path(__file__).resolve().parents[1] / "pipelines" / "gw150914.toml"),
        {"analysis": {"duration": 0.05, "sample_rate": 1024.0}, "output": {"directory": str(tmp_path)}},
    )
    likelihood, priors = from_config(base, sample=("polarization",))
    assert likelihood.sampled_parameters == ("final_mass", "final_spin", "polarization")
    assert isinstance(priors["polarization"], bilby.core.prior.Uniform)
    assert priors["polarization"].boundary == "periodic" and priors["polarization"].maximum == math.pi
    assert (priors["final_mass"].minimum, priors["final_mass"].maximum) == (35.0, 140.0)
    # sampling psi and evaluating at psi = 0.3 is the configuration's likelihood with psi fixed to 0.3
    fixed = override(base, {"event": {"psi": 0.3}})
    strain = load_strain(fixed)
    reference, _ = build_likelihood(fixed, prepare_analysis(fixed, strain, estimate_acfs(fixed, strain)))
    point = {"final_mass": 70.0, "final_spin": 0.7, "polarization": 0.3}
    expected = float(reference(np.array([70.0, 0.7])))
    assert likelihood.log_likelihood(point) == pytest.approx(expected, abs=1e-8)
    sampled = override(base, {"prior": {"cos_inclination": [-1.0, 1.0]}})
    _, priors = from_config(sampled)
    assert isinstance(priors["inclination"], bilby.core.prior.Sine)
    with pytest.raises(ValueError, match="can sample only"):
        from_config(base, sample=("phase",))
