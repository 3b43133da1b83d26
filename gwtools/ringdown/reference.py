"""Plain numpy/scipy ringdown likelihood, written independently of the JAX path.

It builds the template directly from amplitudes and phases (no design matrix, no whitening
matrices) and solves with the covariance for every call.  It exists to validate
:mod:`gwtools.ringdown.likelihood` and :mod:`gwtools.ringdown.firefly` in the tests and as the
"straightforward implementation" the benchmarks compare against.  Only l = 2 modes are supported
for the ``"kerr"`` model (closed-form inclination factors).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["l2_inclination_factors", "reference_template", "reference_log_likelihood",
           "ReferenceLikelihood"]


def l2_inclination_factors(m: int, inclination: float) -> tuple[float, float]:
    """Plus/cross factors of an l = 2 mode plus its mirror, from the closed-form -2Y_2m.

    -2Y_22 = sqrt(5/64pi)(1+cos i)^2, -2Y_2-2 = sqrt(5/64pi)(1-cos i)^2,
    -2Y_21 = sqrt(5/16pi) sin i (1+cos i), -2Y_2-1 = sqrt(5/16pi) sin i (1-cos i),
    -2Y_20 = sqrt(15/32pi) sin^2 i  (azimuth 0).
    """
    c, s = np.cos(inclination), np.sin(inclination)
    closed = {
        2: np.sqrt(5 / (64 * np.pi)) * (1 + c) ** 2,
        -2: np.sqrt(5 / (64 * np.pi)) * (1 - c) ** 2,
        1: np.sqrt(5 / (16 * np.pi)) * s * (1 + c),
        -1: np.sqrt(5 / (16 * np.pi)) * s * (1 - c),
        0: np.sqrt(15 / (32 * np.pi)) * s**2,
    }
    return closed[m] + closed[-m], closed[m] - closed[-m]


def reference_template(times, freqs, taus, amplitudes, phases, antenna, *, polarization="kerr",
                       ms=None, inclination=0.0):
    """Detector strain of a sum of damped sinusoids.

    Parameters
    ----------
    times
        (n,) s since the start in this detector (template is zero before 0).
    freqs, taus
        (K,) Hz and s.
    amplitudes, phases
        kerr: (K,) amplitudes (strain) and phases; free: (K, 2) for (plus, cross).
    antenna
        (F_plus, F_cross) of this detector at the source's polarization angle.
    ms
        kerr: azimuthal numbers m of the (l = 2) modes.
    """
    t = np.asarray(times, dtype=float)
    f_plus, f_cross = antenna
    h = np.zeros_like(t)
    for k, (f, tau) in enumerate(zip(freqs, taus)):
        env = np.where(t >= 0, np.exp(-np.clip(t, 0, None) / tau), 0.0)
        arg = 2 * np.pi * f * np.clip(t, 0, None)
        if polarization == "kerr":
            y_plus, y_cross = l2_inclination_factors(ms[k], inclination)
            hp = amplitudes[k] * y_plus * env * np.cos(arg - phases[k])
            hc = amplitudes[k] * y_cross * env * np.sin(arg - phases[k])
        else:
            hp = amplitudes[k][0] * env * np.cos(arg - phases[k][0])
            hc = amplitudes[k][1] * env * np.cos(arg - phases[k][1])
        h += f_plus * hp + f_cross * hc
    return h


def reference_log_likelihood(data, acf, template) -> float:
    """Gaussian ln L of one detector's segment with an explicit Toeplitz covariance solve."""
    cov = scipy.linalg.toeplitz(np.asarray(acf, dtype=float))
    residual = np.asarray(data, dtype=float) - np.asarray(template, dtype=float)
    sign, log_det = np.linalg.slogdet(cov)
    if sign <= 0:
        raise ValueError("covariance is not positive definite")
    chi2 = residual @ scipy.linalg.solve(cov, residual, assume_a="pos")
    return float(-0.5 * chi2 - 0.5 * log_det - 0.5 * len(residual) * np.log(2 * np.pi))


class ReferenceLikelihood:
    """Straightforward per-point likelihood: Cholesky factors cached, template rebuilt per call.

    Parameters
    ----------
    times, data, acfs
        (n_det, n) as in :func:`gwtools.ringdown.likelihood.build_analysis_data`.
    antenna
        (n_det, 2) at the source's polarization angle.
    qnm
        Callable (final_mass, final_spin) -> (freqs, taus), arrays (K,).
    ms
        Azimuthal numbers of the (l = 2) modes.
    """

    def __init__(self, times, data, acfs, antenna, qnm, ms, inclination=0.0):
        self.times = np.atleast_2d(times)
        self.data = np.atleast_2d(data)
        self.antenna = np.atleast_2d(antenna)
        self.qnm = qnm
        self.ms = list(ms)
        self.inclination = inclination
        self.factors = [scipy.linalg.cho_factor(scipy.linalg.toeplitz(a)) for a in np.atleast_2d(acfs)]
        self.log_norm = sum(
            -np.sum(np.log(np.diag(c[0]))) - 0.5 * len(a) * np.log(2 * np.pi)
            for c, a in zip(self.factors, np.atleast_2d(acfs))
        )

    def __call__(self, final_mass, final_spin, amplitudes, phases) -> float:
        freqs, taus = self.qnm(final_mass, final_spin)
        total = self.log_norm
        for times, data, antenna, factor in zip(self.times, self.data, self.antenna, self.factors):
            h = reference_template(times, freqs, taus, amplitudes, phases, antenna, ms=self.ms,
                                   inclination=self.inclination)
            r = data - h
            total += -0.5 * r @ scipy.linalg.cho_solve(factor, r)
        return float(total)
