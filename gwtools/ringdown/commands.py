"""Registration of the ringdown subcommands (``ringdown``, ``scan``).

Only argparse is imported here; the engine is imported inside each handler.
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ringdown subcommands to the top-level parser."""
