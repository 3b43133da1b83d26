"""Start-time scan: several mode sets at a list of start times, run in parallel with Dask.

Each (start time, mode set) pair is an independent ringdown run of the base configuration
(:func:`run_scan_point`, a top-level function of plain data, so it pickles to any Dask worker).
By default the runs go to a :class:`distributed.LocalCluster` on this machine; give the address
of a running scheduler to use a multi-machine cluster with the same code.  Every point's
configuration is checked against its input files and its data before any run starts
(:func:`check_scan_points`): a scan with a point that cannot run is refused
at once.  A run that fails on bad input (``ValueError``, ``FileNotFoundError``: the same input
would fail again) is reported without a retry; one that fails otherwise (a lost worker, an
unexpected error) is retried ``[scan] retries`` times by Dask.  Either way a failure is
reported in the table with its error, never dropped.  The scan holds the lock of its output
directory and publishes ``scan.csv`` and ``scan.png`` as one result set (``scan``, see
:mod:`gwtools.io.outputs`); each point publishes its own outputs in its own directory.

The Bayes factor of each mode set against the first one (e.g. 220+221 vs 220) at the same start
time is ln B = ln Z_phys(set) - ln Z_phys(reference), with both evidences under the physical
prior (flat in amplitude, uniform phase), as the overtone question requires (arXiv:2411.13333,
arXiv:2502.01093).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gwtools.io.atomic import atomic_path
from gwtools.io.outputs import lock_directory, new_run_id, staged_result_set, verify_member
from gwtools.ringdown.config import (
    ScanConfig,
    check_inputs,
    config_to_dict,
    override,
    parse_config,
)
from gwtools.ringdown.results import credible_interval

__all__ = [
    "ScanOutputs",
    "SCAN_COLUMNS",
    "scan_points",
    "run_scan_point",
    "scan_task",
    "tabulate_scan",
    "write_scan_table",
    "read_scan_table",
    "plot_scan",
    "run_scan",
    "check_scan_points",
]

logger = logging.getLogger(__name__)

SCAN_COLUMNS = (
    "start_offset_ms",
    "modes",
    "status",
    "error",
    "ln_z_physical",
    "ln_z_physical_err",
    "ln_b",
    "ln_b_err",
    "final_mass_median",
    "final_mass_lower",
    "final_mass_upper",
    "final_spin_median",
    "final_spin_lower",
    "final_spin_upper",
    "start_geocenter_gps",
    "ncall",
    "sampling_walltime",
    "result_path",
)
"""Columns of the scan table; ``lower``/``upper`` bound the 90% credible interval, ``ln_b`` is
against the first mode set at the same start time (empty for the reference itself)."""


@dataclass(frozen=True)
class ScanOutputs:
    """Rows of the scan table and where it was written."""

    rows: tuple[dict[str, Any], ...]
    table_path: Path
    plot_path: Path


def _modes_label(modes: Sequence[str]) -> str:
    return "+".join(modes)


def scan_points(scan: ScanConfig) -> list[dict[str, Any]]:
    """The run configurations of a scan, as plain dicts (one per start time and mode set).

    Each gets its own output directory ``<output>/start_<offset>ms_<modes>``.
    """
    points = []
    base = scan.run
    for offset in scan.start_offsets_ms:
        for modes in scan.mode_sets:
            name = f"start_{offset:+.3f}ms_{_modes_label(modes)}"
            config = override(
                base,
                {
                    "analysis": {"start_offset_ms": offset},
                    "model": {"modes": list(modes)},
                    "output": {
                        "directory": str(base.output.directory / name),
                        "label": f"{base.event.name}_{name}",
                    },
                },
            )
            points.append(config_to_dict(config))
    return points


def run_scan_point(config: Mapping[str, Any]) -> dict[str, Any]:
    """Run one scan point (a configuration as plain data) and summarize it.

    Top-level and free of closures so Dask can ship it to any worker.

    Returns
    -------
    dict
        ``start_offset_ms``, ``modes``, ``ln_z_physical`` (+ ``_err``), 90% intervals of the
        remnant mass and spin, ``start_geocenter_gps``, ``ncall``, ``sampling_walltime``,
        ``result_path``.
    """
    from gwtools.ringdown.pipeline import run_pipeline

    parsed = parse_config(config)
    outputs = run_pipeline(parsed, progress=False, plots=False)
    result = outputs.result
    ln_z, ln_z_err = result.log_evidence["physical"]
    row: dict[str, Any] = {
        "start_offset_ms": parsed.analysis.start_offset_ms,
        "modes": _modes_label(parsed.model.modes),
        "ln_z_physical": ln_z,
        "ln_z_physical_err": ln_z_err,
        "start_geocenter_gps": result.config["resolved"]["start_geocenter_gps"],
        "ncall": int(result.diagnostics["ncall"]),
        "sampling_walltime": float(result.diagnostics["sampling_walltime"]),
        "result_path": str(outputs.result_path),
    }
    for name in ("final_mass", "final_spin"):
        median, lower, upper = credible_interval(result.posterior[name])
        row.update({f"{name}_median": median, f"{name}_lower": lower, f"{name}_upper": upper})
    return row


def scan_task(config: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`run_scan_point` as a Dask task: bad input is returned, not raised.

    A ``ValueError`` or ``FileNotFoundError`` comes from the configuration or the data and
    would come again on a retry, so it is returned as ``{"error": "<type>: <message>"}`` (Dask
    retries only what is raised); any other exception propagates and is retried.
    """
    try:
        return run_scan_point(config)
    except (ValueError, FileNotFoundError) as err:
        logger.warning("scan run %s: %s", config["output"]["label"], err)
        return {"error": f"{type(err).__name__}: {err}"}


