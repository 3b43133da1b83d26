"""How the main job's answers move with the noise estimate (README, "Noise models").

    .venv/bin/python benchmarks/noise_models.py                      # every variant, nlive 500
    .venv/bin/python benchmarks/noise_models.py --variants baseline,median_both --nlive 1000

Each variant is the main job (pipelines/gw150914.toml, or --config) with ``[noise]`` changed as
listed in VARIANTS (the same changes as ``--set noise.KEY=VALUE`` on the command line), run
twice: 220 + 221 and 220 alone.  Printed per variant: ln B of 220 + 221 against noise and of
220 + 221 against 220 (physical amplitude prior), the 90% intervals of the remnant mass and
spin (220 + 221), and the whitened off-source checks of the noise model.  One markdown table,
then one JSON line per variant.  Outputs go to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PYRING_ACF = str(ROOT / "data" / "GW150914" / "ACF_H1_1126257415_4096_4.0_{rate}.0.txt.gz")

#: name -> (description, updates of the configuration)
VARIANTS = {
    "baseline": ("Welch 4 s, [-14, -1] s, mean (shipped)", {}),
    "segment_2": ("Welch 2 s", {"noise": {"welch_segment": 2.0}}),
    "segment_1": ("Welch 1 s", {"noise": {"welch_segment": 1.0}}),
    "segment_8": ("Welch 8 s", {"noise": {"welch_segment": 8.0}}),
    "after": ("window after: [1, 15] s", {"noise": {"offsource": [1.0, 15.0]}}),
    "both": ("windows [-14, -1] and [1, 15] s", {"noise": {"offsource": [[-14.0, -1.0], [1.0, 15.0]]}}),
    "median": ("median, [-14, -1] s", {"noise": {"average": "median"}}),
    "median_both": ("median, both windows",
                    {"noise": {"average": "median", "offsource": [[-14.0, -1.0], [1.0, 15.0]]}}),
    "h1_welch": ("H1 only: Welch 4 s, [-14, -1] s", {"data": {"detectors": ["H1"]}}),
    "h1_pyring": ("H1 only: pyRing 4096 s ACF at 4096 Hz, decimated (acf_file)",
                  {"data": {"detectors": ["H1"]},
                   "noise": {"method": "acf_file", "acf_files": {"H1": PYRING_ACF.format(rate=4096)}}}),
    "h1_pyring_2048": ("H1 only: pyRing 4096 s ACF at 2048 Hz (acf_file)",
                       {"data": {"detectors": ["H1"]},
                        "noise": {"method": "acf_file", "acf_files": {"H1": PYRING_ACF.format(rate=2048)}}}),
}


def _interval(values) -> str:
    lo, median, hi = np.percentile(values, [5, 50, 95])
    return f"{median:.3g} [{lo:.3g}, {hi:.3g}]"


def run_variant(base, updates: dict, directory: Path) -> dict:
    """Both mode sets of one variant: evidences, remnant intervals and noise checks."""
    from gwtools.ringdown.config import override
    from gwtools.ringdown.pipeline import run_pipeline

    figures = {}
    for modes in (["220", "221"], ["220"]):
        changes = {section: dict(values) for section, values in updates.items()}
        changes.setdefault("model", {})["modes"] = modes
        changes["output"] = {"directory": str(directory / "+".join(modes))}
        result = run_pipeline(override(base, changes), plots=False, progress=False).result
        figures["+".join(modes)] = result
    full, fundamental = figures["220+221"], figures["220"]
    diag = full.diagnostics
    detectors = full.config["data"]["detectors"]
    return {
        "ln_b_noise": full.log_evidence["physical"][0] - diag["log_noise_evidence"],
        "ln_b_221": full.log_evidence["physical"][0] - fundamental.log_evidence["physical"][0],
        "ln_b_221_err": float(np.hypot(full.log_evidence["physical"][1], fundamental.log_evidence["physical"][1])),
        "final_mass": _interval(full.posterior["final_mass"]),
        "final_spin": _interval(full.posterior["final_spin"]),
        "noise": {
            d: {k: diag[f"noise_{d}_{k}"] for k in ("whitened_variance_outside", "ks_pvalue_outside",
                                                    "lag1_autocorrelation", "loud_stretches")
                if f"noise_{d}_{k}" in diag}
            for d in detectors
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "pipelines" / "gw150914.toml"))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    parser.add_argument("--nlive", type=int, default=500)
    parser.add_argument("--dlogz", type=float, default=0.1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s: %(message)s")

    from gwtools.ringdown.config import load_config, override
    from gwtools.ringdown.pipeline import use_compilation_cache

    use_compilation_cache()
    base = override(load_config(args.config), {"sampler": {"nlive": args.nlive, "dlogz": args.dlogz}})
    names = args.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="noise_models_") as tmp:
        for name in names:
            rows[name] = run_variant(base, VARIANTS[name][1], Path(tmp) / name)
    print(f"\n| noise estimate | ln B (220+221 vs noise) | ln B (220+221 vs 220) | Mf [Msun] (90%) | chi (90%) "
          f"| whitened var. / KS p outside the estimate |  (nlive {args.nlive}, dlogz {args.dlogz})")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        checks = "; ".join(
            f"{d} {v.get('whitened_variance_outside', float('nan')):.3f} / "
            f"{v.get('ks_pvalue_outside', float('nan')):.2g}"
            for d, v in row["noise"].items()
        )
        print(f"| {VARIANTS[name][0]} | {row['ln_b_noise']:.1f} | {row['ln_b_221']:.2f} ± {row['ln_b_221_err']:.2f} "
              f"| {row['final_mass']} | {row['final_spin']} | {checks} |")
    for name, row in rows.items():
        print(json.dumps({"variant": name, **row}))


if __name__ == "__main__":
    main()
