"""Cost per point of sampling the start time: FIREFLY with a start window against a fixed start.

Setup: the main job (pipelines/gw150914.toml: GW150914 H1 + L1, 2048 Hz, 0.2 s, 220 + 221) with
the inclination and polarization sampled, and the same with ``[analysis] start_window_ms``
(default +-1 ms): the window's likelihood picks each point's precomputed T^-1 d and ln L0 by
index, so its cost per point should stay that of the fixed start.  Both are timed side by side
in one run (best of ``--repeat`` calls, compilation excluded), in batches of 64 and 1024, and
checked to agree at zero shift.

Run:  python benchmarks/start_window.py [--window-ms 1.0] [--repeat 7]
Prints a table and one JSON line (``{"benchmark": "start_window", ...}``) whose ``ratio`` is the
window / fixed cost per point in batches of 1024.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np
from likelihood import best_time  # benchmarks/likelihood.py, beside this script

from gwtools.ringdown import pipeline
from gwtools.ringdown.config import load_config, override

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (64, 1024)


def likelihood_of(config):
    strain = pipeline.load_strain(config)
    prepared = pipeline.prepare_analysis(config, strain, pipeline.estimate_acfs(config, strain))
    return pipeline.build_likelihood(config, prepared)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "pipelines" / "gw150914.toml"))
    parser.add_argument("--window-ms", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    sky = override(load_config(args.config), {"prior": {"psi": [0.0, np.pi], "cos_inclination": [-1.0, 1.0]}})
    window = override(sky, {"analysis": {"start_window_ms": [-args.window_ms, args.window_ms]}})
    fixed_likelihood, fixed_space = likelihood_of(sky)
    window_likelihood, window_space = likelihood_of(window)
    rng = np.random.default_rng(0)
    theta = window_space(rng.uniform(size=(max(BATCHES), window_space.ndim)))
    at_zero = theta[:8].copy()
    at_zero[:, -1] = 0.0
    agreement = float(np.max(np.abs(window_likelihood(at_zero) - fixed_likelihood(at_zero[:, :-1]))))
    rows = {}
    for n in BATCHES:
        for name, likelihood, batch in (("fixed start", fixed_likelihood, theta[:n, :fixed_space.ndim]),
                                        ("start window", window_likelihood, theta[:n])):
            likelihood(batch)  # compile
            rows[f"{name} batch {n}"] = best_time(lambda f=likelihood, b=batch: f(b), args.repeat) / n
    n_starts = int(window_likelihood.data.start_window.log_l0.shape[-1])
    print(f"GW150914 H1+L1, {window_likelihood.data.n_samples} samples, 220+221, window "
          f"+-{args.window_ms:g} ms ({n_starts} candidate segments per detector), JAX on "
          f"{jax.devices()[0].platform}; "
          f"|ln L window - fixed| at zero shift {agreement:.1e}")
    print(f"{'likelihood':<26} {'us / point':>12}")
    for name, seconds in rows.items():
        print(f"{name:<26} {seconds * 1e6:12.2f}")
    ratios = {n: rows[f"start window batch {n}"] / rows[f"fixed start batch {n}"] for n in BATCHES}
    record = {
        "benchmark": "start_window",
        "device": jax.devices()[0].platform,
        "window_ms": args.window_ms,
        "candidate_segments": n_starts,
        "seconds_per_point": rows,
        "ratio_by_batch": {str(n): r for n, r in ratios.items()},
        "ratio": ratios[max(BATCHES)],
        "agreement_at_zero_shift": agreement,
    }
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
