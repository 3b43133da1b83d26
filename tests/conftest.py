"""Shared test fixtures.

Real GW data for tests lives outside the project in ``../shared/data`` (see its README);
tests that need it take the ``shared_data`` fixture, are marked ``shared_data`` (so
``pytest -m 'not shared_data'`` runs the offline tests) and are skipped with a clear reason
where it is absent.  Helpers shared by several test modules are in ``tests/helpers.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that takes the ``shared_data`` fixture, directly or through another."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real GW data not available: {SHARED_DATA} is absent (run with "
                    "-m 'not shared_data' to leave these tests out)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def project_data() -> Path:
    """Path to the project's own shipped ``data/`` folder."""
    return PROJECT_ROOT / "data"


# Tests must not write JAX's compilation cache into the user's home directory.
os.environ["GWTOOLS_CACHE"] = ""
