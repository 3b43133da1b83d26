"""Readers of configuration values: each reads one TOML value, checks its kind and limits, and
names the key (``"[section] key: ..."``) in its errors.

The section dataclasses of :mod:`gwtools.ringdown.config` name the reader of each field with
:func:`setting`; :mod:`gwtools.ringdown.input_checks` reports with :func:`config_error` too.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from gwtools.ringdown.constants import PSI_PERIOD
from gwtools.ringdown.modes import COMPACT_LABEL, tabulated_modes

__all__ = [
    "Key",
    "config_error",
    "read_cos_inclination",
    "read_detector_paths",
    "read_detectors",
    "read_file_stem",
    "read_flag",
    "read_integer",
    "read_interval",
    "read_modes",
    "read_number",
    "read_offsource_windows",
    "read_path",
    "read_polarization_range",
    "read_psd_columns",
    "read_start_window",
    "read_text",
    "section_table",
    "setting",
]

#: A ``[prior] psi`` range this close to the period (rad) is the whole period (e.g. [0, 3.1416]).
_PSI_PERIOD_TOLERANCE = 1e-4


def config_error(section: str, key: str, message: str) -> ValueError:
    """The error of a bad configuration value: ``"[section] key: message"``."""
    return ValueError(f"[{section}] {key}: {message}")


class Key(NamedTuple):
    """A key of the configuration: where its value sits, and where its relative paths start."""

    section: str
    name: str
    base_dir: Path = Path(".")

    def error(self, message: str) -> ValueError:
        return config_error(self.section, self.name, message)

    def item(self, name: str) -> Key:
        """The entry ``name`` of this key's table, e.g. ``files.H1``."""
        return self._replace(name=f"{self.name}.{name}")


def _units(unit: str) -> str:
    return f" {unit}" if unit else ""


def read_number(key: Key, value: Any, *, above: float | None = None, lower: float | None = None,
                upper: float | None = None, shown: str | None = None, unit: str = "") -> float:
    """A finite number; ``above``: exclusive lower bound, ``lower``/``upper``: inclusive bounds
    (``shown``: how the range [lower, upper] reads in messages, e.g. ``"[0, 2 pi]"``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise key.error(f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise key.error(f"must be finite, got {value!r}")
    number = float(value)
    if above is not None and not number > above:
        raise key.error(f"must be > {above:g}{_units(unit)}, got {number!r}")
    if lower is not None and upper is not None and not lower <= number <= upper:
        raise key.error(f"{number} is outside {shown or f'[{lower:g}, {upper:g}]'}{_units(unit)}")
    if lower is not None and number < lower:
        raise key.error(f"must be >= {lower:g}{_units(unit)}, got {number!r}")
    return number


def read_integer(key: Key, value: Any, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise key.error(f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise key.error(f"must be >= {minimum}, got {value}")
    return int(value)


def read_text(key: Key, value: Any, *, choices: tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise key.error(f"expected a non-empty string, got {value!r}")
    if choices is not None and value not in choices:
        raise key.error(f"{value!r} is not one of {', '.join(choices)}")
    return value


def read_flag(key: Key, value: Any) -> bool:
    if not isinstance(value, bool):
        raise key.error(f"expected true or false, got {value!r}")
    return value


def read_interval(key: Key, value: Any, *, above: float | None = None, lower: float | None = None,
                  upper: float | None = None, unit: str = "") -> tuple[float, float]:
    """``[lo, hi]`` with lo < hi; ``above``: exclusive bound of lo, ``lower``/``upper``: inclusive
    bounds of lo and hi."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise key.error(f"expected [lower, upper], got {value!r}")
    lo, hi = (read_number(key, v) for v in value)
    if lo >= hi:
        raise key.error(f"lower bound {lo} >= upper bound {hi}")
    if above is not None and not lo > above:
        raise key.error(f"lower bound {lo} must be > {above:g}{_units(unit)}")
    if lower is not None and lo < lower:
        raise key.error(f"lower bound {lo} < {lower}")
    if upper is not None and hi > upper:
        raise key.error(f"upper bound {hi} > {upper}")
    return lo, hi


