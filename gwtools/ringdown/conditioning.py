"""Data conditioning for time-domain ringdown analyses: filtering, decimation, segment cuts.

All functions are pure: they take a :class:`~gwtools.io.strain.TimeSeries` and return a new one.
Filters are zero-phase (forward-backward second-order sections), so they do not shift the
signal in time, which would bias the ringdown start time (Isi et al. 2019, arXiv:1905.00869;
Carullo et al. 2019, arXiv:1902.07527).  Filtering rings at the edges of the data: filter the
whole stretch first and cut the analysis segment from its middle afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import signal

from gwtools.io.strain import TimeSeries

__all__ = [
    "bandpass",
    "check_compatible",
    "condition",
    "conditioned_psd",
    "decimate",
    "decimation_filter",
    "extract_segment",
    "filter_padding",
    "highpass",
    "lowpass",
    "power_response",
]

# Relative tolerance for "integer" ratios of sample rates and for sample-time rounding.
_RATE_TOLERANCE = 1e-9

# e-folds of the slowest filter pole after which a transient is negligible (e^-20 = 2e-9).
_TRANSIENT_EFOLDS = 20.0
# The anti-aliasing filter reaches 10 output samples to either side (scipy's resample_poly
# design: 20 * factor + 1 taps).
_DECIMATION_REACH = 10
# Kaiser window parameter of the anti-aliasing filter (scipy's resample_poly default).
_KAISER_BETA = 5.0
# Coarsest grid (Hz) of conditioned_psd: the order-4 response at a 20 Hz corner changes by
# ~5% per 0.125 Hz there, so linear interpolation on this grid is accurate to ~1e-3.
_RESPONSE_SPACING = 0.125


def _butterworth_sos(sample_rate: float, kind: str, cutoff, order: int, detector: str = "") -> np.ndarray:
    """Second-order sections of the Butterworth filter ``kind`` with corner(s) ``cutoff`` (Hz)."""
    if int(order) != order or order < 1:
        raise ValueError(f"filter order must be a positive integer, got {order}")
    nyquist = sample_rate / 2
    corners = np.atleast_1d(np.asarray(cutoff, dtype=float))
    if not np.all((corners > 0) & (corners < nyquist)):
        raise ValueError(
            f"{kind} corner frequencies {corners.tolist()} Hz must lie strictly between 0 and the "
            f"Nyquist frequency {nyquist} Hz of the {detector + ' ' if detector else ''}data"
        )
    return signal.butter(int(order), cutoff, btype=kind, fs=sample_rate, output="sos")


def _butterworth(ts: TimeSeries, kind: str, cutoff, order: int) -> TimeSeries:
    """Apply a zero-phase Butterworth filter of type ``kind`` with corner(s) ``cutoff`` (Hz)."""
    sos = _butterworth_sos(ts.sample_rate, kind, cutoff, order, ts.detector)
    filtered = signal.sosfiltfilt(sos, ts.data)
    return TimeSeries(filtered, ts.t0, ts.sample_rate, ts.detector)


def _filter_kind(f_low: float | None, f_high: float | None):
    """(kind, corners) of the Butterworth filter :func:`condition` applies, or None."""
    if f_low is not None and f_high is not None:
        return "bandpass", [f_low, f_high]
    if f_low is not None:
        return "highpass", f_low
    if f_high is not None:
        return "lowpass", f_high
    return None


def highpass(ts: TimeSeries, f_low: float, order: int = 4) -> TimeSeries:
    """Zero-phase Butterworth high-pass filter.

    Forward-backward filtering squares the magnitude response: the gain is
    ``1 / (1 + (f_low / f)**(2 * order))``, i.e. 1/2 at ``f_low``.

    Parameters
    ----------
    ts : TimeSeries
        Input strain.
    f_low : float
        Corner frequency (Hz), ``0 < f_low < sample_rate / 2``.
    order : int, optional
        Butterworth order of one pass (default 4).

    Returns
    -------
    TimeSeries
        Filtered series with the same times.
    """
    return _butterworth(ts, "highpass", f_low, order)


def lowpass(ts: TimeSeries, f_high: float, order: int = 4) -> TimeSeries:
    """Zero-phase Butterworth low-pass filter (gain ``1 / (1 + (f / f_high)**(2 * order))``).

    Parameters
    ----------
    ts : TimeSeries
        Input strain.
    f_high : float
        Corner frequency (Hz), ``0 < f_high < sample_rate / 2``.
    order : int, optional
        Butterworth order of one pass (default 4).

    Returns
    -------
    TimeSeries
    """
    return _butterworth(ts, "lowpass", f_high, order)


def bandpass(ts: TimeSeries, f_low: float, f_high: float, order: int = 4) -> TimeSeries:
    """Zero-phase Butterworth band-pass filter between ``f_low`` and ``f_high`` (Hz).

    Parameters
    ----------
    ts : TimeSeries
        Input strain.
    f_low, f_high : float
        Corner frequencies (Hz), ``0 < f_low < f_high < sample_rate / 2``.
    order : int, optional
        Butterworth order of one pass (default 4).

    Returns
    -------
    TimeSeries
    """
    if not f_low < f_high:
        raise ValueError(f"bandpass needs f_low < f_high, got {f_low} and {f_high} Hz")
    return _butterworth(ts, "bandpass", [f_low, f_high], order)


def decimate(ts: TimeSeries, sample_rate: float) -> TimeSeries:
    """Reduce the sample rate by an integer factor with a zero-phase anti-aliasing filter.

    Uses polyphase FIR resampling (``scipy.signal.resample_poly``, Kaiser window), whose output
    sample ``k`` sits exactly at input sample ``k * factor``: the first time is unchanged.
    Content above about 0.9 of the new Nyquist frequency is attenuated.

    Parameters
    ----------
    ts : TimeSeries
        Input strain.
    sample_rate : float
        Target sample rate (Hz); ``ts.sample_rate / sample_rate`` must be an integer.

    Returns
    -------
    TimeSeries
        Series with ``ceil(len(ts) / factor)`` samples starting at ``ts.t0``.
    """
    if not (np.isfinite(sample_rate) and sample_rate > 0):
        raise ValueError(f"target sample_rate must be a positive number of Hz, got {sample_rate}")
    ratio = ts.sample_rate / sample_rate
    factor = round(ratio)
    if ratio < 1:
        raise ValueError(
            f"cannot decimate {ts.detector} data from {ts.sample_rate:g} Hz to {sample_rate:g} Hz: "
            f"the data rate is below the target; choose a rate of at most {ts.sample_rate:g} Hz"
        )
    if abs(ratio - factor) > _RATE_TOLERANCE * ratio:
        raise ValueError(
            f"cannot decimate {ts.detector} data from {ts.sample_rate} Hz to {sample_rate} Hz: "
            "the ratio must be a whole number; pick a target rate that divides the original"
        )
    if factor == 1:
        return ts
    data = signal.resample_poly(ts.data, 1, factor, window=decimation_filter(factor))
    return TimeSeries(data, ts.t0, ts.sample_rate / factor, ts.detector)


def decimation_filter(factor: int) -> np.ndarray:
    """Taps of the zero-phase anti-aliasing FIR filter of :func:`decimate` (at the input rate).

    A Kaiser-windowed (beta 5) sinc with ``20 * factor + 1`` taps and its cutoff at the new
    Nyquist frequency, normalized to unit gain at 0 Hz: the design ``scipy.signal.resample_poly``
    uses by default, stated here so that :func:`power_response` knows it exactly.

    Parameters
    ----------
    factor : int
        Decimation factor, ``>= 2``.

    Returns
    -------
    numpy.ndarray, shape (20 * factor + 1,)
    """
    if int(factor) != factor or factor < 2:
        raise ValueError(f"decimation factor must be an integer >= 2, got {factor}")
    factor = int(factor)
    return signal.firwin(2 * _DECIMATION_REACH * factor + 1, 1.0 / factor, window=("kaiser", _KAISER_BETA))


def condition(
    ts: TimeSeries,
    sample_rate: float | None = None,
    f_low: float | None = None,
    f_high: float | None = None,
    order: int = 4,
) -> TimeSeries:
    """Filter (high-, low- or band-pass as the corners given) then decimate.

    Parameters
    ----------
    ts : TimeSeries
        Input strain (a long stretch: cut the analysis segment afterwards).
    sample_rate : float, optional
        Target sample rate (Hz); ``None`` keeps the original.
    f_low, f_high : float, optional
        Filter corners (Hz); ``None`` leaves that side unfiltered.
    order : int, optional
        Butterworth order of one pass (default 4).

    Returns
    -------
    TimeSeries
    """
    if f_low is not None and f_high is not None and not f_low < f_high:
        raise ValueError(f"bandpass needs f_low < f_high, got {f_low} and {f_high} Hz")
    kind = _filter_kind(f_low, f_high)
    if kind is not None:
        ts = _butterworth(ts, *kind, order)
    if sample_rate is not None:
        ts = decimate(ts, sample_rate)
    return ts


def _decimation_factor(input_rate: float, sample_rate: float | None) -> int:
    if sample_rate is None:
        return 1
    ratio = input_rate / sample_rate
    factor = round(ratio)
    if factor < 1 or abs(ratio - factor) > _RATE_TOLERANCE * ratio:
        raise ValueError(
            f"the input rate {input_rate:g} Hz is not a whole multiple of the sample rate {sample_rate:g} Hz"
        )
    return factor


def power_response(
    freqs,
    input_rate: float,
    sample_rate: float | None = None,
    f_low: float | None = None,
    f_high: float | None = None,
    order: int = 4,
) -> np.ndarray:
    """Power gain ``|H(f)|^2`` of the filters of :func:`condition`, before its downsampling.

    The zero-phase Butterworth filter runs forward and backward, so its power gain is
    ``|H_B(f)|^4``; the anti-aliasing filter of :func:`decimate` (:func:`decimation_filter`)
    adds ``|H_A(f)|^2``.  Both are evaluated exactly at the input rate (``sosfreqz``, ``freqz``).

    Parameters
    ----------
    freqs : array_like
        Frequencies in ``[0, input_rate / 2]`` (Hz).
    input_rate : float
        Sample rate of the raw strain (Hz).
    sample_rate, f_low, f_high, order
        As given to :func:`condition`.

    Returns
    -------
    numpy.ndarray
        Dimensionless gain, shape of ``freqs``.
    """
    freqs = np.asarray(freqs, dtype=float)
    gain = np.ones_like(freqs)
    kind = _filter_kind(f_low, f_high)
    if kind is not None:
        sos = _butterworth_sos(input_rate, *kind, order)
        _, response = signal.sosfreqz(sos, worN=freqs.ravel(), fs=input_rate)
        gain = gain * np.abs(response.reshape(freqs.shape)) ** 4
    factor = _decimation_factor(input_rate, sample_rate)
    if factor > 1:
        _, response = signal.freqz(decimation_filter(factor), worN=freqs.ravel(), fs=input_rate)
        gain = gain * np.abs(response.reshape(freqs.shape)) ** 2
    return gain


def conditioned_psd(
    freqs,
    psd,
    input_rate: float,
    sample_rate: float | None = None,
    f_low: float | None = None,
    f_high: float | None = None,
    order: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """One-sided PSD of :func:`condition`'s output, for input noise of PSD ``psd``.

    The input PSD is interpolated linearly (below ``freqs[0]`` its first value is held, above
    ``freqs[-1]`` its last), multiplied by :func:`power_response` and, when the rate is
    reduced by ``q``, folded: the output at ``f`` sums the ``q`` input frequencies
    ``f + k * sample_rate`` (``k = 0 .. q - 1``) taken modulo ``input_rate`` and reflected
    into ``[0, input_rate / 2]``.  So below ``f_low`` the result is the input suppressed by the
    high-pass filter (``(1 + (f_low / f)^8)^-2`` for the default order 4 below ~100 Hz), and
    near the new Nyquist frequency it holds what the anti-aliasing filter passes, aliased
    power included.  The values held beyond ``freqs[-1]`` enter only through the filter's
    transition band just above the new Nyquist frequency.

    Parameters
    ----------
    freqs : array_like, shape (m,)
        Increasing frequencies (Hz) reaching at least ``sample_rate / 2``.
    psd : array_like, shape (m,)
        One-sided PSD of the raw strain (Hz^-1).
    input_rate : float
        Sample rate of the raw strain (Hz).
    sample_rate, f_low, f_high, order
        As given to :func:`condition` (``sample_rate`` None: no decimation).

    Returns
    -------
    grid : numpy.ndarray, shape (k,)
        ``0 .. sample_rate / 2`` (Hz), uniform, with the mean spacing of ``freqs``, or 0.125 Hz
        where that is finer (to resolve the filter responses).
    psd : numpy.ndarray, shape (k,)
        One-sided PSD of the conditioned data (Hz^-1).

    Raises
    ------
    ValueError
        ``freqs`` not increasing, ``psd`` negative or not finite, or a PSD that stops below the
        Nyquist frequency of ``sample_rate``.
    """
    freqs = np.asarray(freqs, dtype=float)
    psd = np.asarray(psd, dtype=float)
    if freqs.ndim != 1 or freqs.shape != psd.shape or freqs.size < 2:
        raise ValueError(f"freqs {freqs.shape} and psd {psd.shape} must be equal 1-D arrays (>= 2)")
    if not np.all(np.diff(freqs) > 0):
        raise ValueError("freqs must be strictly increasing")
    if not (np.all(np.isfinite(psd)) and np.all(psd >= 0)):
        raise ValueError("psd must be finite and non-negative")
    output_rate = input_rate if sample_rate is None else float(sample_rate)
    factor = _decimation_factor(input_rate, sample_rate)
    nyquist = output_rate / 2
    if freqs[-1] < nyquist * (1 - 1e-9):
        raise ValueError(
            f"the PSD stops at {freqs[-1]:g} Hz, below the Nyquist frequency {nyquist:g} Hz of the "
            "analysis: lower the sample rate or provide a PSD up to the Nyquist frequency"
        )
    spacing = min((freqs[-1] - freqs[0]) / (freqs.size - 1), _RESPONSE_SPACING)
    grid = np.linspace(0.0, nyquist, int(np.ceil(nyquist / spacing - 1e-6)) + 1)
    total = np.zeros_like(grid)
    for k in range(factor):
        alias = np.mod(grid + k * output_rate, input_rate)
        alias = np.minimum(alias, input_rate - alias)
        total += power_response(alias, input_rate, sample_rate, f_low, f_high, order) * np.interp(
            alias, freqs, psd
        )
    return grid, total


def filter_padding(
    sample_rate: float, f_low: float | None = None, f_high: float | None = None, order: int = 4
) -> float:
    """How far the transients of :func:`condition` reach from a discontinuity in the data, s.

    A defect (a gap edge, a zero-filled stretch) nearer than this to an analysis window leaks
    into it.  The slowest pole pair of an order-``n`` Butterworth filter with corner ``f_c``
    (the lowest corner used) decays as ``exp(-2 pi f_c sin(pi / (2 n)) t)``; the padding is 20
    of its e-folds (2e-9 of the step), plus the reach of the decimation filter.

    Parameters
    ----------
    sample_rate : float
        Sample rate after decimation (Hz).
    f_low, f_high : float, optional
        Filter corners (Hz), as given to :func:`condition`.
    order : int, optional
        Butterworth order of one pass.

    Returns
    -------
    float
        Padding, s (0.42 s at ``f_low = 20`` Hz and 2048 Hz).
    """
    corners = [f for f in (f_low, f_high) if f is not None and f > 0]
    padding = _DECIMATION_REACH / sample_rate
    if corners:
        decay_rate = 2 * np.pi * min(corners) * np.sin(np.pi / (2 * order))
        padding += _TRANSIENT_EFOLDS / decay_rate
    return float(padding)


def extract_segment(
    ts: TimeSeries, t_start: float, duration: float
) -> tuple[TimeSeries, np.ndarray]:
    """Cut the analysis segment that starts at GPS ``t_start`` in this detector.

    The segment begins at the first sample at or after ``t_start`` and has
    ``n = round(duration * sample_rate)`` samples.

    Parameters
    ----------
    ts : TimeSeries
        Conditioned strain.
    t_start : float
        Start time in this detector (GPS s), e.g. from
        :func:`gwtools.ringdown.detectors.detector_start_times`.
    duration : float
        Segment length (s).

    Returns
    -------
    segment : TimeSeries
        The ``n`` samples.
    times_since_start : numpy.ndarray, shape (n,)
        Sample times minus ``t_start`` (s); the first lies in ``[0, 1 / sample_rate)``, so a
        template evaluated at these times starts exactly at ``t_start``.

    Raises
    ------
    ValueError
        ``duration`` gives no sample, or the segment is not inside the data.
    """
    n = round(duration * ts.sample_rate)
    if n < 1:
        raise ValueError(
            f"duration {duration} s holds no sample at {ts.sample_rate} Hz; use a longer segment"
        )
    first = ts.index_at_or_after(t_start)
    if t_start < ts.t0 or first + n > len(ts):
        raise ValueError(
            f"segment [{t_start}, {t_start} + {duration} s) is not inside the {ts.detector} data "
            f"[{ts.t0}, {ts.end_time}) ({ts.duration:g} s long); read more data around the event"
        )
    # Differences of nearby GPS times are exact in float64, so compute offsets, not absolute times.
    offset = first / ts.sample_rate - (t_start - ts.t0)
    times_since_start = np.maximum(offset, 0.0) + np.arange(n) / ts.sample_rate
    segment = TimeSeries(
        ts.data[first : first + n], ts.t0 + first / ts.sample_rate, ts.sample_rate, ts.detector
    )
    return segment, times_since_start


def check_compatible(series: Mapping[str, TimeSeries]) -> float:
    """Check that series from several detectors can be analysed together.

    Parameters
    ----------
    series : mapping of str to TimeSeries
        ``{detector: series}``; each key must equal its series' ``detector``.

    Returns
    -------
    float
        The common sample rate (Hz).

    Raises
    ------
    ValueError
        Empty mapping, keys that do not match the series, or different sample rates.
    """
    if not series:
        raise ValueError("check_compatible needs at least one series")
    wrong = {key: ts.detector for key, ts in series.items() if key != ts.detector}
    if wrong:
        raise ValueError(f"keys do not match the series' detectors: {wrong}")
    rates = {key: ts.sample_rate for key, ts in series.items()}
    if len(set(rates.values())) > 1:
        raise ValueError(
            f"detectors have different sample rates {rates} Hz; decimate all to one rate with "
            "condition(ts, sample_rate=...)"
        )
    return next(iter(rates.values()))
