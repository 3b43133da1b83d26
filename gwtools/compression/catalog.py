"""Compress one posterior file, or a whole catalog of them on a Dask cluster.

:func:`compress_file` is the end-to-end pipeline behind ``gwtools compress``: read the file
(:func:`gwtools.io.posteriors.read_posterior`), map the parameters to the real line
(:class:`~gwtools.compression.transforms.TransformStack`), split 80/20 into training and
held-out samples, fit the KAN density (:mod:`.kan_density`), make it symbolic
(:mod:`.symbolic`), store float16 weights and the formulas, and measure the fidelity of what
was stored (the files are re-read through the numpy evaluator, so quantisation and formula
rounding are included in the metrics).  If the file carries prior draws, a second, smaller
model of the prior is stored so that regenerated samples come with ``ln_prior``.

:func:`compress_catalog` maps :func:`compress_file` over a directory with ``dask.distributed``
(a local cluster by default, or any scheduler address), one process per file.  It holds the
lock of its output folder and publishes the models and summaries as one result set,
``catalog`` (:mod:`gwtools.io.outputs`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from gwtools.compression.model_file import (
    DensityHeader,
    ModelHeader,
    model_paths,
    posterior_from_expressions,
    posterior_from_weights,
    write_expressions,
    write_weights,
)
from gwtools.io.atomic import atomic_path
from gwtools.io.outputs import lock_directory, new_run_id, staged_result_set

__all__ = [
    "DEFAULT_PARAMETERS",
    "MIN_SAMPLES",
    "RECOMMENDED_SAMPLES",
    "SUMMARY_COLUMNS",
    "CompressionSettings",
    "catalog_task",
    "compress_catalog",
    "compress_file",
    "heldout_split",
    "posterior_files",
    "summary_row",
]

logger = logging.getLogger(__name__)

#: The six intrinsic parameters of a compact binary: chirp mass, mass ratio, spin magnitudes
#: and tilts.
DEFAULT_PARAMETERS = ("chirp_mass", "mass_ratio", "a_1", "a_2", "tilt_1", "tilt_2")
#: Fewest posterior samples :func:`compress_file` accepts.  At the default splits, 100 leave 20
#: held out for the metrics and 64 to fit the density (16 more decide when to stop).
MIN_SAMPLES = 100
#: Below this many posterior samples :func:`compress_file` warns that the fidelity metrics are
#: noisy: at 2000, the held-out log density averages 400 samples and the C2ST compares 2000
#: per class (standard error about 0.008, against about 0.016 at 500).
RECOMMENDED_SAMPLES = 2000
#: Fewest samples the density fit itself takes (:func:`gwtools.compression.kan_density.fit`).
_MIN_FIT_SAMPLES = 20
_POSTERIOR_SUFFIXES = (".hdf", ".h5", ".hdf5", ".json", ".csv", ".dat", ".txt", ".npy", ".npz")
SUMMARY_COLUMNS = (
    "file", "event", "n_parameters", "n_samples", "weights_bytes", "expressions_bytes",
    "heldout_log_density_weights", "heldout_log_density_expressions", "c2st_weights",
    "c2st_expressions", "jsd_max_bits_weights", "fit_seconds", "error",
)


@dataclass(frozen=True)
class CompressionSettings:
    """Everything :func:`compress_file` needs besides the paths (plain data, picklable).

    Parameters
    ----------
    density : dict
        Keyword arguments of :class:`~gwtools.compression.kan_density.KANDensityConfig`.
    prior_density : dict
        The same for the prior model (smaller by default: a prior is simple).
    symbolic : dict
        Keyword arguments of :class:`~gwtools.compression.symbolic.SymbolicConfig`.
    heldout_fraction : float
        Share of posterior samples kept out of the fit for the metrics.
    metric_samples : int
        Samples regenerated for the sample-based metrics.
    c2st_samples : int
        Rows per class in the classifier two-sample test.
    seed : int
    torch_threads : int
        Threads torch may use while fitting (1 is usually fastest for these small networks).
    bounds : dict
        Per-parameter ``(lower, upper)`` overrides of the physical supports of the transforms,
        e.g. the analysis prior's ``a_1`` range ``(0, 0.99)``: a posterior piled up against a
        prior edge is easier to model when that edge maps to infinity.
    size_candidates : tuple of dict
        Network sizes to choose from (e.g. ``({"hidden": 8, "n_components": 4}, ...)``),
        each setting what ``density`` leaves unset: explicit ``density`` settings win, and
        candidates they make identical are fitted once; empty: fit ``density`` only.  By
        default the hidden width is 10 or 12.  On the shared 11-parameter posteriors width 10
        matched width 12 in held-out density (-0.07 to +0.34 nats, five files) and samples
        about a fifth faster (the output layer's arithmetic scales with the hidden units
        each dimension sees); fitting both and keeping the better also guards against a fit
        that stopped early (whose C2ST can be several hundredths worse).
    size_tolerance : float
        The smallest candidate (by ``hidden * n_components``) whose validation loss is within
        this many nats of the best one is kept.
    symbolic_density : dict
        Overrides of the chosen network's settings for the spline network that the symbolic
        stage turns into formulas, where ``density`` does not set them itself; ``{}``: the
        weights network itself.  By default its output layer has five grid intervals and
        its width is 12: one interval generalises better as splines (the weights file), five
        give better formulas (the one-interval network's lose 0.02-0.14 nats of held-out
        density at 6 parameters, and some C2ST at 11); and formulas from width 10 lose
        0.03-0.13 nats on most posteriors.  The second fit costs 10-30 s.
    """

    density: dict = field(default_factory=dict)
    prior_density: dict = field(default_factory=lambda: {"hidden": 8, "n_components": 4})
    symbolic: dict = field(default_factory=dict)
    heldout_fraction: float = 0.2
    metric_samples: int = 20000
    c2st_samples: int = 5000
    seed: int = 0
    torch_threads: int = 1
    bounds: dict = field(default_factory=dict)
    size_candidates: tuple = ({"hidden": 10}, {"hidden": 12})
    size_tolerance: float = 0.02
    symbolic_density: dict = field(default_factory=lambda: {"output_grid": 5, "hidden": 12})

    def __post_init__(self):
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        if self.metric_samples < 100:
            raise ValueError(f"metric_samples must be >= 100, got {self.metric_samples}")


def heldout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (held-out, training) row indices; the same for the KAN model and baselines."""
    order = np.random.default_rng(seed).permutation(n)
    n_heldout = max(round(fraction * n), 1)
    return order[:n_heldout], order[n_heldout:]


