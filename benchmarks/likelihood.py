"""Likelihood throughput: the O(n K) Levinson path against the direct (whitening-matrix) path and numpy.

Setup: modes 220 + 221 ("kerr"), H1 + L1, 0.2 s segments, at 1024, 2048, 4096 and 8192 Hz
(n = 205, 410, 819, 1638 samples per detector).  Up to 4096 Hz this is the main pipeline's
configuration (pipelines/gw150914.toml: GW150914 strain, Welch off-source noise) at that rate;
the shipped strain is sampled at 4096 Hz, so at 8192 Hz the segments are noise drawn from a
damped-oscillator ACF of the same shape (the cost depends only on n).

Measured side by side in one run (machines are shared and noisy, so only ratios mean much),
per point:

* ``numpy``: the straightforward implementation, :class:`gwtools.ringdown.reference.ReferenceLikelihood`
  (template rebuilt per call, Cholesky factors cached, ``cho_solve`` per detector), with QNM
  frequencies interpolated from a precomputed spin grid so it is not penalised by JAX dispatch;
* ``full``/``firefly`` ``levinson``/``direct`` ``batch N``: the full-parameter likelihood
  (amplitudes and phases sampled) and the amplitude-marginalized FIREFLY likelihood, batched
  (vmap, N points per call), through :func:`gwtools.ringdown.likelihood.projections` (O(n K))
  or :func:`gwtools.ringdown.direct.projections_direct` (n x n whitening, O(n^2 K)); the
  direct path is not timed in batches of 1024 at 8192 Hz (~10 s per call), where its cost per
  point is that of batches of 64.

Run:  python benchmarks/likelihood.py [--repeat R] [--rates 1024 2048 4096 8192]
Prints a table and one JSON line (``{"benchmark": "likelihood", ...}``) whose
``firefly_speedup_vs_direct`` is the FIREFLY direct / Levinson cost ratio at 2048 Hz in batches of
1024 (per-rate and per-batch ratios are in ``speedup_vs_direct``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np
import scipy.linalg

from gwtools.ringdown import pipeline
from gwtools.ringdown.baseline import FullLikelihood
from gwtools.ringdown.config import load_config
from gwtools.ringdown.direct import build_direct_analysis_data, log_likelihood_direct, projections_direct
from gwtools.ringdown.firefly import FireflyLikelihood
from gwtools.ringdown.likelihood import build_analysis_data, rotate_antenna
from gwtools.ringdown.model import AMPLITUDE_UNIT, RingdownModel
from gwtools.ringdown.qnm import frequency_damping_time
from gwtools.ringdown.reference import ReferenceLikelihood

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (64, 1024)
HEADLINE_RATE, HEADLINE_BATCH = 2048, 1024
DIRECT_MAX_WORK = 1024 * 820**2  # batch x n^2 above which the direct path is not timed (8192 Hz, 1024)


class DirectFirefly(FireflyLikelihood):
    """FIREFLY on the direct path: S and M from whitened basis waveforms."""

    def _projections(self, row, data):
        return projections_direct(self.model, data, *self.nonlinear(row))


class DirectFull(FullLikelihood):
    """The full-parameter likelihood on the direct path: the whitened template."""

    def _point(self, row, data):
        return log_likelihood_direct(self.model, data, self.quadratures(row), *self.nonlinear(row))


def best_time(fn, repeat: int) -> float:
    """Best wall time of ``repeat`` calls (s); the minimum is the least noisy estimator."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def numpy_qnm(modes):
    """QNM (f, tau) by linear interpolation on a fine spin grid at unit mass (f ~ 1/M, tau ~ M)."""
    spins = np.linspace(0.0, 0.99, 20001)
    f1, tau1 = (np.asarray(x) for x in frequency_damping_time(modes, 1.0, spins))

    def qnm(final_mass, final_spin):
        f = np.array([np.interp(final_spin, spins, f1[:, k]) for k in range(f1.shape[1])])
        tau = np.array([np.interp(final_spin, spins, tau1[:, k]) for k in range(f1.shape[1])])
        return f / final_mass, tau * final_mass

    return qnm


def segments(config, rate: float):
    """(times, data, acfs, antenna, detectors) of the benchmark at ``rate``."""
    if rate <= 4096:
        config = dataclasses.replace(config, analysis=dataclasses.replace(config.analysis, sample_rate=rate))
        strain = pipeline.load_strain(config)
        prepared = pipeline.prepare_analysis(config, strain, pipeline.estimate_acfs(config, strain))
        data = np.stack([prepared.segments[d].data for d in config.data.detectors])
        return np.asarray(prepared.data.times), data, prepared.acfs, prepared.antenna, config.data.detectors
    n = round(config.analysis.duration * rate)
    lag = np.arange(n) / rate
    rng = np.random.default_rng(1)
    acfs, data = [], []
    for sigma, tau, f0 in ((1.2e-21, 3e-3, 150.0), (0.9e-21, 2e-3, 90.0)):
        acf = sigma**2 * np.exp(-lag / tau) * (np.cos(2 * np.pi * f0 * lag)
                                               + np.sin(2 * np.pi * f0 * lag) / (2 * np.pi * f0 * tau))
        acfs.append(acf)
        data.append(scipy.linalg.cholesky(scipy.linalg.toeplitz(acf), lower=True) @ rng.standard_normal(n))
    times = np.stack([lag, lag + 6.9e-3])
    return times, np.stack(data), np.stack(acfs), np.array([[0.55, -0.31], [-0.42, 0.37]]), ("H1", "L1")


