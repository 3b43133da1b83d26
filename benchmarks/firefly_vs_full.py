"""FIREFLY against the full-parameter baseline: speed, evidence and posterior agreement.

Setup ("GW150914-like"): H1 and L1 at the GW150914 sky position (ra 1.95, dec -1.27) with
noise drawn from the H1 GW150914 autocovariance shipped in data/ (pyRing's 4096 s estimate) in
both detectors, 2048 Hz, 0.2 s segments; a Kerr ringdown of Mf = 68 Msun, chi = 0.69 with the
given modes injected (22n amplitudes decreasing along the overtones, 4, 4, 2, 1 x 1e-21; other
harmonics 1.5 x 1e-21).  Face-off when every mode is an l = m = 2 mode; otherwise at
inclination pi/3, where every harmonic is seen (face-off hides all m != 2 modes).  Both
analyses use the same priors (uniform Mf in [35, 140], chi in [0, 0.99], flat amplitudes in
[0, A_max], uniform phases), the same engine and the same sampler settings (nlive, dlogz, seed;
blackjax: the default number of slice moves follows each run's dimension).  FIREFLY samples
(Mf, chi) and reconstructs amplitudes by importance resampling; the baseline samples
everything.  Compilation is excluded from the times and reported apart.

"User baseline": what a user of a conventional code launches, the full-parameter dynesty run
(random walks, one point per call) with the plain per-point numpy likelihood
(:class:`~gwtools.ringdown.reference.ReferenceLikelihood`: Toeplitz Cholesky solve per call).
It is slow, so it runs at ``--user-nlive`` (default 100) and its time is scaled to ``--nlive``
in proportion (nested-sampling cost grows linearly with the live points); the JSON line gives
both.  The reference likelihood has closed-form harmonics for l = 2 only, so mode sets with
other harmonics have no user baseline.

Run:  python benchmarks/firefly_vs_full.py [--nlive 1000] [--modes 220 220,221 ...] [--no-user-baseline]
Prints a table and one JSON line per mode set.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
import scipy.linalg

from gwtools.ringdown.baseline import full_parameter_space
from gwtools.ringdown.likelihood import rotate_antenna
from gwtools.ringdown.model import AMPLITUDE_UNIT
from gwtools.ringdown.noise import read_acf
from gwtools.ringdown.priors import ParameterSpace, PriorRange
from gwtools.ringdown.qnm import frequency_damping_time
from gwtools.ringdown.reference import ReferenceLikelihood
from gwtools.ringdown.sampling import ENGINES, SamplerSettings, run_nested
from gwtools.ringdown.validation import compare_firefly_with_full, ringdown_injection

ROOT = Path(__file__).resolve().parents[1]
ACF_FILE = ROOT / "data" / "GW150914" / "ACF_H1_1126257415_4096_4.0_2048.0.txt.gz"
RA, DEC, PSI, GPS = 1.95, -1.27, 0.82, 1126259462.4083
MODE_SETS = ["220", "220,221", "220,221,222", "220,221,330,440,210,320"]
SPACE = ParameterSpace((PriorRange("final_mass", 35.0, 140.0), PriorRange("final_spin", 0.0, 0.99)))


def gw150914_like(modes, sample_rate=2048.0, duration=0.2, seed=150914, inclination=None):
    """(model, data, injection, snr) of a GW150914-like injection with the given modes.

    ``inclination`` defaults to face-off (pi) for l = m = 2 modes only, else pi/3.
    """
    acf = read_acf(ACF_FILE, sample_rate, round(duration * sample_rate))
    return ringdown_injection(modes, acf, ra=RA, dec=DEC, gps=GPS, polarization=PSI, sample_rate=sample_rate,
                              inclination=inclination, seed=seed)


class _PerPointReference:
    """The reference likelihood called one point at a time, as a conventional code calls it."""

    def __init__(self, reference: ReferenceLikelihood, n_modes: int, amplitude_unit: float):
        self.reference = reference
        self.n_modes = n_modes
        self.amplitude_unit = amplitude_unit

    def __call__(self, theta):
        theta = np.atleast_2d(theta)
        k = self.n_modes
        return np.array([self.reference(row[0], row[1], row[2:2 + k] * self.amplitude_unit, row[2 + k:])
                         for row in theta])


def user_baseline(model, data, injection, amplitude_max, nlive, dlogz, seed):
    """(seconds, calls, ln Z) of the full-parameter dynesty run with the per-point numpy likelihood."""
    acf = read_acf(ACF_FILE, 2048.0, data.n_samples)
    # the strain back from T^-1 d (units of AMPLITUDE_UNIT): d = T (T^-1 d)
    covariance = scipy.linalg.toeplitz(acf / AMPLITUDE_UNIT**2)
    strain = np.array([covariance @ w for w in np.asarray(data.weighted_data)]) * AMPLITUDE_UNIT
    qnm = jax.jit(lambda mass, spin: frequency_damping_time(model.modes, mass, spin))

    def frequencies(mass, spin):
        freqs, taus = qnm(mass, spin)
        return np.ravel(freqs), np.ravel(taus)

    reference = ReferenceLikelihood(np.asarray(data.times), strain, np.stack([acf, acf]),
                                    np.asarray(rotate_antenna(data.antenna, injection.polarization)),
                                    frequencies, [m.m for m in model.modes], inclination=injection.inclination)
    likelihood = _PerPointReference(reference, len(model.modes), AMPLITUDE_UNIT)
    space = full_parameter_space(SPACE, model.amplitude_labels, amplitude_max)
    settings = SamplerSettings(engine="dynesty", nlive=nlive, dlogz=dlogz, seed=seed, sample="rwalk", queue_size=1)
    begin = time.perf_counter()
    result = run_nested(likelihood, space, settings, progress=False)
    return time.perf_counter() - begin, result.ncall, result.log_evidence


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nlive", type=int, default=1000)
    parser.add_argument("--dlogz", type=float, default=0.1)
    parser.add_argument("--engine", default="blackjax", choices=ENGINES)
    parser.add_argument("--modes", nargs="+", default=MODE_SETS, help="mode sets, each comma-separated")
    parser.add_argument("--amplitude-max", type=float, default=20.0, help="A_max in units of 1e-21")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--user-nlive", type=int, default=100, help="live points of the user baseline")
    parser.add_argument("--no-user-baseline", action="store_true")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    settings = SamplerSettings(engine=args.engine, nlive=args.nlive, dlogz=args.dlogz, seed=args.seed)
    if args.engine == "dynesty":
        settings = replace(settings, sample="auto")
    records = []
    header = (f"{'modes':<24} {'SNR':>5} {'FIREFLY s':>10} {'full s':>9} {'speed-up':>9} {'calls FF':>9} "
              f"{'calls full':>11} {'lnZ FF':>16} {'lnZ full':>16} {'JSD Mf':>7} {'JSD chi':>7} {'user s':>8} "
              f"{'user x':>8}")
    print(f"JAX on {jax.devices()[0].platform}, engine {args.engine}, nlive {args.nlive}, dlogz {args.dlogz}")
    print(header)
    for spec in args.modes:
        model, data, injection, snr = gw150914_like(spec.split(","))
        fixed = {"inclination": injection.inclination, "polarization": injection.polarization}
        result = compare_firefly_with_full(model, data, SPACE, fixed, args.amplitude_max, settings,
                                           progress=args.progress)
        s = result.summary()
        record = {"benchmark": "firefly_vs_full", "device": jax.devices()[0].platform, "snr": snr,
                  "inclination": injection.inclination, **s,
                  "calls_firefly": s["firefly_calls"], "calls_full": s["full_calls"],
                  "lnz_firefly": s["firefly_ln_z_physical"], "lnz_full": s["full_ln_z"],
                  "jsd_final_mass": s["jsd_bits"]["final_mass"], "jsd_final_spin": s["jsd_bits"]["final_spin"]}
        user = "-"
        if not args.no_user_baseline and all(m.l == 2 for m in model.modes):
            seconds, calls, ln_z = user_baseline(model, data, injection, args.amplitude_max, args.user_nlive,
                                                 args.dlogz, args.seed)
            scaled = seconds * args.nlive / args.user_nlive
            record.update(user_nlive=args.user_nlive, user_seconds=seconds, user_calls=calls, user_ln_z=ln_z,
                          user_seconds_scaled=scaled, user_speedup=scaled / s["firefly_seconds"])
            user = f"{scaled:8.0f} {record['user_speedup']:8.0f}"
        print(f"{spec:<24} {snr:5.1f} {s['firefly_seconds']:10.2f} {s['full_seconds']:9.1f} {s['speedup']:9.1f} "
              f"{s['firefly_calls']:9d} {s['full_calls']:11d} "
              f"{s['firefly_ln_z_physical']:9.2f}+-{s['firefly_ln_z_err']:.2f} "
              f"{s['full_ln_z']:9.2f}+-{s['full_ln_z_err']:.2f} "
              f"{s['jsd_bits']['final_mass']:7.4f} {s['jsd_bits']['final_spin']:7.4f} {user}", flush=True)
        print(json.dumps(record), flush=True)
        records.append(record)
    return records


if __name__ == "__main__":
    main()
