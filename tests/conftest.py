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

# Half the suite's time is XLA compiling the samplers (278 of 520 s in the engine, sampling,
# FIREFLY, P-P and pipeline tests).  The tests check results, not speed, so their programs are
# compiled without LLVM's optimization passes, here and in the processes they start (notebook
# kernels, Dask workers, the command line): measured side by side, the compile time of the
# firefly-vs-full and pipeline-output tests fell from 71 to 43 s and their wall time from 102 to
# 88 s.  Runs outside the tests keep XLA's default.
os.environ["XLA_FLAGS"] = " ".join(
    filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0"]))