def measure_rate(config, rate: float, theta, model, repeat: int) -> dict:
    """Per-point seconds of every implementation at one sample rate, and their agreement."""
    times, strain, acfs, antenna, detectors = segments(config, rate)
    levinson = build_analysis_data(times, strain, acfs, antenna, detectors)
    direct = build_direct_analysis_data(times, strain, acfs, antenna, detectors)
    inclination, psi = np.pi, config.event.psi
    fixed = {"inclination": inclination, "polarization": psi}
    params = ("final_mass", "final_spin") + tuple(f"amplitude_{x}" for x in model.amplitude_labels) + tuple(
        f"phase_{x}" for x in model.amplitude_labels)
    likelihoods = {
        "full levinson": (FullLikelihood(model, levinson, params, fixed), slice(None)),
        "full direct": (DirectFull(model, direct, params, fixed), slice(None)),
        "firefly levinson": (FireflyLikelihood(model, levinson, params[:2], fixed), slice(0, 2)),
        "firefly direct": (DirectFirefly(model, direct, params[:2], fixed), slice(0, 2)),
    }
    reference = ReferenceLikelihood(times, strain, acfs, np.asarray(rotate_antenna(antenna, psi)),
                                    numpy_qnm(model.modes), [m.m for m in model.modes], inclination=inclination)

    def ref_point(row):
        return reference(row[0], row[1], row[2:4] * AMPLITUDE_UNIT, row[4:6])

    # correctness first: the implementations agree
    check = np.array([ref_point(r) for r in theta[:8]])
    full_values = likelihoods["full levinson"][0](theta[:8])
    agreement = {
        "full levinson vs numpy": float(np.max(np.abs(full_values - check) / np.abs(check))),
        "full levinson vs direct": float(np.max(np.abs(full_values - likelihoods["full direct"][0](theta[:8]))
                                                / np.abs(check))),
        "firefly levinson vs direct": float(np.max(np.abs(
            likelihoods["firefly levinson"][0](theta[:8, :2]) - likelihoods["firefly direct"][0](theta[:8, :2])))),
    }
    n_ref = 50
    rows = {"numpy": best_time(lambda: [ref_point(r) for r in theta[:n_ref]], max(1, repeat // 2)) / n_ref}
    for name, (likelihood, columns) in likelihoods.items():
        for n in BATCHES:
            work = n * times.shape[1] ** 2
            if "direct" in name and work > DIRECT_MAX_WORK:
                continue  # seconds per call; its cost per point is that of the smaller batch
            batch = theta[:n, columns]
            likelihood(batch)  # compile
            reps = repeat if work <= DIRECT_MAX_WORK / 4 else max(2, repeat // 2)
            rows[f"{name} batch {n}"] = best_time(lambda b=batch, f=likelihood: f(b), reps) / n
    return {"n_samples": int(times.shape[1]), "seconds_per_point": rows, "agreement": agreement}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "pipelines" / "gw150914.toml"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rates", type=float, nargs="+", default=[1024, 2048, 4096, 8192])
    args = parser.parse_args(argv)

    config = load_config(args.config)
    model = RingdownModel(("220", "221"))
    rng = np.random.default_rng(0)
    n_max = max(BATCHES)
    theta = np.column_stack([rng.uniform(55, 85, n_max), rng.uniform(0.3, 0.9, n_max),
                             rng.uniform(0.5, 5, (n_max, 2)), rng.uniform(0, 2 * np.pi, (n_max, 2))])
    per_rate = {}
    for rate in args.rates:
        result = measure_rate(config, rate, theta, model, args.repeat)
        per_rate[f"{rate:g}"] = result
        rows = result["seconds_per_point"]
        print(f"\n{rate:g} Hz: {len(config.data.detectors)} detectors x {result['n_samples']} samples, modes "
              f"220+221, JAX on {jax.devices()[0].platform}; agreement "
              + ", ".join(f"{k} {v:.1e}" for k, v in result["agreement"].items()))
        print(f"{'implementation':<28} {'us / point':>12} {'vs numpy':>10} {'vs direct':>10}")
        for name, t in rows.items():
            direct = rows.get(name.replace("levinson", "direct")) if "levinson" in name else None
            ratio = f"{direct / t:10.1f}" if direct else f"{'':>10}"
            print(f"{name:<28} {t * 1e6:12.2f} {rows['numpy'] / t:10.1f} {ratio}")
    speedups = {
        rate: {f"{kind} batch {n}": r["seconds_per_point"][f"{kind} direct batch {n}"]
               / r["seconds_per_point"][f"{kind} levinson batch {n}"]
               for kind in ("firefly", "full") for n in BATCHES
               if f"{kind} direct batch {n}" in r["seconds_per_point"]}
        for rate, r in per_rate.items()
    }
    headline = speedups.get(f"{HEADLINE_RATE:g}", {}).get(f"firefly batch {HEADLINE_BATCH}")
    record = {
        "benchmark": "likelihood",
        "device": jax.devices()[0].platform,
        "machine": platform.machine(),
        "modes": [str(m) for m in model.modes],
        "firefly_speedup_vs_direct": headline,
        "headline": f"FIREFLY marginal, {HEADLINE_RATE} Hz, batches of {HEADLINE_BATCH}",
        "speedup_vs_direct": speedups,
        "rates": per_rate,
    }
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
