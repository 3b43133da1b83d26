"""Tests of the posterior readers: every shared real file, and each format written in tmp_path."""

from __future__ import annotations

import hashlib
import logging
import math

import h5py
import numpy as np
import pytest
from astropy import units
from astropy.cosmology import Planck15, z_at_value

from gwtools.io.checksums import file_sha256
from gwtools.io.posteriors import (
    PosteriorTable,
    available_analyses,
    chi_eff,
    chi_p,
    chirp_mass,
    component_masses,
    read_posterior,
    redshift_from_luminosity_distance,
)

GW150914_2OGC = "posteriors/2ogc/H1L1V1-EXTRACT_POSTERIOR_150914_09H_50M_45UTC-0-1.hdf"
SIX = ["chirp_mass", "mass_ratio", "a_1", "a_2", "tilt_1", "tilt_2"]


def _bbh_samples(n=500, seed=1):
    """Plausible detector-frame BBH samples with bilby names."""
    rng = np.random.default_rng(seed)
    m1 = rng.uniform(30, 40, n)
    return {
        "mass_1": m1,
        "mass_2": m1 * rng.uniform(0.5, 1.0, n),
        "a_1": rng.uniform(0, 0.99, n),
        "a_2": rng.uniform(0, 0.99, n),
        "tilt_1": np.arccos(rng.uniform(-1, 1, n)),
        "tilt_2": np.arccos(rng.uniform(-1, 1, n)),
        "luminosity_distance": rng.uniform(300, 600, n),
        "theta_jn": np.arccos(rng.uniform(-1, 1, n)),
        "ra": rng.uniform(0, 2 * math.pi, n),
        "dec": np.arcsin(rng.uniform(-1, 1, n)),
        "psi": rng.uniform(0, math.pi, n),
    }


def _structured(columns):
    names = list(columns)
    out = np.zeros(len(columns[names[0]]), dtype=[(k, "f8") for k in names])
    for k in names:
        out[k] = columns[k]
    return out


# --------------------------------------------------------------------------- derived physics


def test_derived_parameter_formulas():
    # equal masses: Mc = m 2^(-1/5), q = 1, and back again
    assert chirp_mass(np.array([30.0]), np.array([30.0]))[0] == pytest.approx(30.0 * 2 ** -0.2, rel=1e-14)
    m1, m2 = component_masses(np.array([30.0 * 2 ** -0.2]), np.array([1.0]))
    assert m1[0] == pytest.approx(30.0) and m2[0] == pytest.approx(30.0)
    # chirp mass is symmetric and scales linearly with the masses
    assert chirp_mass(np.array([10.0]), np.array([40.0]))[0] == pytest.approx(40.0 ** 0.6 / 50.0 ** 0.2 * 10 ** 0.6)
    # aligned spins: chi_eff is the mass-weighted mean; anti-aligned equal masses cancel
    assert chi_eff(20.0, 10.0, 0.3, 0.6, 1.0, 1.0) == pytest.approx((20 * 0.3 + 10 * 0.6) / 30)
    assert chi_eff(10.0, 10.0, 0.5, 0.5, 1.0, -1.0) == pytest.approx(0.0)
    # in-plane spins: chi_p picks the larger of a1 and (q(4q+3)/(4+3q)) a2; equal masses -> a2
    assert chi_p(1.0, 0.2, 0.7, math.pi / 2, math.pi / 2) == pytest.approx(0.7)
    assert chi_p(0.5, 0.6, 0.9, math.pi / 2, 0.0) == pytest.approx(0.6)


def test_redshift_matches_astropy_root_solve():
    distances = np.array([5.0, 410.0, 2500.0, 9000.0])
    expected = [z_at_value(Planck15.luminosity_distance, d * units.Mpc).value for d in distances]
    np.testing.assert_allclose(redshift_from_luminosity_distance(distances), expected, rtol=1e-5)


# --------------------------------------------------------------------------- shared real files


def _shared_files(shared_data):
    files = sorted((shared_data / "posteriors").glob("*/*.hdf"))
    assert len(files) == 17, files
    return files