def _check_sample_count(n: int, name: str, settings: CompressionSettings) -> None:
    """Refuse fewer than :data:`MIN_SAMPLES` posterior samples, warn below
    :data:`RECOMMENDED_SAMPLES`; messages quote the counts of the file, before any split."""
    if n < MIN_SAMPLES:
        raise ValueError(
            f"{name} has {n} posterior samples; compression needs at least {MIN_SAMPLES} "
            f"({RECOMMENDED_SAMPLES} or more for trustworthy fidelity metrics)"
        )
    n_heldout = max(round(settings.heldout_fraction * n), 1)
    if n - n_heldout < _MIN_FIT_SAMPLES:
        raise ValueError(
            f"{name} has {n} posterior samples; holding out {n_heldout} "
            f"(heldout_fraction {settings.heldout_fraction}) leaves {n - n_heldout} to fit, "
            f"fewer than {_MIN_FIT_SAMPLES}: lower heldout_fraction"
        )
    if n < RECOMMENDED_SAMPLES:
        per_class = min(n, settings.metric_samples, settings.c2st_samples)
        logger.warning(
            "%s has %d posterior samples, fewer than the %d recommended: the fidelity metrics "
            "are noisy (held-out log density from %d held-out samples, C2ST from %d samples "
            "per class, standard error about %.3f)", name, n, RECOMMENDED_SAMPLES, n_heldout,
            per_class, 0.5 / math.sqrt(2 * per_class))


