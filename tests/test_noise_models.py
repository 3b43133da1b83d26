"""Noise models: Welch over several windows (mean and median), PSD files, the conditioning
response, and the whiteness checks, against closed forms, scipy, quadrature and real data."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.integrate
from scipy import signal

from gwtools.io.strain import from_array, read_strain
from gwtools.ringdown import conditioning
from gwtools.ringdown.config import config_to_dict, load_config, override, parse_config
from gwtools.ringdown.input_checks import OFF_SOURCE, analysis_windows, check_inputs
from gwtools.ringdown.input_checks import ON_SOURCE as ON_SOURCE_NAME
from gwtools.ringdown.noise import (
    PYCBC_DYN_RANGE_FAC,
    ToeplitzNoise,
    acf_from_psd,
    median_bias,
    read_psd,
    welch_estimate,
)
from gwtools.ringdown.noise_diagnostics import whiteness_report

T0 = 1126259446.0
SHIPPED_H1 = "GW150914/H-H1_GWOSC_4KHZ_R1-1126259447-32.hdf5"
ON_SOURCE = (1126259460.0, 1126259465.0)


def _ar1_acf(phi, sigma_e, n_lags):
    return sigma_e**2 * phi ** np.arange(n_lags) / (1 - phi**2)


def _ar1_psd(freqs, phi, sigma_e, fs):
    return 2 / fs * sigma_e**2 / (1 - 2 * phi * np.cos(2 * np.pi * freqs / fs) + phi**2)


def test_median_bias_is_the_expected_median_of_exponentials_and_scipys():
    rng = np.random.default_rng(4)
    for n in (1, 2, 5, 8):
        draws = np.median(rng.exponential(size=(200_000, n)), axis=1)
        assert median_bias(n) == pytest.approx(draws.mean(), rel=5e-3)
    assert median_bias(10_001) == pytest.approx(np.log(2), rel=1e-4)
    # Welch's median on one stretch equals scipy's (odd and even segment counts)
    for seconds in (13.0, 15.0):
        ts = from_array(rng.normal(size=int(seconds * 256)), T0, 256.0, "H1")
        estimate = welch_estimate(ts, 4.0, average="median")
        _, reference = signal.welch(ts.data, fs=256.0, nperseg=1024, average="median")
        assert estimate.n_segments in (5, 6)
        np.testing.assert_allclose(estimate.psd, reference, rtol=1e-12)


def test_welch_pools_the_segments_of_several_windows():
    fs = 256.0
    rng = np.random.default_rng(8)
    before = from_array(rng.normal(size=int(13 * fs)), T0, fs, "H1")
    after = from_array(3.0 * rng.normal(size=int(21 * fs)), T0 + 20, fs, "H1")
    pooled = welch_estimate([before, after], 2.0)
    # pooled mean = scipy's per-window means weighted by their segment counts (12 and 20)
    _, mean_before = signal.welch(before.data, fs=fs, nperseg=512)
    _, mean_after = signal.welch(after.data, fs=fs, nperseg=512)
    assert pooled.n_segments == 12 + 20
    np.testing.assert_allclose(pooled.psd, (12 * mean_before + 20 * mean_after) / 32, rtol=1e-12)
    # the median of unit white noise is unbiased once divided by median_bias
    white = from_array(rng.normal(size=int(60 * fs)), T0, fs, "L1")
    median = welch_estimate([white], 4.0, average="median")
    assert np.mean(median.psd[1:-1]) == pytest.approx(2 / fs, rel=0.03)
    # ... and ignores a loud glitch in one segment that the mean does not
    glitched = np.array(white.data)
    glitched[int(30 * fs) : int(30.05 * fs)] += 200.0
    loud = from_array(glitched, T0, fs, "L1")
    assert np.mean(welch_estimate(loud, 4.0).psd[1:-1]) > 5 * (2 / fs)
    assert np.mean(welch_estimate(loud, 4.0, average="median").psd[1:-1]) == pytest.approx(2 / fs, rel=0.05)
    with pytest.raises(ValueError, match="average must be one of mean, median"):
        welch_estimate(white, 4.0, average="mode")


@pytest.mark.parametrize(("average", "seconds"), [("mean", 13.0), ("mean", 41.0), ("median", 41.0)])
def test_relative_std_is_the_scatter_of_the_estimate(average, seconds):
    fs = 256.0
    rng = np.random.default_rng(12)
    ratios = []
    for _ in range(20):
        ts = from_array(rng.normal(size=int(seconds * fs)), T0, fs, "H1")
        estimate = welch_estimate(ts, 4.0, average=average)
        ratios.append(estimate.psd[5:-5] / (2 / fs))
    assert np.std(ratios) == pytest.approx(estimate.relative_std, rel=0.05)


def _write_tables(tmp_path, freqs, psd):
    """The same PSD in the layouts read_psd accepts."""
    paths = {}
    paths["two"] = tmp_path / "two.txt"
    np.savetxt(paths["two"], np.column_stack([freqs, psd]))
    paths["gwtc1"] = tmp_path / "GWTC1_like_PSDs.dat.gz"
    np.savetxt(paths["gwtc1"], np.column_stack([freqs, 2 * psd, psd]), header="Freq (Hz), LIGO Livingston PSD, H1")
    paths["asd"] = tmp_path / "asd.csv"
    np.savetxt(paths["asd"], np.column_stack([freqs, np.sqrt(psd)]), delimiter=",", header="f,asd", comments="")
    paths["pycbc"] = tmp_path / "posterior.hdf"
    with h5py.File(paths["pycbc"], "w") as f:
        dataset = f.create_dataset("psds/H1", data=psd * PYCBC_DYN_RANGE_FAC**2)
        dataset.attrs["delta_f"] = freqs[1] - freqs[0]
    return paths


def test_psd_files_in_every_layout_give_the_analytic_acf(tmp_path):
    fs, phi, n = 1024.0, 0.9, 64
    freqs = np.arange(0, 512.0 + 0.125 / 2, 0.125)
    paths = _write_tables(tmp_path, freqs, _ar1_psd(freqs, phi, 1.0, fs))
    expected = _ar1_acf(phi, 1.0, n)
    reads = {
        "two": read_psd(paths["two"]),
        "gwtc1 by name": read_psd(paths["gwtc1"], detector="H1"),
        "gwtc1 by word": read_psd(paths["gwtc1"], detector="L1"),
        "gwtc1 by index": read_psd(paths["gwtc1"], column=2),
        "asd": read_psd(paths["asd"], asd=True),
        "pycbc": read_psd(paths["pycbc"], detector="H1"),
    }
    for name, (f, psd) in reads.items():
        scale = 2.0 if name == "gwtc1 by word" else 1.0
        np.testing.assert_allclose(f, freqs, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(acf_from_psd(f, psd, fs, n), scale * expected, rtol=1e-9, err_msg=name)


def test_bad_psd_files_are_refused_naming_the_problem(tmp_path):
    freqs = np.linspace(0, 512, 100)
    paths = _write_tables(tmp_path, freqs, np.ones(100))
    with pytest.raises(ValueError, match="no column named 'V1'"):
        read_psd(paths["gwtc1"], detector="V1")
    with pytest.raises(ValueError, match="column 3 does not exist; column 0 is the frequency"):
        read_psd(paths["gwtc1"], column=3)
    with pytest.raises(ValueError, match=r"no PSD for 'L1'; psds/ holds H1"):
        read_psd(paths["pycbc"], detector="L1")
    with pytest.raises(ValueError, match="not a column index"):
        read_psd(paths["pycbc"], column=1)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["strain"] = np.ones(4)
    with pytest.raises(ValueError, match="no 'psds' group"):
        read_psd(tmp_path / "other.h5", detector="H1")
    bad = tmp_path / "bad.txt"
    np.savetxt(bad, np.column_stack([freqs[::-1], np.ones(100)]))
    with pytest.raises(ValueError, match="non-negative and strictly increasing"):
        read_psd(bad)
    np.savetxt(bad, np.column_stack([freqs, np.r_[np.ones(50), -np.ones(50)]]))
    with pytest.raises(ValueError, match=r"column 1 has negative spectral density values \(the first at 258.586 Hz"):
        read_psd(bad)
    bad.write_text("# f psd\n1 2\n2 x\n")
    with pytest.raises(ValueError, match="line 3: not a row of numbers"):
        read_psd(bad)
    # a PSD that stops below the Nyquist frequency of the analysis
    with pytest.raises(ValueError, match="stops at 512 Hz, below the Nyquist frequency 1024 Hz"):
        conditioning.conditioned_psd(freqs, np.ones(100), 4096.0, 2048.0)


def _butterworth_highpass_gain(freqs, f_low, fs, order=4):
    """|H|^4 of a forward-backward digital Butterworth high-pass, in closed form (bilinear
    transform with prewarped corner)."""
    ratio = np.tan(np.pi * f_low / fs) / np.tan(np.pi * np.asarray(freqs) / fs)
    return (1.0 / (1.0 + ratio ** (2 * order))) ** 2


def test_conditioned_psd_acf_against_quadrature_of_the_filtered_ar1_psd():
    fs, phi, f_low = 1024.0, 0.6, 40.0
    freqs = np.linspace(0, fs / 2, 8193)
    grid, psd = conditioning.conditioned_psd(freqs, _ar1_psd(freqs, phi, 1.0, fs), fs, f_low=f_low)
    acf = acf_from_psd(grid, psd, fs, 12)
    for k, value in enumerate(acf):
        exact, _ = scipy.integrate.quad(
            lambda f, k=k: _ar1_psd(f, phi, 1.0, fs) * _butterworth_highpass_gain(f, f_low, fs)
            * np.cos(2 * np.pi * f * k / fs), 1e-9, fs / 2, limit=400, points=[f_low],
        )
        assert value == pytest.approx(exact, abs=1e-4 * acf[0])


def test_conditioned_psd_folds_what_the_anti_aliasing_filter_passes():
    rng = np.random.default_rng(21)
    raw = from_array(rng.normal(size=128 * 4096), T0, 4096.0, "H1")
    estimate = welch_estimate(conditioning.condition(raw, 2048.0), 1.0)
    grid, model = conditioning.conditioned_psd([0.0, 2048.0], [2 / 4096] * 2, 4096.0, 2048.0)
    ratio = estimate.psd / np.interp(estimate.frequency, grid, model)
    # 255 segments: 6% per bin; 25 bins at the top of the band, folded power included
    for lo, hi in ((100, 800), (900, 1000), (1000, 1025)):
        band = (estimate.frequency >= lo) & (estimate.frequency < hi)
        assert np.mean(ratio[band]) == pytest.approx(1.0, abs=0.03), (lo, hi)
    # in band the level of the input; at the Nyquist frequency the filter passes a quarter of the
    # power (gain 1/2) from each of the two frequencies that fold there
    assert model[len(model) // 2] == pytest.approx(2 / 4096, rel=5e-3)  # Kaiser passband ripple
    assert model[-1] == pytest.approx(1 / 4096, rel=5e-3)


def test_conditioned_psd_of_the_raw_strain_is_the_psd_of_the_conditioned_strain(project_data):
    strain = read_strain(project_data / SHIPPED_H1)
    raw = welch_estimate(strain, 4.0, exclude=ON_SOURCE)
    conditioned = welch_estimate(conditioning.condition(strain, 2048.0, f_low=20.0), 4.0, exclude=ON_SOURCE)
    grid, model = conditioning.conditioned_psd(raw.frequency, raw.psd, 4096.0, 2048.0, f_low=20.0)
    ratio = conditioned.psd / np.interp(conditioned.frequency, grid, model)
    for lo, hi, tolerance in ((15, 20, 0.03), (20, 900, 0.002), (900, 1024, 0.03)):
        band = (conditioned.frequency >= lo) & (conditioned.frequency < hi)
        assert np.median(ratio[band]) == pytest.approx(1.0, abs=tolerance), (lo, hi)
    n = 410
    np.testing.assert_allclose(
        acf_from_psd(grid, model, 2048.0, n), acf_from_psd(conditioned.frequency, conditioned.psd, 2048.0, n),
        atol=0.01 * acf_from_psd(grid, model, 2048.0, 1)[0],
    )


def test_whiteness_report_passes_the_right_model_and_flags_glitches_and_wrong_ones():
    fs, phi, n = 512.0, 0.8, 100
    rng = np.random.default_rng(30)
    data = signal.lfilter([1.0], [1.0, -phi], rng.normal(size=int(64 * fs)))[2000:]
    ts = from_array(data, T0, fs, "H1")
    segment = (T0 + 30.0, T0 + 30.0 + n / fs)
    right = ToeplitzNoise.from_acf(_ar1_acf(phi, 1.0, n), "H1")
    report = whiteness_report(ts, right, segment, [(T0, T0 + 20.0)], padding=0.5)
    scalars = report.scalars()
    assert scalars["ks_pvalue"] > 1e-3
    assert scalars["whitened_variance"] == pytest.approx(1.0, abs=0.02)
    assert scalars["loud_stretches"] == 0
    assert np.max(np.abs(report.autocorrelation)) < 4.5 / np.sqrt(report.n_values)
    assert report.in_estimate.sum() == 99 and not np.any(
        (report.starts + n / fs > segment[0] - 2.0) & (report.starts < segment[1] + 1.0)
    )
    # a 7-sigma innovation (too little power for the chi^2 test: p ~ 2e-4) and 2n samples of
    # 1.6 times the noise amplitude (no single loud value): both flagged, where they are
    glitched = np.array(data)
    glitched[int(10.5 * fs):] += 7.0 * phi ** np.arange(glitched.size - int(10.5 * fs))
    louder = slice(int(40 * fs), int(40 * fs) + 2 * n)
    glitched[louder] = 1.6 * glitched[louder]
    loud = whiteness_report(from_array(glitched, T0, fs, "H1"), right, segment, padding=0.5)
    flagged = loud.loud_starts - T0
    assert flagged[0] == pytest.approx(10.5, abs=n / fs) and loud.scalars()["max_abs_whitened"] > 6.5
    assert flagged.size >= 3 and np.all((flagged[1:] > 40 - n / fs) & (flagged[1:] < 40 + 2 * n / fs))
    # a white model of the right variance for AR(1) noise: the values are N(0, 1), but correlated
    wrong = ToeplitzNoise.from_acf(np.r_[1 / (1 - phi**2), np.zeros(n - 1)], "H1")
    bad = whiteness_report(ts, wrong, segment, padding=0.5).scalars()
    assert bad["whitened_variance"] == pytest.approx(1.0, abs=0.05)
    assert bad["lag1_autocorrelation"] == pytest.approx(phi, abs=0.02)


def test_welch_warning_names_the_segments_and_their_scatter(caplog):
    from gwtools.ringdown.pipeline import estimate_noise, load_strain

    config = override(load_config(PIPELINE), {
        "noise": {"offsource": [[-14.0, -1.0], [1.0, 15.0]], "average": "median", "welch_segment": 2.0},
    })
    strain = load_strain(config)
    with caplog.at_level(logging.WARNING):
        estimates = estimate_noise(config, strain)
    welch = estimates["H1"].welch
    assert welch.n_segments == 12 + 13 and welch.average == "median"
    assert welch.relative_std == pytest.approx(0.29, abs=0.01)
    expected = ("H1: the noise PSD is the median of only 25 Welch segments of 2 s (27 s of off-source data), "
                "so each frequency bin scatters by 30%")
    assert any(expected in r.getMessage() for r in caplog.records)


# --- the [noise] section ------------------------------------------------------------------

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "gw150914.toml"
O2_PE = "posteriors/o2-bbh-pe/gw170814_posteriors_thinned.hdf"


@pytest.mark.parametrize(("noise", "message"), [
    ({"offsource": [[-14.0, -1.0], [-3.0, -0.5]]}, r"offsource: windows \[-14.0, -1.0\] and \[-3.0, -0.5\] overlap"),
    ({"offsource": [[-14.0, -1.0], [0.1, 10.0]]}, r"offsource: window \[0.1, 10.0\] s overlaps the analysis"),
    ({"offsource": [[-14.0, -1.0], [1.0, 3.0]]},
     r"welch_segment: 4.0 s is longer than the off-source window \[1.0, 3.0\]"),
    ({"offsource": [[-14.0]]}, r"offsource: expected \[lower, upper\]"),
    ({"average": "mode"}, r"average: 'mode' is not one of mean, median"),
    ({"method": "psd_file"}, r"psd_files: no PSD file for detector\(s\) H1, L1"),
    ({"method": "psd_file", "psd_files": {"H1": "a.txt", "L1": "a.txt"}, "psd_columns": {"V1": 1}},
     r"psd_columns: names detector\(s\) V1, which are not analysed"),
    ({"psd_columns": {"H1": 0}}, r"psd_columns: expected a table"),
    ({"asd": "yes"}, r"\[noise\] asd: expected true or false"),
])
def test_noise_section_is_validated_naming_the_key(noise, message):
    with pytest.raises(ValueError, match=r"\[noise\] " + message.removeprefix(r"\[noise\] ")):
        override(load_config(PIPELINE), {"noise": noise})


def test_noise_windows_round_trip_and_are_checked_against_the_data(tmp_path):
    config = override(load_config(PIPELINE), {"noise": {"offsource": [[1.0, 15.0], [-14.0, -1.0]]}})
    assert config.noise.offsource == ((-14.0, -1.0), (1.0, 15.0))  # sorted
    assert parse_config(config_to_dict(config)) == config
    windows = analysis_windows(config)["H1"]
    assert windows[ON_SOURCE_NAME] == pytest.approx((1126259462.423, 1126259462.623))
    assert windows[f"{OFF_SOURCE} 2"] == pytest.approx((1126259463.4083, 1126259477.4083), abs=1e-4)
    check_inputs(override(config, {"output": {"directory": str(tmp_path)}}))
    late = override(config, {"noise": {"offsource": [[-14.0, -1.0], [1.0, 18.0]]},
                             "output": {"directory": str(tmp_path)}})
    with pytest.raises(ValueError, match=r"\[noise\] offsource: window \[1.0, 18.0\] s around the peak, "
                                         r"GPS \[1126259463.4083, 1126259480.4083\), does not fit in the H1 data"):
        check_inputs(late)


def test_psd_file_configuration_is_checked_before_the_run(tmp_path, shared_data):
    pe = str(shared_data / O2_PE)
    base = override(load_config(PIPELINE), {"output": {"directory": str(tmp_path)}})
    good = override(base, {"noise": {"method": "psd_file", "psd_files": {"H1": pe, "L1": pe}}})
    check_inputs(good)
    rate = override(good, {"analysis": {"sample_rate": 4096.0}})
    with pytest.raises(ValueError, match=r"\[noise\] psd_files.H1: the PSD in gw170814_posteriors_thinned.hdf "
                                         r"stops at 1024 Hz, below the Nyquist frequency 2048 Hz"):
        check_inputs(rate)
    wrong = override(good, {"noise": {"psd_columns": {"L1": "K1"}}})
    with pytest.raises(ValueError, match=r"\[noise\] psd_files.L1: .*no PSD for 'K1'; psds/ holds H1, L1, V1"):
        check_inputs(wrong)
    absent = override(good, {"noise": {"psd_files": {"H1": str(tmp_path / "no.txt"), "L1": pe}}})
    with pytest.raises(FileNotFoundError, match=r"\[noise\] psd_files.H1: PSD file .*no.txt does not exist"):
        check_inputs(absent)


def test_psd_file_noise_of_gw170814_is_pycbcs_psd_conditioned(project_data, shared_data):
    """The PyCBC PSD of GW170814, conditioned, against our Welch estimate of the same data."""
    from gwtools.ringdown.pipeline import estimate_noise, load_strain

    pe = str(shared_data / O2_PE)
    welch = load_config(PIPELINE.parent / "gw170814.toml")
    config = override(welch, {"noise": {"method": "psd_file", "psd_files": {d: pe for d in ("H1", "L1", "V1")}}})
    strain = load_strain(config)
    from_file, from_data = estimate_noise(config, strain), estimate_noise(welch, strain)
    for detector in ("H1", "L1", "V1"):
        estimate = from_file[detector]
        assert estimate.method == "psd_file" and estimate.file_psd.size == 16385
        # PSDs in the band agree as in tests/test_gw170814_data.py; so do the variances
        band = (from_data[detector].frequency > 100) & (from_data[detector].frequency < 800)
        ratio = from_data[detector].psd[band] / np.interp(from_data[detector].frequency[band],
                                                          estimate.frequency, estimate.psd)
        assert np.median(ratio) == pytest.approx(1.0, rel=0.2)
        assert estimate.acf[0] == pytest.approx(from_data[detector].acf[0], rel=0.35)
