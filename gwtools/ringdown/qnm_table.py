"""Build the shipped Kerr QNM table ``kerr_qnm_table.npz`` from the ``qnm`` package.

Run ``python -m gwtools.ringdown.qnm_table [--output PATH]`` (about a minute on one core).
Nothing is downloaded: each spin sequence is solved from the Schwarzschild mode upwards with
Leaver's method as implemented by ``qnm`` (Stein 2019, JOSS 4, 1683).

Method
------
For every mode, ``M omega`` is solved at ``N`` Chebyshev points of the first kind in the variable
``x`` of :func:`gwtools.ringdown.qnm.spin_to_chebyshev_variable` (affine in ``sqrt(1 - chi)``)
and interpolated by a Chebyshev series (Trefethen 2013, *Approximation Theory and Approximation
Practice*, ch. 3-8).  Trailing coefficients below ``truncation_tol`` are dropped.  The series is
then checked against fresh ``qnm`` solutions at spins that are not nodes; the largest relative
errors in frequency and damping time are stored in the file and the build fails if either
exceeds ``max_relative_error`` (default :data:`MAX_RELATIVE_ERROR`, the accuracy the package
states for its QNMs).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.polynomial import chebyshev

from gwtools.io.atomic import atomic_path
from gwtools.ringdown.constants import CHI_MAX
from gwtools.ringdown.modes import TABLE_FORMAT_VERSION, TABLE_PATH, Mode, parse_modes
from gwtools.ringdown.qnm import spin_to_chebyshev_variable

__all__ = [
    "DEFAULT_MODES",
    "SEQUENCE_ATTEMPTS",
    "TableSettings",
    "build_table",
    "chebyshev_variable_to_spin",
    "main",
    "prograde_sequence",
    "solve_omega",
    "write_table",
]

logger = logging.getLogger(__name__)

#: Modes shipped by default (prograde branch, m >= 0).
DEFAULT_MODES: tuple[Mode, ...] = parse_modes(
    "200 201 210 211 220 221 222 223 320 321 330 331 430 440 441 550"
)


#: Relative error in frequency and damping time, against ``qnm``, below which the table is
#: built at every spin in ``[0, CHI_MAX]``; the shipped table reaches a few 1e-9 (damping times
#: of the 320, 330 modes), frequencies about 1e-9.
MAX_RELATIVE_ERROR = 1e-8


@dataclass(frozen=True)
class TableSettings:
    """How the table is built; stored in the file.

    Attributes
    ----------
    n_nodes : int
        Chebyshev nodes per mode (the series has at most this many terms).
    truncation_tol : float
        Trailing coefficients with modulus below this (in units of ``1/M``) are dropped.  It
        sits just above the noise floor of qnm's root polisher (about 3e-11 for mode 201).
    solver_tol : float
        ``tol`` of qnm's root polisher on ``M omega``.
    n_validation : int
        Off-node spins at which the series is compared with ``qnm``.
    max_relative_error : float
        Build fails if the relative error in ``f`` or ``tau`` exceeds this.
    seed : int
        Seed of the random validation spins.
    """

    n_nodes: int = 96
    truncation_tol: float = 1e-10
    solver_tol: float = 1e-10
    n_validation: int = 200
    max_relative_error: float = MAX_RELATIVE_ERROR
    seed: int = 20250201


def chebyshev_variable_to_spin(x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gwtools.ringdown.qnm.spin_to_chebyshev_variable`.

    Parameters
    ----------
    x : ndarray, shape (...)
        Points in ``[-1, 1]``.

    Returns
    -------
    ndarray, shape (...)
        Dimensionless spins in ``[0, CHI_MAX]``.
    """
    u_min = math.sqrt(1.0 - CHI_MAX)
    u = u_min + 0.5 * (np.asarray(x) + 1.0) * (1.0 - u_min)
    return np.clip(1.0 - u**2, 0.0, CHI_MAX)


#: Settings of qnm's spin-sequence follower, tried in turn until one reaches ``CHI_MAX``: the
#: follower sometimes loses a mode (e.g. 221 near chi = 0.29 with the defaults), and which step
#: sizes work differs from mode to mode.  The second and third are the ones qnm itself uses to
#: build its published cache (``qnm.cached.build_package_default_cache``).
SEQUENCE_ATTEMPTS: tuple[dict, ...] = (
    {},
    {"cf_tol": 2.0**-26, "delta_a": 2.5e-3, "Nr_max": 6000},
    {"cf_tol": 2.0**-28, "delta_a": 1.9e-3, "Nr_max": 6000},
    {"delta_a": 1e-3},
)


