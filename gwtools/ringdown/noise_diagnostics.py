"""Is the noise model right?  Whiteness checks of off-source data whitened with it.

If a detector's noise is stationary and Gaussian with the autocovariance of the model, the
whitened stretch ``L^-1 x`` of any ``n`` consecutive samples (``T = L L^T`` the Toeplitz
covariance of the analysis segment, :meth:`~gwtools.ringdown.noise.ToeplitzNoise.whiten`) holds
``n`` independent standard normal values.  :func:`whiteness_report` cuts the conditioned data
outside the on-source interval into consecutive stretches of the analysis length, whitens each
and tests that: the pooled values against N(0, 1) (Kolmogorov-Smirnov), each stretch's sum of
squares against chi^2_n and its largest value against the maximum of ``n`` normal values (a
loud stretch betrays non-stationary noise or a glitch), and their
autocorrelation at small lags (a wrong PSD shape leaves correlations).  Stretches inside the
Welch windows that made the estimate are flagged: they test the estimate in-sample; the others
test it out of sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats

from gwtools.io.strain import TimeSeries
from gwtools.ringdown.noise import ToeplitzNoise

__all__ = [
    "AUTOCORRELATION_LAGS",
    "GUARD_AFTER",
    "GUARD_BEFORE",
    "LOUD_PVALUE",
    "WhitenessReport",
    "whiteness_report",
]

#: Seconds before the analysis start left out: the inspiral of a stellar-mass binary spends
#: about a second in band above 20 Hz.
GUARD_BEFORE = 2.0

#: Seconds after the end of the analysis segment left out.
GUARD_AFTER = 1.0

#: A stretch whose whitened values are this improbable for n standard normal values is reported
#: as loud: about one Gaussian stretch in ten thousand (with the 32 s of shipped data, ~150
#: stretches per detector, a false alarm in about one detector in seventy).
LOUD_PVALUE = 1e-4

#: Lags (samples) of the autocorrelation of the whitened data that are checked.
AUTOCORRELATION_LAGS = 16

_HISTOGRAM_EDGES = np.linspace(-6.0, 6.0, 49)


@dataclass(frozen=True)
class WhitenessReport:
    """Whitened off-source stretches of one detector and their tests.

    Attributes
    ----------
    detector : str
    starts : numpy.ndarray, shape (k,)
        GPS start of each stretch, s.
    variances : numpy.ndarray, shape (k,)
        Mean square of each whitened stretch (1 for the right model).
    max_abs : numpy.ndarray, shape (k,)
        Largest absolute whitened value of each stretch.
    in_estimate : numpy.ndarray of bool, shape (k,)
        Whether the stretch lies inside the data the noise estimate was made from.
    loud_pvalues : numpy.ndarray, shape (k,)
        Per stretch, twice the smaller of two survival probabilities (a Bonferroni bound):
        of its sum of squares under chi^2_n (excess power) and of its largest absolute value
        under the maximum of ``n`` independent ``|N(0, 1)|`` values (a glitch).
    histogram_edges, histogram_counts : numpy.ndarray
        Histogram of all whitened values (values beyond the edges are not counted).
    autocorrelation : numpy.ndarray, shape (AUTOCORRELATION_LAGS,)
        Autocorrelation of the whitened values at lags ``1 .. AUTOCORRELATION_LAGS`` samples,
        pooled over stretches; its standard error is about ``1 / sqrt(n_values)``.
    ks_pvalue : float
        Kolmogorov-Smirnov p-value of all whitened values against N(0, 1).
    ks_pvalue_outside : float
        The same for the stretches outside the estimate's data (NaN if there are none).
    n_values : int
        Number of whitened values.
    """

    detector: str
    starts: np.ndarray
    variances: np.ndarray
    max_abs: np.ndarray
    in_estimate: np.ndarray
    loud_pvalues: np.ndarray
    histogram_edges: np.ndarray
    histogram_counts: np.ndarray
    autocorrelation: np.ndarray
    ks_pvalue: float
    ks_pvalue_outside: float
    n_values: int

    @property
    def loud_starts(self) -> np.ndarray:
        """GPS starts of the stretches with ``loud_pvalues < LOUD_PVALUE``."""
        return self.starts[self.loud_pvalues < LOUD_PVALUE]

    def scalars(self) -> dict[str, float]:
        """The tests as named numbers (for a results file's diagnostics)."""
        outside = ~self.in_estimate
        return {
            "stretches": int(self.starts.size),
            "whitened_variance": float(np.mean(self.variances)),
            "whitened_variance_outside": float(np.mean(self.variances[outside])) if outside.any()
            else float("nan"),
            "ks_pvalue": self.ks_pvalue,
            "ks_pvalue_outside": self.ks_pvalue_outside,
            "max_abs_whitened": float(np.max(self.max_abs)),
            "max_abs_whitened_gps": float(self.starts[np.argmax(self.max_abs)]),
            "loud_stretches": int(np.sum(self.loud_pvalues < LOUD_PVALUE)),
            "lag1_autocorrelation": float(self.autocorrelation[0]),
            "max_abs_autocorrelation": float(np.max(np.abs(self.autocorrelation))),
        }


def _stretch_starts(ts: TimeSeries, n: int, segment: tuple[float, float], padding: float) -> np.ndarray:
    """First indices of consecutive ``n``-sample stretches of ``ts`` clear of the filter edges and
    of the guarded on-source interval."""
    begin = ts.index_at_or_after(ts.t0 + padding)
    end = len(ts) - int(np.ceil(padding * ts.sample_rate))
    firsts = np.arange(begin, end - n + 1, n)
    times = ts.t0 + firsts / ts.sample_rate
    clear = (times + n / ts.sample_rate <= segment[0] - GUARD_BEFORE) | (times >= segment[1] + GUARD_AFTER)
    return firsts[clear]


def whiteness_report(
    ts: TimeSeries,
    noise: ToeplitzNoise,
    segment: tuple[float, float],
    estimate_windows: Sequence[tuple[float, float]] = (),
    padding: float = 0.0,
) -> WhitenessReport:
    """Whiten the off-source data of one detector with its noise model and test the result.

    Parameters
    ----------
    ts : TimeSeries
        Conditioned strain of the detector (the whole stretch the analysis filtered).
    noise : ToeplitzNoise
        The noise model of the analysis segment (``n`` samples).
    segment : (float, float)
        GPS span of the analysis segment in this detector; ``GUARD_BEFORE`` s before it and
        ``GUARD_AFTER`` s after it are left out.
    estimate_windows : sequence of (float, float), optional
        GPS spans of the data the noise estimate was made from (stretches inside one are
        flagged ``in_estimate``).
    padding : float, optional
        Seconds left out at both ends of ``ts``, where the filters ring.

    Returns
    -------
    WhitenessReport

    Raises
    ------
    ValueError
        No stretch of ``n`` samples is left.
    """
    n = noise.n_samples
    firsts = _stretch_starts(ts, n, segment, padding)
    if firsts.size == 0:
        raise ValueError(
            f"no {n}-sample stretch of the {ts.detector} data lies clear of the analysis segment "
            f"and the data edges: the noise diagnostics need more data"
        )
    stretches = np.stack([ts.data[i : i + n] for i in firsts])
    white = noise.whiten(stretches)
    starts = ts.t0 + firsts / ts.sample_rate
    duration = n / ts.sample_rate
    in_estimate = np.array(
        [any(a <= t and t + duration <= b for a, b in estimate_windows) for t in starts], dtype=bool
    )
    squares = np.sum(white**2, axis=1)
    max_abs = np.max(np.abs(white), axis=1)
    # P(max of n |N(0,1)| > m) = 1 - (1 - p)^n with p = P(|N(0,1)| > m), kept accurate for tiny p
    tail = 2 * scipy.stats.norm.sf(max_abs)
    maximum_pvalue = -np.expm1(n * np.log1p(-tail))
    loud_pvalues = np.minimum(1.0, 2 * np.minimum(scipy.stats.chi2.sf(squares, n), maximum_pvalue))
    values = white.ravel()
    lagged = np.array(
        [np.sum(white[:, k:] * white[:, :-k]) for k in range(1, AUTOCORRELATION_LAGS + 1)]
    )
    outside = white[~in_estimate].ravel()
    return WhitenessReport(
        detector=ts.detector,
        starts=starts,
        variances=squares / n,
        max_abs=max_abs,
        in_estimate=in_estimate,
        loud_pvalues=loud_pvalues,
        histogram_edges=_HISTOGRAM_EDGES,
        histogram_counts=np.histogram(values, _HISTOGRAM_EDGES)[0],
        autocorrelation=lagged / np.sum(squares),
        ks_pvalue=float(scipy.stats.kstest(values, "norm").pvalue),
        ks_pvalue_outside=float(scipy.stats.kstest(outside, "norm").pvalue) if outside.size
        else float("nan"),
        n_values=int(values.size),
    )
