"""Start-time scan: several mode sets at a list of start times, sampled in compiled batches on Dask.

The scan's points are the pairs (start time, mode set), each a complete run configuration of
its own (:func:`scan_points`): its own output directory, named after its start and modes
(:func:`point_name`), and its own seed, derived from the base ``[sampler] seed``, its start and
its modes alone (:func:`point_seed`), so that points are independent and a point's result does
not depend on which other points are in the grid.  The resolved configuration in a point's
results file reproduces it with ``gwtools ringdown``.

Batches.  The points of one mode set have analyses of equal shape (detectors, segment length,
rate), so with the blackjax engine all their start times are sampled together, in one vmapped,
compiled nested-sampling loop (:func:`~gwtools.ringdown.sampling.run_nested_batch`), or in
batches of at most ``[scan] batch_size`` start times, split evenly and padded to one size so
that every batch of a mode set runs the same compiled program (:func:`scan_batches`).  A
batch is one Dask task (:func:`scan_task`, a top-level function of plain data), so a local
cluster or a remote scheduler spreads batches over workers and machines.  A task reads and
conditions the strain and estimates the noise once for all its points where their data and
off-source windows are the same (the off-source window is fixed relative to the peak), then
prepares each point's analysis, samples the batch and publishes each point's outputs (results
file and bilby result, as ``gwtools ringdown --no-plots`` writes them).  The dynesty engine has
no batch mode: there every point is a task of its own.  Each task keeps JAX's compiled
programs on disk (:func:`~gwtools.ringdown.pipeline.use_compilation_cache`), so workers
started later, and later scans, skip the compilation of batches of a shape already seen.

Failures.  Every point's configuration is checked against its input files and its data before
any task starts (:func:`check_scan_points`): a scan with a point that cannot run is refused at
once.  Inside a task, a point that fails before sampling or in its reconstruction on bad input
(``ValueError``, ``FileNotFoundError``: e.g. its output directory held by another run) is
reported without a retry, and the batch's other points go on.  A batch that fails otherwise (a
lost worker, an unexpected error) is retried ``[scan] retries`` times by Dask, then each of its
points is reported with the error.  A failure is always a row of the table, never dropped.

Interruptions.  Batched sampling writes no checkpoints: a killed scan loses the batches that
were running (a dynesty point checkpoints as a single run does); every point of a finished
batch has published its outputs in its own directory, and they stay.  The scan holds the lock
of its output directory and publishes ``scan.csv`` and ``scan.png`` as one result set
(``scan``, see :mod:`gwtools.io.outputs`) when all batches are done.

The Bayes factor of each mode set against the first one (e.g. 220+221 vs 220) at the same start
time is ln B = ln Z_phys(set) - ln Z_phys(reference), with both evidences under the physical
prior (flat in amplitude, uniform phase), as the overtone question requires (arXiv:2411.13333,
arXiv:2502.01093).  The physical-prior evidence comes from importance weights; their effective
sample size and efficiency are in the table, with a warning where they are too low to trust.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gwtools.io.atomic import atomic_path
from gwtools.io.outputs import lock_directory, new_run_id, staged_result_set, verify_member
from gwtools.ringdown.config import ScanConfig, config_to_dict, override, parse_config, start_offset_seconds
from gwtools.ringdown.firefly import MIN_ESS
from gwtools.ringdown.input_checks import ON_SOURCE, analysis_windows, check_inputs
from gwtools.ringdown.results import credible_interval

__all__ = [
    "LOW_EFFICIENCY",
    "SCAN_COLUMNS",
    "ScanOutputs",
    "ScanPoint",
    "check_scan_points",
    "point_name",
    "point_seed",
    "read_scan_table",
    "run_scan",
    "scan_batches",
    "scan_points",
    "scan_task",
    "scan_warnings",
    "tabulate_scan",
    "write_scan_table",
]

logger = logging.getLogger(__name__)

SCAN_COLUMNS = (
    "start_offset_ms",
    "modes",
    "status",
    "error",
    "warning",
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
    "importance_ess",
    "importance_efficiency",
    "start_geocenter_gps",
    "seed",
    "ncall",
    "sampling_walltime",
    "result_path",
)
"""Columns of the scan table; ``lower``/``upper`` bound the 90% credible interval, ``ln_b`` is
against the first mode set at the same start time (empty for the reference itself);
``importance_ess`` and ``importance_efficiency`` (ESS per draw) are those of the
physical-prior importance weights; ``warning`` says why a row's numbers may not be trusted
(:func:`scan_warnings`); ``sampling_walltime`` is that of the point's whole batch."""

