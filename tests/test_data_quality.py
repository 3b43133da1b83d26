"""Strain sanity: defects in modified copies of the real GW150914 strain, judged against the
windows the analysis uses, metadata that disagree, and the checks of a configuration against
its files (all before anything expensive runs)."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import signal

from gwtools.cli import main
from gwtools.io.data_quality import find_defects
from gwtools.io.strain import from_array, read_raw_strain, read_strain, read_strain_info, write_gwosc_hdf5
from gwtools.ringdown import conditioning
from gwtools.ringdown.config import load_config, override
from gwtools.ringdown.input_checks import check_inputs

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "gw150914.toml"
SHIPPED = {
    "H1": "GW150914/H-H1_GWOSC_4KHZ_R1-1126259447-32.hdf5",
    "L1": "GW150914/L-L1_GWOSC_4KHZ_R1-1126259447-32.hdf5",
}
T0 = 1126259447  # first sample of the shipped files, GPS s (4096 Hz, 32 s)
# Windows of pipelines/gw150914.toml in H1 (geocentric peak 1126259462.4083, segment 0.2 s):
OFF_SOURCE = (1126259448.4083, 1126259461.4083)
ON_SOURCE_H1 = (1126259462.423, 1126259462.623)


def _copy(project_data, tmp_path, detector: str, damage=None) -> Path:
    """A copy of the shipped strain, with ``damage(times, data)`` applied in place."""
    ts = read_strain(project_data / SHIPPED[detector])
    data = np.array(ts.data)
    if damage is not None:
        damage(ts.times, data)
    path = tmp_path / f"{detector}_copy.hdf5"
    # TimeSeries refuses NaN: write the clean copy, then the damaged samples over it
    write_gwosc_hdf5(from_array(np.nan_to_num(data), ts.t0, ts.sample_rate, detector), path)
    with h5py.File(path, "r+") as f:
        f["strain/Strain"][...] = data
    return path


def _config(files, tmp_path, **data):
    return override(load_config(PIPELINE), {
        "data": {"files": {d: str(p) for d, p in files.items()}, **data},
        "output": {"directory": str(tmp_path / "out")},
    })


def _between(times, lo, hi):
    return (times >= lo) & (times < hi)


def test_real_gwosc_files_have_no_defects(shared_data, project_data):
    paths = sorted((shared_data / "strain").glob("*.hdf5")) + [project_data / p for p in SHIPPED.values()]
    assert len(paths) == 6
    for path in paths:
        info, samples = read_raw_strain(path)
        assert info.problems == () and info.duration == 32.0
        assert find_defects(samples) == [], path.name


def test_defects_are_found_where_they_were_put():
    rng = np.random.default_rng(3)
    data = rng.normal(size=40_000) * 1e-21
    data[1000:1600] = 0.0  # zero-filled dropout
    data[5000:5020] = data[4999]  # the last value held
    data[9000:9015] = 0.5  # 15 equal samples: below the threshold
    data[20_000:20_300] = data[12_000:12_300]  # a repeated buffer
    data[30_000:30_031] = data[2000:2031]  # 31 samples: below the threshold
    data[35_000:35_010] = np.nan
    found = [(d.kind, d.first, d.stop, d.source) for d in find_defects(data)]
    assert found == [
        ("flat stretch", 1000, 1600, None),
        ("flat stretch", 4999, 5020, None),
        ("repeated block", 20_000, 20_300, (12_000, 12_300)),
        ("NaN gap", 35_000, 35_010, None),
    ]


def test_zero_filled_off_source_stretch_is_refused_or_warned(project_data, tmp_path, capsys, caplog):
    def zeros(times, data):
        data[_between(times, T0 + 3, T0 + 4)] = 0.0

    files = {"H1": _copy(project_data, tmp_path, "H1", zeros),
             "L1": project_data / SHIPPED["L1"]}
    config = _config(files, tmp_path)
    from gwtools.ringdown.pipeline import usable_strain

    with pytest.raises(ValueError) as refused:
        usable_strain(config)
    message = str(refused.value)
    assert "H1 strain (H1_copy.hdf5): flat stretch of 1 s (constant value 0) at GPS " \
           "[1126259450.0000, 1126259451.0000) reaches the off-source noise window GPS " \
           "[1126259448.4083, 1126259461.4083)" in message
    assert 'on_bad_data = "warn"' in message
    # through the command line: one line, before any sampling
    toml = tmp_path / "run.toml"
    toml.write_text(PIPELINE.read_text().replace(
        'H1 = "../data/GW150914/H-H1_GWOSC_4KHZ_R1-1126259447-32.hdf5"', f'H1 = "{files["H1"]}"'
    ).replace('"../data', f'"{project_data}').replace('"../runs/gw150914"', f'"{tmp_path / "cli"}"'))
    assert main(["ringdown", str(toml), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error: H1 strain (H1_copy.hdf5): flat stretch of 1 s" in err and "Traceback" not in err
    with caplog.at_level(logging.WARNING):
        strain = usable_strain(override(config, {"data": {"on_bad_data": "warn"}}))
    assert any("flat stretch of 1 s" in r.getMessage() for r in caplog.records)
    assert len(strain["H1"]) == 32 * 4096


def test_nan_gap_away_from_the_windows_keeps_the_clean_stretch(project_data, tmp_path):
    def gap(times, data):
        data[_between(times, T0 + 26, T0 + 27)] = np.nan

    files = {"H1": _copy(project_data, tmp_path, "H1", gap), "L1": project_data / SHIPPED["L1"]}
    from gwtools.ringdown.pipeline import load_strain, usable_strain

    raw = usable_strain(_config(files, tmp_path))["H1"]
    assert (raw.t0, raw.end_time) == (T0, T0 + 26)  # up to the gap, not the whole file
    # the analysis sees the data it sees in the whole file: the filtered stretch ends 10 s
    # after the segment, far beyond the filter transients
    gapped = load_strain(_config(files, tmp_path))["H1"]
    whole = load_strain(_config({d: project_data / p for d, p in SHIPPED.items()}, tmp_path))["H1"]
    segment, _ = conditioning.extract_segment(gapped, ON_SOURCE_H1[0], 0.2)
    reference, _ = conditioning.extract_segment(whole, ON_SOURCE_H1[0], 0.2)
    assert segment.t0 == reference.t0
    np.testing.assert_allclose(segment.data, reference.data, rtol=0, atol=1e-9 * np.std(reference.data))


@pytest.mark.parametrize(("span", "where"), [
    ((ON_SOURCE_H1[0] + 0.05, ON_SOURCE_H1[0] + 0.06),
     r"lies inside the on-source segment GPS \[1126259462.4230"),
    ((1126259461.875, 1126259461.9375),
     r"at GPS \[1126259461.8750, 1126259461.9375\) lies between the windows"),
])
def test_nan_gap_in_or_between_windows_is_refused_even_with_warn(project_data, tmp_path, span, where):
    def gap(times, data):
        data[_between(times, *span)] = np.nan

    files = {"H1": _copy(project_data, tmp_path, "H1", gap), "L1": project_data / SHIPPED["L1"]}
    from gwtools.ringdown.pipeline import usable_strain

    with pytest.raises(ValueError, match=r"H1 strain \(H1_copy.hdf5\): NaN gap of .*" + where):
        usable_strain(_config(files, tmp_path, on_bad_data="warn"))


def test_repeated_block_in_the_off_source_window_is_refused(project_data, tmp_path):
    def repeat(times, data):
        data[_between(times, T0 + 8, T0 + 8.125)] = data[_between(times, T0 + 5, T0 + 5.125)]

    files = {"H1": project_data / SHIPPED["H1"], "L1": _copy(project_data, tmp_path, "L1", repeat)}
    from gwtools.ringdown.pipeline import usable_strain

    expected = (r"L1 strain \(L1_copy.hdf5\): repeated block of 0.125 s \(an exact copy of 512 earlier "
                r"samples\) at GPS \[1126259455.0000, 1126259455.1250\), copying GPS "
                r"\[1126259452.0000, 1126259452.1250\) reaches the off-source")
    with pytest.raises(ValueError, match=expected):
        usable_strain(_config(files, tmp_path))


def test_metadata_that_disagree_are_refused_or_warned(project_data, tmp_path, caplog):
    path = _copy(project_data, tmp_path, "H1")
    with h5py.File(path, "r+") as f:
        f["strain/Strain"].attrs["Xspacing"] = 1 / 8192  # contradicts meta/Duration = 32 s
    assert read_strain_info(path).problems == (
        "131072 samples at Xspacing 0.00012207 s (8192 Hz) span 16 s, but meta/Duration says 32 s",)
    with pytest.raises(ValueError, match="metadata disagree"):
        read_strain(path)
    config = _config({"H1": path, "L1": project_data / SHIPPED["L1"]}, tmp_path)
    with pytest.raises(ValueError, match=r"^\[data\] files.H1: .*H1_copy.hdf5: the metadata disagree with "
                                         r"the data: 131072 samples .* meta/Duration says 32 s"):
        check_inputs(config)
    with caplog.at_level(logging.WARNING):
        check_inputs(override(config, {"data": {"on_bad_data": "warn"}}))
    assert any("meta/Duration says 32 s" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("updates", "message"), [
    ({"analysis": {"sample_rate": 8192.0}},
     r"\[analysis\] sample_rate: 8192 Hz is above the H1 data's rate of 4096 Hz"),
    ({"analysis": {"sample_rate": 3000.0}}, r"\[analysis\] sample_rate: 3000 Hz does not divide"),
    ({"analysis": {"duration": 40.0}, "noise": {"offsource": [-60.0, -45.0]}},
     r"\[analysis\] duration: 40 s is longer than the H1 data, GPS \[1126259447.000, 1126259479.000\) "
     r"\(32 s in H-H1_GWOSC_4KHZ_R1-1126259447-32.hdf5\)"),
    ({"analysis": {"start_offset_ms": 20000.0}},
     r"\[analysis\] start_offset_ms: the H1 segment GPS \[1126259482.4230, .* is not inside the H1 data"),
    ({"noise": {"offsource": [-20.0, -1.0]}},
     r"\[noise\] offsource: window \[-20.0, -1.0\] s around the peak"),
    ({"data": {"imr_samples": "/nonexistent/imr.h5"}},
     r"\[data\] imr_samples: /nonexistent/imr.h5 does not exist"),
])
def test_configuration_is_checked_against_the_files(updates, message):
    config = override(load_config(PIPELINE), updates)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        check_inputs(config)


def test_output_directory_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "results").write_text("a file")
    assert main(["ringdown", str(PIPELINE), "--output", str(tmp_path / "results" / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"[output] directory: output directory {tmp_path}/results/run lies under {tmp_path}/results, " \
           "which is a file" in err
    assert main(["ringdown", str(PIPELINE), "--set", 'model.modes=["220", "990"]']) == 2
    assert "'990' is not in the QNM table" in capsys.readouterr().err


def test_filter_padding_covers_the_transient_of_a_step():
    rate, f_low = 2048.0, 20.0
    padding = conditioning.filter_padding(rate, f_low)
    # a unit step in the middle of 16 s, high-passed forward and backward as condition() does
    step = np.where(np.arange(16 * 4096) < 8 * 4096, 1.0, 0.0)
    filtered = signal.resample_poly(
        signal.sosfiltfilt(signal.butter(4, f_low, "highpass", fs=4096, output="sos"), step), 1, 2
    )
    distance = np.abs(np.arange(filtered.size) - 8 * rate) / rate
    assert np.max(np.abs(filtered[distance > padding])) < 1e-7
    assert np.max(np.abs(filtered[distance > padding / 2])) > 1e-6  # not wastefully wide
    assert padding == pytest.approx(20 / (2 * np.pi * f_low * np.sin(np.pi / 8)) + 10 / rate)
