"""Quasinormal-mode labels and the modes of the shipped Kerr QNM table, without JAX.

:class:`Mode` and :func:`parse_modes` read mode labels; :func:`tabulated_modes` lists the modes
of the table ``kerr_qnm_table.npz`` that :mod:`gwtools.ringdown.qnm` evaluates (and
:mod:`gwtools.ringdown.qnm_table` builds).  The configuration reader checks modes with these
without loading JAX.

Mode labels
-----------
:class:`Mode` prints as the compact ``"220"`` when ``m >= 0`` and every index is a single digit;
otherwise as ``"l,m,n"`` (``"2,-2,0"``, ``"10,10,0"``).  Both forms parse back.  ``m < 0`` labels
the mirror of the prograde ``(l, |m|, n)`` mode (see :mod:`gwtools.ringdown.qnm`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gwtools.ringdown.constants import CHI_MAX

__all__ = [
    "COMPACT_LABEL",
    "TABLE_FORMAT_VERSION",
    "TABLE_PATH",
    "Mode",
    "parse_modes",
    "read_table",
    "tabulated_modes",
]

#: The shipped table of Chebyshev coefficients.
TABLE_PATH: Path = Path(__file__).with_name("kerr_qnm_table.npz")

#: Version of the table layout that this module reads.
TABLE_FORMAT_VERSION = 1

#: A compact mode label: three single digits ``l``, ``m`` (>= 0) and ``n``, as in ``"220"``.
COMPACT_LABEL = re.compile(r"^(\d)(\d)(\d)$")
_LABELLED = re.compile(r"^l(\d+)m([+-]?\d+)n(\d+)$")
_TRIPLE = re.compile(r"^\(?\s*([+-]?\d+)\s*,\s*([+-]?\d+)\s*,\s*([+-]?\d+)\s*\)?$")


@dataclass(frozen=True, order=True)
class Mode:
    """A quasinormal mode label ``(l, m, n)`` of spin weight -2.

    Parameters
    ----------
    l : int
        Polar index, ``l >= 2``.
    m : int
        Azimuthal index, ``|m| <= l``; ``m < 0`` means the mirror mode (see module docstring).
    n : int
        Overtone index, ``n >= 0``.

    Raises
    ------
    ValueError
        If an index is not an integer or is out of range.
    """

    l: int  # noqa: E741 -- the field's own name for the polar index
    m: int
    n: int

    def __post_init__(self) -> None:
        for name in ("l", "m", "n"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"Mode index {name}={value!r} must be an integer")
            object.__setattr__(self, name, int(value))
        if self.l < 2:
            raise ValueError(f"Mode l={self.l} must be >= 2 for gravitational waves")
        if abs(self.m) > self.l:
            raise ValueError(f"Mode m={self.m} must satisfy |m| <= l={self.l}")
        if self.n < 0:
            raise ValueError(f"Mode n={self.n} must be >= 0")

    @classmethod
    def parse(cls, spec: Mode | str | Sequence[int]) -> Mode:
        """Build a mode from a label.

        Parameters
        ----------
        spec : Mode, str or sequence of three ints
            ``"220"`` (three single digits), ``"2,2,1"`` or ``"(2, -2, 1)"``, ``"l2m2n1"``
            (also ``"l2m-2n1"``), or ``(2, 2, 1)``.

        Returns
        -------
        Mode

        Raises
        ------
        ValueError
            If the label has none of these forms or an index is out of range.
        """
        if isinstance(spec, Mode):
            return spec
        if isinstance(spec, str):
            text = spec.strip()
            match = COMPACT_LABEL.match(text) or _LABELLED.match(text) or _TRIPLE.match(text)
            if match is None:
                raise ValueError(
                    f"cannot parse mode {spec!r}: use '220', '2,2,1', '2,-2,0' or 'l2m2n1'"
                )
            return cls(*(int(group) for group in match.groups()))
        if isinstance(spec, (tuple, list, np.ndarray)) and len(spec) == 3:
            return cls(*spec)
        raise ValueError(
            f"cannot parse mode {spec!r}: give a string such as '220' or '2,2,1', "
            "or a tuple (l, m, n)"
        )

    def __str__(self) -> str:
        if self.m >= 0 and max(self.l, self.n) < 10:
            return f"{self.l}{self.m}{self.n}"
        return f"{self.l},{self.m},{self.n}"


def parse_modes(specs: str | Mode | Iterable[Mode | str | Sequence[int]]) -> tuple[Mode, ...]:
    """Parse a list of mode labels, keeping their order.

    Parameters
    ----------
    specs : str, Mode or iterable of mode specs
        Either an iterable of anything :meth:`Mode.parse` accepts, a single :class:`Mode`, or one
        string of compact labels separated by commas or spaces (``"220,221"``,
        ``"220 l3m3n0"``).  In a single string, ``l,m,n`` triples must be separated by ``;``
        (``"2,2,0; 2,-2,0"``).

    Returns
    -------
    tuple of Mode
        In the order given (the order of the amplitude parameters downstream).

    Raises
    ------
    ValueError
        If the list is empty, a label is malformed or a mode appears twice.
    """
    if isinstance(specs, Mode):
        return (specs,)
    if isinstance(specs, str):
        separator = ";" if ";" in specs else r"[,\s]+"
        items: list = [item for item in re.split(separator, specs.strip()) if item.strip()]
        if items and all(re.fullmatch(r"[+-]?\d", item.strip()) for item in items):
            raise ValueError(
                f"ambiguous mode list {specs!r}: separate l,m,n triples with ';' "
                "('2,2,0; 2,2,1') or use compact labels ('220,221')"
            )
    else:
        try:
            items = list(specs)
        except TypeError:
            raise ValueError(f"modes must be a string or a list of mode labels, got {specs!r}") from None
    modes = tuple(Mode.parse(item) for item in items)
    if not modes:
        raise ValueError("no modes given: list at least one, e.g. '220'")
    seen: set[Mode] = set()
    duplicates = sorted({str(mode) for mode in modes if mode in seen or seen.add(mode)})
    if duplicates:
        raise ValueError(f"modes listed more than once: {', '.join(duplicates)}")
    return modes



@functools.lru_cache(maxsize=1)
def read_table() -> tuple[dict[tuple[int, int, int], int], np.ndarray]:
    """The shipped table, read once and checked against this code's format and spin range.

    Returns
    -------
    index : dict of (int, int, int) to int
        Row of each tabulated ``(l, m, n)`` (``m >= 0``).
    coefficients : complex ndarray, shape (n_modes, D)
        Chebyshev coefficients of ``M omega`` in the variable of
        :func:`gwtools.ringdown.qnm.spin_to_chebyshev_variable`, zero-padded to a common length.

    Raises
    ------
    FileNotFoundError, ValueError
        If the table is missing, or has another format version or spin range.
    """
    if not TABLE_PATH.is_file():
        raise FileNotFoundError(
            f"QNM table {TABLE_PATH} is missing: rebuild it with "
            "'python -m gwtools.ringdown.qnm_table'"
        )
    with np.load(TABLE_PATH) as table:
        version = int(table["format_version"])
        if version != TABLE_FORMAT_VERSION:
            raise ValueError(
                f"QNM table {TABLE_PATH} has format version {version}, this code reads "
                f"{TABLE_FORMAT_VERSION}: rebuild it with 'python -m gwtools.ringdown.qnm_table'"
            )
        if float(table["chi_max"]) != CHI_MAX:
            raise ValueError(
                f"QNM table {TABLE_PATH} covers chi <= {float(table['chi_max'])}, expected "
                f"{CHI_MAX}: rebuild it with 'python -m gwtools.ringdown.qnm_table'"
            )
        index = {tuple(int(i) for i in row): k for k, row in enumerate(table["modes"])}
        coefficients = np.array(table["coefficients"], dtype=np.complex128)
    return index, coefficients


def tabulated_modes() -> tuple[Mode, ...]:
    """Modes available from the table, ``m >= 0`` only (each ``m > 0`` one also gives ``-m``).

    Returns
    -------
    tuple of Mode
        Sorted by ``(l, m, n)``.
    """
    return tuple(sorted(Mode(*key) for key in read_table()[0]))