def check_scan_points(points: Sequence[Mapping[str, Any]]) -> None:
    """Check every point against its input files and its data, before anything runs.

    Each point's configuration goes through :func:`~gwtools.ringdown.config.check_inputs`,
    and the data-quality checks of its windows
    (:func:`~gwtools.ringdown.pipeline.usable_strain`) run once per start time.

    Raises
    ------
    ValueError
        One line per problem, naming the start times and mode sets it concerns.
    """
    from gwtools.ringdown.pipeline import usable_strain

    problems: dict[str, list[str]] = {}
    data_checked = set()
    for point in points:
        offset = point["analysis"]["start_offset_ms"]
        try:
            config = parse_config(point)
            check_inputs(config)
            if offset not in data_checked:
                usable_strain(config)
                data_checked.add(offset)
        except (ValueError, FileNotFoundError) as err:
            where = f"{offset:+.3f} ms ({_modes_label(point['model']['modes'])})"
            problems.setdefault(str(err), []).append(where)
    if problems:
        lines = [f"scan point(s) {', '.join(where)}: {message}" for message, where in problems.items()]
        raise ValueError("\n".join(lines))


def tabulate_scan(
    points: Sequence[Mapping[str, Any]], outcomes: Sequence[Mapping[str, Any] | BaseException]
) -> list[dict[str, Any]]:
    """Scan table rows from the configurations and their outcomes (row dicts or exceptions).

    An outcome is a row dict, an exception, or ``{"error": ...}`` (:func:`scan_task`).  Failed
    runs keep their start time and modes, with ``status = "failed"`` and the error.
    ``ln_b`` compares each mode set with the first mode set of the scan at the same start time.
    """
    if len(points) != len(outcomes):
        raise ValueError(f"{len(points)} scan points but {len(outcomes)} outcomes")
    rows = []
    for point, outcome in zip(points, outcomes):
        row = {column: "" for column in SCAN_COLUMNS}
        row["start_offset_ms"] = point["analysis"]["start_offset_ms"]
        row["modes"] = _modes_label(point["model"]["modes"])
        if isinstance(outcome, BaseException):
            row["status"] = "failed"
            row["error"] = f"{type(outcome).__name__}: {outcome}"
        elif "error" in outcome:
            row["status"] = "failed"
            row["error"] = outcome["error"]
        else:
            row.update(outcome)
            row["status"] = "ok"
        rows.append(row)
    reference = rows[0]["modes"] if rows else ""
    by_start = {}
    for row in rows:
        if row["modes"] == reference and row["status"] == "ok":
            by_start[row["start_offset_ms"]] = row
    for row in rows:
        ref = by_start.get(row["start_offset_ms"])
        if row["modes"] == reference or row["status"] != "ok" or ref is None:
            continue
        row["ln_b"] = row["ln_z_physical"] - ref["ln_z_physical"]
        row["ln_b_err"] = math.hypot(row["ln_z_physical_err"], ref["ln_z_physical_err"])
    return rows


