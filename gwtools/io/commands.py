"""Registration of the data subcommand ``fetch``.

Only argparse is imported here; the downloader (requests, gwosc) is imported by the handler.
"""

from __future__ import annotations

import argparse
import logging

__all__ = ["register"]

logger = logging.getLogger(__name__)


def _detectors(text: str) -> tuple[str, ...]:
    names = tuple(d.strip() for d in text.split(",") if d.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one detector, comma-separated, e.g. H1,L1,V1")
    return names


def _run_fetch(args: argparse.Namespace) -> int:
    import sys

    import requests

    from gwtools.io.fetch import MANIFEST_NAME, fetch_strain

    try:
        result = fetch_strain(
            args.target, args.detectors, out=args.out, duration=args.duration,
            sample_rate=args.sample_rate,
        )
    except requests.RequestException as err:
        # a network failure is not bad input, but it still deserves one readable line
        print(f"gwtools fetch: error: cannot fetch from GWOSC ({err}); run the same command again "
              "to resume", file=sys.stderr)
        return 1
    for detector, paths in result.files.items():
        for path in paths:
            state = "downloaded" if path in result.downloaded else "already present, verified"
            logger.info("%s: %s (%s)", detector, path, state)
    logger.info("checksums: %s", args.out / MANIFEST_NAME)
    if result.event is not None:
        logger.info(
            "use them in a configuration with [data] event = %r and directory = %r",
            result.event, str(args.out),
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``fetch`` subcommand to the top-level parser."""
    from pathlib import Path

    fetch = sub.add_parser(
        "fetch",
        help="download GWOSC strain around an event or a GPS time",
        description="Download GWOSC strain files (HDF5) of the given detectors around an event "
        "(e.g. GW170814) or a GPS time into DIR, resumably; files already in DIR and intact are "
        "kept, and the sha256 of each file is recorded in DIR/gwosc_manifest.json.",
    )
    fetch.add_argument("target", metavar="EVENT_OR_GPS", help="event name (GW170814) or GPS time (s)")
    fetch.add_argument(
        "--detectors", type=_detectors, required=True, metavar="H1,L1,V1",
        help="comma-separated detectors",
    )
    fetch.add_argument(
        "--duration", type=int, default=32, metavar="S",
        help="seconds of data; for an event, 32 or 4096 take its released files (default 32)",
    )
    fetch.add_argument(
        "--sample-rate", type=int, default=4096, choices=(4096, 16384), metavar="HZ",
        help="4096 (default) or 16384",
    )
    fetch.add_argument("--out", type=Path, required=True, metavar="DIR", help="download directory")
    fetch.set_defaults(handler=_run_fetch)
