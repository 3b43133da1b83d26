"""Size versus fidelity of KAN posterior compression against simple baselines.

    .venv/bin/python benchmarks/compression.py                       # every shared posterior
    .venv/bin/python benchmarks/compression.py --match 150914 --sets 6,11
    .venv/bin/python benchmarks/compression.py --quick --match 150914  # small settings, minutes
    .venv/bin/python benchmarks/compression.py --speed OUT/MODEL ...      # regeneration speed only

For each posterior file under ``../shared/data/posteriors`` and each parameter set (6
intrinsic parameters; 11 adding distance, cos inclination, ra, sin dec, polarisation), with the
same 80/20 train/held-out split and the same transforms for every method:

* KAN weights and KAN expressions (``gwtools.compression.catalog.compress_file``: the files
  are written and re-read, so float16 storage and formula rounding are included),
* Gaussian mixtures (scikit-learn, full covariance) of several sizes, a Gaussian KDE (scipy),
* a neural spline flow from zuko (Durkan et al. 2019, arXiv:1906.04032), float32 parameters.

Reported per method: bytes (file size for KAN, float32 parameters for baselines), fit seconds,
samples per second (one process; BLAS threads as set in the environment), held-out mean log
density in the transformed coordinates and in the physical parameters, 1-D JSD (median, max;
bits), C2ST accuracy, MMD, 90% interval shifts.  Prints a table and one JSON line per row, and
writes ``frontier.png`` (size vs held-out log density) and ``results.jsonl`` to ``--out``.

``--speed`` instead times ``sample`` of existing models (stems written by a benchmark run), from
the weights and from the expressions, on one BLAS thread: samples per CPU second
(``time.process_time``), best of a few repeats in one process, and one call for a million
samples in a fresh process (what ``gwtools regenerate`` does).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "posteriors"
SETS = {
    6: ("chirp_mass", "mass_ratio", "a_1", "a_2", "tilt_1", "tilt_2"),
    11: ("chirp_mass", "mass_ratio", "a_1", "a_2", "tilt_1", "tilt_2",
         "luminosity_distance", "cos_iota", "ra", "sin_dec", "psi"),
}
# The 2-OGC and O2 PyCBC runs draw spin magnitudes on [0, 0.99].
SPIN_PRIOR_MAX = 0.99


def _bounds(x: np.ndarray, names) -> dict:
    """Tighter prior bounds for the spin magnitudes where every sample respects them."""
    return {
        name: (0.0, SPIN_PRIOR_MAX)
        for i, name in enumerate(names)
        if name in ("a_1", "a_2") and x[:, i].max() < SPIN_PRIOR_MAX
    }


def _fit_flow(y_train: np.ndarray, seed: int, max_epochs: int):
    """zuko neural spline flow on standardised coordinates, Adam with early stopping."""
    import torch
    import zuko

    torch.manual_seed(seed)
    mean, scale = y_train.mean(axis=0), y_train.std(axis=0)
    z = torch.as_tensor((y_train - mean) / scale, dtype=torch.float32)
    order = torch.randperm(len(z))
    n_val = len(z) // 5
    z_val, z_fit = z[order[:n_val]], z[order[n_val:]]
    flow = zuko.flows.NSF(features=y_train.shape[1], transforms=3, hidden_features=(64, 64))
    optimiser = torch.optim.Adam(flow.parameters(), lr=1e-3)
    best, best_state, waited = math.inf, None, 0
    for _ in range(max_epochs):
        for rows in torch.randperm(len(z_fit)).split(256):
            loss = -flow().log_prob(z_fit[rows]).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            val = -float(flow().log_prob(z_val).mean())
        if val < best - 1e-4:
            best, waited = val, 0
            best_state = {k: v.clone() for k, v in flow.state_dict().items()}
        else:
            waited += 1
            if waited >= 8:
                break
    flow.load_state_dict(best_state)
    n_bytes = 4 * sum(p.numel() for p in flow.parameters())

    def log_prob_transformed(y):
        with torch.no_grad():
            zz = torch.as_tensor((y - mean) / scale, dtype=torch.float32)
            return flow().log_prob(zz).double().numpy() - np.log(scale).sum()

    def sample(n, seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            return flow().sample((n,)).double().numpy() * scale + mean

    return log_prob_transformed, sample, n_bytes


def _row(method, n_bytes, fit_seconds, log_prob_transformed, log_prob_physical, sample_y,
         y, x, heldout, names, n_metric, c2st_samples, seed):
    from gwtools.compression import metrics

    start = time.perf_counter()
    y_regen = sample_y(n_metric)
    rate = n_metric / (time.perf_counter() - start)
    report = metrics.fidelity_report(y, y_regen, names, seed=seed, c2st_samples=c2st_samples)
    return {
        "method": method,
        "bytes": int(n_bytes),
        "fit_seconds": fit_seconds,
        "samples_per_second": rate,
        "heldout_log_density_transformed": float(np.mean(log_prob_transformed(y[heldout]))),
        "heldout_log_density": float(np.mean(log_prob_physical(x[heldout]))),
        **{k: report[k] for k in ("jsd_median_bits", "jsd_max_bits", "c2st_accuracy", "mmd2",
                                  "ci_shift_max")},
    }


def benchmark_file(path: Path, names, out_dir: Path, args) -> list[dict]:
    from gwtools.compression import baselines, load
    from gwtools.compression.catalog import CompressionSettings, compress_file, heldout_split
    from gwtools.compression.transforms import TransformStack
    from gwtools.io.posteriors import read_posterior

    table = read_posterior(path, params=names)
    x = table.array(names)
    bounds = _bounds(x, names)
    if table.prior_samples is not None and all(n in table.prior_samples for n in bounds):
        prior = table.prior_array(names)
        bounds = {n: b for n, b in bounds.items() if prior[:, names.index(n)].max() < b[1]}
    stack = TransformStack.default(names, x, bounds=bounds)
    y = stack.forward(x)
    heldout, train = heldout_split(len(x), 0.2, args.seed)
    common = dict(y=y, x=x, heldout=heldout, names=names, n_metric=args.metric_samples,
                  c2st_samples=args.c2st_samples, seed=args.seed)
    rows = []

    settings = CompressionSettings(
        density=dict(args.density), symbolic=dict(args.symbolic), bounds=bounds,
        metric_samples=args.metric_samples, c2st_samples=args.c2st_samples, seed=args.seed,
    )
    if not args.baselines_only:
        stem = out_dir / f"{path.stem}-{len(names)}"
        summary = compress_file(path, stem, names, settings=settings)
        for source in ("weights", "expressions"):
            model = load(stem, source=source)
            rows.append(_row(
                f"KAN {source}", summary[f"{source}_bytes"], summary["fit_seconds"],
                model.density.log_prob_unbounded, model.log_prob,
                lambda n, m=model: stack.forward(m.sample(n, seed=args.seed + 1)), **common,
            ))

    for k in () if args.kan_only else args.gmm:
        start = time.perf_counter()
        gmm = baselines.fit_gaussian_mixture(x[train], names, k, seed=args.seed, transforms=stack)
        rows.append(_row(
            f"GMM {k}", gmm.n_bytes, time.perf_counter() - start, gmm.log_prob_transformed,
            gmm.log_prob, lambda n, g=gmm: stack.forward(g.sample(n, seed=args.seed + 1)),
            **common,
        ))
    if not args.kan_only:
        start = time.perf_counter()
        kde = baselines.fit_gaussian_kde(x[train], names, transforms=stack)
        rows.append(_row(
            "KDE", kde.n_bytes, time.perf_counter() - start, kde.log_prob_transformed,
            kde.log_prob, lambda n: stack.forward(kde.sample(n, seed=args.seed + 1)), **common,
        ))
    if args.flow_epochs > 0 and not args.kan_only:
        start = time.perf_counter()
        flow_lp, flow_sample, flow_bytes = _fit_flow(y[train], args.seed, args.flow_epochs)
        fit_seconds = time.perf_counter() - start

        def flow_physical(xx):
            return flow_lp(stack.forward(xx)) + stack.log_abs_det_jacobian(xx)

        rows.append(_row(
            "zuko NSF", flow_bytes, fit_seconds, flow_lp, flow_physical,
            lambda n: flow_sample(n, args.seed + 1), **common,
        ))
    for row in rows:
        row.update(file=path.name, n_parameters=len(names), bounds=bounds)
    return rows


_FIRST_CALL = """
import sys, time
from threadpoolctl import threadpool_limits
from gwtools.compression import load
with threadpool_limits(limits=1):
    posterior = load(sys.argv[1], source=sys.argv[2])
    posterior.sample(1000, seed=0)
    start = time.process_time()
    posterior.sample(int(sys.argv[3]), seed=1)
    print(time.process_time() - start)