def prograde_sequence(mode: Mode, solver_tol: float):
    """Follow qnm's spin sequence of the prograde ``(l, |m|, n)`` mode from 0 to ``CHI_MAX``.

    Parameters
    ----------
    mode : Mode
        Mode label; the sign of ``m`` is ignored.
    solver_tol : float
        Root-polisher tolerance on ``M omega``.

    Returns
    -------
    sequence : qnm.spinsequence.KerrSpinSeq
        Call it as ``sequence(chi)[0]`` for ``M omega`` at a Python-float spin.
    attempt : dict
        The entry of :data:`SEQUENCE_ATTEMPTS` that succeeded.

    Raises
    ------
    RuntimeError
        If no attempt follows the mode up to ``CHI_MAX``.
    """
    from qnm.schwarzschild.tabulated import QNMDict
    from qnm.spinsequence import KerrSpinSeq

    # Loads qnm's bundled Schwarzschild overtone table: the starting guesses at chi = 0.
    QNMDict(init=True)
    for attempt in SEQUENCE_ATTEMPTS:
        sequence = KerrSpinSeq(
            s=-2, l=mode.l, m=abs(mode.m), n=mode.n, a_max=CHI_MAX, tol=solver_tol, **attempt
        )
        try:
            sequence.do_find_sequence()
        except Exception as error:  # qnm raises assorted types (AttributeError with SciPy >= 1.15)
            reached = sequence.a[-1] if sequence.a else None
            logger.info(
                "mode %s: qnm stopped after chi = %s with settings %s (%s), trying the next",
                mode, reached, attempt, type(error).__name__,
            )
            continue
        return sequence, attempt
    raise RuntimeError(
        f"qnm could not follow mode {mode} up to chi = {CHI_MAX} with any of {SEQUENCE_ATTEMPTS}"
    )


def solve_omega(sequence, final_spin: Sequence[float]) -> np.ndarray:
    """Polish ``M omega`` with qnm's Leaver solver at each spin.

    Parameters
    ----------
    sequence : qnm.spinsequence.KerrSpinSeq
        First output of :func:`prograde_sequence`.
    final_spin : sequence of float, length P
        Spins in ``[0, CHI_MAX]``.

    Returns
    -------
    ndarray, complex, shape (P,)
    """
    return np.array([sequence(float(chi))[0] for chi in final_spin], dtype=np.complex128)


