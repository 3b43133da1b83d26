"""Strain readers: real GWOSC files, shipped GW150914 data, text formats, round trips, errors."""

from __future__ import annotations

import gzip

import h5py
import numpy as np
import pytest
from scipy import signal

from gwtools.io.strain import (
    TimeSeries,
    from_array,
    known_detectors,
    read_gwosc_hdf5,
    read_strain,
    read_text,
    write_gwosc_hdf5,
)

SHARED_FILES = {
    "H-H1_LOSC_4_V2-1126259446-32.hdf5": ("H1", 1126259446, 4096),
    "L-L1_LOSC_4_V2-1126259446-32.hdf5": ("L1", 1126259446, 4096),
    "H-H1_GWOSC_16KHZ_R1-1126259447-32.hdf5": ("H1", 1126259447, 16384),
    "L-L1_GWOSC_16KHZ_R1-1126259447-32.hdf5": ("L1", 1126259447, 16384),
}
SHIPPED = {
    "H1": "GW150914/H-H1_GWOSC_4KHZ_R1-1126259447-32.hdf5",
    "L1": "GW150914/L-L1_GWOSC_4KHZ_R1-1126259447-32.hdf5",
}
PYRING_HEADER = (
    "# Gravitational wave strain for GW150914_R1 for H1 (see http://losc.ligo.org)\n"
    "# This file has 4096 samples per second\n"
    "# starting GPS 1126259447 duration {duration}\n"
)


@pytest.mark.parametrize("name", sorted(SHARED_FILES))
def test_reads_every_shared_gwosc_file(shared_data, name):
    detector, gps_start, rate = SHARED_FILES[name]
    path = shared_data / "strain" / name
    ts = read_gwosc_hdf5(path)
    assert (ts.detector, ts.t0, ts.sample_rate) == (detector, gps_start, rate)
    assert len(ts) == 32 * rate and ts.duration == 32.0 and ts.end_time == gps_start + 32
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(ts.data, f["strain/Strain"][()])
    assert read_strain(path).t0 == gps_start
    # The strain sits at the 1e-19..1e-18 level of raw LIGO O1 data (dominated by low frequencies).
    assert 1e-20 < np.std(ts.data) < 1e-17


@pytest.mark.parametrize("detector", ["H1", "L1"])
def test_shipped_strain_is_the_gwosc_4khz_release(shared_data, project_data, detector):
    shipped = read_strain(project_data / SHIPPED[detector])
    assert (shipped.detector, shipped.t0, shipped.sample_rate, len(shipped)) == (
        detector,
        1126259447.0,
        4096.0,
        32 * 4096,
    )
    losc_name = f"{detector[0]}-{detector}_LOSC_4_V2-1126259446-32.hdf5"
    losc = read_strain(shared_data / "strain" / losc_name)
    # The shipped file starts 1 s later; over the 31 s they share the samples agree to round-off.
    a = shipped.slice(1126259447, 1126259478).data
    b = losc.slice(1126259447, 1126259478).data
    assert a.size == b.size == 31 * 4096
    assert np.max(np.abs(a - b)) < 1e-10 * np.std(b)


def test_16khz_and_4khz_files_share_a_time_axis(shared_data):
    fast = read_strain(shared_data / "strain" / "H-H1_GWOSC_16KHZ_R1-1126259447-32.hdf5")
    slow = read_strain(shared_data / "strain" / "H-H1_LOSC_4_V2-1126259446-32.hdf5")
    span = (1126259450.0, 1126259458.0)
    decimated = signal.resample_poly(fast.slice(*span).data, 1, 4)
    reference = slow.slice(*span).data
    # Compare away from the filter edges, then show a one-sample shift is clearly worse.
    core = slice(200, -200)
    aligned = np.corrcoef(decimated[core], reference[core])[0, 1]
    shifted = np.corrcoef(decimated[core], np.roll(reference, 1)[core])[0, 1]
    assert aligned > 0.999 and shifted < aligned - 1e-3


def test_text_with_pyring_header(tmp_path):
    values = np.random.default_rng(1).normal(size=64) * 1e-21
    path = tmp_path / "H-H1_GWOSC_4KHZ_R1-1126259447-32.txt"
    samples = "".join(f"{v:.17e}\n" for v in values)
    path.write_text(PYRING_HEADER.format(duration=64 / 4096) + samples)
    ts = read_text(path, None)
    assert (ts.detector, ts.t0, ts.sample_rate) == ("H1", 1126259447.0, 4096.0)
    np.testing.assert_array_equal(ts.data, values)
    assert read_strain(path).detector == "H1"
    with pytest.raises(ValueError, match="header says H1"):
        read_text(path, "L1")
    with pytest.raises(ValueError, match="contradicts the file header"):
        read_text(path, "H1", sample_rate=2048)
    # a header duration that the samples contradict (a truncated copy of a 32 s file)
    path.write_text(PYRING_HEADER.format(duration=32) + samples)
    with pytest.raises(ValueError, match="duration 32 s, but 64 samples at 4096 Hz span 0.015625 s"):
        read_strain(path)


