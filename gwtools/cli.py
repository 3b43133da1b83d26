"""The ``gwtools`` command line: a thin layer over the engines' Python APIs.

Each engine registers its own subcommands (``gwtools.ringdown.commands``,
``gwtools.compression.commands``, ``gwtools.io.commands``); registering imports only
:mod:`argparse`, so ``gwtools --help`` is instant and never imports JAX or torch.
"""

from __future__ import annotations

import argparse
import logging
import sys

from gwtools import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from gwtools.compression import commands as compression_commands
    from gwtools.io import commands as io_commands
    from gwtools.ringdown import commands as ringdown_commands

    parser = argparse.ArgumentParser(
        prog="gwtools",
        description="Ringdown analysis with FIREFLY marginalization, and KAN posterior compression.",
    )
    parser.add_argument("--version", action="version", version=f"gwtools {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    ringdown_commands.register(sub)
    compression_commands.register(sub)
    io_commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        # Bad input: one clear line, no traceback (use -v for the traceback).
        if args.verbose:
            raise
        print(f"gwtools {args.command}: error: {err}", file=sys.stderr)
        return 2
