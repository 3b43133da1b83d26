"""The shipped three-detector event GW170814: files, noise estimate and the published remnant.

The noise check is against an independent estimate: the PSDs of the public PyCBC Inference
analysis of GW170814 (gwastro/o2-bbh-pe, in ../shared/data), estimated by another pipeline from
longer data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import whitening_matrix

from gwtools.io.strain import read_strain
from gwtools.ringdown.conditioning import condition
from gwtools.ringdown.config import load_config
from gwtools.ringdown.noise import estimate_acf, welch_psd
from gwtools.ringdown.pipeline import read_imr_remnant

PEAK = 1186741861.5333  # geocentric, PyCBC maximum-likelihood tc
DETECTORS = ("H1", "L1", "V1")
# PyCBC stores PSDs multiplied by the square of its dynamic-range factor 2**69
PYCBC_DYN_RANGE = 2.0**69


def _conditioned(project_data: Path, detector: str):
    path = project_data / "GW170814" / f"{detector[0]}-{detector}_GWOSC_4KHZ_R1-1186741846-32.hdf5"
    return condition(read_strain(path), sample_rate=2048.0, f_low=20.0)


def test_shipped_strain_and_pipeline_config(project_data):
    for detector in DETECTORS:
        name = f"{detector[0]}-{detector}_GWOSC_4KHZ_R1-1186741846-32.hdf5"
        strain = read_strain(project_data / "GW170814" / name)
        assert (strain.detector, strain.t0, strain.sample_rate) == (detector, 1186741846.0, 4096.0)
        assert len(strain) == 32 * 4096
    config = load_config(Path(__file__).resolve().parents[1] / "pipelines" / "gw170814.toml")
    assert config.data.detectors == DETECTORS
    assert all(path.is_file() for path in config.data.files.values())
    # GWOSC: GPS 1186741861.53 at the geocentre; the H1 peak of the strain lies within 21 ms
    assert abs(config.event.time - 1186741861.53) < 0.0213


def _network_peak(config, strain, geocentre):
    """Geocentric time of the largest summed squared envelope of the whitened 30-400 Hz strain."""
    from scipy import signal

    from gwtools.ringdown import detectors
    from gwtools.ringdown.noise import welch_estimate

    grid = geocentre + np.arange(-0.05, 0.05, 1 / 8192)
    total = np.zeros_like(grid)
    for detector in config.data.detectors:
        ts = strain[detector]
        psd = welch_estimate([ts.slice(geocentre - 15.0, geocentre - 6.3), ts.slice(geocentre - 5.3, geocentre - 1.0),
                              ts.slice(geocentre + 1.0, geocentre + 5.0)], 2.0, average="median")
        chunk = ts.slice(geocentre - 8.0, geocentre + 8.0)
        x = chunk.data * signal.get_window(("tukey", 0.1), len(chunk))
        freqs = np.fft.rfftfreq(x.size, 1 / ts.sample_rate)
        white = np.fft.irfft(np.fft.rfft(x) / np.sqrt(np.interp(freqs, psd.frequency, psd.psd)), n=x.size)
        white = signal.sosfiltfilt(signal.butter(4, [30, 400], "bandpass", fs=ts.sample_rate, output="sos"), white)
        times = chunk.t0 + np.arange(x.size) / ts.sample_rate
        delay = detectors.time_delay_from_geocenter(detector, config.event.ra, config.event.dec, geocentre)
        total += np.interp(grid + delay, times, np.abs(signal.hilbert(white))) ** 2
    return grid[np.argmax(total)]


def test_peak_time_is_where_the_whitened_strain_peaks():
    """GW170814's peak is the network peak of its whitened strain, 9.3 ms before PyCBC's tc; the
    same estimate lands within 2.5 ms of the published peak of GW150914 (Isi et al. 2019)."""
    from gwtools.ringdown.input_checks import peak_geocenter
    from gwtools.ringdown.pipeline import load_strain

    pipelines = Path(__file__).resolve().parents[1] / "pipelines"
    config = load_config(pipelines / "gw170814.toml")
    peak = _network_peak(config, load_strain(config), PEAK)
    assert peak - PEAK == pytest.approx(-9.3e-3, abs=0.5e-3)
    assert peak_geocenter(config) == pytest.approx(peak, abs=0.5e-3)
    reference = load_config(pipelines / "gw150914.toml")
    published = peak_geocenter(reference)
    assert abs(_network_peak(reference, load_strain(reference), published) - published) < 2.5e-3


@pytest.mark.parametrize("detector", DETECTORS)
def test_noise_estimate_agrees_with_pycbc_and_whitens_later_data(project_data, shared_data, detector):
    import h5py

    data = _conditioned(project_data, detector)
    offsource = data.slice(PEAK - 14.0, PEAK - 1.0)
    freqs, psd = welch_psd(offsource, 4.0)
    with h5py.File(shared_data / "posteriors" / "o2-bbh-pe" / "gw170814_posteriors_thinned.hdf") as f:
        pycbc = f["psds"][detector][()] / PYCBC_DYN_RANGE**2
        delta_f = float(f["psds"][detector].attrs["delta_f"])
    band = (freqs > 100.0) & (freqs < 800.0)
    ratio = psd[band] / np.interp(freqs[band], delta_f * np.arange(pycbc.size), pycbc)
    assert np.median(ratio) == pytest.approx(1.0, rel=0.2)
    # whitened with that estimate, data 10-15 s after the event (not used to estimate it) have
    # unit variance; V1's excess noise 5-9 s after the peak is left out (see data/GW170814/README.md)
    n = round(0.2 * 2048)
    whitening = whitening_matrix(estimate_acf(offsource, n, segment_duration=4.0), detector)
    later = data.slice(PEAK + 10.0, PEAK + 15.0).data
    segments = np.stack([later[s : s + n] for s in range(0, later.size - n, n)])
    assert np.mean((segments @ whitening.T) ** 2) == pytest.approx(1.0, abs=0.15)


def test_published_remnant_is_the_gwtc1_value_in_the_detector_frame(project_data):
    remnant = read_imr_remnant(project_data / "GW170814" / "imr_remnant_gwtc1.json")
    # GWTC-1 Table III: Mf = 53.2 (+3.2, -2.4) Msun (source frame), z = 0.12, chi_f = 0.72 (+0.07, -0.05)
    assert remnant["final_mass"] == pytest.approx((53.2 * 1.12, 50.8 * 1.12, 56.4 * 1.12), abs=0.05)
    assert remnant["final_spin"] == (0.72, 0.67, 0.79)


def test_published_remnant_file_errors_and_plot(tmp_path):
    import json

    from gwtools.ringdown.plots import plot_remnant_corner

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"final_mass": {"median": 60.0, "lower": 57.0}}))
    with pytest.raises(ValueError, match="median, lower and upper"):
        read_imr_remnant(bad)
    bad.write_text(json.dumps({"final_mass": {"median": 60.0, "lower": 63.0, "upper": 65.0},
                               "final_spin": {"median": 0.7, "lower": 0.6, "upper": 0.8}}))
    with pytest.raises(ValueError, match="lower <= median <= upper"):
        read_imr_remnant(bad)
    with pytest.raises(FileNotFoundError, match=r"\[data\] imr_remnant"):
        read_imr_remnant(tmp_path / "absent.json")
    rng = np.random.default_rng(2)
    png = plot_remnant_corner(
        rng.normal(60.0, 5.0, 500), rng.uniform(0.5, 0.8, 500), tmp_path / "remnant.png",
        imr_published={"final_mass": (59.6, 56.9, 63.2), "final_spin": (0.72, 0.67, 0.79)},
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