def _relative_errors(approx: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    """Largest relative errors in frequency (Re) and damping time (1 / Im) of ``M omega``."""
    error_f = np.max(np.abs(approx.real / exact.real - 1.0))
    error_tau = np.max(np.abs(exact.imag / approx.imag - 1.0))
    return float(error_f), float(error_tau)


def _fit_mode(mode: Mode, settings: TableSettings, rng: np.random.Generator) -> dict:
    """Chebyshev coefficients of one mode and their validation errors."""
    sequence, attempt = prograde_sequence(mode, settings.solver_tol)
    k = np.arange(settings.n_nodes)
    nodes = np.cos(np.pi * (k + 0.5) / settings.n_nodes)
    omega = solve_omega(sequence, chebyshev_variable_to_spin(nodes))
    coefficients = chebyshev.chebfit(nodes, omega, settings.n_nodes - 1)
    above = np.flatnonzero(np.abs(coefficients) >= settings.truncation_tol)
    n_terms = int(above[-1]) + 1
    if n_terms > settings.n_nodes - 8:
        raise RuntimeError(
            f"Chebyshev series of mode {mode} has not converged to {settings.truncation_tol} "
            f"with {settings.n_nodes} nodes: raise n_nodes"
        )
    coefficients = coefficients[:n_terms]

    # Off-node check: midpoints between nodes (worst case of interpolation) plus random spins.
    midpoints = np.cos(np.pi * (k[:-1] + 1.0) / settings.n_nodes)
    check_x = np.concatenate([midpoints, rng.uniform(-1.0, 1.0, settings.n_validation)])
    check_spin = chebyshev_variable_to_spin(check_x)
    approx = chebyshev.chebval(spin_to_chebyshev_variable(check_spin), coefficients)
    error_f, error_tau = _relative_errors(approx, solve_omega(sequence, check_spin))
    logger.info(
        "mode %s: %d terms, max rel. error f %.2e, tau %.2e", mode, n_terms, error_f, error_tau
    )
    if max(error_f, error_tau) > settings.max_relative_error:
        raise RuntimeError(
            f"mode {mode}: table error (f {error_f:.2e}, tau {error_tau:.2e}) exceeds "
            f"{settings.max_relative_error}"
        )
    return {
        "coefficients": coefficients,
        "error_f": error_f,
        "error_tau": error_tau,
        "attempt": attempt,
    }


def build_table(
    modes: Sequence[Mode] = DEFAULT_MODES, settings: TableSettings = TableSettings()
) -> dict[str, np.ndarray]:
    """Fit every mode and collect the arrays of the table file.

    Parameters
    ----------
    modes : sequence of Mode
        Modes with ``m >= 0``.
    settings : TableSettings

    Returns
    -------
    dict of str to ndarray
        The contents of ``kerr_qnm_table.npz`` (see :func:`write_table`).

    Raises
    ------
    ValueError
        If a mode has ``m < 0`` (those are mirrors, derived at evaluation time).
    RuntimeError
        If a series does not converge or fails validation.
    """
    import qnm

    modes = parse_modes(modes)
    negative = [str(mode) for mode in modes if mode.m < 0]
    if negative:
        raise ValueError(f"tabulate m >= 0 modes only (m < 0 are mirrors): got {negative}")
    rng = np.random.default_rng(settings.seed)
    fits = [_fit_mode(mode, settings, rng) for mode in modes]
    width = max(len(fit["coefficients"]) for fit in fits)
    coefficients = np.zeros((len(modes), width), dtype=np.complex128)
    for row, fit in zip(coefficients, fits):
        row[: len(fit["coefficients"])] = fit["coefficients"]
    return {
        "format_version": np.array(TABLE_FORMAT_VERSION),
        "modes": np.array([(mode.l, mode.m, mode.n) for mode in modes], dtype=np.int64),
        "coefficients": coefficients,
        "n_terms": np.array([len(fit["coefficients"]) for fit in fits], dtype=np.int64),
        "chi_max": np.array(CHI_MAX),
        "spin_variable": np.array(
            "x = 2 (sqrt(1 - chi) - sqrt(1 - chi_max)) / (1 - sqrt(1 - chi_max)) - 1; "
            "M omega = sum_k coefficients[k] T_k(x), s = -2, prograde branch, exp(-i omega t)"
        ),
        "max_relative_error_frequency": np.array([fit["error_f"] for fit in fits]),
        "max_relative_error_damping_time": np.array([fit["error_tau"] for fit in fits]),
        "settings": np.array(json.dumps(asdict(settings), sort_keys=True)),
        "sequence_settings": np.array([json.dumps(fit["attempt"], sort_keys=True) for fit in fits]),
        "qnm_version": np.array(qnm.__version__),
        "numpy_version": np.array(np.__version__),
        "generator": np.array("python -m gwtools.ringdown.qnm_table"),
    }


def write_table(table: dict[str, np.ndarray], path: str | Path = TABLE_PATH) -> Path:
    """Write the table atomically as a compressed ``.npz`` (no pickled objects).

    Parameters
    ----------
    table : dict of str to ndarray
        From :func:`build_table`.
    path : str or Path
        Destination; defaults to the package's shipped table.

    Returns
    -------
    Path
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        # A file handle, because np.savez would append ".npz" to the temporary name.
        np.savez_compressed(handle, **table)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: build and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=TABLE_PATH, help="destination .npz")
    parser.add_argument("--modes", default=None, help="e.g. '220,221,330' (default: all shipped)")
    parser.add_argument("--nodes", type=int, default=TableSettings.n_nodes, help="nodes per mode")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    modes = DEFAULT_MODES if args.modes is None else parse_modes(args.modes)
    table = build_table(modes, TableSettings(n_nodes=args.nodes))
    logger.info("wrote %s", write_table(table, args.output))


if __name__ == "__main__":
    main()