def test_every_shared_posterior_is_readable(shared_data):
    for path in _shared_files(shared_data):
        table = read_posterior(path, params=SIX + ["luminosity_distance", "cos_iota", "ra", "dec", "psi",
                                                   "mass_1_source", "chi_eff"])
        assert table.metadata["format"] == "pycbc"
        assert table.metadata["event"].startswith("GW1")
        assert table.n_samples >= 8000
        x = table.array()
        assert np.isfinite(x).all()
        assert (table.samples["mass_ratio"] <= 1).all()
        assert (table.samples["psi"] < math.pi).all()
        # source-frame mass times (1 + z) is the detector-frame mass whatever the file's frame
        z = redshift_from_luminosity_distance(table.samples["luminosity_distance"])
        np.testing.assert_allclose(
            table.samples["mass_1_source"] * (1 + z),
            read_posterior(path, params=["mass_1"]).samples["mass_1"], rtol=1e-5,
        )


def test_2ogc_masses_are_source_frame_and_redshift_is_planck15(shared_data):
    path = shared_data / GW150914_2OGC
    table = read_posterior(path)
    meta = table.metadata
    assert meta["mass_frame_in_file"] == "source" and meta["redshift_source"] == "file"
    assert meta["event"] == "GW150914" and meta["n_samples"] == 11000
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(table.samples["mass_1_source"], f["samples/mass1"][()])
        z = f["samples/redshift"][()]
        np.testing.assert_allclose(table.samples["mass_1"], f["samples/mass1"][()] * (1 + z))
        np.testing.assert_allclose(table.samples["psi"], np.mod(f["samples/polarization"][()], math.pi))
        np.testing.assert_allclose(table.samples["chi_eff"], f["samples/chi_eff"][()])
        # the file's own chi_p column agrees with our formula from the spins
        np.testing.assert_allclose(
            table.samples["chi_p"],
            chi_p(table.samples["mass_ratio"], table.samples["a_1"], table.samples["a_2"],
                  table.samples["tilt_1"], table.samples["tilt_2"]), atol=1e-6)
    # the 2-OGC redshift came from the same cosmology as ours
    np.testing.assert_allclose(redshift_from_luminosity_distance(table.samples["luminosity_distance"]), z, rtol=1e-5)
    # GW150914 detector-frame chirp mass is about 30 Msun (GWTC-1: 28.6 source, z ~ 0.09)
    assert np.median(table.samples["chirp_mass"]) == pytest.approx(30.9, abs=1.0)


def test_o2_bbh_pe_detector_frame_with_prior_samples(shared_data):
    path = shared_data / "posteriors/o2-bbh-pe/gw170814_posteriors_thinned.hdf"
    table = read_posterior(path, params=SIX + ["mass_1", "mass_2", "mass_1_source"])
    assert table.metadata["mass_frame_in_file"] == "detector"
    assert table.metadata["redshift_source"] == "luminosity_distance with astropy Planck15"
    # README: detector-frame medians 33.9 and 28.9
    assert np.median(table.samples["mass_1"]) == pytest.approx(33.9, abs=0.1)
    assert np.median(table.samples["mass_2"]) == pytest.approx(28.9, abs=0.1)
    assert table.prior_samples is not None
    prior = table.prior_array(SIX)
    assert prior.shape == (8000, 6) and np.isfinite(prior).all()
    with h5py.File(path, "r") as f:
        np.testing.assert_allclose(
            table.prior_samples["chirp_mass"],
            chirp_mass(f["prior_samples/mass1"][()], f["prior_samples/mass2"][()]))


# --------------------------------------------------------------------------- synthetic formats


def test_gwtc1_release_file(tmp_path):
    cols = _bbh_samples()
    gwtc1 = {
        "m1_detector_frame_Msun": cols["mass_1"], "m2_detector_frame_Msun": cols["mass_2"],
        "spin1": cols["a_1"], "spin2": cols["a_2"],
        "costilt1": np.cos(cols["tilt_1"]), "costilt2": np.cos(cols["tilt_2"]),
        "luminosity_distance_Mpc": cols["luminosity_distance"], "costheta_jn": np.cos(cols["theta_jn"]),
        "right_ascension": cols["ra"], "declination": cols["dec"],
    }
    path = tmp_path / "GW150914_GWTC-1.hdf5"
    with h5py.File(path, "w") as f:
        f["Overall_posterior"] = _structured(gwtc1)
        f["IMRPhenomPv2_posterior"] = _structured({k: v[:100] for k, v in gwtc1.items()})
        f["prior"] = _structured({k: v[::-1] for k, v in gwtc1.items()})
    assert sorted(available_analyses(path)) == ["IMRPhenomPv2_posterior", "Overall_posterior"]
    table = read_posterior(path)
    assert table.metadata["format"] == "gwtc1" and table.metadata["analysis"] == "Overall_posterior"
    assert table.metadata["event"] == "GW150914"
    np.testing.assert_allclose(table.samples["tilt_1"], cols["tilt_1"])
    np.testing.assert_allclose(table.samples["theta_jn"], cols["theta_jn"])
    # source-frame masses through an independent root solve of d_L(z) in Planck15
    z = np.array([z_at_value(Planck15.luminosity_distance, d * units.Mpc).value
                  for d in cols["luminosity_distance"][:5]])
    np.testing.assert_allclose(table.samples["mass_1_source"][:5], cols["mass_1"][:5] / (1 + z), rtol=1e-6)
    np.testing.assert_allclose(table.prior_samples["a_1"], cols["a_1"][::-1])
    assert read_posterior(path, analysis="IMRPhenomPv2_posterior").n_samples == 100


