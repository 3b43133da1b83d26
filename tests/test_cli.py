"""The top-level command line: entry points, and a start-up that imports neither JAX nor torch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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


def _backend_after(code: str, mplbackend: str | None) -> str:
    """matplotlib's backend as a fresh interpreter sees it after ``code``."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    if mplbackend is not None:
        env["MPLBACKEND"] = mplbackend
    script = f"{code}\nimport matplotlib\nprint('BACKEND', matplotlib.rcParams._get_backend_or_none())\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env=env).stdout
    return out.rsplit("BACKEND ", 1)[1].strip()


@pytest.mark.parametrize("mplbackend", [None, "svg"])
def test_importing_the_plots_leaves_the_backend_alone(mplbackend):
    # without MPLBACKEND nothing is chosen yet ("None"): a notebook would still get its inline one
    assert _backend_after("import gwtools.ringdown.plots", mplbackend) == str(mplbackend)
    assert _backend_after("import matplotlib; matplotlib.use('template')\nimport gwtools.ringdown.plots",
                          mplbackend) == "template"


def test_the_command_line_draws_with_agg_unless_a_backend_was_chosen(tmp_path):
    # a command that fails on its input still passes the backend selection
    run = f"from gwtools.cli import main\nmain(['ringdown', {str(tmp_path / 'absent.toml')!r}])"
    assert _backend_after(run, None) == "agg"
    assert _backend_after(run, "svg") == "svg"
    assert _backend_after(f"import matplotlib; matplotlib.use('template')\n{run}", None) == "template"


def test_the_ringdown_package_is_jax_free_and_exports_its_front_lazily():
    code = (
        "import sys, gwtools.ringdown as rd\n"
        "print('JAX', 'jax' in sys.modules)\n"
        "from gwtools.ringdown import firefly, noise, config, pipeline\n"
        "expected = {'marginal_log_likelihood': firefly, 'FireflyLikelihood': firefly,\n"
        "            'reweight_to_physical_prior': firefly, 'ToeplitzNoise': noise,\n"
        "            'load_config': config, 'run_pipeline': pipeline}\n"
        "print('SAME', all(getattr(rd, n) is getattr(m, n) for n, m in expected.items()))\n"
        "print('ALL', sorted(rd.__all__) == sorted(expected))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "JAX False" in out and "SAME True" in out and "ALL True" in out
    import gwtools.ringdown

    with pytest.raises(AttributeError, match="no attribute 'reconstruct'"):
        gwtools.ringdown.reconstruct  # noqa: B018
