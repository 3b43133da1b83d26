"""Data-quality checks of raw strain: NaN gaps, flat stretches and exactly repeated blocks.

Each defect is found from the samples alone and judged against the GPS windows an analysis
uses (:func:`judge_windows`): a defect near a window would bias it, one far from every window
does not matter.

Thresholds: in GWOSC strain files (4 and 16 kHz, float64) no two samples are equal, let alone
consecutive ones, as expected of digitised noise.  Runs of
:data:`FLAT_MIN_SAMPLES` identical consecutive samples (a dropout filled with zeros or with the
last value) and exact copies of :data:`REPEAT_MIN_SAMPLES` samples or more (a repeated buffer)
therefore never happen by chance, even in single-precision data, and shorter ones are too short
to matter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gwtools.io.strain import StrainInfo

__all__ = [
    "FLAT_MIN_SAMPLES",
    "REPEAT_MIN_SAMPLES",
    "Defect",
    "WindowJudgement",
    "find_defects",
    "judge_windows",
]

#: Fewest identical consecutive samples that make a flat stretch.
FLAT_MIN_SAMPLES = 16

#: Fewest samples of an exact copy of earlier data that make a repeated block.
REPEAT_MIN_SAMPLES = 32


@dataclass(frozen=True)
class Defect:
    """A stretch of bad samples.

    Attributes
    ----------
    kind : {"NaN gap", "flat stretch", "repeated block"}
    first, stop : int
        Sample indices ``[first, stop)`` of the stretch.
    detail : str
        What is wrong, e.g. ``"constant value 0"``.
    source : (int, int) or None
        For a repeated block, the indices of the samples it copies (either may be the bad one,
        so both are judged).
    """

    kind: str
    first: int
    stop: int
    detail: str
    source: tuple[int, int] | None = None

    def spans(self) -> tuple[tuple[int, int], ...]:
        """Index spans the defect occupies."""
        return ((self.first, self.stop),) + ((self.source,) if self.source else ())


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and stops of the runs of True in a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
    return edges[::2], edges[1::2]


def _flat_stretches(samples: np.ndarray) -> list[tuple[int, int]]:
    starts, stops = _runs(samples[1:] == samples[:-1])  # NaN never equals itself
    keep = stops - starts + 1 >= FLAT_MIN_SAMPLES
    return [(int(a), int(b) + 1) for a, b in zip(starts[keep], stops[keep])]


def _repeated_blocks(samples: np.ndarray, excluded: np.ndarray) -> list[tuple[int, int, int]]:
    """Exact copies ``(first, stop, shift)``: samples[first:stop] equal samples[first + shift:...].

    Pairs of equal values are found by sorting; a copy is a run of pairs with one shift and
    consecutive indices.  Flat stretches and NaN (``excluded``) are left out, so this stays
    cheap: real strain has no equal pairs at all.
    """
    index = np.flatnonzero(~excluded)
    order = np.argsort(samples[index], kind="stable")  # stable: equal values keep index order
    ranked = index[order]
    equal = samples[ranked[1:]] == samples[ranked[:-1]]
    first, second = ranked[:-1][equal], ranked[1:][equal]
    if first.size < REPEAT_MIN_SAMPLES:
        return []
    shift = second - first
    by_shift = np.lexsort((first, shift))
    first, shift = first[by_shift], shift[by_shift]
    continues = (np.diff(shift) == 0) & (np.diff(first) == 1)
    starts, stops = _runs(continues)
    blocks = []
    for a, b in zip(starts, stops):
        if b - a + 1 >= REPEAT_MIN_SAMPLES:
            blocks.append((int(first[a]), int(first[b]) + 1, int(shift[a])))
    return blocks


def find_defects(samples: np.ndarray) -> list[Defect]:
    """NaN gaps, flat stretches and exactly repeated blocks of a strain array.

    Parameters
    ----------
    samples : numpy.ndarray, shape (n,)
        Raw strain as stored (NaN marks a GWOSC data gap).

    Returns
    -------
    list of Defect
        Sorted by position.
    """
    samples = np.asarray(samples, dtype=np.float64)
    nan = ~np.isfinite(samples)
    defects = [
        Defect("NaN gap", int(a), int(b), f"{b - a} non-finite samples")
        for a, b in zip(*_runs(nan))
    ]
    excluded = nan.copy()
    for a, b in _flat_stretches(samples):
        defects.append(Defect("flat stretch", a, b, f"constant value {samples[a]:g}"))
        excluded[a:b] = True
    for a, b, shift in _repeated_blocks(samples, excluded):
        defects.append(Defect("repeated block", a + shift, b + shift,
                              f"an exact copy of {b - a} earlier samples", source=(a, b)))
    return sorted(defects, key=lambda d: d.first)


@dataclass(frozen=True)
class WindowJudgement:
    """What :func:`judge_windows` found.

    Attributes
    ----------
    first, stop : int
        Sample indices of the longest gap-free stretch that holds every window.
    fatal : tuple of str
        Problems no analysis can get around: NaN inside a window, or a gap between windows.
    problems : tuple of str
        Defects that reach a window (with its filter padding): they bias the analysis.
    ignored : tuple of str
        Defects far from every window.
    """

    first: int
    stop: int
    fatal: tuple[str, ...]
    problems: tuple[str, ...]
    ignored: tuple[str, ...]


def _gps(info: StrainInfo, index: int) -> float:
    return info.t0 + index / info.sample_rate


def _describe(info: StrainInfo, defect: Defect) -> str:
    duration = (defect.stop - defect.first) / info.sample_rate
    text = (
        f"{info.detector} strain ({info.path.name}): {defect.kind} of {duration:.4g} s "
        f"({defect.detail}) at GPS [{_gps(info, defect.first):.4f}, {_gps(info, defect.stop):.4f})"
    )
    if defect.source:
        text += f", copying GPS [{_gps(info, defect.source[0]):.4f}, {_gps(info, defect.source[1]):.4f})"
    return text


def judge_windows(
    info: StrainInfo,
    samples: np.ndarray,
    windows: Mapping[str, tuple[float, float]],
    padding: float,
) -> WindowJudgement:
    """Judge the defects of a strain array against the GPS windows an analysis uses.

    A defect reaches a window if it overlaps the window widened by ``padding`` on both sides
    (filter transients from its edges reach that far; the widening stops at the file's ends,
    which the filters handle themselves).  The analysis can only use one gap-free stretch, so
    the stretch returned is the longest one without NaN that holds all windows; a NaN gap
    inside a window or between two windows is fatal.

    Parameters
    ----------
    info : StrainInfo
        The file's metadata (GPS start, sample rate, detector).
    samples : numpy.ndarray, shape (info.n_samples,)
        Raw strain.
    windows : mapping of str to (float, float)
        Name (e.g. ``"off-source noise window"``) to GPS ``[start, end)``, s; inside the file.
    padding : float
        Filter padding, s.

    Returns
    -------
    WindowJudgement
    """
    n, rate = info.n_samples, info.sample_rate

    def index(gps: float) -> int:
        return int(np.clip(np.ceil((gps - info.t0) * rate - 1e-9), 0, n))

    spans = {name: (index(a), index(b)) for name, (a, b) in windows.items()}
    padded = {name: (index(a - padding), index(b + padding)) for name, (a, b) in windows.items()}
    hull = (min(a for a, _ in spans.values()), max(b for _, b in spans.values()))
    first, stop = 0, n
    fatal, problems, ignored = [], [], []
    for defect in find_defects(samples):
        text = _describe(info, defect)
        if defect.kind == "NaN gap":
            inside = [k for k, (a, b) in spans.items() if defect.first < b and defect.stop > a]
            if inside:
                fatal.append(f"{text} lies inside the {inside[0]} {_window(windows, inside[0])}")
                continue
            if defect.first < hull[1] and defect.stop > hull[0]:
                named = ", ".join(_window(windows, k, named=True) for k in spans)
                fatal.append(
                    f"{text} lies between the windows {named}: the analysis filters one "
                    "gap-free stretch that holds all of them"
                )
                continue
            if defect.stop <= hull[0]:
                first = max(first, defect.stop)
            else:
                stop = min(stop, defect.first)
        reached = [
            k for k, (a, b) in padded.items()
            if any(lo < b and hi > a for lo, hi in defect.spans())
        ]
        if reached:
            problems.append(
                f"{text} reaches the {reached[0]} {_window(windows, reached[0])} "
                f"(with {padding:.2f} s of filter padding)"
            )
        else:
            ignored.append(text)
    return WindowJudgement(first, stop, tuple(fatal), tuple(problems), tuple(ignored))


def _window(windows: Mapping[str, tuple[float, float]], name: str, named: bool = False) -> str:
    a, b = windows[name]
    return f"{name + ' ' if named else ''}GPS [{a:.4f}, {b:.4f})"