def test_pesummary_release_prefers_mixed_label(tmp_path, caplog):
    cols = _bbh_samples()
    path = tmp_path / "IGWN-GWTC2p1-v2-GW150914_095045_PEDataRelease_mixed_cosmo.h5"
    with h5py.File(path, "w") as f:
        f["version"] = np.array([b"0.13"])
        for label, scale in (("C01:IMRPhenomXPHM", 1.0), ("C01:Mixed", 1.01), ("C01:SEOBNRv4PHM", 1.02)):
            f[f"{label}/posterior_samples"] = _structured({k: v * (scale if k == "mass_1" else 1)
                                                           for k, v in cols.items()})
        f["C01:Mixed/priors/samples/a_1"] = np.linspace(0.01, 0.98, 50)
        f["C01:Mixed/priors/samples/mass_1"] = np.linspace(31, 90, 50)
        f["C01:Mixed/priors/samples/mass_2"] = np.linspace(30, 40, 50)
    with caplog.at_level(logging.INFO, logger="gwtools.io.posteriors"):
        table = read_posterior(path, params=["mass_1", "a_1", "mass_ratio"])
    assert table.metadata["analysis"] == "C01:Mixed" and "C01:Mixed" in caplog.text
    assert table.metadata["event"] == "GW150914_095045"
    np.testing.assert_allclose(table.samples["mass_1"], cols["mass_1"] * 1.01)
    np.testing.assert_allclose(table.prior_samples["mass_ratio"], np.linspace(30, 40, 50) / np.linspace(31, 90, 50))
    other = read_posterior(path, analysis="C01:IMRPhenomXPHM", params=["mass_1"])
    np.testing.assert_allclose(other.samples["mass_1"], cols["mass_1"])
    with pytest.raises(ValueError, match="available"):
        read_posterior(path, analysis="C01:NoSuch")


def test_bilby_result_json_and_hdf5(tmp_path):
    bilby = pytest.importorskip("bilby")
    import pandas as pd

    cols = _bbh_samples(200)
    bilby_cols = {
        "chirp_mass": chirp_mass(cols["mass_1"], cols["mass_2"]),
        "mass_ratio": cols["mass_2"] / cols["mass_1"],
        "a_1": cols["a_1"], "tilt_1": cols["tilt_1"],
    }
    priors = bilby.core.prior.PriorDict({"a_1": bilby.core.prior.Uniform(0, 0.99, "a_1")})
    result = bilby.core.result.Result(label="run", outdir=str(tmp_path), search_parameter_keys=["a_1"],
                                      priors=priors, posterior=pd.DataFrame(bilby_cols))
    for extension, fmt in (("json", "bilby_json"), ("hdf5", "bilby_hdf5")):
        result.save_to_file(extension=extension, overwrite=True)
        table = read_posterior(tmp_path / f"run_result.{extension}")
        assert table.metadata["format"] == fmt
        # component masses are derived from chirp mass and mass ratio
        np.testing.assert_allclose(table.samples["mass_1"], cols["mass_1"], rtol=1e-12)
        np.testing.assert_allclose(table.samples["cos_tilt_1"], np.cos(cols["tilt_1"]))


