"""FIREFLY against the full-parameter baseline: speed, evidence and posterior agreement.

Setup ("GW150914-like"): H1 and L1 at the GW150914 sky position (ra 1.95, dec -1.27) with
noise drawn from the H1 GW150914 autocovariance shipped in data/ (pyRing's 4096 s estimate) in
both detectors, 2048 Hz, 0.2 s segments; a Kerr ringdown of Mf = 68 Msun, chi = 0.69,
face-off, with the given modes injected (amplitudes decreasing along the overtones).  Both
analyses use the same priors (uniform Mf in [35, 140], chi in [0, 0.99], flat amplitudes in
[0, A_max], uniform phases), the same nlive and dlogz.  FIREFLY samples (Mf, chi) and
reconstructs amplitudes by importance resampling; the baseline samples everything.

Run:  python benchmarks/firefly_vs_full.py [--nlive 1000] [--modes 220 220,221 220,221,222]
Prints a table and one JSON line per mode set.  The full runs dominate: at nlive 1000 expect
minutes for 220 and much longer for three modes on 2 CPU cores; use --nlive 200 for a quick look.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import jax
from gwtools.ringdown import detectors
from gwtools.ringdown.injection import Injection, inject, optimal_snr
from gwtools.ringdown.model import RingdownModel
from gwtools.ringdown.noise import read_acf
from gwtools.ringdown.sampling import ParameterSpace, PriorRange, SamplerSettings
from gwtools.ringdown.validation import compare_firefly_with_full

ROOT = Path(__file__).resolve().parents[1]
ACF_FILE = ROOT / "data" / "GW150914" / "ACF_H1_1126257415_4096_4.0_2048.0.txt.gz"
RA, DEC, GPS = 1.95, -1.27, 1126259462.4083
AMPLITUDES = {0: 4.0, 1: 4.0, 2: 2.0, 3: 1.0}  # by overtone number, units of 1e-21


def gw150914_like(modes, sample_rate=2048.0, duration=0.2, seed=150914):
    """(model, data, injection, snr) of a GW150914-like injection with the given modes."""
    model = RingdownModel(tuple(modes))
    n = int(round(duration * sample_rate))
    acf = read_acf(ACF_FILE, sample_rate, n)
    names = ("H1", "L1")
    delays = [detectors.time_delay_from_geocenter(d, RA, DEC, GPS) for d in names]
    # each detector's first sample lies at its own sub-sample offset after its start time
    offsets = [(-d * sample_rate) % 1.0 / sample_rate for d in delays]
    times = np.stack([off + np.arange(n) / sample_rate for off in offsets])
    antenna = np.array([detectors.antenna_pattern(d, RA, DEC, 0.0, GPS) for d in names])
    injection = Injection(68.0, 0.69, tuple(AMPLITUDES[m.n] for m in model.modes),
                          tuple(1.0 + 0.7 * i for i in range(len(model.modes))),
                          inclination=np.pi, polarization=0.82)
    data = inject(model, injection, times, np.stack([acf, acf]), antenna, seed=seed, detectors=names)
    return model, data, injection, optimal_snr(model, injection, data)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nlive", type=int, default=1000)
    parser.add_argument("--dlogz", type=float, default=0.1)
    parser.add_argument("--modes", nargs="+", default=["220", "220,221", "220,221,222"],
                        help="mode sets, each comma-separated")
    parser.add_argument("--amplitude-max", type=float, default=20.0, help="A_max in units of 1e-21")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    space = ParameterSpace((PriorRange("final_mass", 35.0, 140.0), PriorRange("final_spin", 0.0, 0.99)))
    settings = SamplerSettings(nlive=args.nlive, dlogz=args.dlogz, seed=args.seed, sample="auto")
    records = []
    header = (f"{'modes':<14} {'SNR':>5} {'FIREFLY s':>10} {'full s':>9} {'speed-up':>9} {'calls FF':>9} "
              f"{'calls full':>11} {'lnZ FF':>15} {'lnZ full':>15} {'JSD Mf':>7} {'JSD chi':>7}")
    print(f"JAX on {jax.devices()[0].platform}, nlive {args.nlive}, dlogz {args.dlogz}")
    print(header)
    for spec in args.modes:
        model, data, injection, snr = gw150914_like(spec.split(","))
        fixed = {"inclination": injection.inclination, "polarization": injection.polarization}
        result = compare_firefly_with_full(model, data, space, fixed, args.amplitude_max, settings,
                                           progress=args.progress)
        s = result.summary()
        print(f"{spec:<14} {snr:5.1f} {s['firefly_seconds']:10.1f} {s['full_seconds']:9.1f} {s['speedup']:9.1f} "
              f"{s['firefly_calls']:9d} {s['full_calls']:11d} "
              f"{s['firefly_ln_z_physical']:8.2f}+-{s['firefly_ln_z_err']:.2f} "
              f"{s['full_ln_z']:8.2f}+-{s['full_ln_z_err']:.2f} "
              f"{s['jsd_bits']['final_mass']:7.4f} {s['jsd_bits']['final_spin']:7.4f}", flush=True)
        record = {"benchmark": "firefly_vs_full", "device": jax.devices()[0].platform, "snr": snr, **s}
        print(json.dumps(record), flush=True)
        records.append(record)
    return records


if __name__ == "__main__":
    main()
