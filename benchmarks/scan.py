"""Time the GW150914 start-time scan: batched (one compiled batch per mode set) against one run per point.

    PYTHONPATH=. .venv/bin/python benchmarks/scan.py                 # batched, cold then warm cache
    PYTHONPATH=. .venv/bin/python benchmarks/scan.py --old           # also the old way (~8 min on 2 cores)
    PYTHONPATH=. .venv/bin/python benchmarks/scan.py --offsets 0 3 6 --nlive 200

The scan is ``pipelines/gw150914_scan.toml`` (modes 220 and 220+221, nlive 500) at start
offsets 0, 1, ..., 12 ms after the H1 peak: 13 start times, 26 points.  ``batched`` is ``gwtools
scan`` as it is now (``run_scan``: a local Dask cluster with one worker per core, one compiled
blackjax batch of all 13 start times per mode set), from a cold JAX compilation cache (a new,
empty cache directory), then again with that cache warm.  ``old`` is the scan as it was: one Dask
task per point, each running the whole pipeline (``run_pipeline``, no plots) with the dynesty
engine, on the same cluster shape, also from an empty compilation cache.  Both use the same
per-point seeds.  Times are wall seconds
of the whole scan, cluster start included.  (A dynesty run in a Dask worker has been seen to
hang while the engine starts its threads; the old way therefore gives up after ``--old-limit``
seconds and reports the points it did not finish.)  Prints a table of ln B(220+221 vs 220) per start
time and one JSON line.  Outputs go to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_point_pipeline(config: dict) -> tuple[float, float]:
    """The old way's Dask task: the whole pipeline for one point; (ln Z_phys, error)."""
    from gwtools.ringdown.config import parse_config
    from gwtools.ringdown.pipeline import run_pipeline

    result = run_pipeline(parse_config(config), progress=False, plots=False).result
    return result.log_evidence["physical"]


def _ln_b(points, evidences) -> dict[float, tuple[float, float]]:
    """ln B(second mode set vs first) and its error per start offset (ms)."""
    by_start: dict[float, dict] = {}
    for point, value in zip(points, evidences):
        by_start.setdefault(point.start_offset_ms, {})[point.modes] = value
    out = {}
    for offset, values in by_start.items():
        (ref, ref_err), (two, two_err) = values.values()
        out[offset] = (two - ref, (ref_err**2 + two_err**2) ** 0.5)
    return out


def batched(config: str, updates: dict, workers: int) -> tuple[float, dict]:
    from gwtools.ringdown.config import load_scan_config
    from gwtools.ringdown.scan import run_scan, scan_points

    with tempfile.TemporaryDirectory(prefix="scan_bench_") as out:
        scan = load_scan_config(config, {**updates, "output": {"directory": out}})
        begin = time.perf_counter()
        outputs = run_scan(scan, n_workers=workers)
        seconds = time.perf_counter() - begin
    failed = [row for row in outputs.rows if row["status"] != "ok"]
    if failed:
        raise RuntimeError(f"batched scan: {len(failed)} points failed: {failed[0]['error']}")
    evidences = [(row["ln_z_physical"], row["ln_z_physical_err"]) for row in outputs.rows]
    return seconds, _ln_b(scan_points(scan), evidences)


