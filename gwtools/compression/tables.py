"""Sample tables of the command line: HDF5 (one dataset per column) or CSV, written in chunks.

:func:`write_samples` streams samples from a compressed posterior to a file in constant
memory (``gwtools regenerate``); :func:`write_table` writes columns already in memory
(``gwtools logpdf``).  Both write atomically: the table appears under its name only once it
is complete.  numpy and h5py only.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gwtools.compression.posterior import CompressedPosterior
from gwtools.io.atomic import atomic_path

__all__ = ["TABLE_SUFFIXES", "write_samples", "write_table"]

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = (".h5", ".hdf5", ".hdf", ".csv")
_CSV_FORMAT = "%.10g"
#: Typical characters of one CSV value (``%.10g`` of a sample, with its comma).
_CSV_BYTES_PER_VALUE = 17
#: Seconds between progress messages.
_PROGRESS_SECONDS = 10.0


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"output file {path} must end in .h5, .hdf5, .hdf or .csv")
    return suffix


class _ColumnWriter:
    """Named float64 columns of ``n_rows`` rows, appended chunk by chunk to an open file
    (``csv``: a CSV file, else HDF5)."""

    def __init__(self, path: Path, names: Sequence[str], n_rows: int, csv: bool):
        self.csv = csv
        self.names = list(names)
        if self.csv:
            self.handle = open(path, "w")  # noqa: SIM115 -- closed in close()
            self.handle.write(",".join(self.names) + "\n")
        else:
            import h5py

            self.handle = h5py.File(path, "w")
            self.datasets = [self.handle.create_dataset(name, shape=(n_rows,), dtype=np.float64)
                             for name in self.names]

    def append(self, start: int, columns: Sequence[np.ndarray]) -> None:
        """Write rows ``start .. start + len(columns[0]) - 1``."""
        if self.csv:
            np.savetxt(self.handle, np.column_stack(columns), delimiter=",", fmt=_CSV_FORMAT)
        else:
            for dataset, column in zip(self.datasets, columns):
                dataset[start : start + len(column)] = column

    def close(self) -> None:
        self.handle.close()


def write_table(path: str | os.PathLike, names: Sequence[str], columns: Sequence[np.ndarray]) -> None:
    """Write named columns (each (n,)) to HDF5 (one dataset per name) or CSV, atomically."""
    path = Path(path)
    csv = _suffix(path) == ".csv"
    with atomic_path(path) as tmp:
        writer = _ColumnWriter(tmp, names, len(columns[0]), csv)
        try:
            writer.append(0, columns)
        finally:
            writer.close()


def _check_space(path: Path, n_values: int, csv: bool) -> None:
    """Refuse an HDF5 table that cannot fit on its disk; warn for a CSV one that may not."""
    free = shutil.disk_usage(path.parent).free
    needed = n_values * (_CSV_BYTES_PER_VALUE if csv else 8)
    if needed <= free:
        return
    message = (f"{path} needs about {needed / 1e9:.3g} GB for {n_values:,} values, and "
               f"{path.parent} has {free / 1e9:.3g} GB free")
    if not csv:
        raise ValueError(message + "; ask for fewer samples or write elsewhere")
    logger.warning("%s; the write may fail", message)


def write_samples(model: CompressedPosterior, n: int, path: str | os.PathLike, *,
                  seed: int | None = None, chunk_size: int = 1 << 18) -> float:
    """Draw ``n`` samples from ``model`` and write them to a table, in constant memory.

    One column per parameter, plus ``ln_prior`` where the model has a prior.  Samples are
    drawn, transformed and written ``chunk_size`` at a time
    (:meth:`~gwtools.compression.posterior.CompressedPosterior.sample_chunks`): the file
    holds exactly ``model.sample(n, seed=seed)``, whatever ``chunk_size``.  Progress is
    logged every few seconds.

    Parameters
    ----------
    model : CompressedPosterior
    n : int
        Number of samples, >= 1.
    path : str or path
        ``.h5``/``.hdf5``/``.hdf`` (one float64 dataset per column) or ``.csv`` (a header
        row, then ``%.10g`` values).
    seed : int, optional
    chunk_size : int
        Samples per chunk: memory is about ``chunk_size * (d + 1) * 8`` bytes plus the
        sampler's fixed work buffers.

    Returns
    -------
    float
        Samples written per second (wall clock).

    Raises
    ------
    ValueError
        For a bad suffix, ``n < 1``, or an HDF5 table larger than the free disk space.
    """
    path = Path(path)
    csv = _suffix(path) == ".csv"
    if n < 1:
        raise ValueError(f"number of samples must be >= 1, got {n}")
    names = list(model.parameters) + (["ln_prior"] if model.prior is not None else [])
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_space(path, n * len(names), csv)
    start_time = last_report = time.perf_counter()
    with atomic_path(path) as tmp:
        writer = _ColumnWriter(tmp, names, n, csv)
        try:
            for start, x in model.sample_chunks(n, seed=seed, chunk_size=chunk_size):
                columns = [x[:, i] for i in range(x.shape[1])]
                if model.prior is not None:
                    columns.append(model.ln_prior(x))
                writer.append(start, columns)
                now = time.perf_counter()
                done = start + len(x)
                if now - last_report >= _PROGRESS_SECONDS and done < n:
                    rate = done / (now - start_time)
                    logger.info("%s: %.1f%% (%s of %s samples), %.3g samples/s, about %.0f s left",
                                path.name, 100.0 * done / n, f"{done:,}", f"{n:,}", rate,
                                (n - done) / rate)
                    last_report = now
        finally:
            writer.close()
    seconds = time.perf_counter() - start_time
    rate = n / seconds
    logger.info("wrote %s samples from the %s file to %s in %.1f s: %.3g samples/s", f"{n:,}",
                model.source, path, seconds, rate)
    return rate
