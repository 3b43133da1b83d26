"""Results files: HDF5 round trip, format checks, atomic writes, bilby view, summaries."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
import scipy.stats

from gwtools.ringdown.results import (
    FORMAT_VERSION,
    RingdownResult,
    credible_interval,
    read_result,
    save_bilby_result,
    software_versions,
    to_bilby_result,
    write_result,
)


def make_result(n: int = 500, seed: int = 3) -> RingdownResult:
    rng = np.random.default_rng(seed)
    return RingdownResult(
        label="GW150914_220+221",
        # deliberately not alphabetical: the stored order must survive
        posterior={
            "final_spin": rng.uniform(0.5, 0.9, n),
            "final_mass": rng.normal(68.0, 4.0, n),
            "amplitude_220": rng.gamma(4.0, 1.0, n),
            "phase_220": rng.uniform(0, 2 * np.pi, n),
        },
        search_parameters=("final_spin", "final_mass"),
        search_ranges={"final_mass": (35.0, 140.0), "final_spin": (0.0, 0.99)},
        log_evidence={"flat": (39030.1, 0.12), "physical": (39029.4, 0.15)},
        config={"event": {"name": "GW150914", "time": 1126259462.423}, "model": {"modes": ["220"]}},
        units={"final_mass": "solar mass (detector frame)", "amplitude_220": "1e-21 strain"},
        diagnostics={"ncall": 123456, "sampling_walltime": 81.5, "importance_ess": 812.3},
        versions=software_versions(),
        checksums={"/data/h1.hdf5": "ab" * 32},
        waveforms={"H1": {"time": np.arange(10) / 2048, "whitened_data": rng.normal(size=10)}},
    )


def test_round_trip_preserves_everything(tmp_path):
    result = make_result()
    path = write_result(result, tmp_path / "sub" / "run.h5")
    back = read_result(path)
    assert list(back.posterior) == list(result.posterior)
    for name, values in result.posterior.items():
        np.testing.assert_array_equal(back.posterior[name], values)
    assert back.search_parameters == result.search_parameters
    assert back.search_ranges == result.search_ranges
    assert back.log_evidence == result.log_evidence
    assert back.config == result.config
    assert back.units == result.units
    assert back.diagnostics == result.diagnostics
    assert back.versions == result.versions
    assert back.checksums == result.checksums
    np.testing.assert_array_equal(back.waveforms["H1"]["whitened_data"], result.waveforms["H1"]["whitened_data"])
    assert back.label == result.label and back.n_samples == 500
    assert not [p for p in path.parent.iterdir() if p.name != "run.h5"]  # no temp files left


def test_software_versions_are_the_installed_ones():
    import dynesty

    versions = software_versions()
    assert versions["numpy"] == np.__version__
    assert versions["dynesty"] == dynesty.__version__
    assert {"gwtools", "jax", "bilby"} <= set(versions)


def test_wrong_format_version_and_foreign_files_are_refused(tmp_path):
    path = write_result(make_result(), tmp_path / "run.h5")
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}"):
        read_result(path)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["strain/Strain"] = np.zeros(4)
    with pytest.raises(ValueError, match="not a gwtools ringdown result"):
        read_result(foreign)
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        read_result(text)
    with pytest.raises(FileNotFoundError):
        read_result(tmp_path / "absent.h5")


def test_failed_write_leaves_the_previous_file_intact(tmp_path):
    path = write_result(make_result(), tmp_path / "run.h5")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    broken = make_result()
    object.__setattr__(broken, "waveforms", {"H1": {"time": np.array(["not", "numbers"])}})
    with pytest.raises(ValueError):
        write_result(broken, path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert [p.name for p in tmp_path.iterdir()] == ["run.h5"]


def test_inconsistent_results_are_rejected():
    good = make_result()
    with pytest.raises(ValueError, match="differ in length"):
        RingdownResult(label="x", posterior={"a": np.zeros(3), "b": np.zeros(4)},
                       search_parameters=(), search_ranges={}, log_evidence={}, config={})
    with pytest.raises(ValueError, match="no posterior column"):
        RingdownResult(label="x", posterior=good.posterior, search_parameters=("inclination",),
                       search_ranges={"inclination": (0, 1)}, log_evidence={}, config={})


@pytest.mark.parametrize("suffix", [".json", ".hdf5"])
def test_bilby_view_round_trips_through_bilby(tmp_path, suffix):
    import bilby

    result = make_result()
    path = save_bilby_result(result, tmp_path / f"run_bilby{suffix}", prior="physical")
    back = bilby.core.result.read_in_result(str(path))
    assert back.log_evidence == pytest.approx(39029.4)
    assert back.log_evidence_err == pytest.approx(0.15)
    assert back.search_parameter_keys == ["final_spin", "final_mass"]
    np.testing.assert_allclose(back.posterior["final_mass"].to_numpy(), result.posterior["final_mass"])
    assert back.num_likelihood_evaluations == 123456
    assert list(back.meta_data["log_evidence_by_prior"]["flat"]) == [39030.1, 0.12]
    assert back.priors["final_spin"].maximum == 0.99
    assert to_bilby_result(result, prior="flat").log_evidence == pytest.approx(39030.1)
    with pytest.raises(ValueError, match="no evidence for prior 'gaussian'"):
        to_bilby_result(result, prior="gaussian")
    with pytest.raises(ValueError, match="JSON"):
        save_bilby_result(result, tmp_path / "run.pkl")


def test_credible_interval_matches_the_normal_quantiles():
    samples = np.random.default_rng(11).normal(2.0, 3.0, 400_000)
    median, lower, upper = credible_interval(samples, 0.9)
    z = scipy.stats.norm.ppf(0.95)
    assert median == pytest.approx(2.0, abs=0.03)
    assert lower == pytest.approx(2.0 - 3.0 * z, abs=0.04)
    assert upper == pytest.approx(2.0 + 3.0 * z, abs=0.04)
    with pytest.raises(ValueError, match="credible level"):
        credible_interval(samples, 90)
    with pytest.raises(ValueError, match="no samples"):
        credible_interval([], 0.9)


def test_bilby_priors_follow_the_sampled_prior_kinds(tmp_path):
    import bilby

    base = make_result()
    rng = np.random.default_rng(9)
    posterior = {**base.posterior, "inclination": np.arccos(rng.uniform(-1.0, -0.5, base.n_samples)),
                 "polarization": rng.uniform(0.0, np.pi, base.n_samples)}
    result = RingdownResult(
        label="sampled angles", posterior=posterior,
        search_parameters=("final_mass", "final_spin", "inclination", "polarization"),
        search_ranges={**base.search_ranges, "inclination": (2 * np.pi / 3, np.pi),
                       "polarization": (0.0, np.pi)},
        log_evidence=base.log_evidence, config=base.config,
        prior_kinds={"inclination": "sine"}, periodic_parameters=("polarization",),
    )
    back = read_result(write_result(result, tmp_path / "angles.h5"))
    assert back.prior_kinds == {"final_mass": "uniform", "final_spin": "uniform",
                                "inclination": "sine", "polarization": "uniform"}
    assert back.periodic_parameters == ("polarization",)
    priors = bilby.core.result.read_in_result(str(save_bilby_result(back, tmp_path / "angles.json"))).priors
    assert type(priors["inclination"]) is bilby.core.prior.Sine
    assert (priors["inclination"].minimum, priors["inclination"].maximum) == (2 * np.pi / 3, np.pi)
    assert type(priors["polarization"]) is bilby.core.prior.Uniform
    assert priors["polarization"].boundary == "periodic" and priors["final_mass"].boundary is None
    # the exported inclination prior is flat in cos(inclination) on [-1, -0.5]
    cos_i = np.cos(priors["inclination"].sample(20_000))
    assert scipy.stats.kstest(cos_i, scipy.stats.uniform(-1.0, 0.5).cdf).pvalue > 0.01
    # files written before the kinds were stored: the pipeline only sampled inclination as sine
    with h5py.File(tmp_path / "angles.h5", "a") as f:
        del f["posterior"].attrs["search_prior_kinds"], f["posterior"].attrs["search_periodic"]
    old = read_result(tmp_path / "angles.h5")
    assert old.prior_kind("inclination") == "sine" and old.periodic_parameters == ()
    with pytest.raises(ValueError, match="unknown kind 'cosine'"):
        RingdownResult(label="x", posterior=base.posterior, search_parameters=("final_mass",),
                       search_ranges={"final_mass": (35.0, 140.0)}, log_evidence={}, config={},
                       prior_kinds={"final_mass": "cosine"})
