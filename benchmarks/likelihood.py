"""Likelihood throughput on the GW150914 setup: batched JAX against plain numpy/scipy.

Setup: H1 + L1 GW150914 strain from data/, 2048 Hz, 0.2 s segments, modes 220 + 221 ("kerr"),
Welch off-source noise (the main pipeline's configuration, pipelines/gw150914.toml).

Measured side by side in one run (machines are shared and noisy, so only ratios mean much):

* ``numpy``: the straightforward implementation, :class:`gwtools.ringdown.reference.ReferenceLikelihood`
  (template rebuilt per call, Cholesky factors cached, ``cho_solve`` per detector), with QNM
  frequencies interpolated from a precomputed spin grid so it is not penalised by JAX dispatch;
* ``jax single``: one point per call of the jit-compiled exact likelihood;
* ``jax batch N``: N points per call (vmap), for N = 1, 64, 1024;
* ``firefly batch N``: the amplitude-marginalized likelihood (one more Cholesky per point).

Run:  python benchmarks/likelihood.py [--repeat R] [--config pipelines/gw150914.toml]
Prints a table and one JSON line (``{"benchmark": "likelihood", ...}``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

import jax
from gwtools.ringdown import pipeline
from gwtools.ringdown.baseline import FullLikelihood
from gwtools.ringdown.config import load_config
from gwtools.ringdown.firefly import FireflyLikelihood
from gwtools.ringdown.likelihood import rotate_antenna
from gwtools.ringdown.model import AMPLITUDE_UNIT, RingdownModel
from gwtools.ringdown.qnm import frequency_damping_time
from gwtools.ringdown.reference import ReferenceLikelihood

ROOT = Path(__file__).resolve().parents[1]


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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "pipelines" / "gw150914.toml"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    config = load_config(args.config)
    strain = pipeline.load_strain(config)
    prepared = pipeline.prepare_analysis(config, strain, pipeline.estimate_acfs(config, strain))
    data = prepared.data
    model = RingdownModel(("220", "221"))
    inclination, psi = np.pi, config.event.psi
    params = ("final_mass", "final_spin") + tuple(f"amplitude_{x}" for x in model.amplitude_labels) + tuple(
        f"phase_{x}" for x in model.amplitude_labels)
    full = FullLikelihood(model, data, params, {"inclination": inclination, "polarization": psi})
    firefly = FireflyLikelihood(model, data, ("final_mass", "final_spin"),
                                {"inclination": inclination, "polarization": psi})

    rng = np.random.default_rng(0)
    n_max = 1024
    theta = np.column_stack([rng.uniform(55, 85, n_max), rng.uniform(0.3, 0.9, n_max),
                             rng.uniform(0.5, 5, (n_max, 2)), rng.uniform(0, 2 * np.pi, (n_max, 2))])

    antenna = np.asarray(rotate_antenna(data.antenna, psi))
    reference = ReferenceLikelihood(np.asarray(data.times), np.stack([prepared.segments[d].data for d in data.detectors]),
                                    prepared.acfs, antenna, numpy_qnm(model.modes), [m.m for m in model.modes],
                                    inclination=inclination)

    def ref_point(row):
        return reference(row[0], row[1], row[2:4] * AMPLITUDE_UNIT, row[4:6])

    # correctness first: the two implementations agree
    check = np.array([ref_point(r) for r in theta[:8]])
    agree = float(np.max(np.abs(full(theta[:8]) - check) / np.abs(check)))

    n_ref = 200
    t_ref = best_time(lambda: [ref_point(r) for r in theta[:n_ref]], max(1, args.repeat // 2)) / n_ref
    rows = {"numpy": t_ref}
    full(theta[:1])
    rows["jax single"] = best_time(lambda: [full(theta[i:i + 1]) for i in range(200)], args.repeat) / 200
    for n in (1, 64, 1024):
        full(theta[:n])
        rows[f"jax batch {n}"] = best_time(lambda n=n: full(theta[:n]), args.repeat) / n
    for n in (64, 1024):
        firefly(theta[:n, :2])
        rows[f"firefly batch {n}"] = best_time(lambda n=n: firefly(theta[:n, :2]), args.repeat) / n

    print(f"GW150914 likelihood, {data.n_detectors} detectors x {data.n_samples} samples, modes 220+221, "
          f"JAX on {jax.devices()[0].platform}; implementations agree to {agree:.1e} (relative)")
    print(f"{'implementation':<20} {'us / point':>12} {'points / s':>12} {'speed-up vs numpy':>18}")
    for name, t in rows.items():
        print(f"{name:<20} {t * 1e6:12.1f} {1 / t:12.0f} {t_ref / t:18.1f}")
    record = {
        "benchmark": "likelihood",
        "device": jax.devices()[0].platform,
        "machine": platform.machine(),
        "n_detectors": data.n_detectors,
        "n_samples": data.n_samples,
        "modes": [str(m) for m in model.modes],
        "relative_agreement": agree,
        "seconds_per_point": rows,
        "speedup_vs_numpy": {k: t_ref / v for k, v in rows.items()},
    }
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