#: Importance efficiency (ESS per draw) below which a row is flagged: the physical prior is then
#: far from the quadrature prior that was sampled, and a few draws carry the evidence.
LOW_EFFICIENCY = 0.01

_START_UNITS = {"start_offset_ms": "ms", "start_offset_m": "M"}


@dataclass(frozen=True)
class ScanOutputs:
    """Rows of the scan table and where it was written."""

    rows: tuple[dict[str, Any], ...]
    table_path: Path
    plot_path: Path


@dataclass(frozen=True)
class ScanPoint:
    """One (start time, mode set) point of a scan.

    Attributes
    ----------
    name : str
        Name of its output directory (:func:`point_name`), unique within the scan.
    modes : tuple of str
        Its mode set.
    start_offset_ms : float
        Its start after the peak in the reference detector, ms.
    seed : int
        Its sampler seed (:func:`point_seed`).
    config : dict
        Its complete run configuration as plain data (:func:`~gwtools.ringdown.config.config_to_dict`).
    """

    name: str
    modes: tuple[str, ...]
    start_offset_ms: float
    seed: int
    config: dict


def _modes_label(modes: Sequence[str]) -> str:
    return "+".join(modes)


def point_name(start_key: str, start: float, modes: Sequence[str]) -> str:
    """Directory name of a scan point: ``start_+2.5ms_220+221``, ``start_+10.0M_220`` or
    ``start_gps1126259462.426_220``.

    The start is written as Python writes a float, the shortest decimal that reads back as the
    same number, so two different start times never share a name however close they are.
    """
    start = float(start)
    when = f"gps{start}" if start_key == "start_time" else f"{start:+}{_START_UNITS[start_key]}"
    return f"start_{when}_{_modes_label(modes)}"


def point_seed(base_seed: int, start_key: str, start: float, modes: Sequence[str]) -> int:
    """Sampler seed of a scan point: the first 32 bits of the sha256 of
    ``"<base_seed>:<start_key>=<start>:<modes>"`` (start as :func:`point_name` writes it).

    It depends on nothing else, so a point keeps its seed, and its samples, whatever other
    points the grid holds; different points get unrelated seeds.
    """
    text = f"{base_seed}:{start_key}={float(start)!r}:{_modes_label(modes)}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def _offset_ms(config) -> float:
    """Start after the peak, ms: as given where it was given in ms (no rounding through s)."""
    given = config.analysis.start_offset_ms
    return given if given is not None else 1e3 * start_offset_seconds(config)


def scan_points(scan: ScanConfig) -> list[ScanPoint]:
    """The points of a scan, start time by start time and in each the mode sets in order.

    Each runs the base configuration with its start (``[analysis] <scan.start_key>``), modes,
    seed (:func:`point_seed`) and output directory ``<output>/<name>`` (:func:`point_name`),
    labelled ``<event>_<name>``.

    Raises
    ------
    ValueError
        If two points would share a directory (a start time or a mode set given twice).
    """
    points = []
    base = scan.run
    for start in scan.starts:
        for modes in scan.mode_sets:
            name = point_name(scan.start_key, start, modes)
            seed = point_seed(base.sampler.seed, scan.start_key, start, modes)
            config = override(
                base,
                {
                    "analysis": {scan.start_key: float(start)},
                    "model": {"modes": list(modes)},
                    "sampler": {"seed": seed},
                    "output": {
                        "directory": str(base.output.directory / name),
                        "label": f"{base.event.name}_{name}",
                    },
                },
            )
            points.append(ScanPoint(name=name, modes=tuple(modes), seed=seed,
                                    start_offset_ms=_offset_ms(config),
                                    config=config_to_dict(config)))
    names = [point.name for point in points]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"[scan] points share output directories {repeated}: give each start time "
                         "and each mode set once")
    return points