def test_plain_and_gzipped_text(tmp_path):
    values = np.arange(10, dtype=float) * 1e-22
    plain = tmp_path / "plain.txt"
    np.savetxt(plain, values)
    ts = read_text(plain, "L1", t0=100.5, sample_rate=16)
    np.testing.assert_allclose(ts.times, 100.5 + np.arange(10) / 16)
    np.testing.assert_array_equal(ts.data, values)
    with pytest.raises(ValueError, match="t0, sample_rate"):
        read_text(plain, "L1")
    packed = tmp_path / "packed.txt.gz"
    with gzip.open(packed, "wt") as f:
        f.write(PYRING_HEADER.format(duration=2 / 4096).replace("for H1", "for L1") + "1e-21\n2e-21\n")
    assert read_strain(packed).data.tolist() == [1e-21, 2e-21]


def test_hdf5_round_trip(tmp_path):
    ts = from_array(np.random.default_rng(2).normal(size=1000), 1126259446.0, 2048, "V1")
    path = write_gwosc_hdf5(ts, tmp_path / "x.hdf5", description="test")
    back = read_strain(path)
    np.testing.assert_array_equal(back.data, ts.data)
    assert (back.t0, back.sample_rate, back.detector) == (ts.t0, ts.sample_rate, ts.detector)
    with h5py.File(path, "r") as f:
        assert f["strain/Strain"].attrs["Xstart"] == 1126259446
        assert f["meta/Detector"][()] == b"V1"
    with pytest.raises(ValueError, match="holds V1 data"):
        read_gwosc_hdf5(path, "H1")


def test_series_properties_and_slice():
    ts = from_array(np.arange(16.0), 1000.0, 4.0, "H1")
    assert ts.delta_t == 0.25 and ts.duration == 4.0 and ts.end_time == 1004.0
    with pytest.raises(ValueError):
        ts.data[0] = 1.0
    part = ts.slice(1001.1, 1002.0)
    # First sample at or after 1001.1 is 1001.25 (index 5); 1002.0 itself is excluded.
    assert part.t0 == 1001.25 and part.data.tolist() == [5.0, 6.0, 7.0]
    assert ts.slice(1001.0, 1001.25).data.tolist() == [4.0]
    with pytest.raises(ValueError, match="outside"):
        ts.slice(999.0, 1001.0)
    with pytest.raises(ValueError, match="no sample"):
        ts.slice(1001.1, 1001.2)


def test_known_detectors_come_from_bilby():
    import bilby

    for name in ("H1", "L1", "V1"):
        assert name in known_detectors()
        assert bilby.gw.detector.get_empty_interferometer(name).name == name


def test_bad_input_errors(tmp_path):
    with pytest.raises(ValueError, match="GPS 1000.500000 .index 2"):
        from_array([0.0, 1.0, np.nan, np.nan], 1000.0, 4.0, "H1")
    with pytest.raises(ValueError, match="unknown detector 'X9'"):
        from_array([0.0], 0.0, 1.0, "X9")
    with pytest.raises(ValueError, match="sample_rate"):
        from_array([0.0], 0.0, -1.0, "H1")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_strain(tmp_path / "missing.hdf5")

    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"\x00\x01not hdf5 at all")
    with pytest.raises(ValueError, match="no HDF5 signature"):
        read_strain(junk)
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_gwosc_hdf5(junk)

    good = write_gwosc_hdf5(from_array(np.ones(4096), 0.0, 4096, "H1"), tmp_path / "good.hdf5")
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(ValueError, match="corrupt"):
        read_strain(truncated)

    foreign = tmp_path / "posterior.h5"
    with h5py.File(foreign, "w") as f:
        f["samples/mass1"] = np.ones(3)
    with pytest.raises(ValueError, match="no 'strain/Strain'.*samples/mass1"):
        read_strain(foreign)

    gap = tmp_path / "gap.hdf5"
    with h5py.File(gap, "w") as f:
        f["strain/Strain"] = np.array([1.0, np.nan, 2.0])
        f["strain/Strain"].attrs.update(Xstart=10, Xspacing=0.5)
        f["meta/Detector"] = b"L1"
    with pytest.raises(ValueError, match="gaps"):
        read_strain(gap)

    two_columns = tmp_path / "two.txt"
    np.savetxt(two_columns, np.ones((3, 2)))
    with pytest.raises(ValueError, match="2 columns"):
        read_text(two_columns, "H1", t0=0, sample_rate=1)
    words = tmp_path / "words.txt"
    words.write_text("1.0\nabc\n")
    with pytest.raises(ValueError, match="not a text file of numbers"):
        read_text(words, "H1", t0=0, sample_rate=1)


def test_timeseries_is_frozen():
    ts = TimeSeries(np.zeros(3), 0.0, 1.0, "H1")
    with pytest.raises(AttributeError):
        ts.t0 = 5.0


def test_tests_of_the_shared_data_are_marked_so_they_can_be_deselected(request, shared_data):
    assert request.node.get_closest_marker("shared_data") is not None


def test_offline_tests_are_not_marked(request, project_data):
    assert request.node.get_closest_marker("shared_data") is None
