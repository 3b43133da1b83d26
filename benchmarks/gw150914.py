"""Time the GW150914 main job (220+221 at the peak, FIREFLY nested sampling) stage by stage.

    .venv/bin/python benchmarks/gw150914.py                      # the main job, nlive 1000
    .venv/bin/python benchmarks/gw150914.py --nlive 200 --dlogz 1  # a short run

Stages: data (read + condition), noise (ACF), prepare (segments + noise predictors), sampling (dynesty
with batched JAX likelihoods, including its compilation), reconstruction (amplitudes, physical
prior evidence), plots (figures + summary).  Prints a table and one JSON line with the figures.
Outputs go to a temporary directory unless --output is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(ROOT / "pipelines" / "gw150914.toml"))
    parser.add_argument("--nlive", type=int, help="override [sampler] nlive")
    parser.add_argument("--dlogz", type=float, help="override [sampler] dlogz")
    parser.add_argument("--output", help="output directory (default: a temporary one)")
    args = parser.parse_args()

    begin = time.perf_counter()
    from gwtools.ringdown import pipeline
    from gwtools.ringdown.config import load_config, override

    import_time = time.perf_counter() - begin
    updates: dict = {"output": {"directory": args.output or tempfile.mkdtemp(prefix="gw150914_bench_")}}
    if args.nlive is not None:
        updates.setdefault("sampler", {})["nlive"] = args.nlive
    if args.dlogz is not None:
        updates.setdefault("sampler", {})["dlogz"] = args.dlogz
    config = override(load_config(args.config), updates)

    timings = {"import": import_time}

    def stage(name, fn, *a, **kw):
        start = time.perf_counter()
        value = fn(*a, **kw)
        timings[name] = time.perf_counter() - start
        return value

    strain = stage("data", pipeline.load_strain, config)
    acfs = stage("noise", pipeline.estimate_acfs, config, strain)
    prepared = stage("prepare", pipeline.prepare_analysis, config, strain, acfs)
    likelihood, space = pipeline.build_likelihood(config, prepared)
    sampling = stage("sampling", pipeline.sample_posterior, config, likelihood, space, progress=False)
    result = stage("reconstruction", pipeline.build_result, config, prepared, likelihood, space, sampling)
    stage("plots", pipeline.make_plots, result, config.output.directory, config.data.imr_samples)
    total = sum(timings.values())

    print(f"GW150914 {'+'.join(config.model.modes)}: nlive {config.sampler.nlive}, "
          f"dlogz {config.sampler.dlogz}, {prepared.data.n_samples} samples x "
          f"{prepared.data.n_detectors} detectors")
    for name, seconds in timings.items():
        print(f"  {name:15s} {seconds:8.2f} s")
    print(f"  {'total':15s} {total:8.2f} s")
    ln_z, ln_z_err = result.log_evidence["physical"]
    print(f"  likelihood calls {sampling.ncall}, {sampling.ncall / timings['sampling']:.0f} per s; "
          f"ln Z (physical) {ln_z:.2f} +- {ln_z_err:.2f}")
    print(json.dumps({
        "benchmark": "gw150914_main_job",
        "modes": list(config.model.modes),
        "nlive": config.sampler.nlive,
        "dlogz": config.sampler.dlogz,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "total_s": round(total, 3),
        "ncall": sampling.ncall,
        "ln_z_physical": ln_z,
        "ln_z_physical_err": ln_z_err,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }))


if __name__ == "__main__":
    main()