def read_path(key: Key, value: Any) -> Path:
    """An absolute path; a relative one is taken from the configuration's directory."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise key.error(f"expected a file path, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (key.base_dir / path).resolve()


def read_detector_paths(key: Key, value: Any) -> dict[str, Path]:
    """A table of one path per detector, ``{H1 = "file", ...}``."""
    if not isinstance(value, Mapping):
        raise key.error(f"expected a table {{H1 = \"file\", ...}}, got {value!r}")
    return {read_text(key.item(det), det): read_path(key.item(det), path) for det, path in value.items()}


def read_detectors(key: Key, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise key.error(f"expected a non-empty list, got {value!r}")
    detectors = tuple(read_text(key, d) for d in value)
    if len(set(detectors)) != len(detectors):
        raise key.error(f"repeated detector in {list(detectors)}")
    return detectors


def read_start_window(key: Key, value: Any) -> tuple[float, float]:
    window = read_interval(key, value)
    if not window[0] <= 0.0 <= window[1]:
        raise key.error(
            f"{list(window)} ms does not contain the configured start (0): give the window "
            "relative to the start, e.g. move start_offset_ms into it and use [-1.0, 1.0]"
        )
    return window


def read_offsource_windows(key: Key, value: Any) -> tuple[tuple[float, float], ...]:
    """``[begin, end]`` or a list of them -> sorted, non-overlapping windows."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
        windows = [read_interval(key, v) for v in value]
    else:
        windows = [read_interval(key, value)]
    windows.sort()
    for (a0, b0), (a1, b1) in itertools.pairwise(windows):
        if a1 < b0:
            raise key.error(
                f"windows {[a0, b0]} and {[a1, b1]} overlap: merge them into one, or separate them"
            )
    return tuple(windows)


def read_psd_columns(key: Key, value: Any) -> dict[str, str | int]:
    if not isinstance(value, Mapping) or not all(
        (isinstance(c, str) and c) or (isinstance(c, int) and not isinstance(c, bool) and c >= 1)
        for c in value.values()
    ):
        raise key.error(
            f"expected a table {{H1 = \"H1\", L1 = 2}} of header names or column indices >= 1 "
            f"(column 0 is the frequency), got {value!r}"
        )
    return dict(value)


def read_modes(key: Key, value: Any) -> tuple[str, ...]:
    """A list of distinct compact mode labels of the QNM table, e.g. ``["220", "221"]``."""
    if not isinstance(value, (list, tuple)) or not value:
        raise key.error(f"expected a non-empty list like [\"220\", \"221\"], got {value!r}")
    modes = tuple(read_text(key, m) for m in value)
    available = [str(mode) for mode in tabulated_modes()]
    for mode in modes:
        match = COMPACT_LABEL.match(mode)
        if match is None:
            raise key.error(f"{mode!r} is not a mode 'lmn' (e.g. '220', '221', '330')")
        ell, m, _ = (int(index) for index in match.groups())
        if abs(m) > ell:
            raise key.error(f"{mode!r} has |m| > l")
        if mode not in available:
            raise key.error(f"{mode!r} is not in the QNM table (available: {', '.join(available)})")
    if len(set(modes)) != len(modes):
        raise key.error(f"repeated mode in {list(modes)}")
    return modes


def read_cos_inclination(key: Key, value: Any) -> float | tuple[float, float]:
    """A fixed cosine, or a range to sample, within [-1, 1]."""
    if isinstance(value, (list, tuple)):
        return read_interval(key, value, lower=-1.0, upper=1.0)
    return read_number(key, value, lower=-1.0, upper=1.0)


def read_polarization_range(key: Key, value: Any) -> tuple[float, float]:
    """``[prior] psi``: a range of at most one period; one of (about) a period is exactly one."""
    lo, hi = read_interval(key, value)
    if hi - lo > PSI_PERIOD + _PSI_PERIOD_TOLERANCE:
        raise key.error(
            f"[{lo}, {hi}] is {hi - lo:.4g} rad long, more than the period pi of the antenna "
            "patterns (psi and psi + pi are the same polarization): give at most pi, e.g. "
            f"[0.0, {math.pi!r}]"
        )
    if hi - lo >= PSI_PERIOD - _PSI_PERIOD_TOLERANCE:
        hi = lo + PSI_PERIOD
    return lo, hi


def read_file_stem(key: Key, value: Any) -> str:
    label = read_text(key, value)
    if "/" in label or label in (".", ".."):
        raise key.error(f"{label!r} must be a plain file-name stem")
    return label


def setting(read: Callable[..., Any], *, default: Any = dataclasses.MISSING,
            factory: Any = dataclasses.MISSING, **limits: Any):
    """A field of a configuration section: its default and how its value is read,
    ``read(key, value, **limits)``."""
    return dataclasses.field(
        default=default, default_factory=factory, metadata={"read": functools.partial(read, **limits)}
    )


def section_table(raw: Mapping[str, Any], section: str, allowed, required: bool) -> dict:
    """``raw[section]`` as a dict, rejecting unknown keys."""
    if section not in raw:
        if required:
            raise ValueError(f"[{section}]: section is missing from the configuration")
        return {}
    table = raw[section]
    if not isinstance(table, Mapping):
        raise ValueError(f"[{section}]: expected a table, got {table!r}")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise config_error(section, unknown[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")
    return dict(table)
