"""The top-level command line: entry points, and a start-up that imports neither JAX nor torch."""

from __future__ import annotations

import subprocess
import sys

from gwtools import __version__


def test_python_dash_m_and_version():
    out = subprocess.run([sys.executable, "-m", "gwtools", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"gwtools {__version__}"


def test_help_lists_every_subcommand_without_heavy_imports():
    code = (
        "import sys, gwtools.cli\n"
        "text = gwtools.cli.build_parser().format_help()\n"
        "heavy = [m for m in ('jax', 'torch', 'kan', 'bilby', 'dynesty') if m in sys.modules]\n"
        "print(text); print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for command in ("ringdown", "scan", "compress", "regenerate", "logpdf", "compress-catalog"):
        assert command in out
    assert "HEAVY []" in out