def scan_batches(scan: ScanConfig, points: Sequence[ScanPoint]) -> list[tuple[int, ...]]:
    """Indices into ``points`` of the batches of a scan, one Dask task each.

    blackjax: per mode set, its start times in batches of at most ``scan.batch_size`` (all of
    them without one), the start times split as evenly as that allows; dynesty: one point each.
    """
    if scan.run.sampler.engine == "dynesty":
        return [(i,) for i in range(len(points))]
    n_starts = len(scan.starts)
    n_batches = -(-n_starts // min(scan.batch_size or n_starts, n_starts))
    size = -(-n_starts // n_batches)
    batches = []
    for modes in scan.mode_sets:
        members = [i for i, point in enumerate(points) if point.modes == tuple(modes)]
        batches += [tuple(members[k : k + size]) for k in range(0, len(members), size)]
    return batches


def _error(err: BaseException) -> dict[str, str]:
    return {"error": f"{type(err).__name__}: {err}"}


@dataclass(frozen=True)
class _Ready:
    """A point of a batch, prepared for sampling."""

    index: int
    config: Any  # RingdownConfig
    run_id: str
    prepared: Any  # PreparedAnalysis
    likelihood: Any  # FireflyLikelihood
    space: Any  # ParameterSpace


class _SharedInputs:
    """Conditioned strain and noise ACFs of a task's points, computed once where they are equal.

    Points whose usable raw stretches (:func:`~gwtools.ringdown.pipeline.usable_strain`) are the
    same share the conditioned strain; points that share it and have the same windows besides
    their on-source segment (the off-source noise windows of
    :func:`~gwtools.ringdown.input_checks.analysis_windows`) share the ACFs.  The rest of
    their configurations (rate, filters, noise settings) is that of the scan's base, equal for
    all.
    """

    def __init__(self):
        self.strain: dict = {}
        self.acfs: dict = {}
        self.seconds = {"data": 0.0, "noise": 0.0}

    def get(self, config):
        from gwtools.ringdown import pipeline

        begin = time.perf_counter()
        raw = pipeline.usable_strain(config)  # the data checks of this start time's windows
        stretch = tuple((detector, ts.t0, ts.data.size) for detector, ts in raw.items())
        if stretch not in self.strain:
            self.strain[stretch] = pipeline.load_strain(config)
        self.seconds["data"] += time.perf_counter() - begin
        begin = time.perf_counter()
        windows = tuple((d, tuple(sorted((name, span) for name, span in w.items() if name != ON_SOURCE)))
                        for d, w in analysis_windows(config).items())
        if (stretch, windows) not in self.acfs:
            self.acfs[stretch, windows] = pipeline.estimate_acfs(config, self.strain[stretch])
        self.seconds["noise"] += time.perf_counter() - begin
        return self.strain[stretch], self.acfs[stretch, windows]


def _sample(ready: Sequence[_Ready], pad_to: int):
    """Sampling results of the prepared points, in order."""
    from gwtools.ringdown.pipeline import sample_posterior
    from gwtools.ringdown.sampling import run_nested_batch

    first = ready[0]
    if first.config.sampler.engine == "dynesty":
        return [sample_posterior(item.config, item.likelihood, item.space, progress=False) for item in ready]
    datas = [item.likelihood.data for item in ready]
    seeds = [item.config.sampler.seed for item in ready]
    # a batch short of points (some failed) is padded, so it runs the batches' compiled program
    padding = max(0, pad_to - len(ready))
    return run_nested_batch(first.likelihood, datas + datas[-1:] * padding, first.space, first.config.sampler,
                            seeds=seeds + seeds[-1:] * padding, progress=False)[: len(ready)]


def _summary(result, result_path: Path) -> dict[str, Any]:
    """A point's row of the scan table (without status and Bayes factor)."""
    ln_z, ln_z_err = result.log_evidence["physical"]
    diagnostics = result.diagnostics
    row: dict[str, Any] = {
        "ln_z_physical": ln_z,
        "ln_z_physical_err": ln_z_err,
        "importance_ess": float(diagnostics["importance_ess"]),
        "importance_efficiency": float(diagnostics["importance_efficiency"]),
        "start_geocenter_gps": result.config["resolved"]["start_geocenter_gps"],
        "seed": result.config["sampler"]["seed"],
        "ncall": int(diagnostics["ncall"]),
        "sampling_walltime": float(diagnostics["sampling_walltime"]),
        "result_path": str(result_path),
    }
    for name in ("final_mass", "final_spin"):
        median, lower, upper = credible_interval(result.posterior[name])
        row.update({f"{name}_median": median, f"{name}_lower": lower, f"{name}_upper": upper})
    return row


def _publish(item: _Ready, sampling, diagnostics: Mapping[str, float]) -> dict[str, Any]:
    """Reconstruct a sampled point, publish its results file and bilby result; return its row."""
    from gwtools.ringdown.pipeline import build_result
    from gwtools.ringdown.results import save_bilby_result, write_result

    config = item.config
    result = build_result(config, item.prepared, item.likelihood, item.space, sampling,
                          diagnostics=diagnostics, run_id=item.run_id)
    directory, label = config.output.directory, config.output.label
    with staged_result_set(directory, label, item.run_id) as stage:
        write_result(result, stage / f"{label}.h5")
        save_bilby_result(result, stage / f"{label}_bilby.hdf5")
    logger.info("scan point %s: wrote %s (run %s)", label, directory / f"{label}.h5", item.run_id)
    return _summary(result, directory / f"{label}.h5")


def scan_task(configs: Sequence[Mapping[str, Any]], pad_to: int = 1) -> list[dict[str, Any]]:
    """Run one batch of scan points (configurations as plain data) and publish their outputs.

    Top-level and free of closures so Dask can ship it to any worker.  The points must share
    everything but their start, output and seed (:func:`scan_batches` groups them so): with
    the blackjax engine they are sampled in one compiled batch, padded to ``pad_to``
    analyses; with dynesty one after the other.  Each point holds the lock of its output
    directory from before its data are read until its outputs are published.

    Returns
    -------
    list of dict
        Per point, in order: its table row (see :data:`SCAN_COLUMNS`), or
        ``{"error": "<type>: <message>"}`` where it failed on bad input (``ValueError``,
        ``FileNotFoundError``: the same input would fail again, so it is returned, not raised,
        and the other points go on).  Any other exception propagates, for Dask to retry the
        batch.
    """
    from gwtools.ringdown import pipeline

    pipeline.use_compilation_cache()
    outcomes: list[dict[str, Any]] = [{} for _ in configs]
    shared = _SharedInputs()
    with pipeline.single_threaded_blas(), contextlib.ExitStack() as locks:
        ready, prepare_seconds = [], 0.0
        for index, raw in enumerate(configs):
            try:
                config = parse_config(raw)
                check_inputs(config)
                run_id = new_run_id()
                locks.enter_context(lock_directory(config.output.directory, run_id))
                strain, acfs = shared.get(config)
                begin = time.perf_counter()
                prepared = pipeline.prepare_analysis(config, strain, acfs)
                likelihood, space = pipeline.build_likelihood(config, prepared)
                prepare_seconds += time.perf_counter() - begin
                ready.append(_Ready(index, config, run_id, prepared, likelihood, space))
            except (ValueError, FileNotFoundError) as err:
                logger.warning("scan point %s: %s", raw["output"]["label"], err)
                outcomes[index] = _error(err)
        if not ready:
            return outcomes
        begin = time.perf_counter()
        try:
            samplings = _sample(ready, pad_to)
        except (ValueError, FileNotFoundError) as err:
            logger.warning("scan batch of %s: %s", ready[0].config.output.label, err)
            for item in ready:
                outcomes[item.index] = _error(err)
            return outcomes
        diagnostics = {"time_data": shared.seconds["data"], "time_noise": shared.seconds["noise"],
                       "time_prepare": prepare_seconds, "time_sampling": time.perf_counter() - begin,
                       "scan_batch_size": len(ready)}
        for item, sampling in zip(ready, samplings):
            try:
                outcomes[item.index] = _publish(item, sampling, diagnostics)
            except (ValueError, FileNotFoundError) as err:
                logger.warning("scan point %s: %s", item.config.output.label, err)
                outcomes[item.index] = _error(err)
    return outcomes


def _where(point: ScanPoint) -> str:
    return f"{point.start_offset_ms:+.3f} ms ({_modes_label(point.modes)})"


def check_scan_points(points: Sequence[ScanPoint]) -> None:
    """Check every point against its input files and its data, before anything runs.

    Each point's configuration goes through :func:`~gwtools.ringdown.input_checks.check_inputs`,
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
        try:
            config = parse_config(point.config)
            check_inputs(config)
            if point.start_offset_ms not in data_checked:
                usable_strain(config)
                data_checked.add(point.start_offset_ms)
        except (ValueError, FileNotFoundError) as err:
            problems.setdefault(str(err), []).append(_where(point))
    if problems:
        lines = [f"scan point(s) {', '.join(where)}: {message}" for message, where in problems.items()]
        raise ValueError("\n".join(lines))


def scan_warnings(row: Mapping[str, Any]) -> str:
    """Why a successful row's physical-prior numbers may not be trusted ("" when they can).

    Flags an importance ESS below the reconstruction's target
    (:data:`~gwtools.ringdown.firefly.MIN_ESS`: amplitudes and ln Z_phys are then noisy) and an
    efficiency below :data:`LOW_EFFICIENCY` (a few draws carry the evidence, whose error may be
    underestimated).
    """
    notes = []
    if row["importance_ess"] < MIN_ESS:
        notes.append(f"importance ESS {row['importance_ess']:.0f} < {MIN_ESS:.0f}: physical-prior "
                     "evidence and amplitudes unreliable (raise nlive)")
    if row["importance_efficiency"] < LOW_EFFICIENCY:
        notes.append(f"importance efficiency {row['importance_efficiency']:.2%} < {LOW_EFFICIENCY:.0%}: "
                     "a few draws carry the physical-prior evidence")
    return "; ".join(notes)


def tabulate_scan(
    points: Sequence[ScanPoint], outcomes: Sequence[Mapping[str, Any] | BaseException]
) -> list[dict[str, Any]]:
    """Scan table rows from the points and their outcomes (row dicts or exceptions).

    An outcome is a row dict, an exception, or ``{"error": ...}`` (:func:`scan_task`).  Failed
    runs keep their start time, modes and seed, with ``status = "failed"`` and the error;
    successful ones get their :func:`scan_warnings`.  ``ln_b`` compares each mode set with the
    first mode set of the scan at the same start time.
    """
    if len(points) != len(outcomes):
        raise ValueError(f"{len(points)} scan points but {len(outcomes)} outcomes")
    rows = []
    for point, outcome in zip(points, outcomes):
        row = {column: "" for column in SCAN_COLUMNS}
        row.update(start_offset_ms=point.start_offset_ms, modes=_modes_label(point.modes), seed=point.seed)
        if isinstance(outcome, BaseException):
            row["status"] = "failed"
            row["error"] = f"{type(outcome).__name__}: {outcome}"
        elif "error" in outcome:
            row["status"] = "failed"
            row["error"] = outcome["error"]
        else:
            row.update(outcome)
            row["status"] = "ok"
            row["warning"] = scan_warnings(row)
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
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
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
    text = {"modes", "status", "error", "warning", "result_path"}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != SCAN_COLUMNS:
            raise ValueError(f"{path} is not a gwtools scan table (columns {reader.fieldnames})")
        return [
            {k: (v if k in text or v == "" else float(v)) for k, v in row.items()} for row in reader
        ]


def run_scan(
    scan: ScanConfig, *, scheduler: str | None = None, n_workers: int | None = None
) -> ScanOutputs:
    """Run every point of ``scan`` in batches on Dask and publish ``scan.csv`` and ``scan.png``.

    Every point is checked before the cluster starts (:func:`check_scan_points`: a scan with a
    point that cannot run is refused), and the output directory is locked for the whole scan.

    Parameters
    ----------
    scan : ScanConfig
    scheduler : str, optional
        Address of a running Dask scheduler; by default a local cluster is started (processes,
        one thread each: JAX already uses the cores of its process).
    n_workers : int, optional
        Workers of the local cluster (default: the number of CPU cores, at most one per batch).

    Returns
    -------
    ScanOutputs
    """
    import dask
    from distributed import Client, LocalCluster, as_completed

    points = scan_points(scan)
    check_scan_points(points)
    batches = scan_batches(scan, points)
    pad_to = max(len(batch) for batch in batches)
    run_id = new_run_id()
    directory = scan.run.output.directory
    with lock_directory(directory, run_id):
        logger.info("scan %s writing to %s", run_id, directory)
        cluster = None
        if scheduler is None:
            workers = n_workers or min(os.cpu_count() or 1, len(batches))
            # A batch keeps its worker busy for minutes; on a loaded machine its heartbeats can
            # lag past the default time-to-live, and the scheduler would restart a healthy one.
            with dask.config.set({"distributed.scheduler.worker-ttl": None}):
                cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
                )
            client = Client(cluster)
        else:
            client = Client(scheduler)
        try:
            logger.info("scan: %d points in %d batches on %s", len(points), len(batches), client)
            futures = {
                client.submit(scan_task, [points[i].config for i in batch], pad_to, retries=scan.retries,
                              pure=False): batch
                for batch in batches
            }
            outcomes: list[Mapping[str, Any] | BaseException] = [RuntimeError("not run")] * len(points)
            # collect each batch as it finishes, so a worker lost later cannot take finished results
            for future in as_completed(futures):
                batch = futures[future]
                names = ", ".join(points[i].name for i in batch)
                try:
                    for i, outcome in zip(batch, future.result()):
                        outcomes[i] = outcome
                    logger.info("scan batch done: %s", names)
                except Exception as err:  # noqa: BLE001 - reported in the table, never dropped
                    logger.warning("scan batch %s failed after %d retries: %s", names, scan.retries, err)
                    for i in batch:
                        outcomes[i] = err
                future.release()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        rows = tabulate_scan(points, outcomes)
        for row in rows:
            if row["warning"]:
                logger.warning("scan point %+.3f ms (%s): %s", row["start_offset_ms"], row["modes"], row["warning"])
        imr = None
        if scan.run.data.imr_samples is not None:
            from gwtools.ringdown.pipeline import read_imr_samples

            imr = read_imr_samples(scan.run.data.imr_samples)
        from gwtools.ringdown.plots import plot_scan

        with staged_result_set(directory, "scan", run_id) as stage:
            write_scan_table(rows, stage / "scan.csv")
            plot_scan(rows, stage / "scan.png", imr=imr, run_id=run_id)
    return ScanOutputs(
        rows=tuple(rows), table_path=directory / "scan.csv", plot_path=directory / "scan.png"
    )
