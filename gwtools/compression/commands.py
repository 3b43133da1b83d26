"""Registration of the compression subcommands (``compress``, ``regenerate``, ``logpdf``,
``compress-catalog``).

Only argparse is imported here; torch and pykan are imported inside the handlers that fit.
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the compression subcommands to the top-level parser."""
