"""Conditioning against analytic responses: sinusoids through filters and decimation, edges."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from gwtools.io.strain import from_array
from gwtools.ringdown.conditioning import (
    bandpass,
    check_compatible,
    condition,
    decimate,
    extract_segment,
    highpass,
    lowpass,
)

FS = 4096.0
T0 = 1126259446.0


def _sinusoids(freqs, amps, phases, duration=8.0, fs=FS, detector="H1"):
    t = np.arange(int(duration * fs)) / fs
    data = sum(a * np.sin(2 * np.pi * f * t + p) for f, a, p in zip(freqs, amps, phases))
    return from_array(data, T0, fs, detector)


def _amplitude_and_phase(ts, freq, core=slice(8192, -8192)):
    """Least-squares amplitude and phase of a sinusoid at ``freq`` away from the edges."""
    t = (np.arange(len(ts)) / ts.sample_rate)[core]
    basis = np.column_stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)])
    (s, c), *_ = np.linalg.lstsq(basis, ts.data[core], rcond=None)
    return np.hypot(s, c), np.arctan2(c, s)


def test_highpass_passes_above_and_suppresses_below():
    ts = _sinusoids([5.0, 150.0], [1.0, 1.0], [0.3, 1.1])
    out = highpass(ts, 20.0)
    amp, phase = _amplitude_and_phase(out, 150.0)
    assert amp == pytest.approx(1.0, rel=1e-2)
    # Zero-phase: the passed sinusoid keeps its phase.
    assert phase == pytest.approx(1.1, abs=1e-3)
    # Butterworth squared by filtfilt: gain 1 / (1 + (20/5)^8) ~ 1.5e-5 at 5 Hz.
    assert _amplitude_and_phase(out, 5.0)[0] < 1e-4
    assert out.t0 == ts.t0 and out.sample_rate == ts.sample_rate


def test_bandpass_and_lowpass_gain_matches_butterworth_formula():
    ts = _sinusoids([10.0, 100.0, 300.0, 1500.0], [1.0] * 4, [0.0, 0.5, 1.0, 1.5])
    band = bandpass(ts, 20.0, 500.0)
    for freq in (100.0, 300.0):
        assert _amplitude_and_phase(band, freq)[0] == pytest.approx(1.0, rel=1e-2)
    for freq in (10.0, 1500.0):
        assert _amplitude_and_phase(band, freq)[0] < 1e-2
    low = lowpass(ts, 300.0)
    # At the corner the forward-backward Butterworth gain is exactly 1/2.
    assert _amplitude_and_phase(low, 300.0)[0] == pytest.approx(0.5, rel=1e-2)


def test_decimation_of_band_limited_signal_matches_analytic_values():
    freqs, amps, phases = [30.0, 210.0, 370.0], [1.0, 0.5, 0.25], [0.2, 0.7, 2.0]
    ts = _sinusoids(freqs, amps, phases)
    out = decimate(ts, 1024.0)
    assert out.sample_rate == 1024.0 and out.t0 == ts.t0 and len(out) == len(ts) // 4
    t = np.arange(len(out)) / 1024.0
    expected = sum(a * np.sin(2 * np.pi * f * t + p) for f, a, p in zip(freqs, amps, phases))
    core = slice(512, -512)
    assert np.max(np.abs(out.data[core] - expected[core])) < 1e-2


def test_decimation_removes_content_above_new_nyquist():
    # 700 Hz would alias to 324 Hz at 1024 Hz without the anti-aliasing filter.
    out = decimate(_sinusoids([700.0], [1.0], [0.0]), 1024.0)
    assert np.std(out.data[512:-512]) < 1e-2


def test_condition_is_filter_then_decimate():
    ts = _sinusoids([5.0, 100.0], [1.0, 1.0], [0.0, 0.4])
    out = condition(ts, sample_rate=2048.0, f_low=20.0)
    expected = decimate(highpass(ts, 20.0), 2048.0)
    np.testing.assert_array_equal(out.data, expected.data)
    assert condition(ts) is ts


def test_extract_segment_edges():
    ts = from_array(np.arange(4096 * 4, dtype=float), T0, FS, "L1")
    # Start between samples: the segment begins at the next sample.
    t_start = T0 + 1.0 + 0.3 / FS
    seg, rel = extract_segment(ts, t_start, 0.1)
    n = round(0.1 * FS)
    assert len(seg) == n == rel.size
    assert seg.data[0] == 4097.0 and seg.t0 == T0 + 4097 / FS
    # t_start itself is rounded to the 2.4e-7 s grid of float64 GPS times: compare exactly.
    exact = Fraction(T0) + Fraction(4097, 4096) - Fraction(t_start)
    assert rel[0] == float(exact) and 0 <= rel[0] < 1 / FS
    assert abs(exact - Fraction(7, 40960)) < Fraction(3, 10**7)
    np.testing.assert_allclose(np.diff(rel), 1 / FS, rtol=1e-9)
    # Start exactly on a sample: that sample is first and its relative time is zero.
    seg, rel = extract_segment(ts, T0 + 2.0, 0.25)
    assert seg.data[0] == 8192.0 and rel[0] == 0.0
    # The last complete segment fits; one more sample does not.
    seg, _ = extract_segment(ts, T0 + 3.75, 0.25)
    assert seg.data[-1] == len(ts) - 1
    with pytest.raises(ValueError, match="not inside"):
        extract_segment(ts, T0 + 3.75 + 0.5 / FS, 0.25)
    with pytest.raises(ValueError, match="not inside"):
        extract_segment(ts, T0 - 0.1, 0.05)
    with pytest.raises(ValueError, match="holds no sample"):
        extract_segment(ts, T0 + 1.0, 1e-5)


def test_check_compatible():
    h1 = from_array(np.zeros(8), T0, 2048.0, "H1")
    l1 = from_array(np.zeros(8), T0, 2048.0, "L1")
    assert check_compatible({"H1": h1, "L1": l1}) == 2048.0
    with pytest.raises(ValueError, match="different sample rates"):
        check_compatible({"H1": h1, "L1": from_array(np.zeros(8), T0, 4096.0, "L1")})
    with pytest.raises(ValueError, match="do not match"):
        check_compatible({"L1": h1})
    with pytest.raises(ValueError, match="at least one"):
        check_compatible({})


def test_bad_parameters():
    ts = _sinusoids([50.0], [1.0], [0.0], duration=1.0)
    with pytest.raises(ValueError, match="whole number"):
        decimate(ts, 3000.0)
    with pytest.raises(ValueError, match=r"rate is below the target; choose a rate of at most 4096 Hz"):
        decimate(ts, 8192.0)
    with pytest.raises(ValueError, match="Nyquist"):
        highpass(ts, 3000.0)
    with pytest.raises(ValueError, match="f_low < f_high"):
        bandpass(ts, 300.0, 20.0)
    with pytest.raises(ValueError, match="order"):
        highpass(ts, 20.0, order=0)
