"""The ``gwtools`` command line: a thin layer over the engines' Python APIs.

Each engine registers its own subcommands (``gwtools.ringdown.commands``,
``gwtools.compression.commands``, ``gwtools.io.commands``); registering imports only
:mod:`argparse`, so ``gwtools --help`` is instant and never imports JAX or torch.

The command line only writes figures to files, so it draws them with matplotlib's Agg backend
unless a backend was chosen (``MPLBACKEND``, a ``backend`` line in matplotlibrc, or
:func:`matplotlib.use` before :func:`main` is called); the library itself never selects one.
"""

from __future__ import annotations

import argparse
import logging
import sys

from gwtools import __version__

__all__ = ["build_parser", "main", "use_file_backend"]


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


def use_file_backend() -> None:
    """Select matplotlib's Agg backend where no backend has been chosen.

    A GUI backend picked automatically would need a display (batch jobs and clusters have
    none) and draws nothing the command line shows; a backend the user chose is kept.
    """
    import matplotlib

    # None while the backend is still to be resolved automatically (no MPLBACKEND, no
    # matplotlibrc entry, no matplotlib.use); the public rcParams["backend"] would resolve it.
    if matplotlib.rcParams._get_backend_or_none() is None:
        matplotlib.use("agg")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    use_file_backend()  # after parsing, so --help and --version stay free of matplotlib
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
