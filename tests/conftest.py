"""Shared test fixtures.

Real GW data for tests lives outside the project in ``../shared/data`` (see its README);
tests that need it take the ``shared_data`` fixture and are skipped with a clear reason
where it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real GW data not available: {SHARED_DATA} is absent (see DEVELOPERS.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def project_data() -> Path:
    """Path to the project's own shipped ``data/`` folder."""
    return PROJECT_ROOT / "data"


# Tests must not write JAX's compilation cache into the user's home directory.
os.environ["GWTOOLS_CACHE"] = ""
