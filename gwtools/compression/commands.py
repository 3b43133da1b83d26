"""Registration of the compression subcommands (``compress``, ``regenerate``, ``logpdf``,
``restamp``, ``compress-catalog``).

Only argparse is imported here; torch and pykan are imported inside the handlers that fit,
and ``regenerate`` / ``logpdf`` import only numpy, scipy and h5py.
"""

from __future__ import annotations

import argparse
import decimal
from pathlib import Path

__all__ = ["register"]

_DEFAULT_PARAMS = "chirp_mass,mass_ratio,a_1,a_2,tilt_1,tilt_2"
_SIZE_LADDER = (
    {"hidden": 8, "n_components": 4},
    {"hidden": 12, "n_components": 6},
    {"hidden": 16, "n_components": 8},
)


def _params(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one parameter name, comma-separated")
    return names


def _sample_count(text: str) -> int:
    """A positive whole number in any notation: ``1000000``, ``1e6``, ``1.5e6``."""
    try:
        value = decimal.Decimal(text.strip().replace("_", ""))
    except decimal.InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value != value.to_integral_value() or value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive whole number; write e.g. 1000000 or 1e6")
    return int(value)


def _bounds(text: str) -> dict:
    """``a_1=0,0.99;a_2=0,0.99`` -> {"a_1": (0.0, 0.99), ...}."""
    bounds = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, _, values = item.partition("=")
        try:
            lower, upper = (float(v) for v in values.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad bounds {item!r}: write NAME=LOWER,UPPER, separated by ';'"
            ) from None
        bounds[name.strip()] = (lower, upper)
    return bounds


def _settings(args):
    from gwtools.compression.catalog import CompressionSettings

    density = {}
    for name in ("hidden", "n_components", "grid", "output_grid", "max_epochs"):
        value = getattr(args, name)
        if value is not None:
            density[name] = value
    symbolic = {}
    if args.output_library:
        symbolic["output_library"] = args.output_library
    if args.finetune_steps is not None:
        symbolic["finetune_steps"] = args.finetune_steps
    sizes = {"size_candidates": _SIZE_LADDER} if args.select_size else {}
    return CompressionSettings(
        density=density,
        symbolic=symbolic,
        seed=args.seed,
        bounds=args.bounds,
        metric_samples=args.metric_samples,
        c2st_samples=min(5000, args.metric_samples),
        **sizes,
    )


def _compress(args) -> int:
    from gwtools.compression.catalog import compress_file

    summary = compress_file(
        args.posterior, args.out, args.params, analysis=args.analysis, settings=_settings(args)
    )
    for source in ("weights", "expressions"):
        fid = summary["fidelity"][source]
        print(
            f"{summary[source + '_path']}: {summary[source + '_bytes']} bytes, held-out "
            f"{fid['heldout_log_density_transformed']:.3f} nats (transformed coordinates), "
            f"C2ST {fid['c2st_accuracy']:.3f}, max 1-D JSD {fid['jsd_max_bits']:.4f} bits"
        )
    return 0


def _regenerate(args) -> int:
    from gwtools.compression import load
    from gwtools.compression.tables import write_samples

    model = load(args.model, source=args.source, verify=args.verify)
    write_samples(model, args.n, args.out, seed=args.seed, chunk_size=args.chunk_size)
    return 0


def _logpdf(args) -> int:
    from gwtools.compression import load
    from gwtools.compression.tables import write_table
    from gwtools.io.posteriors import read_posterior

    model = load(args.model, source=args.source, verify=args.verify)
    table = read_posterior(args.points, params=model.parameters)
    values = model.log_prob(table)
    names, columns = ["log_prob"], [values]
    if model.prior is not None:
        names.append("ln_prior")
        columns.append(model.ln_prior(table))
    write_table(args.out, names, columns)
    return 0


def _restamp(args) -> int:
    from gwtools.compression.model_file import restamp

    for path in args.files:
        print(f"{path}: {restamp(path)}")
    return 0


def _compress_catalog(args) -> int:
    from gwtools.compression.catalog import (
        SUMMARY_COLUMNS,
        compress_catalog,
        summary_row,
    )

    summaries = compress_catalog(
        args.directory,
        args.out,
        args.params,
        scheduler=args.scheduler,
        n_workers=args.workers,
        settings=_settings(args),
    )
    shown = ("file", "weights_bytes", "expressions_bytes", "heldout_log_density_weights",
             "heldout_log_density_expressions", "c2st_weights", "error")
    print("  ".join(shown))
    for summary in summaries:
        row = summary_row(summary)
        print("  ".join(
            f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]) for k in shown
        ))
    print(f"summary table: {Path(args.out) / 'summary.csv'} (columns: {', '.join(SUMMARY_COLUMNS)})")
    failed = [s for s in summaries if "error" in s]
    return 1 if failed else 0


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", type=_params, default=_params(_DEFAULT_PARAMS),
                   help=f"comma-separated bilby parameter names (default: {_DEFAULT_PARAMS})")
    p.add_argument("--hidden", type=int,
                   help="hidden KAN width (default: 10 or 12 for the weights, whichever "
                        "validates better; 12 for the network the formulas come from)")
    p.add_argument("--n-components", dest="n_components", type=int,
                   help="Gaussians per conditional (default 6)")
    p.add_argument("--grid", type=int, help="spline grid intervals, first layer (default 5)")
    p.add_argument("--output-grid", dest="output_grid", type=int,
                   help="spline grid intervals, output layer (default: 1 for the weights, 5 for "
                        "the network the formulas come from)")
    p.add_argument("--max-epochs", dest="max_epochs", type=int, help="training epochs at most")
    p.add_argument("--finetune-steps", dest="finetune_steps", type=int,
                   help="Adam steps at most of the symbolic fine-tuning after each layer becomes "
                        "formulas (default 8000, with early stopping); fewer for a quick look")
    p.add_argument("--seed", type=int, default=0, help="seed of split, fit and metrics")
    p.add_argument("--bounds", type=_bounds, default={},
                   help="support overrides, e.g. 'a_1=0,0.99;a_2=0,0.99' (the analysis prior)")
    p.add_argument("--output-library", dest="output_library", type=_params,
                   help="pykan functions tried on output-layer edges (default x,x^2,tanh); "
                        "adding sin helped the sky position of some 11-parameter posteriors "
                        "and hurt others, at 15-30%% more formula bytes: compare the metrics")
    p.add_argument("--select-size", dest="select_size", action="store_true",
                   help="fit hidden/components 8/4, 12/6, 16/8 (not widths 10 and 12) and keep "
                        "the smallest within 0.02 nats of the best validation loss")
    p.add_argument("--metric-samples", dest="metric_samples", type=int, default=20000,
                   help="samples regenerated to measure fidelity (default 20000)")