def write_scan_table(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write the scan rows as CSV (columns :data:`SCAN_COLUMNS`), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=SCAN_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return path


def read_scan_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a scan CSV back; numeric fields become floats (empty ones stay ``""``).

    A table published by :func:`run_scan` is first checked against its result set's manifest.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scan table {path} does not exist")
    verify_member(path, path.stem)
    text = {"modes", "status", "error", "result_path"}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != SCAN_COLUMNS:
            raise ValueError(f"{path} is not a gwtools scan table (columns {reader.fieldnames})")
        return [
            {k: (v if k in text or v == "" else float(v)) for k, v in row.items()} for row in reader
        ]


def plot_scan(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    imr: tuple[np.ndarray, np.ndarray] | None = None,
    run_id: str | None = None,
) -> Path:
    """ln B and the remnant mass and spin (median, 90%) against start time, per mode set.

    Parameters
    ----------
    rows : sequence of mapping
        Scan table rows (:func:`tabulate_scan`).
    path : path-like
        PNG to write.
    imr : (array_like, array_like), optional
        IMR remnant (mass, spin) samples, drawn as 90% bands.
    run_id : str, optional
        Identifier of the scan, printed on the figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gwtools.ringdown.plots import save_figure

    ok = [row for row in rows if row["status"] == "ok"]
    mode_sets = list(dict.fromkeys(row["modes"] for row in rows))
    fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    compared = [row for row in ok if row["ln_b"] != ""]
    for modes in mode_sets[1:]:
        sel = [row for row in compared if row["modes"] == modes]
        axes[0].errorbar(
            [r["start_offset_ms"] for r in sel], [r["ln_b"] for r in sel],
            yerr=[r["ln_b_err"] for r in sel], marker="o", capsize=2,
            label=f"{modes} vs {mode_sets[0]}",
        )
    axes[0].axhline(0.0, color="k", lw=0.8)
    axes[0].set_ylabel(r"$\ln B$ (physical prior)")
    axes[0].legend(frameon=False)
    for j, (ax, name, label) in enumerate(((axes[1], "final_mass", r"$M_f\ [M_\odot]$"),
                                           (axes[2], "final_spin", r"$\chi_f$"))):
        if imr is not None:
            _, lower, upper = credible_interval(imr[j])
            ax.axhspan(lower, upper, color="0.85", label="IMR 90%")
        for k, modes in enumerate(mode_sets):
            sel = [row for row in ok if row["modes"] == modes]
            t = np.array([r["start_offset_ms"] for r in sel]) + 0.08 * (k - (len(mode_sets) - 1) / 2)
            median = np.array([r[f"{name}_median"] for r in sel], dtype=float)
            lower = np.array([r[f"{name}_lower"] for r in sel], dtype=float)
            upper = np.array([r[f"{name}_upper"] for r in sel], dtype=float)
            ax.errorbar(t, median, yerr=[median - lower, upper - median], marker="o", ls="",
                        capsize=2, label=modes)
        ax.set_ylabel(label)
        ax.legend(frameon=False)
    failed = [row for row in rows if row["status"] != "ok"]
    for row in failed:
        for ax in axes:
            ax.axvline(row["start_offset_ms"], color="tab:red", lw=0.8, ls=":")
    axes[-1].set_xlabel("start time after the peak [ms]")
    axes[0].set_title(r"Start-time scan ($\ln B$: $\pm 1\sigma$; $M_f$, $\chi_f$: 90% intervals;"
                      " red dotted: failed runs)", fontsize="medium")
    return save_figure(fig, path, run_id)


def run_scan(
    scan: ScanConfig, *, scheduler: str | None = None, n_workers: int | None = None
) -> ScanOutputs:
    """Run every point of ``scan`` on Dask and publish ``scan.csv`` and ``scan.png``.

    Every point is checked before the cluster starts (:func:`check_scan_points`: a scan with a
    point that cannot run is refused), and the output directory is locked for the whole scan.

    Parameters
    ----------
    scan : ScanConfig
    scheduler : str, optional
        Address of a running Dask scheduler; by default a local cluster is started (processes,
        one thread each: JAX already uses the cores of its process).
    n_workers : int, optional
        Workers of the local cluster (default: the number of CPU cores).

    Returns
    -------
    ScanOutputs
    """
    import dask
    from distributed import Client, LocalCluster, as_completed

    points = scan_points(scan)
    check_scan_points(points)
    run_id = new_run_id()
    directory = scan.run.output.directory
    with lock_directory(directory, run_id):
        logger.info("scan %s writing to %s", run_id, directory)
        cluster = None
        if scheduler is None:
            workers = n_workers or os.cpu_count() or 1
            # A run keeps its worker busy for minutes; on a loaded machine its heartbeats can
            # lag past the default time-to-live, and the scheduler would restart a healthy one.
            with dask.config.set({"distributed.scheduler.worker-ttl": None}):
                cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
                )
            client = Client(cluster)
        else:
            client = Client(scheduler)
        try:
            logger.info("scan: %d runs on %s", len(points), client)
            futures = {
                client.submit(scan_task, point, retries=scan.retries, pure=False): i
                for i, point in enumerate(points)
            }
            outcomes: list[Mapping[str, Any] | BaseException] = [RuntimeError("not run")] * len(points)
            # collect each run as it finishes, so a worker lost later cannot take finished results
            for future in as_completed(futures):
                i = futures[future]
                try:
                    outcomes[i] = future.result()
                    logger.info("scan run %s done", points[i]["output"]["label"])
                except Exception as err:  # reported in the table, never dropped
                    logger.warning(
                        "scan run %s failed after %d retries: %s",
                        points[i]["output"]["label"], scan.retries, err,
                    )
                    outcomes[i] = err
                future.release()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        rows = tabulate_scan(points, outcomes)
        imr = None
        if scan.run.data.imr_samples is not None:
            from gwtools.ringdown.pipeline import read_imr_samples

            imr = read_imr_samples(scan.run.data.imr_samples)
        with staged_result_set(directory, "scan", run_id) as stage:
            write_scan_table(rows, stage / "scan.csv")
            plot_scan(rows, stage / "scan.png", imr=imr, run_id=run_id)
    return ScanOutputs(
        rows=tuple(rows), table_path=directory / "scan.csv", plot_path=directory / "scan.png"
    )