def _quantised(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    # Coefficients tolerate half precision (relative error 5e-4, below the fit's noise);
    # grids and biases set locations, so they keep single precision.
    out = {}
    for key, value in arrays.items():
        small = key.endswith(("_coef", "_scale_base"))
        out[prefix + key] = value.astype(np.float16 if small else np.float32)
    return out


def _fit_density(y_train, density_kwargs, symbolic_kwargs, seed, candidates=(), tolerance=0.02,
                 symbolic_density=None):
    from gwtools.compression import kan_density, pykan_adapter, symbolic

    tried = []
    configs = dict.fromkeys(  # in order, without duplicates
        kan_density.KANDensityConfig(**{"seed": seed, **candidate, **density_kwargs})
        for candidate in candidates or ({},)
    )
    for config in configs:
        fit = kan_density.fit(y_train, config)
        tried.append((fit.validation_loss[fit.best_epoch], config.hidden * config.n_components, fit))
    # The smallest network within `tolerance` nats of the best validation loss: sizes are
    # chosen on the training data's own validation split, never on the held-out samples.
    best = min(loss for loss, _, _ in tried)
    fitted = min((t for t in tried if t[0] <= best + tolerance), key=lambda t: t[1])[2]
    config = fitted.config
    # The formulas may come from a second network (other output grid or width), fitted to
    # the same samples, hence with the same standardisation.
    source = fitted
    overrides = {k: v for k, v in (symbolic_density or {}).items() if k not in density_kwargs}
    source_config = replace(config, **overrides)
    if source_config != config:
        source = kan_density.fit(y_train, source_config)
    sym = symbolic.fit_symbolic(
        source, y_train, symbolic.SymbolicConfig(**{"seed": seed, **symbolic_kwargs})
    )
    part = DensityHeader(n_dim=y_train.shape[1], hidden=config.hidden,
                         n_components=config.n_components, mean=fitted.mean, scale=fitted.scale)
    expressions_part = replace(part, hidden=source_config.hidden,
                               n_components=source_config.n_components, layers=sym.formulas)
    info = {
        "config": config.to_dict(),
        "symbolic_config": _symbolic_settings(symbolic_kwargs, seed),
        "epochs": len(fitted.validation_loss),
        "best_epoch": fitted.best_epoch,
        "validation_loss": fitted.validation_loss[fitted.best_epoch],
        "fit_seconds": sum(t[2].fit_seconds for t in tried)
        + (source.fit_seconds if source is not fitted else 0.0),
        "size_candidates": [
            {"hidden": t[2].config.hidden, "n_components": t[2].config.n_components,
             "validation_loss": t[0]} for t in tried
        ],
        "symbolic_source_config": source_config.to_dict(),
        "symbolic_source_validation_loss": source.validation_loss[source.best_epoch],
        "symbolic_seconds": sym.seconds,
        "edge_functions": sym.function_counts,
        "edge_second_functions": sym.second_term_counts,
    }
    return pykan_adapter.spline_arrays(fitted.kan), part, expressions_part, info


def _symbolic_settings(symbolic_kwargs: dict, seed: int) -> dict:
    """The resolved symbolic settings, for provenance."""
    from gwtools.compression.symbolic import SymbolicConfig

    return SymbolicConfig(**{"seed": seed, **symbolic_kwargs}).to_dict()


def _metrics(posterior, x_all, y_all, y_heldout, x_heldout, settings) -> dict:
    from gwtools.compression import metrics

    start = time.perf_counter()
    regenerated = posterior.sample(settings.metric_samples, seed=settings.seed + 1)
    sample_seconds = time.perf_counter() - start
    y_regen = posterior.transforms.forward(regenerated)
    report = metrics.fidelity_report(
        y_all, y_regen, posterior.parameters, seed=settings.seed, c2st_samples=settings.c2st_samples
    )
    pp = metrics.pp_calibration(y_heldout, y_regen)
    report.update(
        heldout_log_density_transformed=metrics.heldout_log_density(
            posterior.density.log_prob_unbounded, y_heldout
        ),
        heldout_log_density=metrics.heldout_log_density(posterior.log_prob, x_heldout),
        pp_ks_pvalue_min=float(np.min(pp["ks_pvalue"])),
        samples_per_second=settings.metric_samples / sample_seconds,
        coordinates="transformed (log/logit) for JSD, MMD, C2ST; heldout_log_density in both",
    )
    return report


def compress_file(
    path: str | os.PathLike,
    out: str | os.PathLike,
    parameters: Sequence[str] = DEFAULT_PARAMETERS,
    *,
    analysis: str | None = None,
    settings: CompressionSettings | None = None,
) -> dict:
    """Compress one posterior file into ``OUT.weights.npz`` and ``OUT.expr.json``.

    Parameters
    ----------
    path : str or path
        Posterior file in any layout :func:`gwtools.io.posteriors.read_posterior` reads.
    out : str or path
        Model stem; the two files get the suffixes ``.weights.npz`` and ``.expr.json``.
    parameters : sequence of str
        bilby names to compress, in this order.
    analysis : str, optional
        Analysis label of a multi-analysis file (default: the file's preferred one).
    settings : CompressionSettings, optional

    Returns
    -------
    dict
        Summary: paths, sizes in bytes, fit seconds and the fidelity metrics of both files.

    Raises
    ------
    ValueError
        If the file has fewer than :data:`MIN_SAMPLES` posterior samples (below
        :data:`RECOMMENDED_SAMPLES` a warning is logged instead), or for bad parameters.
        Prior draws fewer than :data:`MIN_SAMPLES` are left out, with a warning.
    """
    import torch

    from gwtools import __version__
    from gwtools.compression.transforms import TransformStack
    from gwtools.io.posteriors import read_posterior

    settings = settings or CompressionSettings()
    parameters = tuple(parameters)
    if not parameters:
        raise ValueError("no parameters given; pass e.g. --params chirp_mass,mass_ratio,a_1")
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.torch_threads)
    try:
        table = read_posterior(path, analysis=analysis, params=parameters)
        x = table.array(parameters)
        _check_sample_count(len(x), Path(path).name, settings)
        prior_x = None
        if table.prior_samples is not None and all(p in table.prior_samples for p in parameters):
            prior_x = table.prior_array(parameters)
            if len(prior_x) < MIN_SAMPLES:
                logger.warning("%s has %d prior samples, fewer than %d: no prior model is "
                               "stored (no ln_prior)", Path(path).name, len(prior_x), MIN_SAMPLES)
                prior_x = None
        # The prior draws go through the same transforms, so they must fit the supports too.
        stack = TransformStack.default(parameters, x, bounds=settings.bounds,
                                       support_samples=prior_x)
        y = stack.forward(x)
        heldout, train = heldout_split(len(y), settings.heldout_fraction, settings.seed)
        n_heldout = len(heldout)

        spline, part, expressions_part, info = _fit_density(
            y[train], settings.density, settings.symbolic, settings.seed,
            settings.size_candidates, settings.size_tolerance, settings.symbolic_density,
        )
        arrays = _quantised(spline, "posterior_")
        prior_info = p_part = p_expressions_part = None
        if prior_x is not None:
            p_spline, p_part, p_expressions_part, prior_info = _fit_density(
                stack.forward(prior_x), settings.prior_density, settings.symbolic, settings.seed,
                symbolic_density=settings.symbolic_density,
            )
            arrays.update(_quantised(p_spline, "prior_"))
        metadata = {
            "gwtools_version": __version__,
            "source_file": Path(path).name,
            "source_sha256": table.metadata.get("sha256"),
            "event": table.metadata.get("event"),
            "analysis": table.metadata.get("analysis"),
            "source_format": table.metadata.get("format"),
            "n_samples": len(x),
            "n_train": len(train),
            "n_heldout": int(n_heldout),
            "split_seed": settings.seed,
            "posterior_fit": info,
            "prior_fit": prior_info,
            "parameter_bytes": int(sum(a.nbytes for a in arrays.values())),
        }
        weights_header = ModelHeader(parameters, stack, posterior=part, prior=p_part)
        expressions_header = ModelHeader(parameters, stack, posterior=expressions_part,
                                         prior=p_expressions_part)
        weights_path, expressions_path = model_paths(out)
        results = {
            "weights": _metrics(posterior_from_weights(weights_header, arrays), x, y, y[heldout],
                                x[heldout], settings),
            "expressions": _metrics(posterior_from_expressions(expressions_header), x, y,
                                    y[heldout], x[heldout], settings),
        }
        weights_bytes = write_weights(
            weights_path,
            replace(weights_header, metadata={**metadata, "fidelity": results["weights"]}),
            arrays,
        )
        # The formulas file is meant to be small and readable: scalar metrics only.
        summary_keys = ("heldout_log_density_transformed", "heldout_log_density",
                        "jsd_median_bits", "jsd_max_bits", "c2st_accuracy", "ci_shift_max")
        expressions_metadata = {
            **{k: v for k, v in metadata.items() if k not in ("posterior_fit", "prior_fit")},
            "fidelity": {k: results["expressions"][k] for k in summary_keys},
        }
        expressions_bytes = write_expressions(
            expressions_path, replace(expressions_header, metadata=expressions_metadata))
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    logger.info(
        "%s: weights %d B (held-out %.3f nats), expressions %d B (held-out %.3f nats), %.0f s",
        Path(path).name,
        weights_bytes,
        results["weights"]["heldout_log_density_transformed"],
        expressions_bytes,
        results["expressions"]["heldout_log_density_transformed"],
        seconds,
    )
    return {
        "file": str(path),
        "event": table.metadata.get("event"),
        "parameters": list(parameters),
        "n_parameters": len(parameters),
        "n_samples": len(x),
        "weights_path": str(weights_path),
        "expressions_path": str(expressions_path),
        "weights_bytes": weights_bytes,
        "expressions_bytes": expressions_bytes,
        "parameter_bytes": metadata["parameter_bytes"],
        "fit_seconds": seconds,
        "has_prior": prior_x is not None,
        "fidelity": results,
    }