def _add_verify_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="load a model file whose content checksum no longer matches (a deliberate "
                        "edit; `gwtools restamp FILE` accepts it for good)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the compression subcommands to the top-level parser."""
    p = sub.add_parser("compress", help="compress a posterior file into KAN weights and formulas")
    p.add_argument("posterior", help="posterior file (PyCBC, GWTC, bilby, CSV/NumPy)")
    p.add_argument("--out", required=True,
                   help="model stem: writes OUT.weights.npz and OUT.expr.json")
    p.add_argument("--analysis", help="analysis label of a multi-analysis file")
    _add_model_options(p)
    p.set_defaults(handler=_compress)

    p = sub.add_parser("regenerate", help="draw samples from a compressed posterior")
    p.add_argument("model", help="model stem, or its .weights.npz / .expr.json file")
    p.add_argument("--n", type=_sample_count, required=True,
                   help="number of samples, e.g. 1000000 or 1e6 (written in chunks, in constant "
                        "memory)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .h5 (one dataset per parameter) or .csv")
    p.add_argument("--from", dest="source", choices=("weights", "expressions"), default="weights",
                   help="which file of a model stem to use (default weights)")
    p.add_argument("--chunk-size", dest="chunk_size", type=_sample_count, default=1 << 18,
                   help="samples per chunk (default 262144; the samples do not depend on it)")
    _add_verify_option(p)
    p.set_defaults(handler=_regenerate)

    p = sub.add_parser("logpdf", help="log posterior density of a compressed posterior at points")
    p.add_argument("model", help="model stem, or its .weights.npz / .expr.json file")
    p.add_argument("points", help="points file (any posterior layout, e.g. CSV with a header)")
    p.add_argument("--out", required=True, help="output .h5 or .csv with a log_prob column")
    p.add_argument("--from", dest="source", choices=("weights", "expressions"), default="weights")
    _add_verify_option(p)
    p.set_defaults(handler=_logpdf)

    p = sub.add_parser("restamp",
                       help="accept deliberately edited model files: check them, store new checksums")
    p.add_argument("files", nargs="+", metavar="FILE", help="MODEL.weights.npz or MODEL.expr.json")
    p.set_defaults(handler=_restamp)

    p = sub.add_parser("compress-catalog",
                       help="compress every posterior file of a directory in parallel (Dask)")
    p.add_argument("directory", help="directory of posterior files")
    p.add_argument("--out", required=True, help="output directory (models and summary.csv)")
    p.add_argument("--scheduler", help="dask scheduler address (default: a local cluster)")
    p.add_argument("--workers", type=int, help="local cluster workers (default: CPU count)")
    _add_model_options(p)
    p.set_defaults(handler=_compress_catalog)