def old_way(config: str, updates: dict, workers: int, limit: float) -> tuple[float, dict, int]:
    """(seconds, ln B per start, points not finished within ``limit`` s) of the old way."""
    import dask
    from distributed import Client, LocalCluster, as_completed
    from distributed.client import TimeoutError as DaskTimeout

    from gwtools.ringdown.config import load_scan_config
    from gwtools.ringdown.scan import scan_points

    with tempfile.TemporaryDirectory(prefix="scan_bench_old_") as out:
        sampler = {**updates.get("sampler", {}), "engine": "dynesty"}
        scan = load_scan_config(config, {**updates, "sampler": sampler, "output": {"directory": out}})
        points = scan_points(scan)
        evidences: list = [None] * len(points)
        begin = time.perf_counter()
        with dask.config.set({"distributed.scheduler.worker-ttl": None}), \
                LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            futures = {client.submit(run_point_pipeline, p.config, pure=False): i for i, p in enumerate(points)}
            try:
                for future in as_completed(futures, timeout=limit):
                    evidences[futures[future]] = future.result()
            except DaskTimeout:
                pass  # reported as unfinished points
        seconds = time.perf_counter() - begin
    done = [(p, e) for p, e in zip(points, evidences) if e is not None]
    complete = {p.start_offset_ms for p in points} - {p.start_offset_ms for p, e in zip(points, evidences) if e is None}
    done = [(p, e) for p, e in done if p.start_offset_ms in complete]
    return seconds, _ln_b([p for p, _ in done], [e for _, e in done]), evidences.count(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "pipelines" / "gw150914_scan.toml"))
    parser.add_argument("--offsets", type=float, nargs="+", default=[float(k) for k in range(13)],
                        help="start offsets, ms after the peak (default 0 1 ... 12)")
    parser.add_argument("--nlive", type=int, help="override [sampler] nlive (default: the config's, 500)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--old", action="store_true", help="also time the old way (one pipeline run per point)")
    parser.add_argument("--old-limit", type=float, default=900.0,
                        help="give up on the old way's unfinished points after this many seconds")
    parser.add_argument("--no-warm", action="store_true", help="skip the second, warm-cache batched run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import distributed  # noqa: F401 - its logging set-up first, then quiet its INFO lines

    logging.getLogger("distributed").setLevel(logging.WARNING)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    updates: dict = {"scan": {"start_offsets_ms": args.offsets}}
    if args.nlive is not None:
        updates["sampler"] = {"nlive": args.nlive}
    record: dict = {"benchmark": "gw150914_scan", "start_offsets_ms": args.offsets, "points": 2 * len(args.offsets),
                    "modes": ["220", "220+221"], "nlive": args.nlive or 500, "workers": args.workers,
                    "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                    "load_before": round(os.getloadavg()[0], 2)}
    ln_b = {}
    with tempfile.TemporaryDirectory(prefix="scan_bench_cache_") as cache:
        os.environ["GWTOOLS_CACHE"] = cache  # inherited by the Dask workers: cold, then warm
        record["batched_cold_s"], ln_b["batched"] = batched(args.config, updates, args.workers)
        if not args.no_warm:
            record["batched_warm_s"], _ = batched(args.config, updates, args.workers)
    if args.old:
        with tempfile.TemporaryDirectory(prefix="scan_bench_cache_old_") as cache:
            os.environ["GWTOOLS_CACHE"] = cache  # cold as well; later points of a worker find it warm
            record["old_s"], ln_b["old"], record["old_unfinished_points"] = old_way(
                args.config, updates, args.workers, args.old_limit)
        if not record["old_unfinished_points"]:
            record["speedup_cold"] = round(record["old_s"] / record["batched_cold_s"], 2)
    record["load_after"] = round(os.getloadavg()[0], 2)
    for name, values in ln_b.items():
        record[f"ln_b_{name}"] = {f"{k:g}": round(v[0], 3) for k, v in values.items()}
        record[f"ln_b_err_{name}"] = {f"{k:g}": round(v[1], 3) for k, v in values.items()}

    print(f"{'start [ms]':>10} " + " ".join(f"{'ln B ' + name:>22}" for name in ln_b))
    for offset in args.offsets:
        cells = [f"{ln_b[name][offset][0]:>13.2f} +- {ln_b[name][offset][1]:.2f}" if offset in ln_b[name]
                 else "unfinished" for name in ln_b]
        print(f"{offset:>10g} " + " ".join(f"{c:>22}" for c in cells))
    times = {k: v for k, v in record.items() if k.endswith("_s")}
    print("wall times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    print(json.dumps(record))


if __name__ == "__main__":
    main()
