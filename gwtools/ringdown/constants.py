"""Constants of the ringdown engine that the configuration reader shares, without JAX.

The JAX modules (:mod:`~gwtools.ringdown.qnm`, :mod:`~gwtools.ringdown.model`,
:mod:`~gwtools.ringdown.firefly`) and the configuration reader (:mod:`~gwtools.ringdown.config`)
take these from here, so that a configuration is checked against the values the engine uses
without loading JAX.
"""

from __future__ import annotations

import math

__all__ = [
    "CHI_MAX",
    "GM_SUN",
    "MTSUN_S",
    "POLARIZATION_MODELS",
    "PSI_PERIOD",
    "QUADRATURE_PRIORS",
    "SPEED_OF_LIGHT",
    "START_SHIFT",
    "WELCH_AVERAGES",
]

#: Nominal solar mass parameter G M_sun, m^3 s^-2 (IAU 2015 Resolution B3, exact by definition).
GM_SUN: float = 1.3271244e20

#: Speed of light in vacuum, m s^-1 (exact in the SI).
SPEED_OF_LIGHT: float = 299_792_458.0

#: G M_sun / c^3, s: the solar mass as a time.
MTSUN_S: float = GM_SUN / SPEED_OF_LIGHT**3

#: Largest dimensionless remnant spin covered by the Kerr QNM table (and accepted in priors).
CHI_MAX: float = 0.99

#: Period of the antenna patterns in the polarization angle, rad: psi and psi + pi are one
#: polarization.
PSI_PERIOD: float = math.pi

#: Amplitude models of a ringdown template: two quadratures per mode tied by the spheroidal
#: harmonics of the inclination (``"kerr"``), or independent plus and cross amplitudes
#: (``"free"``, four quadratures per mode).
POLARIZATION_MODELS: tuple[str, ...] = ("kerr", "free")

#: Priors on the mode quadratures inside the FIREFLY marginalization: flat within a disc of
#: radius ``amplitude_max``, or independent Gaussians.
QUADRATURE_PRIORS: tuple[str, ...] = ("flat", "gaussian")

#: Name of the sampled start time relative to the configured start, s (within a start window).
START_SHIFT: str = "start_shift"

#: Averages of the Welch segment periodograms.
WELCH_AVERAGES: tuple[str, ...] = ("mean", "median")