"""


def regeneration_speed(models, n: int = 200_000, repeats: int = 5,
                       first_n: int = 1_000_000) -> list[dict]:
    """Samples per CPU second of ``load(model, source).sample`` on one BLAS thread.

    ``samples_per_cpu_second``: best of ``repeats`` calls for ``n`` samples in one process
    (the sampler's own cost).  ``first_call_samples_per_cpu_second``: one call for
    ``first_n`` samples in a fresh process, as ``gwtools regenerate`` makes it; it also pays
    for first touching the memory of the result and of the work buffers.
    """
    from threadpoolctl import threadpool_limits

    from gwtools.compression import load

    rows = []
    with threadpool_limits(limits=1):
        for model in models:
            for source in ("weights", "expressions"):
                posterior = load(model, source=source)
                posterior.sample(1000, seed=0)  # first-call set-up out of the timing
                best = math.inf
                for repeat in range(repeats):
                    start = time.process_time()
                    posterior.sample(n, seed=repeat)
                    best = min(best, time.process_time() - start)
                fresh = subprocess.run(
                    [sys.executable, "-c", _FIRST_CALL, str(model), source, str(first_n)],
                    capture_output=True, text=True, check=True)
                rows.append({"model": str(model), "source": source,
                             "n_parameters": len(posterior.parameters),
                             "samples_per_cpu_second": n / best,
                             "first_call_samples_per_cpu_second":
                                 first_n / float(fresh.stdout.split()[-1])})
    return rows


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["file"], r["n_parameters"]) for r in rows})
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), squeeze=False)
    for ax, (name, d) in zip(axes[0], groups):
        sel = [r for r in rows if r["file"] == name and r["n_parameters"] == d]
        gmm = sorted((r for r in sel if r["method"].startswith("GMM")), key=lambda r: r["bytes"])
        ax.plot([r["bytes"] for r in gmm], [r["heldout_log_density_transformed"] for r in gmm],
                "o-", color="grey", label="Gaussian mixtures")
        for r in sel:
            if not r["method"].startswith("GMM"):
                ax.plot(r["bytes"], r["heldout_log_density_transformed"], "*", ms=12,
                        label=r["method"])
        ax.set_xscale("log")
        ax.set_xlabel("size (bytes)")
        ax.set_ylabel("held-out mean log density (nats, transformed)")
        ax.set_title(f"{name[:32]}  d={d}", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _overrides(items: list[str]) -> dict:
    """``["hidden=16", "learning_rate=1e-3"]`` -> {"hidden": 16, "learning_rate": 0.001}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"bad override {item!r}: write KEY=VALUE")
        out[key] = json.loads(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA), help="directory searched recursively")
    parser.add_argument("--match", default="", help="only files whose name contains this")
    parser.add_argument("--sets", default="6,11", help="parameter sets: 6, 11 or 6,11")
    parser.add_argument("--out", help="output directory (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kan-only", dest="kan_only", action="store_true",
                        help="skip the baselines (e.g. to re-measure the KAN rows)")
    parser.add_argument("--baselines-only", dest="baselines_only", action="store_true",
                        help="skip the KAN models (e.g. to measure the baselines alone)")
    parser.add_argument("--flow-epochs", dest="flow_epochs", type=int,
                        help="zuko flow epochs at most (0: no flow; default 60)")
    parser.add_argument("--quick", action="store_true",
                        help="small KAN, few flow epochs, fewer metric samples")
    parser.add_argument("--density", nargs="*", default=[], metavar="KEY=VALUE",
                        help="KANDensityConfig overrides, e.g. hidden=16 n_components=8")
    parser.add_argument("--symbolic", nargs="*", default=[], metavar="KEY=VALUE",
                        help="SymbolicConfig overrides, e.g. digits=4")
    parser.add_argument("--speed", nargs="+", metavar="MODEL",
                        help="only time regeneration from these model stems")
    args = parser.parse_args()
    if args.kan_only and args.baselines_only:
        parser.error("--kan-only and --baselines-only exclude each other")
    if args.speed:
        for row in regeneration_speed(args.speed):
            print(f"{row['n_parameters']:3d} {row['source']:12s} "
                  f"{row['samples_per_cpu_second']:10.3g} samples/CPU-s (best of 5), "
                  f"{row['first_call_samples_per_cpu_second']:10.3g} (fresh process, 1e6)  "
                  f"{row['model']}")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.gmm = (4, 8, 16, 32, 64, 128)
    args.density, args.symbolic = _overrides(args.density), _overrides(args.symbolic)
    flow_epochs = 60
    args.metric_samples, args.c2st_samples = 20000, 5000
    if args.quick:
        args.density = {"hidden": 6, "n_components": 3, "max_epochs": 20, **args.density}
        args.symbolic = {"finetune_steps": 20, **args.symbolic}
        args.metric_samples, args.c2st_samples, flow_epochs = 4000, 1000, 5
    args.flow_epochs = flow_epochs if args.flow_epochs is None else args.flow_epochs
    out_dir = Path(args.out or tempfile.mkdtemp(prefix="gwtools-compression-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in Path(args.data).rglob("*") if p.is_file() and args.match in p.name)
    if not files:
        raise SystemExit(f"no posterior files matching {args.match!r} under {args.data}")
    rows = []
    for path in files:
        for d in (int(s) for s in args.sets.split(",")):
            rows.extend(benchmark_file(path, list(SETS[d]), out_dir, args))
            with open(out_dir / "results.jsonl", "w") as handle:
                handle.writelines(json.dumps(r, default=float) + "\n" for r in rows)
    header = (f"{'file':34s} {'d':>2s} {'method':16s} {'bytes':>9s} {'lp_heldout':>10s} "
              f"{'lp_phys':>9s} {'jsd_med':>8s} {'jsd_max':>8s} {'c2st':>6s} {'fit_s':>7s} "
              f"{'samples/s':>10s}")
    print(header)
    for r in rows:
        print(f"{r['file'][:34]:34s} {r['n_parameters']:2d} {r['method']:16s} {r['bytes']:9d} "
              f"{r['heldout_log_density_transformed']:10.3f} {r['heldout_log_density']:9.3f} "
              f"{r['jsd_median_bits']:8.4f} {r['jsd_max_bits']:8.4f} {r['c2st_accuracy']:6.3f} "
              f"{r['fit_seconds']:7.1f} {r['samples_per_second']:10.3g}")
    for r in rows:
        print(json.dumps(r, default=float))
    _plot(rows, out_dir / "frontier.png")
    print(f"outputs in {out_dir}")


if __name__ == "__main__":
    main()