def posterior_files(directory: str | os.PathLike) -> list[Path]:
    """Posterior files of a directory (by suffix), sorted by name.

    Raises
    ------
    FileNotFoundError
        If ``directory`` is not a directory.
    ValueError
        If it holds no file with a posterior suffix.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory of posterior files")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in _POSTERIOR_SUFFIXES)
    if not files:
        raise ValueError(f"{directory} holds no posterior files (looked for {_POSTERIOR_SUFFIXES})")
    return files


def summary_row(summary: dict) -> dict:
    """The flat table row (:data:`SUMMARY_COLUMNS`) of one :func:`compress_file` summary."""
    if "error" in summary:
        return {key: summary.get(key, "") for key in SUMMARY_COLUMNS}
    fidelity = summary["fidelity"]
    return {
        "file": Path(summary["file"]).name,
        "event": summary["event"],
        "n_parameters": summary["n_parameters"],
        "n_samples": summary["n_samples"],
        "weights_bytes": summary["weights_bytes"],
        "expressions_bytes": summary["expressions_bytes"],
        "heldout_log_density_weights": fidelity["weights"]["heldout_log_density_transformed"],
        "heldout_log_density_expressions": fidelity["expressions"][
            "heldout_log_density_transformed"
        ],
        "c2st_weights": fidelity["weights"]["c2st_accuracy"],
        "c2st_expressions": fidelity["expressions"]["c2st_accuracy"],
        "jsd_max_bits_weights": fidelity["weights"]["jsd_max_bits"],
        "fit_seconds": summary["fit_seconds"],
        "error": "",
    }


def catalog_task(path: str, out: str, parameters: tuple, settings: CompressionSettings) -> dict:
    """One catalog entry; failures become an ``error`` entry instead of stopping the catalog."""
    try:
        return compress_file(path, out, parameters, settings=settings)
    except (ValueError, KeyError, FileNotFoundError, OSError) as err:
        logger.warning("%s: not compressed: %s", path, err)
        return {"file": Path(path).name, "error": f"{type(err).__name__}: {err}"}


def compress_catalog(
    directory: str | os.PathLike,
    out_dir: str | os.PathLike,
    parameters: Sequence[str] = DEFAULT_PARAMETERS,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    settings: CompressionSettings | None = None,
) -> list[dict]:
    """Compress every posterior file of ``directory`` in parallel with Dask.

    Parameters
    ----------
    directory : str or path
    out_dir : str or path
        Receives ``<file stem>.weights.npz`` / ``.expr.json`` per file, ``summary.csv`` and
        ``summary.jsonl`` (full per-file summaries), published together with the manifest
        ``catalog.manifest.json`` once every file is done; the folder is locked meanwhile.
    parameters : sequence of str
    scheduler : str, optional
        Address of a running ``dask.distributed`` scheduler (e.g. ``tcp://host:8786``); by
        default a :class:`~dask.distributed.LocalCluster` of single-threaded processes.
    n_workers : int, optional
        Workers of the local cluster (default: the CPU count).
    settings : CompressionSettings, optional

    Returns
    -------
    list of dict
        One summary per file (an ``error`` entry for files that could not be compressed).
    """
    files = posterior_files(directory)
    out_dir = Path(out_dir)
    settings = settings or CompressionSettings()
    parameters = tuple(parameters)
    run_id = new_run_id()
    with lock_directory(out_dir, run_id), staged_result_set(out_dir, "catalog", run_id) as stage:
        summaries = _compress_on_dask(files, stage, parameters, settings, scheduler, n_workers)
        # the summaries name the models where they are published, not where they were staged
        for summary in summaries:
            for key in ("weights_path", "expressions_path"):
                if key in summary:
                    summary[key] = str(out_dir / Path(summary[key]).name)
        rows = [summary_row(s) for s in summaries]
        with atomic_path(stage / "summary.csv") as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        with atomic_path(stage / "summary.jsonl") as tmp:
            Path(tmp).write_text("".join(json.dumps(s, default=float) + "\n" for s in summaries))
    return summaries


def _compress_on_dask(files, out_dir, parameters, settings, scheduler, n_workers) -> list[dict]:
    """:func:`catalog_task` of every file on Dask, models written into ``out_dir``."""
    from dask.distributed import Client, LocalCluster

    if scheduler is None:
        cluster = LocalCluster(
            n_workers=n_workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: never clash with a running cluster
        )
        client = Client(cluster)
    else:
        cluster, client = None, Client(scheduler)
    try:
        futures = [
            client.submit(
                catalog_task, str(f), str(out_dir / f.stem), parameters, settings, pure=False
            )
            for f in files
        ]
        return client.gather(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
