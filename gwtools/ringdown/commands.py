"""Registration of the ringdown subcommands (``ringdown``, ``scan``).

Only argparse is imported here; the engine is imported inside each handler.
"""

from __future__ import annotations

import argparse
import logging

__all__ = ["register"]


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="TOML configuration (see pipelines/)")
    parser.add_argument("--output", metavar="DIR", help="override [output] directory")
    parser.add_argument("--nlive", type=int, metavar="N", help="override [sampler] nlive")
    parser.add_argument("--dlogz", type=float, metavar="X", help="override [sampler] dlogz")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="settings",
        help="override any configuration value, VALUE in TOML syntax (repeatable), e.g. "
        "--set analysis.sample_rate=4096 --set 'model.modes=[\"220\"]'",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true",
        help="batch mode: no sampler progress line, warnings only",
    )


def _parse_setting(text: str) -> tuple[str, str, object]:
    """``"section.key=value"`` -> (section, key, value), the value read as TOML."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 only
        import tomli as tomllib

    name, sep, value = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ValueError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. sampler.nlive=500")
    try:
        parsed = tomllib.loads(f"value = {value.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        # an unquoted word is meant as a string (e.g. noise.method=acf_file)
        parsed = value.strip()
    return section, key.strip(), parsed


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    updates: dict[str, dict[str, object]] = {}
    for text in args.settings:
        section, key, value = _parse_setting(text)
        updates.setdefault(section, {})[key] = value
    if args.nlive is not None:
        updates.setdefault("sampler", {})["nlive"] = args.nlive
    if args.dlogz is not None:
        updates.setdefault("sampler", {})["dlogz"] = args.dlogz
    if args.output is not None:
        from pathlib import Path

        updates.setdefault("output", {})["directory"] = str(Path(args.output).resolve())
    return updates


def _quiet(args: argparse.Namespace) -> None:
    if args.quiet:
        logging.getLogger().setLevel(logging.WARNING)


def _run_ringdown(args: argparse.Namespace) -> int:
    from gwtools.ringdown.config import load_config, override
    from gwtools.ringdown.pipeline import run_pipeline

    _quiet(args)
    updates = _overrides(args)  # command-line mistakes first, before reading any file
    config = override(load_config(args.config), updates)
    outputs = run_pipeline(
        config, resume=args.resume, progress=not args.quiet, plots=not args.no_plots
    )
    log = logging.getLogger("gwtools.ringdown")
    for prior, (ln_z, err) in outputs.result.log_evidence.items():
        log.info("ln Z (%s amplitude prior) = %.3f +- %.3f", prior, ln_z, err)
    log.info(
        "stage times (s): %s; total %.1f s",
        ", ".join(f"{k} {v:.1f}" for k, v in outputs.timings.items()),
        sum(outputs.timings.values()),
    )
    log.info("results: %s", outputs.result_path)
    if outputs.summary_path is not None:
        log.info("summary: %s", outputs.summary_path)
    return 0


def _run_scan(args: argparse.Namespace) -> int:
    from gwtools.ringdown.config import load_scan_config
    from gwtools.ringdown.scan import run_scan

    _quiet(args)
    updates = _overrides(args)  # command-line mistakes first, before reading any file
    # Dask logs every worker start and stop at INFO: keep the scan's own messages readable.
    # (Importing distributed applies its logging config, so set the level afterwards.)
    import distributed  # noqa: F401

    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core",
                 "distributed.worker", "distributed.http.proxy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    scan = load_scan_config(args.config, updates)
    outputs = run_scan(scan, scheduler=args.scheduler, n_workers=args.workers)
    log = logging.getLogger("gwtools.ringdown")
    log.info("scan table: %s", outputs.table_path)
    log.info("scan plot: %s", outputs.plot_path)
    failed = [row for row in outputs.rows if row["status"] != "ok"]
    if failed:
        log.warning("%d of %d scan points failed (see the table)", len(failed), len(outputs.rows))
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ringdown subcommands to the top-level parser."""
    ringdown = sub.add_parser(
        "ringdown",
        help="analyse a ringdown with FIREFLY nested sampling",
        description="Run the ringdown pipeline of a TOML configuration: results file (HDF5), "
        "bilby result (HDF5), plots and a markdown summary in [output] directory.",
    )
    _add_common(ringdown)
    ringdown.add_argument(
        "--resume", action="store_true", help="continue from the sampler checkpoint"
    )
    ringdown.add_argument("--no-plots", action="store_true", help="skip figures and summary")
    ringdown.set_defaults(handler=_run_ringdown)

    scan = sub.add_parser(
        "scan",
        help="start-time scan of ringdown mode sets on a Dask cluster",
        description="Run every mode set of [scan] at every start time, the start times of a mode "
        "set sampled as one compiled batch, batches in parallel with Dask, and tabulate ln B under "
        "the physical amplitude prior and the remnant posteriors.  --set also reaches [scan], e.g. "
        "--set 'scan.start_times=[1126259462.423, 1126259462.426]'.",
    )
    _add_common(scan)
    scan.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="Dask scheduler address (e.g. tcp://host:8786); default: a local cluster",
    )
    scan.add_argument(
        "--workers", type=int, metavar="N",
        help="workers of the local cluster (default: one per CPU core)",
    )
    scan.set_defaults(handler=_run_scan)