def test_csv_text_and_numpy_tables(tmp_path):
    import pandas as pd

    cols = _bbh_samples(100)
    pd.DataFrame(cols).to_csv(tmp_path / "post.csv", index=False)
    pd.DataFrame(cols).to_csv(tmp_path / "post.dat", index=False, sep=" ")
    np.savez(tmp_path / "post.npz", **cols)
    np.save(tmp_path / "post.npy", _structured(cols))
    expected = chirp_mass(cols["mass_1"], cols["mass_2"])
    for name in ("post.csv", "post.dat", "post.npz", "post.npy"):
        table = read_posterior(tmp_path / name, params=["chirp_mass", "a_1"])
        assert table.parameters == ("chirp_mass", "a_1")
        np.testing.assert_allclose(table.array(), np.column_stack([expected, cols["a_1"]]), rtol=1e-12)
    np.save(tmp_path / "plain.npy", np.ones((10, 3)))
    with pytest.raises(ValueError, match="unnamed array"):
        read_posterior(tmp_path / "plain.npy")


# --------------------------------------------------------------------------- errors


def _write_pycbc(path, **columns):
    with h5py.File(path, "w") as f:
        for k, v in columns.items():
            f[f"samples/{k}"] = v
    return path


def test_bad_inputs_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_posterior(tmp_path / "missing.hdf")
    with h5py.File(tmp_path / "odd.h5", "w") as f:
        f["stuff/x"] = np.ones(3)
    with pytest.raises(ValueError, match=r"unknown HDF5 layout.*stuff"):
        read_posterior(tmp_path / "odd.h5")
    (tmp_path / "post.xyz").write_text("1 2 3")
    with pytest.raises(ValueError, match="suffix"):
        read_posterior(tmp_path / "post.xyz")
    ok = dict(mass1=np.array([30.0, 35.0]), mass2=np.array([20.0, 25.0]), spin1_a=np.array([0.1, 0.2]),
              distance=np.array([400.0, 500.0]))
    with pytest.raises(ValueError, match="empty"):
        read_posterior(_write_pycbc(tmp_path / "empty.hdf", mass1=np.array([]), mass2=np.array([])))
    with pytest.raises(ValueError, match="'a_1'.*NaN"):
        read_posterior(_write_pycbc(tmp_path / "nan.hdf", **{**ok, "spin1_a": np.array([0.1, np.nan])}))
    with pytest.raises(ValueError, match="'a_1'.*out of its physical range"):
        read_posterior(_write_pycbc(tmp_path / "spin.hdf", **{**ok, "spin1_a": np.array([0.1, 1.2])}))
    with pytest.raises(ValueError, match="'mass_ratio'.*heavier"):
        read_posterior(_write_pycbc(tmp_path / "q.hdf", **{**ok, "mass2": np.array([20.0, 40.0])}))
    with pytest.raises(ValueError, match="'luminosity_distance'.*must be > 0"):
        read_posterior(_write_pycbc(tmp_path / "d.hdf", **{**ok, "distance": np.array([400.0, -1.0])}))
    table = read_posterior(_write_pycbc(tmp_path / "ok.hdf", **ok), params=["chirp_mass", "a_1"])
    with pytest.raises(KeyError, match="available"):
        table.array(["a_2"])
    with pytest.raises(KeyError, match="cannot be derived"):
        read_posterior(tmp_path / "ok.hdf", params=["tilt_1"])
    with pytest.raises(ValueError, match="no prior samples"):
        table.prior_array()
    with pytest.raises(ValueError, match="different lengths"):
        PosteriorTable({"a": np.ones(2), "b": np.ones(3)}, ("a", "b"), {})


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "blob.bin"
    data = np.random.default_rng(0).bytes(3 << 20)
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "attrs",
    [
        {"remapped_params": np.array([[b"srcmass1", b"mass1"], [b"srcmass2", b"mass2"]])},
        {"variable_params": np.array([b"srcmass1", b"srcmass2", b"spin1_a"])},
    ],
    ids=["remapped_params", "variable_params"],
)
def test_pycbc_source_frame_masses_are_recognised(tmp_path, attrs):
    path = tmp_path / "post.hdf"
    with h5py.File(path, "w") as f:
        f["samples/mass1"] = np.array([30.0, 36.0])
        f["samples/mass2"] = np.array([25.0, 30.0])
        f["samples/redshift"] = np.array([0.1, 0.2])
        f.attrs.update(attrs)
    table = read_posterior(path, params=["mass_1", "mass_1_source"])
    assert table.metadata["mass_frame_in_file"] == "source"
    np.testing.assert_allclose(table.array(), [[33.0, 30.0], [43.2, 36.0]])
