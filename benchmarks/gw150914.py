"""Time the GW150914 main job (220+221 at the peak, FIREFLY) stage by stage, both samplers side by side.

    .venv/bin/python benchmarks/gw150914.py                        # both engines, nlive 1000
    .venv/bin/python benchmarks/gw150914.py --engines blackjax     # one engine
    .venv/bin/python benchmarks/gw150914.py --nlive 200 --dlogz 1  # a short run
    .venv/bin/python benchmarks/gw150914.py --end-to-end           # also the command line, fresh processes

Stages: import, data (read + condition), noise (ACF), prepare (segments + noise predictors),
sampling (with its checkpoints, as the pipeline runs it), reconstruction (amplitudes,
physical-prior evidence), plots (figures + summary), write (results HDF5 + bilby JSON).  JAX's
persistent compilation cache is used as the pipeline uses it (``$GWTOOLS_CACHE``, default
``~/.cache/gwtools/jax``): run the script twice and the second run is "warm".  The sampling
stage is also timed without checkpoints, so the cost of checkpointing shows.  ``--end-to-end``
runs ``python -m gwtools ringdown`` twice per engine in fresh processes and times each (the
first fills the cache if it was cold).  Prints a table and one JSON line per engine.
Outputs go to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class _CheckpointLog(logging.Handler):
    """Collects the blackjax engine's checkpoint timings (debug records)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.seconds: list[float] = []

    def emit(self, record):
        if record.getMessage().startswith("checkpoint "):
            self.seconds.append(float(record.args[-1]))


def _end_to_end(config_path: str, engine: str, nlive: int | None, dlogz: float | None) -> list[float]:
    """Wall seconds of two command-line runs of the job in fresh processes."""
    seconds = []
    for _ in range(2):
        with tempfile.TemporaryDirectory(prefix="gw150914_e2e_") as out:
            command = [sys.executable, "-m", "gwtools", "ringdown", config_path, "--quiet", "--output", out,
                       "--set", f"sampler.engine={engine}"]
            if nlive is not None:
                command += ["--nlive", str(nlive)]
            if dlogz is not None:
                command += ["--dlogz", str(dlogz)]
            begin = time.perf_counter()
            subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            seconds.append(time.perf_counter() - begin)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "pipelines" / "gw150914.toml"))
    parser.add_argument("--engines", nargs="+", default=["blackjax", "dynesty"], choices=["blackjax", "dynesty"])
    parser.add_argument("--nlive", type=int, help="override [sampler] nlive")
    parser.add_argument("--dlogz", type=float, help="override [sampler] dlogz")
    parser.add_argument("--end-to-end", action="store_true", help="also time the command line in fresh processes")
    args = parser.parse_args()

    begin = time.perf_counter()
    from gwtools.ringdown import pipeline
    from gwtools.ringdown.config import load_config, override
    from gwtools.ringdown.results import save_bilby_result, write_result
    from gwtools.ringdown.sampling import run_nested

    import_time = time.perf_counter() - begin
    cache = pipeline.use_compilation_cache()
    pipeline.single_threaded_blas()  # applies until exit, as run_pipeline does for its stages
    checkpoints = _CheckpointLog()
    logging.getLogger("gwtools.ringdown.blackjax_engine").addHandler(checkpoints)
    logging.getLogger("gwtools.ringdown.blackjax_engine").setLevel(logging.DEBUG)

    records = []
    for engine in args.engines:
        sampler: dict = {"engine": engine}
        if args.nlive is not None:
            sampler["nlive"] = args.nlive
        if args.dlogz is not None:
            sampler["dlogz"] = args.dlogz
        config = override(load_config(args.config), {
            "sampler": sampler, "output": {"directory": tempfile.mkdtemp(prefix="gw150914_bench_")}})
        timings = {"import": import_time}

        def stage(name, fn, *a, timings=timings, **kw):
            start = time.perf_counter()
            value = fn(*a, **kw)
            timings[name] = time.perf_counter() - start
            return value

        strain = stage("data", pipeline.load_strain, config)
        acfs = stage("noise", pipeline.estimate_acfs, config, strain)
        prepared = stage("prepare", pipeline.prepare_analysis, config, strain, acfs)
        likelihood, space = pipeline.build_likelihood(config, prepared)
        checkpoints.seconds.clear()
        sampling = stage("sampling", pipeline.sample_posterior, config, likelihood, space, progress=False)
        written = list(checkpoints.seconds)
        start = time.perf_counter()
        run_nested(likelihood, space, config.sampler, progress=False)
        no_checkpoints = time.perf_counter() - start
        result = stage("reconstruction", pipeline.build_result, config, prepared, likelihood, space, sampling)
        stage("plots", pipeline.make_plots, result, config.output.directory, config.data.imr_samples)
        stem = config.output.directory / config.output.label
        stage("write", lambda result, stem: (write_result(result, f"{stem}.h5"),
                                             save_bilby_result(result, f"{stem}_bilby.hdf5")), result, stem)
        total = sum(timings.values())
        ln_z, ln_z_err = result.log_evidence["physical"]
        flat, flat_err = result.log_evidence["flat"]
        print(f"GW150914 {'+'.join(config.model.modes)}, engine {engine}: nlive {config.sampler.nlive}, "
              f"dlogz {config.sampler.dlogz}, {prepared.data.n_samples} samples x {prepared.data.n_detectors} "
              f"detectors, compilation cache {cache}")
        for name, seconds in timings.items():
            print(f"  {name:15s} {seconds:8.2f} s")
        print(f"  {'total':15s} {total:8.2f} s")
        print(f"  sampling without checkpoints {no_checkpoints:.2f} s; "
              + (f"{len(written)} checkpoints of {1e3 * sum(written) / len(written):.1f} ms on average"
                 if written else "checkpoint writes not logged by this engine"))
        print(f"  likelihood calls {sampling.ncall}, dead points {sampling.niter}; ln Z (flat) {flat:.3f} +- "
              f"{flat_err:.3f}, ln Z (physical) {ln_z:.3f} +- {ln_z_err:.3f}", flush=True)
        record = {
            "benchmark": "gw150914_main_job",
            "engine": engine,
            "modes": list(config.model.modes),
            "nlive": config.sampler.nlive,
            "dlogz": config.sampler.dlogz,
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "total_s": round(total, 3),
            "sampling_without_checkpoints_s": round(no_checkpoints, 3),
            "checkpoints": len(written),
            "checkpoint_mean_s": sum(written) / len(written) if written else None,
            "ncall": sampling.ncall,
            "niter": sampling.niter,
            "ln_z_flat": flat,
            "ln_z_flat_err": flat_err,
            "ln_z_physical": ln_z,
            "ln_z_physical_err": ln_z_err,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
        }
        if args.end_to_end:
            record["end_to_end_s"] = _end_to_end(args.config, engine, args.nlive, args.dlogz)
            print(f"  command line, fresh processes: {', '.join(f'{s:.1f} s' for s in record['end_to_end_s'])}")
        print(json.dumps(record), flush=True)
        records.append(record)


if __name__ == "__main__":
    main()
